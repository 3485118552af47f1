"""Seeded fuzzing of ID token verification: a changed byte is a rejected token, for a signature-level reason.

A hostile provider, or anyone in between, controls every byte of the token. Two properties:

* every mutation of a validly signed token -- in its signature, its payload or its header -- is
  REJECTED, and with a reason that says the token is not the provider's (bad signature, unknown
  key, unsigned, unreadable), never a claim rule: a claim rule firing on a changed payload would
  mean its bytes had been believed. Only a mutation that leaves the token byte-identical is exempt;
* validly signed tokens with odd header members and claims raise nothing but ``TokenRejected``
  (anything else would be a 500). This is how a TypeError from a numeric "crit" header was found.

Both are seeded (the same tokens every run) and bounded (a fixed number of tokens, a few seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
from collections import Counter

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, OKPKey

from accounts.errors import SignInError, TokenRejected
from accounts.oidc.tokens import verify_id_token
from tests.conftest import STRANGER_KEY, claims_for

pytestmark = pytest.mark.django_db

ALGS = ["RS256", "PS256", "ES256", "EdDSA", "HS256"]
WEIRD = [None, 1, -1, 1.5, float("inf"), "", "x", [], {}, ["a"], {"a": 1}, True, "none", "HS256", "A" * 300, 10**30]
HEADER_MEMBERS = ["alg", "kid", "crit", "typ", "b64", "jku", "x5u", "zip", "enc"]
CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash"]
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: What an attacker would like a payload to say instead.
CLAIM_CHANGES = [
    ("sub", "admin"),
    ("exp", 4102444800),
    ("aud", "another-client"),
    ("iss", "https://evil.example"),
    ("nonce", "n-2"),
    ("email_verified", True),
    ("email", "admin@example.com"),
]

#: Why a token that is not exactly what the provider signed may be refused: it cannot be read, names
#: no key of ours, is unsigned or signed with an algorithm we do not allow, or its signature fails.
NOT_THE_PROVIDERS = re.compile(
    r"ID token (is not a compact JWS|(header|payload) cannot be decoded|header is malformed \(\w+\)"
    r"|is unsigned \(alg .*\)"
    r"|alg .* is not allowed for provider test-op|kid .* matches no \w+ key of the provider"
    r"|signature is not valid \(\w+\))"
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return b"\x00"
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def replace_char(rng: random.Random, segment: str) -> str:
    i = rng.randrange(len(segment))
    return segment[:i] + rng.choice(B64URL) + segment[i + 1 :]


def sign_by_hand(header: dict, claims: dict, key) -> str:
    """Sign ``header`` exactly as given (joserfc refuses to sign many odd ones) with the raw private key.

    ``header["alg"]`` must be one of ``ALGS``; ``key`` is a joserfc key, or a ``str`` HMAC secret.
    Done with ``cryptography`` directly, because importing a joserfc RSA key per token costs ~50 ms.
    """
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode("ascii")
    alg = header["alg"]
    if alg == "HS256":
        signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    elif alg == "RS256":
        signature = key.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
        signature = key.private_key.sign(signing_input, pss, hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:  # EdDSA
        signature = key.private_key.sign(signing_input)
    return signing_input.decode("ascii") + "." + b64(signature)


class Mutator:
    """Mutations of one validly signed token ``h.p.s``; each returns the whole mutated token."""

    def __init__(self, rng: random.Random, token: str, other: str):
        self.rng = rng
        self.h, self.p, self.s = token.split(".")
        self.header, self.claims, self.signature = json.loads(unb64(self.h)), json.loads(unb64(self.p)), unb64(self.s)
        self.other_signature = other.split(".")[2]  # a valid signature by the same key, of other claims

    def join(self, h: str | None = None, p: str | None = None, s: str | None = None) -> str:
        return f"{self.h if h is None else h}.{self.p if p is None else p}.{self.s if s is None else s}"

    # --- the signature -------------------------------------------------------------------------

    def signature_bit(self) -> str:
        return self.join(s=b64(flip_bit(self.rng, self.signature)))

    def signature_truncated(self) -> str:
        return self.join(s=b64(self.signature[: self.rng.randrange(len(self.signature))]))

    def signature_extended(self) -> str:
        return self.join(s=b64(self.signature + self.rng.randbytes(self.rng.randint(1, 8))))

    def signature_random(self) -> str:
        return self.join(s=b64(self.rng.randbytes(len(self.signature))))

    def signature_zero(self) -> str:
        return self.join(s=b64(bytes(len(self.signature))))

    def signature_of_other_claims(self) -> str:
        return self.join(s=self.other_signature)

    def signature_char(self) -> str:
        return self.join(s=replace_char(self.rng, self.s))

    def signature_by_a_stranger(self) -> str:
        """The same header and payload, signed by a key of the right type that the provider never published."""
        forged = sign_by_hand(self.header, self.claims, STRANGERS[self.header["alg"]])
        return self.join(s=forged.split(".")[2])

    # --- the payload ---------------------------------------------------------------------------

    def payload_claim(self) -> str:
        name, value = self.rng.choice(CLAIM_CHANGES)
        return self.join(p=b64(json.dumps({**self.claims, name: value}).encode()))

    def payload_bit(self) -> str:
        return self.join(p=b64(flip_bit(self.rng, unb64(self.p))))

    def payload_reserialised(self) -> str:
        """The same claims, the same JSON meaning, other bytes: the signature covers bytes, not meaning."""
        items = list(self.claims.items())
        self.rng.shuffle(items)
        return self.join(p=b64(json.dumps(dict(items), indent=self.rng.choice([None, 0, 1])).encode()))

    def payload_char(self) -> str:
        return self.join(p=replace_char(self.rng, self.p))

    def payload_padded(self) -> str:
        return self.join(p=base64.urlsafe_b64encode(unb64(self.p)).decode("ascii").rstrip("=") + "==")

    def payload_truncated(self) -> str:
        return self.join(p=self.p[: self.rng.randrange(len(self.p))])

    # --- the header ----------------------------------------------------------------------------

    def header_alg(self) -> str:
        choices = [*ALGS, "none", "None", "RS384", "RS512", "ES384", "HS512", "rs256", ""]
        alg = self.rng.choice([a for a in choices if a != self.header["alg"]])
        return self.join(h=b64(json.dumps({**self.header, "alg": alg}).encode()))

    def header_kid(self) -> str:
        header = dict(self.header)
        kid = self.rng.choice([None, "rsa-1", "ec-1", "ed-1", f"made-up-{self.rng.randrange(10**6)}"])
        if kid is None or kid == header.get("kid"):
            header.pop("kid", None)
        else:
            header["kid"] = kid
        return self.join(h=b64(json.dumps(header).encode()))

    def header_member(self) -> str:
        name = self.rng.choice([*HEADER_MEMBERS[2:], "x-extra"])
        value = self.rng.choice([*WEIRD[1:], "JWT", "logout+jwt", ["exp"], "https://evil.example/jwks"])
        return self.join(h=b64(json.dumps({**self.header, name: value}).encode()))

    def header_bit(self) -> str:
        return self.join(h=b64(flip_bit(self.rng, unb64(self.h))))

    def header_char(self) -> str:
        return self.join(h=replace_char(self.rng, self.h))

    # --- the compact form ----------------------------------------------------------------------

    def structure(self) -> str:
        token = self.join()
        i = self.rng.randrange(len(token) + 1)
        insert = self.rng.choice([".", " ", "\n", "=", "+", "/", "é", "\x00", "..", token[i - 1 : i]])
        return self.rng.choice([token[:i] + insert + token[i:], token[:i] + token[i + 1 :], token.replace(".", "", 1)])


#: For each algorithm, a key (or HMAC secret) of the right kind that the provider never published.
STRANGERS = {
    "RS256": STRANGER_KEY,
    "PS256": STRANGER_KEY,
    "ES256": ECKey.generate_key("P-256"),
    "EdDSA": OKPKey.generate_key("Ed25519"),
    "HS256": "another-secret-0123456789abcdefghijkl",
}

MUTATIONS = {
    "signature": [
        Mutator.signature_bit,
        Mutator.signature_truncated,
        Mutator.signature_extended,
        Mutator.signature_random,
        Mutator.signature_zero,
        Mutator.signature_of_other_claims,
        Mutator.signature_char,
        Mutator.signature_by_a_stranger,
    ],
    "payload": [
        Mutator.payload_claim,
        Mutator.payload_bit,
        Mutator.payload_reserialised,
        Mutator.payload_char,
        Mutator.payload_padded,
        Mutator.payload_truncated,
    ],
    "header": [Mutator.header_alg, Mutator.header_kid, Mutator.header_member, Mutator.header_bit, Mutator.header_char],
    "structure": [Mutator.structure],
}


@pytest.fixture
def fuzz_provider(op, provider):
    """Every algorithm the fuzzer signs with is allowed, so a mutation is refused by its bytes, not the allowlist."""
    op.add_key(OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1", "use": "sig"}))
    provider.allowed_algorithms = " ".join(ALGS)
    return provider


def verify(op, provider, token: str) -> dict:
    return verify_id_token(provider, token, jwks_uri=op.metadata["jwks_uri"], nonce="n-1", access_token="at")


def reason_for(op, provider, token: str) -> str | None:
    """The reason ``token`` was rejected for, or ``None`` if it was accepted."""
    try:
        verify(op, provider, token)
    except TokenRejected as exc:
        return exc.reason
    return None


def test_every_mutation_of_a_signed_token_is_rejected_as_not_the_providers(op, fuzz_provider):
    rng = random.Random(20261201)
    fired: Counter[tuple[str, str]] = Counter()  # (part mutated, whether the signature check refused it)
    identical = 0
    for round_ in range(100):
        alg = ALGS[round_ % len(ALGS)]
        claims = claims_for(op, sub=f"user-{rng.randrange(10**6)}", name="Alice" * rng.randint(0, 3) or None)
        token = op.sign(claims, alg=alg)
        assert verify(op, fuzz_provider, token) == claims  # the mutations, not the token, are what is refused
        mutator = Mutator(rng, token, other=op.sign(claims_for(op, sub="someone-else"), alg=alg))
        for part, mutations in MUTATIONS.items():
            for mutate in rng.sample(mutations, k=min(3, len(mutations))):
                mutated = mutate(mutator)
                if mutated == token:  # e.g. a character replaced by itself: nothing to reject
                    identical += 1
                    continue
                reason = reason_for(op, fuzz_provider, mutated)
                assert reason is not None, f"{mutate.__name__} of an {alg} token was accepted: {mutated}"
                assert NOT_THE_PROVIDERS.fullmatch(reason), f"{mutate.__name__} of an {alg} token: {reason}"
                fired[part, "bad signature" if reason.startswith("ID token signature is not valid") else "other"] += 1
    assert identical < 20
    # The mutations reach the signature check itself, not only the parser, in every part of the token.
    for part in ("signature", "payload", "header"):
        assert fired[part, "bad signature"] >= 50, fired


def test_signed_tokens_with_odd_members_raise_nothing_but_token_rejected(op, fuzz_provider):
    rng = random.Random(20261128)
    outcomes: Counter[str] = Counter()
    for _ in range(300):
        alg = rng.choice(ALGS)
        header, claims = {"alg": alg}, claims_for(op)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                header[rng.choice(HEADER_MEMBERS)] = rng.choice(WEIRD)
            else:
                claims[rng.choice(CLAIMS)] = rng.choice(WEIRD)
        if isinstance(header["alg"], str) and header["alg"] in ALGS:
            key = op.client_secret if header["alg"] == "HS256" else op.signing_key_for(header["alg"])
            token = sign_by_hand(header, claims, key)
        else:  # no algorithm of ours to sign with: a made-up signature
            token = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + ".c2ln"
        try:
            assert verify(op, fuzz_provider, token) == claims  # odd, but signed: what was signed comes back
            outcomes["accepted"] += 1
        except SignInError as exc:
            assert isinstance(exc, TokenRejected) and exc.reason.startswith("ID token "), repr(exc)
            outcomes["rejected"] += 1
        for variant in (token[:-4], token + "A", token.replace(".", "..", 1)):  # these are no longer signed
            reason = reason_for(op, fuzz_provider, variant)
            assert reason is not None and NOT_THE_PROVIDERS.fullmatch(reason), reason
    assert outcomes["accepted"] and outcomes["rejected"], outcomes
