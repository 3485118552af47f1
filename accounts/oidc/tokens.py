"""ID token verification: every rule of OpenID Connect Core 1.0, section 3.1.3.7.

``verify_id_token`` is the only way a token's claims reach the rest of the app. The order matters:
nothing in the payload is trusted (not even ``iss``) until the signature is verified with a key
chosen by *our* rules -- the algorithm must be on the provider's allowlist, the key must come from
the provider's JWKS (or, for HMAC, be the client secret), and the key's type, use and algorithm
must fit the header. Only then are the claims checked.

Every verification says where its token came from (``discovery.KeyOrigin``), because that decides
whether an unknown ``kid`` may make us refetch the provider's keys: ``verify_id_token`` and
``verify_userinfo_jwt`` read answers to our own back-channel requests; ``verify_logout_token`` and
``verify_access_token`` (RFC 9068) read what anyone can post, and say so with ``KeyOrigin.ANYONE``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import math
import time
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from authlib.oidc.core.util import create_half_hash
from django.views.decorators.debug import sensitive_variables
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key, KeySet, OctKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from ..conf import conf
from ..errors import TokenRejected, UnknownKey
from . import discovery, profiles, safejson
from .config import MAX_ISSUER_LENGTH, MAX_SUBJECT_LENGTH
from .discovery import KeyOrigin
from .profiles import AudienceRule, TokenProfile

if TYPE_CHECKING:
    from .config import ProviderConfig as Provider

logger = logging.getLogger(__name__)

#: Which key type and curve each asymmetric algorithm needs (RFC 7518 section 3, RFC 8037).
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVES = {"ES256": {"P-256"}, "ES384": {"P-384"}, "ES512": {"P-521"}, "EdDSA": {"Ed25519", "Ed448"}}


@sensitive_variables("raw", "access_token")
def verify_id_token(
    provider: Provider,
    raw: str,
    *,
    jwks_uri: str,
    nonce: str | None,
    issuers: Callable[[dict[str, Any]], Collection[str]] | None = None,
    access_token: str | None = None,
    max_age: int | None = None,
    client_ids: Collection[str] | None = None,
    origin: KeyOrigin = KeyOrigin.BACK_CHANNEL,
) -> dict[str, Any]:
    """Verify a raw ID token from ``provider`` and return its claims.

    The token must be the token endpoint's answer (it is trusted to name a rotated key, see
    ``KeyOrigin.BACK_CHANNEL``). ``issuers`` gives, from the signature-verified claims, what ``iss``
    may be (default: exactly the provider's issuer; a preset may add a documented alternative, e.g.
    Microsoft's per-tenant issuer). ``max_age`` is the value sent in the authorization request, if
    any. Raises ``TokenRejected`` naming the rule that failed.

    An ID token handed over by a browser or an app instead (sign-in without a redirect,
    ``accounts.no_redirect``) says so with ``origin=KeyOrigin.ANYONE``; ``client_ids`` then lists the
    audiences it may be for (default: the provider's client id), and ``nonce=None`` leaves the
    ``nonce`` claim to the caller, who knows what it must be bound to.
    """
    header, claims = verify_signed_jwt(provider, raw, jwks_uri=jwks_uri, what="ID token", origin=origin)
    nonce_rule: dict[str, Any] = {"nonce": {"essential": True, "value": nonce}} if nonce is not None else {}
    check_claims(
        claims,
        issuers=issuers(claims) if issuers is not None else [provider.issuer],
        client_id=provider.client_id if client_ids is None else client_ids,
        what="ID token",
        sub={"essential": True},
        **nonce_rule,
    )
    _check_at_hash(claims, header["alg"], access_token)
    if max_age is not None:
        _check_auth_time(claims, max_age)
    _require_keys(claims, "ID token", required=("iss", "sub"), optional=("sid",))
    return claims


#: The longest value each identity key may have: what its column holds (``config.MAX_ISSUER_LENGTH``,
#: ``config.MAX_SUBJECT_LENGTH``; ``ProviderSession.sid`` is as long as a subject).
#: ``client_id`` and ``jti`` are not stored as such: their bounds only keep log lines and hashes small.
KEY_LENGTHS = {
    "iss": MAX_ISSUER_LENGTH,
    "sub": MAX_SUBJECT_LENGTH,
    "sid": MAX_SUBJECT_LENGTH,
    "client_id": 500,
    "jti": 1000,
}


def key_problem(value: Any, name: str) -> str | None:
    """Why ``value`` cannot be the identity key ``name`` (a claim the database is queried by), or None.

    A key must be a non-empty string its column can hold, without a character no database stores
    (``safejson.unstorable``): a lone surrogate or a NUL would otherwise reach the query and fail
    it with a 500, on every database. Checked before any query, for every token whatever its origin.
    """
    if not isinstance(value, str) or not value:
        return f"{name} claim is not a non-empty string"
    if len(value) > KEY_LENGTHS[name]:
        return f"{name} claim is longer than {KEY_LENGTHS[name]} characters"
    unstorable = safejson.unstorable(value)
    if unstorable is not None:
        return f"{name} claim contains {unstorable}"
    return None


def _require_keys(
    claims: dict[str, Any], what: str, *, required: Collection[str], optional: Collection[str] = ()
) -> None:
    """Refuse the token if a key claim of ``required`` (or of ``optional``, when present) is unusable."""
    for name in (*required, *(name for name in optional if name in claims)):
        problem = key_problem(claims.get(name), name)
        if problem is not None:
            raise TokenRejected(f"{what} {problem}")


# --- signature -------------------------------------------------------------------------------


@sensitive_variables("raw", "token")
def verify_signed_jwt(
    provider: Provider, raw: str, *, jwks_uri: str, what: str, origin: KeyOrigin
) -> tuple[dict, dict]:
    """Check the JWS signature of ``raw`` and return its (header, claims); nothing else is checked.

    ``origin`` says who could have sent the token, so how far its ``kid`` is believed (``KeyOrigin``).
    The payload is parsed with a bound on nesting (``safejson``), as everything from outside is.
    """
    token = _parse(raw, what)
    header = dict(token.headers())
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise TokenRejected(f"{what} is unsigned (alg {alg!r})")
    if alg not in provider.algorithms:
        raise TokenRejected(f"{what} alg {alg} is not allowed for provider {provider.slug}")
    key = _hmac_key(provider, alg) if alg.startswith("HS") else _provider_key(header, alg, jwks_uri, what, origin)
    try:
        valid = jws.validate_compact(token, key, registry=_registry(alg))
    except JoseError as exc:
        raise TokenRejected(f"{what} signature is not valid ({exc.error})") from exc
    except (TypeError, ValueError) as exc:  # joserfc on malformed header members, e.g. a "crit" that is a number
        raise TokenRejected(f"{what} header is malformed ({type(exc).__name__})") from exc
    if not valid:
        raise TokenRejected(f"{what} signature is not valid (bad_signature)")
    try:
        claims = safejson.loads(token.payload)
    except safejson.TooDeep as exc:
        raise TokenRejected(f"{what} payload nests too deeply") from exc
    except ValueError as exc:
        raise TokenRejected(f"{what} payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise TokenRejected(f"{what} payload is not a JSON object")
    return header, claims


@functools.cache
def _registry(alg: str) -> JWSRegistry:
    """One registry per algorithm, built once: it is what limits joserfc to the algorithm we chose."""
    return JWSRegistry(algorithms=[alg])


@sensitive_variables("raw")
def _parse(raw: str, what: str) -> jws.CompactSignature:
    if not isinstance(raw, str) or raw.count(".") != 2:
        raise TokenRejected(f"{what} is not a compact JWS")
    try:
        return jws.extract_compact(raw.encode("ascii"))
    except (JoseError, ValueError, TypeError, UnicodeError, RecursionError) as exc:
        # joserfc says which part failed ("Invalid payload"); the signature is decoded when verified.
        part = "payload" if "payload" in str(getattr(exc, "description", "")).lower() else "header"
        raise TokenRejected(f"{what} {part} cannot be decoded") from exc


@sensitive_variables("secret")
def _hmac_key(provider: Provider, alg: str) -> OctKey:
    """HMAC is keyed with the client secret -- never with anything from the JWKS (algorithm confusion)."""
    if not provider.client_secret:
        raise TokenRejected(f"{alg} needs a client secret and provider {provider.slug} has none")
    secret = provider.reveal_client_secret()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns on short secrets; the admin chose to allow HMAC
            return OctKey.import_key(secret)
    except ValueError as exc:  # joserfc refuses a secret that is an asymmetric (public) key
        raise TokenRejected(f"client secret of {provider.slug} cannot be an HMAC key") from exc


#: How many newer key sets one token may look at: another process's newer copy (which may predate the
#: token's key, when keys rotated twice in moments), then a refetch, and one more in case the refetch
#: it waited for was another's, sent before the token arrived.
_KEY_SET_LOOKS = 3


def _provider_key(header: dict[str, Any], alg: str, jwks_uri: str, what: str, origin: KeyOrigin) -> Key:
    current = discovery.get_keys(jwks_uri)
    candidates = matching_keys(current.keys, header, alg)
    doc: discovery.JWKS | None = current
    for _look in range(_KEY_SET_LOOKS):
        if candidates or doc is None:
            break
        # Each look is a set newer than the last, or None when there is none to be had.
        doc = discovery.keys_after_unknown_kid(jwks_uri, doc, origin=origin)
        if doc is not None:
            candidates = matching_keys(doc.keys, header, alg)
    if not candidates:
        raise UnknownKey(f"{what} kid {header.get('kid')!r} matches no {alg} key of the provider")
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
        ops = key.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):  # RFC 7517 4.3: a list
            continue
        found.append(key)
    return found


# --- claims ----------------------------------------------------------------------------------


def check_claims(
    claims: dict[str, Any],
    *,
    issuers: Collection[str],
    client_id: str | Collection[str],
    what: str,
    **options: Any,
) -> None:
    """The claim rules shared by ID tokens and logout tokens; ``options`` adds per-token rules.

    ``client_id`` is this client, or the several client ids (a native app's) any of which may be the audience.
    """
    client_ids = [client_id] if isinstance(client_id, str) else [c for c in client_id if c]
    if not client_ids:
        raise TokenRejected(f"{what} cannot be for any client: none is allowed")
    registry = JWTClaimsRegistry(
        leeway=conf.OIDC_CLOCK_LEEWAY,
        iss={"essential": True, "values": list(issuers)},
        aud={"essential": True, "values": client_ids},
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
    if azp is not None and azp not in client_ids:
        raise TokenRejected(f"{what} azp claim is not this client")


@sensitive_variables("access_token")
def _check_at_hash(claims: dict[str, Any], alg: str, access_token: str | None) -> None:
    """Section 3.1.3.8: optional in the code flow, but when present it must match."""
    at_hash = claims.get("at_hash")
    if at_hash is None or access_token is None:
        return
    try:
        expected = create_half_hash(access_token, alg)
    except Exception as exc:  # an algorithm authlib cannot hash for; treat as a mismatch
        raise TokenRejected(f"ID token at_hash cannot be checked for {alg}") from exc
    if not isinstance(at_hash, str) or expected is None or not same_text(at_hash, expected.decode("ascii")):
        raise TokenRejected("ID token at_hash does not match the access token")


def _check_auth_time(claims: dict[str, Any], max_age: int) -> None:
    """Section 3.1.3.7 step 13: with max_age requested, auth_time is required and must be recent enough."""
    auth_time = claims.get("auth_time")
    if auth_time is None:
        raise TokenRejected("ID token has no auth_time claim though max_age was requested")
    try:
        if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
            raise TypeError
        age = time.time() - float(auth_time)  # OverflowError for an integer beyond any float
        if not math.isfinite(age):  # NaN or Infinity, which Python's JSON parser accepts
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise TokenRejected("ID token auth_time claim is not a number") from None
    if age > max_age + conf.OIDC_CLOCK_LEEWAY:
        raise TokenRejected("ID token auth_time is older than max_age allows")
    if -age > conf.OIDC_CLOCK_LEEWAY:  # a sign-in yet to happen would pass any max_age, for ever
        raise TokenRejected("ID token auth_time is in the future")


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of two strings of any script.

    ``hmac.compare_digest`` takes ``str`` only when it is ASCII (``TypeError`` otherwise), and a
    ``sub`` or a claim may be anything, so both are compared as UTF-8 bytes. ``surrogatepass`` keeps
    a lone surrogate (valid in JSON) from raising as well, and still maps distinct strings apart.
    """
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


@sensitive_variables("raw")
def verify_userinfo_jwt(provider: Provider, raw: str, *, jwks_uri: str) -> dict[str, Any]:
    """A signed userinfo response (section 5.3.2): signature, and iss/aud when present.

    It is the userinfo endpoint's answer to our request, so it comes from the back channel.
    """
    _header, claims = verify_signed_jwt(
        provider, raw, jwks_uri=jwks_uri, what="userinfo", origin=KeyOrigin.BACK_CHANNEL
    )
    if "iss" in claims and claims["iss"] != provider.issuer:
        raise TokenRejected("userinfo iss is not the provider's issuer")
    aud = claims.get("aud")
    if aud is not None and provider.client_id not in (aud if isinstance(aud, list) else [aud]):
        raise TokenRejected("userinfo aud is not this client")
    return claims


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@sensitive_variables("raw")
def verify_logout_token(provider: Provider, raw: str, *, jwks_uri: str) -> dict[str, Any]:
    """Verify a logout token (OpenID Connect Back-Channel Logout 1.0, section 2.6).

    Like an ID token -- signature by kid, iss, aud, iat, exp -- plus: the back-channel logout
    event must be present, ``nonce`` must be absent (so an ID token can never pass for a logout
    token), ``jti`` is required (for replay detection), and ``sid`` and/or ``sub`` must name what
    to end. An explicit ``typ`` other than ``logout+jwt`` is refused (RFC 8725 cross-JWT confusion).

    Anyone can POST a logout token, so its unknown kids spend the strict budget of
    ``KeyOrigin.ANYONE``, never the one sign-in relies on after a key rotation.
    """
    header, claims = verify_signed_jwt(provider, raw, jwks_uri=jwks_uri, what="logout token", origin=KeyOrigin.ANYONE)
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
    _require_keys(claims, "logout token", required=(), optional=("sid", "sub"))
    return claims


# --- access tokens (RFC 9068) ------------------------------------------------------------------

#: The ``typ`` header values of an RFC 9068 access token (section 2.1), compared case-insensitively
#: as media types are (RFC 7515 4.1.9). Requiring one is what keeps an ID token, a logout token or
#: any other JWT the provider signs from passing for an access token (section 4; RFC 8725 3.11).
ACCESS_TOKEN_TYPES = profiles.DEFAULT.typ

#: What the API's caller is told for each rule (RFC 6750 ``error_description``): plain ASCII with
#: no quote or backslash, as section 3 allows; it names the rule, never anything the token carried.
_MESSAGES = {
    "malformed": "The access token is not a signed JWT.",
    "typ": "The token is not a JWT access token (its typ header must be at+jwt).",
    "alg": "The access token is signed with an algorithm this API does not accept.",
    "signature": "The access token signature cannot be verified.",
    "expired": "The access token has expired.",
    "not_yet": "The access token is not valid yet.",
    "audience": "The access token is not meant for this API.",
    "issuer": "The access token was not issued by an issuer this API trusts.",
    "claims": "The access token claims are not valid.",
}


def _refused(reason: str, rule: str) -> TokenRejected:
    return TokenRejected(reason, message=_MESSAGES[rule])


@sensitive_variables("raw", "token")
def unverified_issuer(raw: str) -> str:
    """The ``iss`` an access token claims, read before anything about it is verified.

    A resource server trusts several issuers, and the token says which one's keys to try: this is
    only that choice. Nothing else is read, and ``verify_access_token`` checks ``iss`` again once
    the signature holds. Raises ``TokenRejected`` (with the API's words) when there is none.
    """
    token = _parse_access_token(raw)
    try:
        claims = safejson.loads(token.payload)
    except (safejson.TooDeep, ValueError) as exc:
        raise _refused("access token payload is not JSON", "malformed") from exc
    iss = claims.get("iss") if isinstance(claims, dict) else None
    if not isinstance(iss, str) or not iss:
        raise _refused("access token has no iss claim", "issuer")
    problem = key_problem(iss, "iss")  # the issuer is looked up in the database next
    if problem is not None:
        raise _refused(f"access token {problem}", "issuer")
    return iss


def unverified_claims(raw: str) -> dict[str, Any]:
    """An access token's claims before anything is verified: only to choose among issuer spellings.

    Used by the provider lookup for a ``{tenantid}`` template (the token's ``tid``); the claims are
    checked again, verified, by ``verify_access_token``.
    """
    try:
        claims = safejson.loads(_parse_access_token(raw).payload)
    except (safejson.TooDeep, ValueError) as exc:
        raise _refused("access token payload is not JSON", "malformed") from exc
    return claims if isinstance(claims, dict) else {}


def unverified_typ(raw: str) -> Any:
    """An access token's ``typ`` header, unverified: only to choose among providers sharing one issuer."""
    return dict(_parse_access_token(raw).headers()).get("typ")


def _parse_access_token(raw: str) -> jws.CompactSignature:
    try:
        return _parse(raw, "access token")
    except TokenRejected as exc:
        raise _refused(exc.reason, "malformed") from exc


@sensitive_variables("raw")
def verify_access_token(
    provider: Provider,
    raw: str,
    *,
    jwks_uri: str,
    audiences: Collection[str],
    require_jti: bool = False,
    profile: TokenProfile = profiles.DEFAULT,
) -> dict[str, Any]:
    """Verify a JWT access token (RFC 9068 section 4) that ``provider`` issued, and return its claims.

    ``profile`` says how the issuer's vendor shapes its tokens (``accounts.oidc.profiles``; the
    default is RFC 9068 itself): which ``typ``, where the client id is, how the audience is shown,
    which claims must hold; an issuer with a ``{tenantid}`` template accepts each tenant's own
    issuer (``profiles.accepted_issuers``). The signature rules below are the same for every profile.

    Bearer tokens come from whoever sends the request, so the header is judged before any key is
    looked at -- ``typ`` must be ``at+jwt``, the algorithm one of the provider's asymmetric ones
    (never ``none``, never HMAC: an HMAC key would be the client secret, which a resource server
    has no business holding) -- and an unknown ``kid`` spends the strict budget of
    ``KeyOrigin.ANYONE``, never the refetch that sign-in relies on. Then the claims: ``iss`` is the
    provider's issuer, ``aud`` one of ``audiences`` (the API's own identifier, not a client id),
    ``exp`` and ``iat`` present and in time (``nbf`` too, when present) within the clock leeway,
    ``sub`` and ``client_id`` non-empty strings, ``scope`` a string when present, and ``jti`` a
    string (required with ``require_jti``, for replay refusal). Every ``TokenRejected`` carries, as
    its ``message``, the RFC 6750 ``error_description`` for the API's caller.
    """
    header = dict(_parse_access_token(raw).headers())
    profiles.check_typ(profile, header.get("typ"))
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _refused(f"access token is unsigned (alg {str(alg)[:20]!r})", "alg")
    if alg.startswith("HS"):
        raise _refused(f"access token alg {alg} is HMAC, never accepted for access tokens", "alg")
    if alg not in provider.algorithms:
        raise _refused(f"access token alg {alg[:20]} is not allowed for provider {provider.slug}", "alg")
    try:
        _header, claims = verify_signed_jwt(
            provider, raw, jwks_uri=jwks_uri, what="access token", origin=KeyOrigin.ANYONE
        )
    except TokenRejected as exc:
        raise _refused(exc.reason, "signature") from exc
    issuers = profiles.accepted_issuers(profile, provider.issuer, claims)
    _check_access_token_claims(claims, issuers=issuers, audiences=audiences, require_jti=require_jti, profile=profile)
    return claims


def _check_access_token_claims(
    claims: dict[str, Any],
    *,
    issuers: Collection[str],
    audiences: Collection[str],
    require_jti: bool,
    profile: TokenProfile = profiles.DEFAULT,
) -> None:
    options: dict[str, ClaimsOption] = {
        "iss": {"essential": True, "values": list(issuers)},
        **{name: {"essential": True} for name in ("exp", "iat", "sub")},
    }
    if profile.audience is AudienceRule.AUD:
        options["aud"] = {"essential": True, "values": list(audiences)}
    if profile.client_id_required and profile.client_id_claims == (
        "client_id",
    ):  # RFC 9068's own claim: its absence is named as before
        options["client_id"] = {"essential": True}
    if require_jti:
        options["jti"] = {"essential": True}
    registry = JWTClaimsRegistry(None, conf.OIDC_CLOCK_LEEWAY, **options)
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise _refused("access token has expired", "expired") from exc
    except MissingClaimError as exc:
        raise TokenRejected(
            f"access token has no {exc.claim} claim", message=f"The access token has no {exc.claim} claim."
        ) from exc
    except ClaimError as exc:
        rule = {"aud": "audience", "iss": "issuer"}.get(exc.claim, "claims")
        if exc.claim == "nbf" and isinstance(claims.get("nbf"), int | float):
            rule = "not_yet"
        raise _refused(f"access token {exc.claim} claim is not valid ({exc.description})", rule) from exc
    for name in ("sub", "client_id", "jti"):
        problem = key_problem(claims[name], name) if name in claims else None
        if problem is not None:
            raise _refused(f"access token {problem}", "claims")
    if profile.client_id_required and profiles.client_id_of(profile, claims) is None:
        names = " or ".join(profile.client_id_claims)
        raise TokenRejected(f"access token has no {names} claim", message="The access token names no client.")
    if "scope" in claims and not isinstance(claims["scope"], str):
        raise _refused("access token scope claim is not a space-separated string", "claims")
    profiles.check_shape(profile, claims)
