"""One admission policy for sign-in and connect: restrictions, the adapter's rule, an active account.

Each test plays someone the site means to keep out and checks which rule refused them (the audit
row's reason), that no session or identity was made, and that connect is held to the same rules.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.adapter import DefaultAccountAdapter
from accounts.models import Identity, SignInEvent
from tests.conftest import assert_error_page, connect, sign_in, signed_in, signed_in_user

pytestmark = pytest.mark.django_db
User = get_user_model()


class OnlyExampleOrgAdapter(DefaultAccountAdapter):
    """A project's own rule: only people with a verified example.org address."""

    def is_sign_in_allowed(self, request, provider, claims):
        return claims.get("email", "").endswith("@example.org") and claims.get("email_verified") is True


@pytest.fixture
def only_example_org(settings):
    settings.ACCOUNTS_ADAPTER = "tests.test_admission.OnlyExampleOrgAdapter"


def refusal() -> SignInEvent:
    return SignInEvent.objects.filter(outcome="failure").latest("pk")


def test_the_adapter_refuses_a_sign_in(client, op, provider, only_example_org):
    op.next_user = {**op.next_user, "email": "mallory@elsewhere.example"}
    response = sign_in(client, op, provider)
    assert_error_page(response, 403, "not allowed to sign in")
    assert not signed_in(client) and User.objects.count() == 0
    event = refusal()
    assert (event.code, event.reason, event.action) == ("sign_in_refused", "adapter refused test-op subject", "login")


def test_the_adapter_admits_what_it_allows(client, op, provider, only_example_org):
    op.next_user = {**op.next_user, "email": "alice@example.org", "email_verified": True}
    assert sign_in(client, op, provider).status_code == 302 and signed_in(client)


def test_the_adapter_refuses_a_connect_too(client, op, provider, op2, second, settings):
    """Connect attaches a sign-in method: the same rule decides it, so a refused identity gets no back door."""
    sign_in(client, op, provider)
    alice = signed_in_user(client)
    settings.ACCOUNTS_ADAPTER = "tests.test_admission.OnlyExampleOrgAdapter"  # op2 says alice@second.example
    response = connect(client, op2, second)
    assert_error_page(response, 403, "not allowed to sign in")
    assert not Identity.objects.filter(provider=second).exists()
    event = refusal()
    assert (event.code, event.reason, event.action, event.user) == (
        "sign_in_refused", "adapter refused second-op subject", "connect", alice,
    )  # fmt: skip
    assert signed_in_user(client) == alice  # still signed in as before: a refused connect changes nothing


def test_provider_restrictions_refuse_a_connect(client, op, provider, op2, second):
    sign_in(client, op, provider)
    second.allowed_email_domains = "corp.example"
    second.save()
    response = connect(client, op2, second)
    assert_error_page(response, 403, "corp.example")
    assert not Identity.objects.filter(provider=second).exists()
    assert refusal().reason.startswith("second-op: verified email domain")


def test_restrictions_are_asked_before_the_adapter(client, op, provider, only_example_org):
    provider.allowed_email_domains = "corp.example"
    provider.save()
    sign_in(client, op, provider)
    assert refusal().reason.startswith("test-op: verified email domain")


def test_a_disabled_account_cannot_sign_in(client, op, provider):
    sign_in(client, op, provider)
    User.objects.update(is_active=False)
    other = client.__class__()
    response = sign_in(other, op, provider)
    assert_error_page(response, 403, "This account has been disabled.")
    assert not signed_in(other)
    assert refusal().reason.endswith("is inactive")


def test_a_disabled_account_cannot_be_reached_by_verified_email_either(client, op, provider):
    victim = User.objects.create_user("victim", email=op.next_user["email"], is_active=False)
    provider.email_linking = provider.EmailLinking.VERIFIED
    provider.save()
    response = sign_in(client, op, provider)
    assert_error_page(response, 403, "This account has been disabled.")
    assert refusal().reason == f"user {victim.pk} is inactive"
    assert not Identity.objects.exists()
