"""DPoP for this site's APIs (RFC 9449 section 7): a sender-constrained token and its proof, checked.

``accounts.api`` reads the ``Authorization`` scheme; for ``DPoP`` it verifies the token as any
other and then calls ``check`` here: one ``DPoP`` header, a proof by every rule of section 4.3
(``accounts.oidc.dpop.check_proof``: ``typ``, an asymmetric ``alg``, the signature by its own
``jwk``, ``htm``, ``htu``, ``iat`` within ``ACCOUNTS_DPOP_PROOF_MAX_AGE``, ``ath``), its key's
thumbprint equal to the token's ``cnf.jkt``, and its ``jti`` spent once in the durable replay
table (``accounts.replay``, ``TokenUse.DPOP_PROOF``). With ``ACCOUNTS_DPOP_REQUIRE_NONCE`` the
proof must also carry a nonce of this site's (section 8): an HMAC of the current time window, so
every process knows it without storing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import replay
from .conf import conf
from .oidc import dpop as protocol

#: How long one server nonce is current, in seconds; the previous one is accepted too.
NONCE_WINDOW = 300


class DPoPRefused(Exception):
    """A DPoP request refused; ``error`` is RFC 9449's code, ``reason`` names the rule (for the log)."""

    def __init__(self, reason: str, *, error: str = "invalid_dpop_proof", nonce: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        #: A nonce to hand the client (``DPoP-Nonce``) with a ``use_dpop_nonce`` answer.
        self.nonce = nonce


def bound_key(claims: dict[str, Any]) -> str | None:
    """The ``cnf.jkt`` a token is bound to (RFC 9449 6.1), or None for a bearer token."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None


def current_nonce(now: float | None = None, *, window_offset: int = 0) -> str:
    """This site's DPoP nonce for the current time window (derived from ``SECRET_KEY``, never stored)."""
    window = int((time.time() if now is None else now) // NONCE_WINDOW) + window_offset
    mac = hmac.new(settings.SECRET_KEY.encode(), f"oidc_signin.dpop-nonce.{window}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def check(request: HttpRequest, *, access_token: str, claims: dict[str, Any], now: float | None = None) -> str:
    """Check the request's DPoP proof for ``access_token`` (verified, its ``claims``); the key's thumbprint.

    Raises ``DPoPRefused`` naming the rule.
    """
    now = time.time() if now is None else now
    jkt = bound_key(claims)
    if jkt is None:
        raise DPoPRefused(
            "access token sent with the DPoP scheme is not DPoP-bound (no cnf.jkt)", error="invalid_token"
        )
    proofs = [value for name, value in request.headers.items() if name.lower() == "dpop"]
    raw = proofs[0] if len(proofs) == 1 else ""
    if len(proofs) != 1 or "," in raw:
        raise DPoPRefused("request carries no DPoP proof, or more than one")
    expected_nonce = None
    if conf.DPOP_REQUIRE_NONCE:
        expected_nonce = current_nonce(now)
    try:
        proof = protocol.check_proof(
            raw,
            htm=request.method or "",
            htu=request.build_absolute_uri(request.path),
            access_token=access_token,
            now=now,
            max_age=conf.DPOP_PROOF_MAX_AGE,
            nonce=None,
        )
    except protocol.ProofRejected as exc:
        raise DPoPRefused(exc.reason, error=exc.error) from None
    if expected_nonce is not None and proof.claims.get("nonce") not in (
        expected_nonce,
        current_nonce(now, window_offset=-1),
    ):
        raise DPoPRefused("DPoP proof lacks this API's current nonce", error="use_dpop_nonce", nonce=expected_nonce)
    if not hmac.compare_digest(proof.jkt.encode(), jkt.encode("ascii", "replace")):
        raise DPoPRefused("DPoP proof key is not the key the access token is bound to (cnf.jkt)", error="invalid_token")
    # Single use: the proof's jti is remembered until no proof of that age could be accepted anyway.
    if not replay.spend(
        replay.TokenUse.DPOP_PROOF, issuer=proof.jkt, jti=proof.jti, exp=proof.iat + conf.DPOP_PROOF_MAX_AGE
    ):
        raise DPoPRefused("DPoP proof was already used (jti replay)")
    return proof.jkt
