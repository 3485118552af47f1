"""GitHub-style providers: OAuth 2.0 without OpenID Connect, identity from a REST API.

There is no ID token to verify, so the identity is only as good as the API calls that build it:

* the subject is the account's numeric ``id`` -- never the ``login``, which can be renamed and
  then registered by somebody else;
* the email is the *primary, verified* address from the emails endpoint; the profile's public
  ``email`` field is ignored, and an unverified address is never trusted;
* the identity namespace ("issuer") is the configured base URL, so github.com and a GitHub
  Enterprise Server never share subjects;
* the issuer its callbacks name (RFC 9207 ``iss``) is another value: github.com sends
  ``https://github.com/login/oauth``, its authorization endpoint without the final ``/authorize``,
  while its identities stay under ``https://github.com``. ``callback_issuer`` is what a callback
  must carry, so the mix-up defence holds without moving anybody's identity.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from ..errors import ProviderMisconfigured, ProviderUnavailable
from .config import MAX_SUBJECT_LENGTH
from .http import ProviderHTTPError, request_json

if TYPE_CHECKING:
    from .config import ProviderConfig as Provider

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

#: The final path segment that the default callback issuer drops from the authorization endpoint.
AUTHORIZE_SEGMENT = "/authorize"


def callback_issuer(provider: Provider) -> str:
    """The ``iss`` a callback of this provider must carry (RFC 9207), when it carries one.

    The configured ``callback_issuer``, else the authorization endpoint without its final
    ``/authorize`` -- what github.com (``https://github.com/login/oauth``) and GitHub Enterprise
    Server (``https://HOST/login/oauth``) send -- else, for an endpoint shaped otherwise, the
    identity issuer. Computed when blank, so providers stored before the field existed work as
    they are, and an edited authorization endpoint takes its issuer along.
    """
    if provider.callback_issuer:
        return provider.callback_issuer
    endpoint = provider.authorization_endpoint.rstrip("/")
    if endpoint.endswith(AUTHORIZE_SEGMENT) and len(endpoint) > len(AUTHORIZE_SEGMENT):
        return endpoint.removesuffix(AUTHORIZE_SEGMENT)
    return provider.issuer


def metadata(provider: Provider) -> dict[str, Any]:
    """The endpoints of a GitHub-style provider, in the shape of an OpenID discovery document."""
    return {
        "issuer": provider.issuer,
        "authorization_endpoint": provider.authorization_endpoint,
        "token_endpoint": provider.token_endpoint,
        "userinfo_endpoint": provider.userinfo_endpoint,
        "emails_endpoint": provider.emails_endpoint,
        # GitHub takes the client credentials in the form body.
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }


@sensitive_variables("access_token")
def fetch_identity(provider: Provider, *, access_token: str) -> dict[str, Any]:
    """Claims in OpenID Connect's vocabulary, built from the user and emails endpoints."""
    user = _api_get(provider, provider.userinfo_endpoint, access_token, what="user API")
    if not isinstance(user, dict):
        raise ProviderMisconfigured("user API did not answer an object")
    user_id = user.get("id")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise ProviderMisconfigured("user API answered no numeric id")
    subject = str(user_id)
    if len(subject) > MAX_SUBJECT_LENGTH:  # JSON integers have no bound; PostgreSQL would refuse the row
        raise ProviderMisconfigured(
            f"user API answered an id of {len(subject)} digits, more than the {MAX_SUBJECT_LENGTH} a subject can hold"
        )
    claims: dict[str, Any] = {
        "iss": provider.issuer,
        "sub": subject,
        "preferred_username": user.get("login") if isinstance(user.get("login"), str) else None,
        "name": user.get("name") if isinstance(user.get("name"), str) else None,
        "picture": user.get("avatar_url") if isinstance(user.get("avatar_url"), str) else None,
        "profile": user.get("html_url") if isinstance(user.get("html_url"), str) else None,
    }
    if provider.emails_endpoint:
        email = primary_verified_email(_api_get(provider, provider.emails_endpoint, access_token, what="emails API"))
        claims.update(email=email, email_verified=bool(email))
    return {k: v for k, v in claims.items() if v is not None}


def api_base(provider: Provider) -> str:
    """The REST API's root, from the configured user API endpoint (``.../user``)."""
    return provider.userinfo_endpoint.rstrip("/").removesuffix("/user")


@sensitive_variables("access_token", "secret", "credentials", "headers", "body")
def delete_grant(provider: Provider, *, access_token: str) -> None:
    """Revoke the app's whole grant for this person: ``DELETE /applications/{client_id}/grant``.

    GitHub's way to revoke an OAuth (or GitHub App) user token and its refresh token: the app
    authenticates with its client id and secret (Basic), the token goes in the JSON body.
    """
    secret = provider.reveal_client_secret()
    credentials = base64.b64encode(f"{provider.client_id}:{secret}".encode()).decode("ascii")
    url = f"{api_base(provider)}/applications/{quote(provider.client_id, safe='')}/grant"
    headers = {
        **API_HEADERS,
        "Authorization": f"Basic {credentials}",
        "Content-Type": "application/json",
    }
    body = json.dumps({"access_token": access_token})
    request_json("DELETE", url, what="grant deletion API", data=body, headers=headers, allow_empty=True)


def primary_verified_email(emails: Any) -> str:
    """The address marked both primary and verified, or "" -- never a merely listed one."""
    if not isinstance(emails, list):
        raise ProviderMisconfigured("emails API did not answer a list")
    for entry in emails:
        if isinstance(entry, dict) and entry.get("primary") is True and entry.get("verified") is True:
            email = entry.get("email")
            if isinstance(email, str) and "@" in email:
                return email
    return ""


@sensitive_variables("access_token")
def _api_get(provider: Provider, url: str, access_token: str, *, what: str) -> Any:
    try:
        return request_json(
            "GET", url, what=what, headers={**API_HEADERS, "Authorization": f"Bearer {access_token}"}, allow_list=True
        ).data
    except ProviderHTTPError as exc:
        if exc.http_status in (403, 429) and (
            exc.headers.get("X-RateLimit-Remaining") == "0" or exc.headers.get("Retry-After")
        ):
            raise ProviderUnavailable(
                f"{what} rate limit reached (HTTP {exc.http_status})",
                message=_("%(name)s is limiting requests right now. Please try again in a few minutes.")
                % {"name": provider.name},
            ) from exc
        raise
