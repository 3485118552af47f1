"""DPoP, RFC 9449: proofs made (the site as a client) and proofs checked (the site's APIs).

A DPoP-bound token is useless without the private key it is bound to: every request carries a
fresh proof, a JWT signed with that key, naming the method and URL (``htm``, ``htu``), when
(``iat``), a unique ``jti``, and for resource requests the token's hash (``ath``). The token names
its key by thumbprint (``cnf.jkt``).

Framework-free: the client side is used by ``accounts.oidc.clients`` (token, refresh, userinfo,
revocation and provider API calls), the checking side by ``accounts.dpop`` for the site's APIs,
which adds the replay memory and the HTTP answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

#: Algorithms a proof may be signed with: asymmetric only (section 4.2), never ``none`` or HMAC.
PROOF_ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "EdDSA")
#: The algorithm of the site's own proofs (its per-grant keys are P-256).
CLIENT_ALGORITHM = "ES256"
#: Private members no public JWK may carry (a proof whose header holds a private key is refused).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Longest proof accepted, in characters (a proof is a few hundred; an RSA-4096 jwk makes it ~1.5 KB).
MAX_PROOF_LENGTH = 8192


class ProofRejected(Exception):
    """A DPoP proof that breaks a rule; ``error`` is RFC 9449's code, ``reason`` names the rule (for logs)."""

    def __init__(self, reason: str, *, error: str = "invalid_dpop_proof") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_hash(access_token: str) -> str:
    """``ath``: the base64url SHA-256 of the access token (section 4.2)."""
    return b64url(hashlib.sha256(access_token.encode("ascii", errors="replace")).digest())


def normalized_htu(url: str) -> str:
    """The URL a proof names: scheme and host lowercased, without query and fragment (section 4.3, step 9)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


# --- the client side: a key per grant, a proof per request ----------------------------------------


def new_key() -> ECKey:
    """A fresh P-256 key for one grant (sign-in): tokens of other grants never share it."""
    return ECKey.generate_key("P-256", private=True)


def export_key(key: ECKey) -> str:
    """The private JWK as text, for the token vault to store encrypted."""
    return json.dumps(key.as_dict(private=True))


def import_key(text: str) -> ECKey:
    return ECKey.import_key(json.loads(text))


def thumbprint(key: ECKey | RSAKey | OKPKey) -> str:
    """RFC 7638 thumbprint of the public key: what ``cnf.jkt`` and ``dpop_jkt`` carry."""
    return key.thumbprint()


def make_proof(
    key: ECKey,
    *,
    htm: str,
    htu: str,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A proof for one request: ``htm`` and ``htu`` of this request, ``ath`` when a token goes with it."""
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(24),
        "htm": htm.upper(),
        "htu": normalized_htu(htu),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = token_hash(access_token)
    if nonce:
        claims["nonce"] = nonce
    public = {n: v for n, v in key.as_dict(private=False).items() if n in ("kty", "crv", "x", "y")}
    header = {"typ": "dpop+jwt", "alg": CLIENT_ALGORITHM, "jwk": public}
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, payload, key, algorithms=[CLIENT_ALGORITHM])


# --- the resource side: checking a proof ------------------------------------------------------------


def _import_public(jwk: dict[str, Any]) -> ECKey | RSAKey | OKPKey:
    """The proof's public key; an unknown ``kty`` is a ``KeyError``."""
    kty = jwk.get("kty")
    if kty == "EC":
        return ECKey.import_key(jwk)
    if kty == "RSA":
        return RSAKey.import_key(jwk)
    if kty == "OKP":
        return OKPKey.import_key(jwk)
    raise KeyError(kty)


@dataclass(frozen=True)
class CheckedProof:
    """A proof whose signature and request binding held: its key's thumbprint and its replay key."""

    jkt: str
    jti: str
    iat: int
    claims: dict[str, Any]


def check_proof(
    raw: str,
    *,
    htm: str,
    htu: str,
    access_token: str | None,
    now: float,
    max_age: int,
    nonce: str | None = None,
) -> CheckedProof:
    """Every rule of RFC 9449 section 4.3 but the replay (``jti`` single use, the caller's database's).

    Raises ``ProofRejected`` naming the rule; ``error="use_dpop_nonce"`` when ``nonce`` is expected
    and the proof lacks it or carries another.
    """
    if not raw or len(raw) > MAX_PROOF_LENGTH or raw.count(".") != 2:
        raise ProofRejected("DPoP proof is not one compact JWS")
    try:
        obj = jws.extract_compact(raw.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise ProofRejected("DPoP proof is not a readable JWS") from None
    header = obj.protected
    if header.get("typ") != "dpop+jwt":
        raise ProofRejected("DPoP proof typ is not dpop+jwt")
    alg = header.get("alg")
    if alg not in PROOF_ALGORITHMS:
        raise ProofRejected(f"DPoP proof alg {str(alg)[:20]!r} is not an asymmetric algorithm we accept")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & jwk.keys():
        raise ProofRejected("DPoP proof jwk is missing or holds a private key")
    try:
        key = _import_public(jwk)
        jws.deserialize_compact(raw, key, algorithms=[str(alg)])
        claims = json.loads(obj.payload)
    except (KeyError, JoseError, ValueError, TypeError):
        raise ProofRejected("DPoP proof signature does not verify with its jwk") from None
    if not isinstance(claims, dict):
        raise ProofRejected("DPoP proof payload is not a JSON object")
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 256:
        raise ProofRejected("DPoP proof jti is missing or not 16 to 256 characters")
    if claims.get("htm") != htm:
        raise ProofRejected("DPoP proof htm is not this request's method")
    claimed_htu = claims.get("htu")
    if not isinstance(claimed_htu, str) or normalized_htu(claimed_htu) != normalized_htu(htu):
        raise ProofRejected("DPoP proof htu is not this request's URL")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or abs(now - iat) > max_age:
        raise ProofRejected(f"DPoP proof iat is missing or more than {max_age}s from now")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProofRejected("DPoP proof lacks the server's current nonce", error="use_dpop_nonce")
    ath, expected = claims.get("ath"), token_hash(access_token or "")
    if access_token is not None and not (
        isinstance(ath, str) and secrets.compare_digest(ath.encode("ascii", "replace"), expected.encode())
    ):
        raise ProofRejected("DPoP proof ath is not the hash of the access token")
    return CheckedProof(jkt=thumbprint(key), jti=jti, iat=int(iat), claims=claims)
