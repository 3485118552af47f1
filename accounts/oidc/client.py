"""The authorization code flow, protocol side: build the request, check the response, fetch tokens.

Framework-light on purpose: functions take a ``Provider`` and plain values and return plain
values, so every protocol rule can be tested without a browser session. Keeping the per-login
secrets (state, nonce, PKCE verifier) between the two halves is ``accounts.flow``'s job.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.views.decorators.debug import sensitive_variables

from .. import presets
from ..errors import InvalidRequest, ProviderDenied, ProviderMisconfigured, TokenRejected
from . import discovery, github, tokens
from .http import ProviderHTTPError, request_json

if TYPE_CHECKING:
    from ..models import Provider

logger = logging.getLogger(__name__)

#: Claims that describe the token rather than the person; userinfo may not override them.
_PROTOCOL_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "nonce",
        "azp",
        "at_hash",
        "c_hash",
        "auth_time",
        "jti",
        "sid",
        "hd",
        "tid",
    }
)

#: What the user mapping (``accounts.identities``, ``accounts.adapter``) reads, as groups of which
#: one member will do. A provider set to "when needed" calls userinfo only when the verified ID
#: token has no claim of some group, because only then can userinfo change who the person is
#: mapped to or what their account holds:
#:
#: * ``email`` and ``email_verified`` decide linking, the email-domain restriction and the user's
#:   email; ``email_verified`` is a group of its own because an email without it counts as
#:   unverified, which userinfo may well correct (Microsoft's v2.0 ID token never carries it).
#: * ``given_name``, ``family_name`` and ``preferred_username`` fill the first and last name and
#:   the new username; any one shows the token carries the profile scope's claims. ``name`` is not
#:   among them: the mapping never reads it, so a token with only ``name`` still asks userinfo.
#:
#: A present claim is never re-checked at userinfo, whatever its value: ``email_verified: false``
#: in the signed ID token is the provider's answer, not a gap.
USERINFO_NEEDED_UNLESS = (
    frozenset({"email"}),
    frozenset({"email_verified"}),
    frozenset({"given_name", "family_name", "preferred_username"}),
)


def userinfo_needed(provider: Provider, id_token_claims: dict[str, Any]) -> bool:
    """Whether this sign-in calls userinfo, by the provider's ``userinfo`` choice (see above)."""
    if provider.userinfo == provider.Userinfo.NEVER:
        return False
    if provider.userinfo == provider.Userinfo.ALWAYS:
        return True
    return any(not group & id_token_claims.keys() for group in USERINFO_NEEDED_UNLESS)


#: Friendlier words for the standard ``error`` codes of RFC 6749 4.1.2.1 and OpenID Connect 3.1.2.6.
_DENIAL_MESSAGES = {
    "access_denied": "The sign-in was cancelled, or the provider refused it. You can try again.",
    "login_required": "The provider needs you to sign in there first. Please try again.",
    "consent_required": "The provider needs your consent to share your details with this site.",
    "interaction_required": "The provider needs you to complete a step there. Please try again.",
    "temporarily_unavailable": "The provider is temporarily unavailable. Please try again in a few minutes.",
    "server_error": "The provider had a problem. Please try again in a few minutes.",
}


@dataclass
class PendingLogin:
    """What one started sign-in must remember until its callback; stored server-side only."""

    provider: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_url: str
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifiedLogin:
    """The outcome of a successful callback: verified claims and the raw tokens the session may need."""

    claims: dict[str, Any]
    id_token: str | None
    issuer: str
    subject: str


def provider_metadata(provider: Provider) -> dict[str, Any]:
    """Endpoints and capabilities: discovered for OpenID Connect, configured for GitHub-style providers."""
    if provider.kind == provider.Kind.GITHUB:
        return github.metadata(provider)
    return discovery.get_metadata(provider)


def authorization_url(provider: Provider, *, redirect_uri: str, next_url: str, now: float) -> tuple[str, PendingLogin]:
    """The provider URL to send the browser to, and the secrets to keep for the callback.

    State, nonce and PKCE S256 are always sent, whatever the provider advertises: state binds the
    callback to this browser, nonce binds the ID token to this request, PKCE binds the code.
    GitHub-style providers issue no ID token, so they get no nonce. A ``max_age`` among the extra
    parameters is checked here, before it is sent, and remembered for the callback's ID token check.
    """
    max_age = requested_max_age(provider)
    metadata = provider_metadata(provider)
    pending = PendingLogin(
        provider=provider.slug,
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        redirect_uri=redirect_uri,
        next_url=next_url,
        created_at=now,
    )
    if max_age is not None:
        pending.extra["max_age"] = max_age
    params = {
        **provider.extra_auth_params,
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(provider.scope_list),
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": create_s256_code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    if provider.kind == provider.Kind.GITHUB:
        del params["nonce"]
    return add_params_to_uri(metadata["authorization_endpoint"], list(params.items())), pending


_WHOLE_SECONDS = re.compile(r"[0-9]{1,10}")


def requested_max_age(provider: Provider) -> int | None:
    """The ``max_age`` the provider's extra authorization parameters ask for, in seconds, or None.

    Section 3.1.2.1: a whole number of seconds. Anything else is the configuration's fault, so it
    is a ``ProviderMisconfigured`` rather than a request the provider would read its own way.
    """
    value = (provider.extra_auth_params or {}).get("max_age")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**10:
        return value
    if isinstance(value, str) and _WHOLE_SECONDS.fullmatch(value):
        return int(value)
    raise ProviderMisconfigured(
        f"extra authorization parameter max_age of {provider.slug} is not a whole number of seconds: {value!r:.40}"
    )


def check_authorization_response(provider: Provider, params: dict[str, str], pending: PendingLogin) -> str:
    """Validate the callback's query parameters (state already matched) and return the code."""
    metadata = provider_metadata(provider)
    _check_iss_parameter(params.get("iss"), metadata)
    error = params.get("error")
    if error:
        code = error if error in _DENIAL_MESSAGES else "other"
        raise ProviderDenied(f"provider answered error={error[:64]!r}", message=_DENIAL_MESSAGES.get(code))
    code = params.get("code")
    if not code:
        raise InvalidRequest("callback has neither code nor error")
    return code


def _check_iss_parameter(iss: str | None, metadata: dict[str, Any]) -> None:
    """RFC 9207: the authorization response names its issuer, defeating mix-up attacks."""
    if iss is None:
        if metadata.get("authorization_response_iss_parameter_supported") is True:
            raise InvalidRequest("callback lacks the iss parameter the provider promises (RFC 9207)")
        return
    if iss != metadata["issuer"]:
        raise InvalidRequest("callback iss parameter names another issuer (RFC 9207 mix-up defence)")


@sensitive_variables("code", "body", "headers", "auth")
def exchange_code(provider: Provider, *, code: str, pending: PendingLogin) -> dict[str, Any]:
    """Trade the code for tokens at the token endpoint (RFC 6749 4.1.3, RFC 7636 4.5).

    JSON is asked for explicitly: GitHub answers form-encoded unless told otherwise.
    """
    metadata = provider_metadata(provider)
    method = token_endpoint_auth_method(metadata)
    body = prepare_token_request(
        "authorization_code", code=code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
    )
    if method == "client_secret_basic":
        # RFC 6749 2.3.1: id and secret are form-encoded before they are joined for Basic auth.
        auth = ClientAuth(quote_plus(provider.client_id), quote_plus(provider.client_secret), method)
    else:
        auth = ClientAuth(provider.client_id, provider.client_secret, method)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    _uri, headers, body = auth.prepare("POST", metadata["token_endpoint"], headers, body)
    try:
        resp = request_json("POST", metadata["token_endpoint"], what="token endpoint", data=body, headers=headers)
    except ProviderHTTPError as exc:
        error = exc.data.get("error")
        if exc.http_status in (400, 401) and error in ("invalid_client", "unauthorized_client"):
            # Not the person's fault, nor fixable by them: the site's client id or secret is wrong.
            raise ProviderMisconfigured(
                f"token endpoint refused this site's client credentials: error={error!r} (check the provider's "
                "client id and secret)"
            ) from exc
        if exc.http_status == 400 and isinstance(error, str):
            raise _code_refused(error) from exc
        raise
    token = resp.data
    if isinstance(token.get("error"), str):  # GitHub reports a bad code with HTTP 200
        raise _code_refused(token["error"])
    if not isinstance(token.get("access_token"), str) or str(token.get("token_type", "")).lower() != "bearer":
        raise ProviderMisconfigured("token response lacks a bearer access_token")
    return token


def _code_refused(error: str) -> TokenRejected:
    return TokenRejected(
        f"token endpoint refused the code: error={error[:64]!r}",
        message="The provider did not accept this sign-in (it may have expired). Please try again.",
    )


def token_endpoint_auth_method(metadata: dict[str, Any]) -> str:
    """client_secret_basic unless the provider supports only client_secret_post (Discovery 1.0 section 3)."""
    supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if not isinstance(supported, list):
        raise ProviderMisconfigured("discovery token_endpoint_auth_methods_supported is not a list")
    for method in ("client_secret_basic", "client_secret_post"):
        if method in supported:
            return method
    raise ProviderMisconfigured(f"token endpoint supports none of our auth methods ({supported!r})")


def fetch_userinfo(provider: Provider, *, access_token: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Claims from the userinfo endpoint (section 5.3), plain JSON or a signed JWT."""
    resp = request_json(
        "GET",
        metadata["userinfo_endpoint"],
        what="userinfo endpoint",
        headers={"Authorization": f"Bearer {access_token}"},
        accept_jwt=True,
    )
    if resp.data is None:
        return tokens.verify_userinfo_jwt(provider, resp.text.strip(), jwks_uri=metadata["jwks_uri"])
    return resp.data


def complete_login(provider: Provider, params: dict[str, str], pending: PendingLogin) -> VerifiedLogin:
    """Everything after the state check: code exchange, ID token, userinfo. Raises ``SignInError``.

    Userinfo is called only if the provider's discovery document names one and the provider's
    ``userinfo`` choice asks for it (``userinfo_needed``); its answer obeys the same rules either way.
    """
    code = check_authorization_response(provider, params, pending)
    token = exchange_code(provider, code=code, pending=pending)
    if provider.kind == provider.Kind.GITHUB:
        claims = github.fetch_identity(provider, access_token=token["access_token"])
        return VerifiedLogin(claims=claims, id_token=None, issuer=claims["iss"], subject=claims["sub"])
    metadata = discovery.get_metadata(provider)
    raw_id_token = token.get("id_token")
    if not isinstance(raw_id_token, str):
        raise TokenRejected("token response has no id_token")
    claims = tokens.verify_id_token(
        provider,
        raw_id_token,
        jwks_uri=metadata["jwks_uri"],
        nonce=pending.nonce,
        issuers=presets.accepted_issuers(provider, metadata),
        access_token=token["access_token"],
        max_age=pending.extra.get("max_age"),
    )
    if metadata.get("userinfo_endpoint") and userinfo_needed(provider, claims):
        userinfo = fetch_userinfo(provider, access_token=token["access_token"], metadata=metadata)
        # Section 5.3.4: the userinfo sub must be the ID token's, or the answer is for someone else.
        if not isinstance(userinfo.get("sub"), str) or not tokens.same_text(userinfo["sub"], claims["sub"]):
            raise TokenRejected("userinfo sub differs from the ID token sub")
        claims = {**claims, **{k: v for k, v in userinfo.items() if k not in _PROTOCOL_CLAIMS}}
    claims["iss"] = presets.canonical_issuer(provider, claims["iss"])
    return VerifiedLogin(claims=claims, id_token=raw_id_token, issuer=claims["iss"], subject=claims["sub"])
