"""The audit trail: one SignInEvent per attempt, readable in the admin, free of secrets, prunable."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import SignInEvent
from tests.conftest import assert_error_page, connect, logout_token, post_logout_token, sign_in, start_login

pytestmark = pytest.mark.django_db

VISITOR = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "AuditBrowser/1.0"}


@pytest.fixture
def visitor():
    """A Django test client with a known address and user agent on every request."""
    return Client(**VISITOR)


def test_successful_sign_in_is_recorded(visitor, op, provider):
    sign_in(visitor, op, provider)
    event = SignInEvent.objects.get()
    assert (event.outcome, event.action, event.provider_slug) == ("success", "login", "test-op")
    assert event.provider == provider
    assert (event.issuer, event.subject, event.user.username) == (op.issuer, "user-1", "alice")
    assert (event.ip_address, event.user_agent) == ("203.0.113.7", "AuditBrowser/1.0")
    assert event.code == "" and abs(event.created_at - timezone.now()) < timedelta(seconds=30)


def test_failed_sign_in_is_recorded_with_its_reason_code(visitor, op, provider):
    op.id_token_mutator = lambda header, claims: (header, {**claims, "nonce": "other"})
    sign_in(visitor, op, provider)
    event = SignInEvent.objects.get()
    assert (event.outcome, event.code, event.provider) == ("failure", "token_rejected", provider)
    assert event.reason == "ID token nonce claim is not valid (Invalid claim: 'nonce')"
    assert (event.ip_address, event.user_agent) == ("203.0.113.7", "AuditBrowser/1.0")
    assert event.user is None


def test_each_attempt_is_one_event(visitor, op, provider):
    sign_in(visitor, op, provider)
    visitor.post("/accounts/logout/")
    params = op.authorize(start_login(visitor, provider))
    visitor.get("/accounts/test-op/callback/", {**params, "state": "forged"})
    assert sorted(SignInEvent.objects.values_list("outcome", "code", "reason")) == [
        ("failure", "invalid_request", "callback state matches no sign-in started in this browser"),
        ("success", "", ""),
    ]


def test_refused_provider_answer_is_recorded(visitor, op, provider):
    params = start_login(visitor, provider)
    visitor.get("/accounts/test-op/callback/", {"state": params["state"], "error": "access_denied"})
    event = SignInEvent.objects.get()
    assert (event.code, event.reason) == ("provider_denied", "provider answered error='access_denied'")


def test_unknown_provider_is_recorded(visitor, db):
    visitor.get("/accounts/nope/login/")
    event = SignInEvent.objects.get()
    assert (event.outcome, event.code, event.provider) == ("failure", "unknown_provider", None)
    assert event.reason == "no enabled provider 'nope'"


def test_forwarded_for_header_is_not_trusted(op, provider):
    spoofing = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.66")
    sign_in(spoofing, op, provider)
    assert SignInEvent.objects.get().ip_address == "203.0.113.7"


def test_long_user_agent_is_truncated_not_an_error(op, provider):
    sign_in(Client(HTTP_USER_AGENT="x" * 5000), op, provider)
    assert SignInEvent.objects.get().user_agent == "x" * 300


def test_connect_is_recorded_as_a_connect(client, op, provider):
    sign_in(client, op, provider)
    op.next_user = {**op.next_user, "sub": "user-1-work-account"}
    assert connect(client, op, provider).status_code == 302
    assert list(SignInEvent.objects.order_by("created_at", "pk").values_list("outcome", "action", "subject")) == [
        ("success", "login", "user-1"),
        ("success", "connect", "user-1-work-account"),
    ]


def test_refused_connect_is_recorded_as_a_connect_with_the_identity(client, op, provider, django_user_model):
    owner = django_user_model.objects.create_user("owner")
    provider.identities.create(user=owner, issuer=op.issuer, subject="taken-sub")
    sign_in(client, op, provider)
    op.next_user = {**op.next_user, "sub": "taken-sub"}
    assert connect(client, op, provider).status_code == 409
    event = SignInEvent.objects.filter(outcome="failure").get()
    assert event.reason == f"test-op identity already belongs to user {owner.pk}"
    assert (event.action, event.code, event.issuer, event.subject) == (
        "connect",
        "account_conflict",
        op.issuer,
        "taken-sub",
    )


def test_policy_refusal_after_verification_records_who_was_refused(visitor, op, provider):
    provider.allowed_email_domains = "corp.example"
    provider.save()
    assert sign_in(visitor, op, provider).status_code == 403
    event = SignInEvent.objects.get()
    assert (event.code, event.issuer, event.subject) == ("sign_in_refused", op.issuer, "user-1")
    assert event.reason == "test-op: verified email domain 'example.com' not allowed"


def test_backchannel_logout_is_recorded(op, provider):
    post_logout_token(logout_token(op, aud="another-client"))
    event = SignInEvent.objects.get()
    assert (event.outcome, event.action, event.code) == ("failure", "backchannel-logout", "token_rejected")
    assert event.reason.startswith("logout token aud claim is not valid")


def all_field_values() -> str:
    return "\n".join(
        str(getattr(event, field.attname)) for event in SignInEvent.objects.all() for field in SignInEvent._meta.fields
    )


def test_events_never_hold_a_token_a_code_or_a_secret(visitor, op, provider, userinfo_always):
    succeeded = op.authorize(start_login(visitor, provider))
    visitor.get("/accounts/test-op/callback/", succeeded)
    visitor.post("/accounts/logout/")
    op.userinfo_mutator = lambda info: {**info, "sub": "someone-else"}  # fails after the tokens were issued
    failed = op.authorize(start_login(visitor, provider))
    visitor.get("/accounts/test-op/callback/", failed)
    assert list(SignInEvent.objects.order_by("pk").values_list("outcome", flat=True)) == ["success", "failure"]
    assert len(op.issued_tokens) == 2
    secrets = [op.client_secret, succeeded["code"], succeeded["state"], failed["code"], failed["state"]]
    for issued in op.issued_tokens:
        secrets += [issued["access_token"], issued["id_token"], issued["id_token"].split(".")[2]]
    stored = all_field_values()
    for secret in secrets:
        assert secret not in stored


# --- the admin ------------------------------------------------------------------------------------


@pytest.fixture
def events(db):
    SignInEvent.objects.create(outcome="success", provider_slug="test-op", subject="good-sub")
    SignInEvent.objects.create(outcome="failure", provider_slug="test-op", subject="bad-sub", code="token_rejected")


def test_admin_lists_events(admin_client, events):
    page = admin_client.get("/admin/oidc_signin/signinevent/").content.decode()
    assert "good-sub" in page and "bad-sub" in page


def test_admin_filters_events_by_outcome(admin_client, events):
    response = admin_client.get("/admin/oidc_signin/signinevent/", {"outcome__exact": "failure"})
    assert response.status_code == 200
    assert [e.subject for e in response.context["cl"].result_list] == ["bad-sub"]


def permission_denials(caplog) -> list[str]:
    """The paths Django refused with PermissionDenied (the admin's has_*_permission said no)."""
    prefix = "Forbidden (Permission denied): "
    return [
        r.getMessage().removeprefix(prefix)
        for r in caplog.records
        if r.name == "django.request" and r.getMessage().startswith(prefix)
    ]


def test_admin_cannot_add_events(admin_client, events, caplog):
    assert admin_client.get("/admin/oidc_signin/signinevent/add/").status_code == 403
    assert admin_client.post("/admin/oidc_signin/signinevent/add/", {"outcome": "success"}).status_code == 403
    assert permission_denials(caplog) == ["/admin/oidc_signin/signinevent/add/"] * 2
    assert SignInEvent.objects.count() == 2


def test_admin_cannot_change_events(admin_client, events, caplog):
    event = SignInEvent.objects.get(outcome="failure")
    url = f"/admin/oidc_signin/signinevent/{event.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(url, {"outcome": "success", "code": ""}).status_code == 403
    assert permission_denials(caplog) == [url]
    event.refresh_from_db()
    assert (event.outcome, event.code) == ("failure", "token_rejected")


# --- pruning --------------------------------------------------------------------------------------


@pytest.fixture
def aged_events(db):
    """Events 100, 40 and 1 day(s) old."""
    now = timezone.now()
    for days in (100, 40, 1):
        event = SignInEvent.objects.create(outcome="success", provider_slug=f"age-{days}")
        SignInEvent.objects.filter(pk=event.pk).update(created_at=now - timedelta(days=days))


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_signin_events", *args, stdout=out)
    return out.getvalue()


def remaining() -> list[str]:
    return sorted(SignInEvent.objects.values_list("provider_slug", flat=True))


def test_prune_deletes_events_older_than_the_cut_off(aged_events):
    assert "Deleted 2 event(s)" in prune("--days", "30")
    assert remaining() == ["age-1"]


def test_prune_keeps_90_days_by_default(aged_events):
    assert "Deleted 1 event(s)" in prune()
    assert remaining() == ["age-1", "age-40"]


def test_prune_dry_run_only_counts(aged_events):
    assert "2 event(s) older than 30 days would be deleted" in prune("--days", "30", "--dry-run")
    assert remaining() == ["age-1", "age-100", "age-40"]


@pytest.mark.parametrize("days", ["0", "-5"])
def test_prune_refuses_a_cut_off_that_would_delete_everything(aged_events, days):
    with pytest.raises(CommandError, match="at least 1"):
        prune("--days", days)
    assert len(remaining()) == 3


def test_prune_refuses_a_cut_off_before_the_calendar_begins(aged_events):
    with pytest.raises(CommandError, match="too large"):
        prune("--days", "1000000")
    assert len(remaining()) == 3


# --- anonymous failures cannot grow the table without bound ----------------------------------------


def stranger(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def made_up_callback(client: Client) -> None:
    """A callback for no started sign-in; whether its row is written is what these tests look at."""
    response = client.get("/accounts/test-op/callback/", {"state": "made-up", "code": "x"})
    assert_error_page(
        response, 400, code="invalid_request", reason="callback state matches no sign-in started in this browser"
    )


@pytest.fixture
def frozen_clock(monkeypatch):
    """A settable clock, 10 s into a minute, so that rate-limit windows are exact."""
    clock = {"now": 1_800_000_010.0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    return clock


def test_anonymous_failures_are_rate_limited_per_address_and_counted(provider, settings, frozen_clock):
    settings.ACCOUNTS_AUDIT_ANONYMOUS_FAILURES_PER_MINUTE = 3
    for _ in range(5):
        made_up_callback(stranger("198.51.100.1"))
    made_up_callback(stranger("198.51.100.2"))  # another address has a budget of its own
    assert SignInEvent.objects.filter(ip_address="198.51.100.1").count() == 3
    assert SignInEvent.objects.filter(ip_address="198.51.100.2").count() == 1

    frozen_clock["now"] += 60
    made_up_callback(stranger("198.51.100.1"))

    latest = SignInEvent.objects.filter(ip_address="198.51.100.1").latest("id")
    assert latest.suppressed == 2
    assert list(SignInEvent.objects.values_list("suppressed", flat=True).order_by("id")) == [0, 0, 0, 0, 2]


def test_one_ipv6_client_cannot_dodge_the_limit_by_changing_addresses(provider, settings, frozen_clock):
    settings.ACCOUNTS_AUDIT_ANONYMOUS_FAILURES_PER_MINUTE = 2
    for host in range(1, 6):  # a host owns its whole /64
        made_up_callback(stranger(f"2001:db8:1:2::{host}"))
    assert SignInEvent.objects.count() == 2


def test_failures_of_signed_in_people_and_successes_are_always_recorded(op, provider, settings):
    settings.ACCOUNTS_AUDIT_ANONYMOUS_FAILURES_PER_MINUTE = 1
    visitor = Client(**VISITOR)
    for _ in range(3):
        sign_in(visitor, op, provider)
        made_up_callback(visitor)  # signed in: a failure with a user attached
    assert SignInEvent.objects.filter(outcome="success").count() == 3
    assert SignInEvent.objects.filter(outcome="failure", user__isnull=False).count() == 3
