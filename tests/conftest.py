"""The suite's one module of shared fixtures and helpers.

* a real OpenID provider double on 127.0.0.1 (``op``, ``op2``) and provider rows pointing at them
  (``provider``, ``second``);
* walking the flows through the Django test client: ``start_login``, ``sign_in``, ``start_connect``,
  ``connect`` (with any double that offers ``authorize``: the OpenID provider double or the GitHub one);
* asserting on the outcome: ``assert_error_page`` and ``assert_logout_refused`` (each can name the rule
  that refused: its ``code`` and ``reason``), ``signed_in``, ``signed_in_user``;
* minting tokens: ``claims_for``, ``logout_claims``, ``logout_token``, ``made_up_kid_token``, ``b64url``;
* the admin: ``staff_client``, ``assert_guess_refused_alike``, ``encodings``.

A fixture name means one thing across the suite: ``client`` (and ``visitor``) is a Django test
client, ``browser`` a Playwright browser and ``site`` a page of it on the live server
(``tests/browser/conftest.py``), ``site_process`` the demo site in its own process
(``tests/test_concurrency.py``), ``op``/``op2`` OpenID provider doubles, ``provider``/``second``
the rows pointing at them, ``idp`` the dev IdP's client row (``tests/devidp/conftest.py``). Helpers
that sign in elsewhere say where: ``sign_in_in_browser`` (Playwright), ``code_flow_at_devidp``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from html import escape
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Permission
from django.core import signing
from django.core.cache import caches
from django.test import Client
from joserfc import jwt
from joserfc.jwk import RSAKey

from accounts import pending, provider_cache
from accounts.models import Provider, SignInEvent
from accounts.oidc import discovery
from accounts.oidc.tokens import BACKCHANNEL_LOGOUT_EVENT
from tests.op_double import OpenIDProviderDouble


@pytest.fixture(autouse=True)
def _fresh_document_caches():
    """Each test starts with no cached discovery/JWKS documents, shared or in-process."""
    for cache in caches.all(initialized_only=True):
        cache.clear()
    discovery.forget_in_process()
    provider_cache.forget_in_process()
    yield
    discovery.forget_in_process()
    provider_cache.forget_in_process()


class SkippingClock:
    """``time`` as discovery sees it, where ``sleep`` returns at once and moves both clocks on instead.

    Waiting out a refetch cooldown then costs a test nothing, while every reading of the clocks still
    moves as real time does; ``skipped`` says how long discovery slept, in all.
    """

    def __init__(self) -> None:
        self.skipped = 0.0

    def time(self) -> float:
        return time.time() + self.skipped

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def skipping_clock(monkeypatch) -> SkippingClock:
    """Discovery's clock, where its sleeps are skipped (``SkippingClock``)."""
    clock = SkippingClock()
    monkeypatch.setattr(discovery, "time", clock)
    return clock


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


class AuthorizingDouble(Protocol):
    """A provider double whose authorization endpoint is a method (Django's test client cannot
    follow a redirect to another server): :class:`~tests.op_double.OpenIDProviderDouble` and
    :class:`~tests.github_double.GitHubDouble` both are one."""

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        """The authorization request's parameters in, the callback's parameters out."""
        ...


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


def sign_in(client, op: AuthorizingDouble, provider: Provider, **query):
    """Walk the whole flow: start, let the double authorize, and GET the callback's response."""
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


@pytest.fixture
def discovered(request) -> None:
    """The discovery documents of the test's ``provider`` and ``second`` (those it uses), fetched already.

    On a running site a sign-in or ``manage.py oidc_provider check`` has fetched them; bearer requests
    never fetch them themselves (``accounts.api._require_cached_discovery``) and answer 503 without
    them. API tests that are not about that rule ask for this fixture (a module can say
    ``pytestmark = pytest.mark.usefixtures("discovered")``); the tests of that rule do not.
    """
    for name in ("provider", "second"):
        if name in request.fixturenames:
            discovery.get_metadata(request.getfixturevalue(name).issuer)


def pending_flows(client) -> dict[str, dict[str, Any]]:
    """The started sign-ins this test browser keeps (``accounts.pending``'s cookies), by state."""
    flows = {}
    for name, morsel in client.cookies.items():
        if pending.COOKIE_PREFIX in name and morsel.value:
            flow = signing.loads(morsel.value, salt=pending.SALT)
            flows[flow["state"]] = flow
    return flows


def put_flow(client, flow: Mapping[str, Any], *, state: str | None = None) -> None:
    """Give the browser a flow cookie this site signed, holding ``flow``, under ``state``'s name."""
    name = pending.cookie_name(state or flow["state"], secure=False)
    client.cookies[name] = signing.dumps(dict(flow), salt=pending.SALT, compress=True)


def start_connect(client, provider: Provider) -> dict[str, str]:
    """POST the profile page's connect button and return the authorization request's parameters."""
    response = client.post(f"/accounts/{provider.slug}/connect/")
    assert response.status_code == 302, response.content
    return dict(parse_qsl(urlsplit(response["Location"]).query))


def connect(client, op: AuthorizingDouble, provider: Provider):
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


def assert_error_page(
    response,
    status: int,
    text: str | None = None,
    *,
    code: str | None = None,
    reason: str | re.Pattern[str] | None = None,
) -> None:
    """The app's one error page (``oidc_signin/error.html``) with ``status`` and, if given, ``text`` on it.

    ``code`` and ``reason`` say which rule refused: they are checked against the ``SignInError`` this
    very page was rendered from, whose code and reason are the ones its log line and audit row carry
    (``accounts.views.render_sign_in_error``). ``reason`` is a substring, or a compiled pattern to
    ``search`` for. A status alone passes whichever rule refused; a rejection test names its own.
    """
    assert response.status_code == status, response.content[:500]
    assert response.templates[0].name == "oidc_signin/error.html"
    if text is not None:
        assert text in response.content.decode()
    if code is not None or reason is not None:
        error = response.context["error"]
        assert_reason(error.code, error.reason, code=code, reason=reason)


def assert_reason(actual_code: str, actual_reason: str, *, code: str | None, reason: str | re.Pattern[str] | None):
    """``code`` equals ``actual_code`` and ``reason`` (a substring, or a compiled pattern) is in ``actual_reason``."""
    if code is not None:
        assert actual_code == code, f"refused with code={actual_code} reason={actual_reason}"
    if isinstance(reason, re.Pattern):
        assert reason.search(actual_reason), f"refused with code={actual_code} reason={actual_reason}"
    elif reason is not None:
        assert reason in actual_reason, f"refused with code={actual_code} reason={actual_reason}"


def assert_logout_refused(
    response, status: int = 400, *, code: str | None = None, reason: str | re.Pattern[str] | None = None
) -> None:
    """The back-channel logout endpoint refused with ``status``; ``code``/``reason`` as in ``assert_error_page``.

    Its answer is JSON for the provider and names no rule, so the rule is read from the audit row
    the refusal wrote (the same reason as its "back-channel logout refused" log line).
    """
    assert response.status_code == status, response.content[:500]
    assert response.json()["error"] == "invalid_request"
    if code is not None or reason is not None:
        # The newest row of all, so that a row not written (rate-limited) cannot let an older one answer.
        event = SignInEvent.objects.latest("pk")
        assert (event.outcome, event.action) == ("failure", "backchannel-logout"), (event.outcome, event.action)
        assert_reason(event.code, event.reason, code=code, reason=reason)


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


def b64url(data: bytes | dict[str, Any]) -> str:
    """Base64url without padding (RFC 7515 2), as in a JWT; a dict is JSON-encoded first."""
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# --- the admin ----------------------------------------------------------------------------------------


def staff_client(django_user_model, *codenames: str) -> Client:
    """A signed-in staff member holding only these permissions (e.g. ``view_provider``)."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def refused_lookup(caplog, lookup: str) -> bool:
    """Django's own refusal fired: ``lookup_allowed`` said no, so DisallowedModelAdminLookup -> 400."""
    return any(
        r.name == "django.security.DisallowedModelAdminLookup"
        and r.getMessage() == f"Filtering by {lookup} not allowed"
        for r in caplog.records
    )


def refused_by_csrf(caplog) -> bool:
    """Django's CSRF check refused the request: its ``Forbidden (CSRF ...): <path>`` line was logged."""
    return any(
        r.name == "django.security.csrf" and r.getMessage().startswith("Forbidden (CSRF") for r in caplog.records
    )


def assert_guess_refused_alike(client, caplog, url: str, lookup: str, right: str, wrong: str) -> None:
    """Both guesses are refused with the same 400: the answer says nothing about the secret."""
    with caplog.at_level(logging.ERROR, logger="django.security"):
        answers = [client.get(url, {lookup: guess}) for guess in (right, wrong)]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].content == answers[1].content
    assert refused_lookup(caplog, lookup)


def encodings(secret: str) -> list[str]:
    """The forms a secret could take in a page: raw, escaped, URL-quoted, base64, base64url, hex."""
    raw = secret.encode()
    return [
        secret,
        escape(secret),
        quote(secret, safe=""),
        base64.b64encode(raw).decode(),
        b64url(raw),
        raw.hex(),
    ]


def certificate_der(*, days: int = 90, common_name: str = "signing.example") -> bytes:
    """A self-signed EC certificate, DER, valid from yesterday for ``days`` more days (a JWK's x5c, decoded)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def incompressible(length: int, seed: str = "") -> str:
    """``length`` characters that zlib cannot shrink (URL-safe base64 of hash output)."""
    digests = b"".join(hashlib.sha256(f"{seed}{n}".encode()).digest() for n in range(length // 32 + 1))
    return base64.urlsafe_b64encode(digests).decode()[:length]
