"""ID token verification: every rule of OpenID Connect Core 1.0, section 3.1.3.7.

``verify_id_token`` is the only way a token's claims reach the rest of the app. The order matters:
nothing in the payload is trusted (not even ``iss``) until the signature is verified with a key
chosen by *our* rules -- the algorithm must be on the provider's allowlist, the key must come from
the provider's JWKS (or, for HMAC, be the client secret), and the key's type, use and algorithm
must fit the header. Only then are the claims checked.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from authlib.oidc.core.util import create_half_hash
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key, KeySet, OctKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry

from ..conf import conf
from ..errors import TokenRejected
from . import discovery

if TYPE_CHECKING:
    from ..models import Provider

logger = logging.getLogger(__name__)

#: Which key type and curve each asymmetric algorithm needs (RFC 7518 section 3, RFC 8037).
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVES = {"ES256": {"P-256"}, "ES384": {"P-384"}, "ES512": {"P-521"}, "EdDSA": {"Ed25519", "Ed448"}}


def verify_id_token(
    provider: Provider,
    raw: str,
    *,
    jwks_uri: str,
    nonce: str,
    issuers: Callable[[dict[str, Any]], Collection[str]] | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """Verify a raw ID token from ``provider`` and return its claims.

    ``issuers`` gives, from the signature-verified claims, what ``iss`` may be (default: exactly
    the provider's issuer; a preset may add a documented alternative, e.g. Microsoft's per-tenant
    issuer). Raises ``TokenRejected`` naming the rule that failed.
    """
    header, claims = verify_signed_jwt(provider, raw, jwks_uri=jwks_uri, what="ID token")
    check_claims(
        claims,
        issuers=issuers(claims) if issuers is not None else [provider.issuer],
        client_id=provider.client_id,
        what="ID token",
        sub={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    _check_at_hash(claims, header["alg"], access_token)
    if len(claims["sub"]) > 255:  # Core 2: "MUST NOT exceed 255 ASCII characters in length"
        raise TokenRejected("ID token sub claim is longer than 255 characters")
    if "\x00" in claims["sub"]:  # no database stores it faithfully, so it could never be matched again
        raise TokenRejected("ID token sub claim contains a NUL character")
    return claims


# --- signature -------------------------------------------------------------------------------


def verify_signed_jwt(provider: Provider, raw: str, *, jwks_uri: str, what: str) -> tuple[dict, dict]:
    """Check the JWS signature of ``raw`` and return its (header, claims); nothing else is checked."""
    token = _parse(raw, what)
    header = dict(token.headers())
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise TokenRejected(f"{what} is unsigned (alg {alg!r})")
    if alg not in provider.algorithms:
        raise TokenRejected(f"{what} alg {alg} is not allowed for provider {provider.slug}")
    key = _hmac_key(provider, alg) if alg.startswith("HS") else _provider_key(header, alg, jwks_uri, what)
    try:
        valid = jws.validate_compact(token, key, registry=_registry(alg))
    except JoseError as exc:
        raise TokenRejected(f"{what} signature is not valid ({exc.error})") from exc
    except (TypeError, ValueError) as exc:  # joserfc on malformed header members, e.g. a "crit" that is a number
        raise TokenRejected(f"{what} header is malformed ({type(exc).__name__})") from exc
    if not valid:
        raise TokenRejected(f"{what} signature is not valid (bad_signature)")
    try:
        claims = json.loads(token.payload)
    except (ValueError, RecursionError) as exc:
        raise TokenRejected(f"{what} payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise TokenRejected(f"{what} payload is not a JSON object")
    return header, claims


@functools.cache
def _registry(alg: str) -> JWSRegistry:
    """One registry per algorithm, built once: it is what limits joserfc to the algorithm we chose."""
    return JWSRegistry(algorithms=[alg])


def _parse(raw: str, what: str) -> jws.CompactSignature:
    if not isinstance(raw, str) or raw.count(".") != 2:
        raise TokenRejected(f"{what} is not a compact JWS")
    try:
        return jws.extract_compact(raw.encode("ascii"))
    except (JoseError, ValueError, TypeError, UnicodeError, RecursionError) as exc:
        raise TokenRejected(f"{what} header cannot be decoded") from exc


def _hmac_key(provider: Provider, alg: str) -> OctKey:
    """HMAC is keyed with the client secret -- never with anything from the JWKS (algorithm confusion)."""
    if not provider.client_secret:
        raise TokenRejected(f"{alg} needs a client secret and provider {provider.slug} has none")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns on short secrets; the admin chose to allow HMAC
            return OctKey.import_key(provider.client_secret)
    except ValueError as exc:  # joserfc refuses a secret that is an asymmetric (public) key
        raise TokenRejected(f"client secret of {provider.slug} cannot be an HMAC key") from exc


def _provider_key(header: dict[str, Any], alg: str, jwks_uri: str, what: str) -> Key:
    doc = discovery.get_keys(jwks_uri)
    candidates = matching_keys(doc.keys, header, alg)
    if not candidates:
        newer = discovery.keys_after_unknown_kid(jwks_uri, doc)
        if newer is not None:
            candidates = matching_keys(newer.keys, header, alg)
    if not candidates:
        raise TokenRejected(f"{what} kid {header.get('kid')!r} matches no {alg} key of the provider")
    if len(candidates) > 1:
        raise TokenRejected(f"{what} has no kid and the provider has {len(candidates)} {alg} keys")
    return candidates[0]


def matching_keys(keys: KeySet, header: dict[str, Any], alg: str) -> list[Key]:
    """Keys that may verify a token with this header: same kid (if any), right type, use and alg."""
    kid = header.get("kid")
    kty = _KEY_TYPE.get(alg[:2])
    found = []
    for key in keys.keys:
        if kid is not None and key.kid != kid:
            continue
        if key.key_type != kty or key.get("use") not in (None, "sig"):
            continue
        if key.get("alg") not in (None, alg):
            continue
        if alg in _CURVES and key.get("crv") not in _CURVES[alg]:
            continue
        if key.get("key_ops") is not None and "verify" not in key.get("key_ops"):
            continue
        found.append(key)
    return found


# --- claims ----------------------------------------------------------------------------------


def check_claims(
    claims: dict[str, Any],
    *,
    issuers: Collection[str],
    client_id: str,
    what: str,
    **options: Any,
) -> None:
    """The claim rules shared by ID tokens and logout tokens; ``options`` adds per-token rules."""
    registry = JWTClaimsRegistry(
        leeway=conf.OIDC_CLOCK_LEEWAY,
        iss={"essential": True, "values": list(issuers)},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        **options,
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise TokenRejected(f"{what} has expired") from exc
    except MissingClaimError as exc:
        raise TokenRejected(f"{what} has no {exc.claim} claim") from exc
    except ClaimError as exc:
        raise TokenRejected(f"{what} {exc.claim} claim is not valid ({exc.description})") from exc
    aud = claims["aud"]
    azp = claims.get("azp")
    if isinstance(aud, list) and len(aud) > 1 and azp is None:
        raise TokenRejected(f"{what} has several audiences and no azp claim")
    if azp is not None and azp != client_id:
        raise TokenRejected(f"{what} azp claim is not this client")


def _check_at_hash(claims: dict[str, Any], alg: str, access_token: str | None) -> None:
    """Section 3.1.3.8: optional in the code flow, but when present it must match."""
    at_hash = claims.get("at_hash")
    if at_hash is None or access_token is None:
        return
    try:
        expected = create_half_hash(access_token, alg)
    except Exception as exc:  # an algorithm authlib cannot hash for; treat as a mismatch
        raise TokenRejected(f"ID token at_hash cannot be checked for {alg}") from exc
    if not isinstance(at_hash, str) or expected is None or not hmac.compare_digest(at_hash, expected.decode()):
        raise TokenRejected("ID token at_hash does not match the access token")


def verify_userinfo_jwt(provider: Provider, raw: str, *, jwks_uri: str) -> dict[str, Any]:
    """A signed userinfo response (section 5.3.2): signature, and iss/aud when present."""
    _header, claims = verify_signed_jwt(provider, raw, jwks_uri=jwks_uri, what="userinfo")
    if "iss" in claims and claims["iss"] != provider.issuer:
        raise TokenRejected("userinfo iss is not the provider's issuer")
    aud = claims.get("aud")
    if aud is not None and provider.client_id not in (aud if isinstance(aud, list) else [aud]):
        raise TokenRejected("userinfo aud is not this client")
    return claims


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def verify_logout_token(provider: Provider, raw: str, *, jwks_uri: str) -> dict[str, Any]:
    """Verify a logout token (OpenID Connect Back-Channel Logout 1.0, section 2.6).

    Like an ID token -- signature by kid, iss, aud, iat, exp -- plus: the back-channel logout
    event must be present, ``nonce`` must be absent (so an ID token can never pass for a logout
    token), ``jti`` is required (for replay detection), and ``sid`` and/or ``sub`` must name what
    to end. An explicit ``typ`` other than ``logout+jwt`` is refused (RFC 8725 cross-JWT confusion).
    """
    header, claims = verify_signed_jwt(provider, raw, jwks_uri=jwks_uri, what="logout token")
    typ = header.get("typ")
    if typ is not None and str(typ).lower() not in ("logout+jwt", "application/logout+jwt", "jwt"):
        raise TokenRejected(f"logout token has typ {str(typ)[:40]!r}")
    check_claims(
        claims, issuers=[provider.issuer], client_id=provider.client_id, what="logout token", jti={"essential": True}
    )
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenRejected("logout token lacks the back-channel logout event")
    if "nonce" in claims:
        raise TokenRejected("logout token carries a nonce")
    sid, sub = claims.get("sid"), claims.get("sub")
    if sid is None and sub is None:
        raise TokenRejected("logout token has neither sid nor sub")
    # An empty sid or sub names nothing; if let through it would filter nothing, and so end every session.
    if any(value is not None and (not isinstance(value, str) or not value) for value in (sid, sub)):
        raise TokenRejected("logout token sid or sub is not a non-empty string")
    return claims
