"""Shared fixtures: a real OpenID provider double on 127.0.0.1 and a provider row pointing at it."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.cache import caches
from django.test import Client
from joserfc import jwt
from joserfc.jwk import RSAKey

from accounts.models import Provider
from accounts.oidc import discovery
from accounts.oidc.tokens import BACKCHANNEL_LOGOUT_EVENT
from tests.op_double import OpenIDProviderDouble


@pytest.fixture(autouse=True)
def _fresh_document_caches():
    """Each test starts with no cached discovery/JWKS documents, shared or in-process."""
    for cache in caches.all(initialized_only=True):
        cache.clear()
    discovery.forget_in_process()
    yield
    discovery.forget_in_process()


@pytest.fixture
def op():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture
def provider(db, op) -> Provider:
    return Provider.objects.create(
        slug="test-op",
        name="Test OP",
        issuer=op.issuer,
        client_id=op.client_id,
        client_secret=op.client_secret,
    )


@pytest.fixture
def userinfo_always(provider) -> Provider:
    """The provider calls userinfo on every sign-in (for tests of what userinfo answers)."""
    return call_userinfo_always(provider)


def call_userinfo_always(provider: Provider) -> Provider:
    provider.userinfo = Provider.Userinfo.ALWAYS
    provider.save()
    return provider


def claims_for(op: OpenIDProviderDouble, **overrides) -> dict:
    """A valid set of ID token claims for ``op``; pass ``name=None`` to drop a claim."""
    now = int(time.time())
    claims = {"iss": op.issuer, "sub": "user-1", "aud": op.client_id, "exp": now + 300, "iat": now, "nonce": "n-1"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def start_login(client, provider: Provider, **query) -> dict[str, str]:
    """GET the start URL and return the authorization request's parameters."""
    response = client.get(f"/accounts/{provider.slug}/login/", query)
    assert response.status_code == 302, response.content
    return dict(parse_qsl(urlsplit(response["Location"]).query))


def sign_in(client, op: OpenIDProviderDouble, provider: Provider, **query):
    """Walk the whole flow: start, let the double authorize, and GET the callback."""
    callback_params = op.authorize(start_login(client, provider, **query))
    return client.get(f"/accounts/{provider.slug}/callback/", callback_params)


@pytest.fixture
def op2():
    """A second OpenID provider, for connecting another sign-in method to an account."""
    with OpenIDProviderDouble() as double:
        double.next_user = {**double.next_user, "sub": "second-1", "email": "alice@second.example"}
        yield double


@pytest.fixture
def second(db, op2) -> Provider:
    return Provider.objects.create(
        slug="second-op", name="Second OP", issuer=op2.issuer, client_id=op2.client_id,
        client_secret=op2.client_secret, display_order=1,
    )  # fmt: skip


def start_connect(client, provider: Provider) -> dict[str, str]:
    """POST the profile page's connect button and return the authorization request's parameters."""
    response = client.post(f"/accounts/{provider.slug}/connect/")
    assert response.status_code == 302, response.content
    return dict(parse_qsl(urlsplit(response["Location"]).query))


def connect(client, op: OpenIDProviderDouble, provider: Provider):
    """Walk the whole connect flow and return the callback's response."""
    return client.get(f"/accounts/{provider.slug}/callback/", op.authorize(start_connect(client, provider)))


def logout_claims(op, **overrides) -> dict:
    """Valid logout token claims for ``op`` naming its session "op-session-1"; ``name=None`` drops a claim."""
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "aud": op.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        "sid": "op-session-1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def logout_token(op, **overrides) -> str:
    return op.sign(logout_claims(op, **overrides))


def post_logout_token(token: str, slug: str = "test-op"):
    """POST as the provider does: server to server, no cookie, no CSRF token."""
    return Client(enforce_csrf_checks=True).post(f"/accounts/{slug}/backchannel-logout/", {"logout_token": token})


def assert_error_page(response, status: int, text: str | None = None) -> None:
    """The app's one error page (``accounts/error.html``) with ``status`` and, if given, ``text`` on it."""
    assert response.status_code == status, response.content[:500]
    assert response.templates[0].name == "accounts/error.html"
    if text is not None:
        assert text in response.content.decode()


def signed_in_user(client):
    """The user this test client's session is signed in as, or None."""
    return get_user_model().objects.filter(pk=client.session.get(SESSION_KEY)).first()


def signed_in(client) -> bool:
    """Whether this browser is signed in, as the site itself says (``/accounts/session/``)."""
    return client.get("/accounts/session/").json()["authenticated"]


#: A key the provider doubles never publish.
STRANGER_KEY = RSAKey.generate_key(2048)


def made_up_kid_token(claims: dict, kid: str) -> str:
    """A token naming a key the provider does not have, signed by a key it does not have either."""
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, STRANGER_KEY, algorithms=["RS256"])
