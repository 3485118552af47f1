"""One admission policy everywhere: an API refuses whom a browser sign-in refuses (``accounts.admission``).

Each attack is a person who signed in once, after which the site tightens a restriction (email
domain, Google ``hd``, Microsoft ``tid``), the project's adapter starts refusing them, or their
account is disabled. Their identity row is still there, and their provider still hands them valid
access tokens. The test checks both doors: the browser's sign-in is refused, and each way an API
is protected -- the decorator, the middleware, Django REST framework -- answers 403
``access_denied`` with one log line naming the rule.
"""

from __future__ import annotations

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import include, path

from accounts.adapter import DefaultAccountAdapter
from accounts.api import bearer_token_required, get_bearer
from accounts.models import Identity
from tests.conftest import assert_error_page, sign_in, signed_in, signed_in_user
from tests.test_api import AUDIENCE, access_token, assert_denied, call

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.test_api_admission"),
    pytest.mark.usefixtures("discovered"),
]

try:
    from rest_framework.renderers import JSONRenderer
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from accounts.drf import BearerTokenAuthentication
except ImportError:  # DRF is an optional dependency: its door is then skipped below
    APIView = None


def whoami(request: HttpRequest) -> JsonResponse:
    bearer = get_bearer(request)
    assert bearer is not None
    return JsonResponse({"user": request.user.pk, "machine": bearer.is_machine})


urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("api/whoami/", bearer_token_required(audience=AUDIENCE)(whoami)),
    path("api/join/", bearer_token_required(audience=AUDIENCE, unknown_subject="create-user")(whoami)),
    path("mw/whoami/", whoami),
]

if APIView is not None:

    class DrfWhoami(APIView):
        authentication_classes = [BearerTokenAuthentication]
        renderer_classes = [JSONRenderer]
        bearer_audience = AUDIENCE

        def get(self, request):
            return Response({"user": request.user.pk, "machine": request.auth.is_machine})

    urlpatterns.append(path("drf/whoami/", DrfWhoami.as_view()))


@pytest.fixture(
    params=[
        "decorator",
        "middleware",
        pytest.param("drf", marks=pytest.mark.skipif(APIView is None, reason="Django REST framework not installed")),
    ]
)
def door(request, settings) -> str:
    """The URL of one way an API is protected: ``bearer_token_required``, the middleware, or DRF."""
    if request.param == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, "accounts.api.BearerTokenMiddleware"]
        settings.ACCOUNTS_API_PREFIXES = {"/mw/": {"audience": AUDIENCE}}
        return "/mw/whoami/"
    return {"decorator": "/api/whoami/", "drf": "/drf/whoami/"}[request.param]


def denied(door: str, response, caplog, reason: str) -> None:
    """The API's refusal of a valid token's holder (DRF sets no Cache-Control of its own)."""
    assert_denied(response, caplog, reason, no_store=not door.startswith("/drf/"))


class RefusesEveryone(DefaultAccountAdapter):
    """A project's rule that, from some day on, no longer admits anybody from this provider."""

    def is_sign_in_allowed(self, request, provider, claims):
        return False


class RecordsWhatItIsAsked(DefaultAccountAdapter):
    """Admits everyone, and keeps what each question came with."""

    asked: list[tuple[str, dict]] = []

    def is_sign_in_allowed(self, request, provider, claims):
        RecordsWhatItIsAsked.asked.append((request.path, dict(claims)))
        return True


def signed_in_once(op, provider, **claims):
    """Alice signs in with a browser (her identity is stored), with ``claims`` added to what the provider says."""
    op.next_user = {**op.next_user, **claims}
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302
    return signed_in_user(browser)


def assert_browser_refused(op, provider, reason: str) -> None:
    browser = Client()
    response = sign_in(browser, op, provider)
    assert_error_page(response, 403, code="sign_in_refused", reason=reason)
    assert not signed_in(browser)


# --- the attacks: signed in once, then refused by the browser's sign-in and by every API door -------------


def test_a_tightened_email_domain_refuses_the_api_too(op, provider, door, caplog):
    signed_in_once(op, provider)  # alice@example.com, verified
    assert call(door, access_token(op), caplog).status_code == 200
    provider.allowed_email_domains = "corp.example"
    provider.save()
    assert_browser_refused(op, provider, "test-op: verified email domain 'example.com' not allowed")
    caplog.clear()
    denied(door, call(door, access_token(op), caplog), caplog, "test-op: verified email domain 'example.com'")


def test_a_tightened_google_hosted_domain_refuses_the_api_too(op, provider, door, caplog):
    signed_in_once(op, provider, hd="example.com")
    provider.allowed_hosted_domains = "corp.example"
    provider.save()
    assert_browser_refused(op, provider, "test-op: Google hosted domain 'example.com' not allowed")
    denied(door, call(door, access_token(op), caplog), caplog, "test-op: Google hosted domain 'example.com'")


def test_a_tightened_microsoft_tenant_refuses_the_api_too(op, provider, door, caplog):
    signed_in_once(op, provider, tid="tenant-a")
    provider.allowed_tenants = "tenant-b"
    provider.save()
    assert_browser_refused(op, provider, "test-op: Microsoft tenant 'tenant-a' not allowed")
    denied(door, call(door, access_token(op), caplog), caplog, "test-op: Microsoft tenant 'tenant-a'")


def test_the_adapter_refusing_refuses_the_api_too(op, provider, door, caplog, settings):
    signed_in_once(op, provider)
    settings.ACCOUNTS_ADAPTER = "tests.test_api_admission.RefusesEveryone"
    assert_browser_refused(op, provider, "adapter refused test-op subject")
    denied(door, call(door, access_token(op), caplog), caplog, "adapter refused test-op subject")


def test_a_disabled_account_refuses_the_api_too(op, provider, door, caplog):
    alice = signed_in_once(op, provider)
    alice.is_active = False
    alice.save()
    assert_browser_refused(op, provider, f"user {alice.pk} is inactive")
    denied(door, call(door, access_token(op), caplog), caplog, f"user {alice.pk} is inactive")


# --- what admission reads for an API call ------------------------------------------------------------------


def test_the_tokens_own_tenant_is_the_providers_latest_word(op, provider, caplog):
    """The stored identity's tenant is allowed, but the token names another: refused."""
    provider.allowed_tenants = "tenant-a"
    provider.save()
    signed_in_once(op, provider, tid="tenant-a")
    assert call("/api/whoami/", access_token(op, tid="tenant-a"), caplog).status_code == 200
    response = call("/api/whoami/", access_token(op, tid="tenant-b"), caplog)
    assert_denied(response, caplog, "test-op: Microsoft tenant 'tenant-b' not allowed")


def test_a_restriction_unknown_to_the_token_is_read_from_the_stored_identity(op, provider, caplog):
    """Access tokens rarely carry ``hd``: the one the provider vouched for at sign-in still counts."""
    provider.allowed_hosted_domains = "example.com"
    provider.save()
    signed_in_once(op, provider, hd="example.com")
    assert call("/api/whoami/", access_token(op), caplog).status_code == 200
    Identity.objects.update(claims={"sub": "user-1", "hd": "elsewhere.example"})  # as if it had said so
    assert_denied(call("/api/whoami/", access_token(op), caplog), caplog, "Google hosted domain 'elsewhere.example'")


def test_a_bare_email_in_the_token_does_not_replace_the_verified_one(op, provider, caplog):
    """Access tokens often carry ``email`` without ``email_verified``: the stored verified address counts."""
    provider.allowed_email_domains = "example.com"
    provider.save()
    signed_in_once(op, provider)
    assert call("/api/whoami/", access_token(op, email="alice@elsewhere.example"), caplog).status_code == 200


def test_a_verified_email_in_the_token_is_the_providers_latest_word(op, provider, caplog):
    provider.allowed_email_domains = "example.com"
    provider.save()
    signed_in_once(op, provider)
    token = access_token(op, email="alice@elsewhere.example", email_verified=True)
    assert_denied(call("/api/whoami/", token, caplog), caplog, "verified email domain 'elsewhere.example'")


def test_the_adapter_is_asked_with_the_api_request_and_the_tokens_claims(op, provider, caplog, settings):
    signed_in_once(op, provider)
    settings.ACCOUNTS_ADAPTER = "tests.test_api_admission.RecordsWhatItIsAsked"
    RecordsWhatItIsAsked.asked = []
    assert call("/api/whoami/", access_token(op, scope="orders:read"), caplog).status_code == 200
    [(asked_path, claims)] = RecordsWhatItIsAsked.asked
    assert asked_path == "/api/whoami/"
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("user-1", op.client_id, "orders:read")
    assert (claims["email"], claims["email_verified"]) == ("alice@example.com", True)  # from the stored identity


def test_an_account_the_api_would_create_is_refused_with_403_by_the_same_rules(op, provider, caplog, settings):
    settings.ACCOUNTS_ADAPTER = "tests.test_api_admission.RefusesEveryone"
    response = call("/api/join/", access_token(op, sub="newcomer"), caplog)
    assert_denied(response, caplog, "adapter refused test-op subject")
    assert not Identity.objects.exists()


def test_a_machine_token_is_not_a_person_to_admit(op, provider, caplog, settings):
    """Admission is about people: a client acting for itself has no account for the adapter to refuse."""
    settings.ACCOUNTS_ADAPTER = "tests.test_api_admission.RefusesEveryone"
    response = call("/api/whoami/", access_token(op, sub=op.client_id), caplog)
    assert response.status_code == 200 and response.json() == {"user": None, "machine": True}
