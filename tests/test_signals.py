"""The signals a project connects to fire exactly when what they announce has happened, through the views."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import signals
from accounts.models import Identity, Provider
from tests.conftest import connect, sign_in

pytestmark = pytest.mark.django_db
User = get_user_model()

SIGNALS = {
    "user_created": signals.user_created_from_provider,
    "connected": signals.identity_connected,
    "disconnected": signals.identity_disconnected,
    "failed": signals.sign_in_failed,
}


@pytest.fixture
def received():
    """Every signal sent during the test, by name, as the keyword arguments it came with."""
    calls: dict[str, list[dict]] = {name: [] for name in SIGNALS}
    for name, signal in SIGNALS.items():

        def receiver(sender, _name=name, **kwargs):
            assert sender is Provider
            calls[_name].append(kwargs)

        signal.connect(receiver, weak=False, dispatch_uid=f"test-signals-{name}")
    yield calls
    for name, signal in SIGNALS.items():
        signal.disconnect(dispatch_uid=f"test-signals-{name}")


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks of what happens inside, as a real (non-test) transaction would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def counts(received) -> dict[str, int]:
    return {name: len(calls) for name, calls in received.items()}


# --- user_created_from_provider and identity_connected on sign-in ---------------------------------


def test_first_sign_in_announces_the_new_user_and_identity(client, op, provider, received, committed):
    with committed():
        sign_in(client, op, provider)
    user, identity = User.objects.get(), Identity.objects.get()
    assert counts(received) == {"user_created": 1, "connected": 1, "disconnected": 0, "failed": 0}
    created = received["user_created"][0]
    assert (created["user"], created["identity"], created["claims"]["sub"]) == (user, identity, "user-1")
    assert created["request"].path == "/accounts/test-op/callback/"
    assert (received["connected"][0]["user"], received["connected"][0]["identity"]) == (user, identity)


def test_signals_wait_for_the_commit(client, op, provider, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sign_in(client, op, provider)
    assert callbacks and counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 0}


def test_returning_sign_in_announces_nothing(client, op, provider, received, committed):
    sign_in(client, op, provider)
    client.post("/accounts/logout/")
    with committed():
        sign_in(client, op, provider)
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 0}


def test_email_linking_announces_the_identity_but_no_new_user(client, op, provider, received, committed):
    provider.email_linking = Provider.EmailLinking.VERIFIED
    provider.save()
    existing = User.objects.create_user("existing", email="alice@example.com")
    with committed():
        sign_in(client, op, provider)
    assert counts(received) == {"user_created": 0, "connected": 1, "disconnected": 0, "failed": 0}
    assert received["connected"][0]["user"] == existing


# --- identity_connected / identity_disconnected on the profile page ------------------------------


def test_connect_announces_the_identity(client, op, op2, provider, second, received, committed):
    sign_in(client, op, provider)
    with committed():
        connect(client, op2, second)
    assert counts(received) == {"user_created": 0, "connected": 1, "disconnected": 0, "failed": 0}
    announced = received["connected"][0]
    assert announced["user"].username == "alice" and announced["identity"].provider == second
    assert announced["request"].path == "/accounts/second-op/callback/"  # the connect's own request


def test_connecting_an_identity_already_connected_announces_nothing(client, op, provider, received, committed):
    sign_in(client, op, provider)
    with committed():
        connect(client, op, provider)  # the same provider account again
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 0}


def test_refused_connect_announces_a_failure_only(client, op, op2, provider, second, received, committed):
    sign_in(Client(), op2, second)  # somebody else owns the second-op identity
    sign_in(client, op, provider)
    with committed():
        connect(client, op2, second)
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 1}
    owner = Identity.objects.get(provider=second).user
    assert (received["failed"][0]["code"], received["failed"][0]["reason"]) == (
        "account_conflict", f"second-op identity already belongs to user {owner.pk}",
    )  # fmt: skip


def test_disconnect_announces_the_removed_identity(client, op, op2, provider, second, received, committed):
    sign_in(client, op, provider)
    connect(client, op2, second)
    removed = Identity.objects.get(provider=second)
    with committed():
        client.post(f"/accounts/identities/{removed.pk}/disconnect/")
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 1, "failed": 0}
    announced = received["disconnected"][0]
    assert announced["user"].username == "alice"
    assert (announced["identity"].provider, announced["identity"].subject) == (second, "second-1")
    assert announced["request"].path == f"/accounts/identities/{removed.pk}/disconnect/"


def test_refused_disconnect_announces_nothing(client, op, provider, received, committed, caplog):
    sign_in(client, op, provider)
    with committed(), caplog.at_level(logging.INFO, logger="accounts.views"):
        client.post(f"/accounts/identities/{Identity.objects.get().pk}/disconnect/")  # the only one
    assert Identity.objects.exists()
    user = Identity.objects.get().user
    assert f"disconnect refused: user {user.pk} tried to remove their only sign-in method" in caplog.messages
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 0}


# --- sign_in_failed -------------------------------------------------------------------------------


def test_failed_sign_in_announces_its_code_and_reason(client, op, provider, received, committed):
    op.id_token_mutator = lambda header, claims: (header, {**claims, "aud": "another-client"})
    with committed():
        sign_in(client, op, provider)
    assert counts(received) == {"user_created": 0, "connected": 0, "disconnected": 0, "failed": 1}
    failed = received["failed"][0]
    assert (failed["provider"], failed["code"]) == (provider, "token_rejected")
    assert failed["reason"].startswith("ID token aud claim is not valid")
    assert op.issued_tokens[-1]["id_token"] not in failed["reason"]


def test_unknown_provider_announces_a_failure_without_provider(client, db, received):
    client.get("/accounts/nope/login/")
    assert [(f["provider"], f["code"], f["reason"]) for f in received["failed"]] == [
        (None, "unknown_provider", "no enabled provider 'nope'")
    ]


def test_successful_sign_in_announces_no_failure(client, op, provider, received, committed):
    with committed():
        sign_in(client, op, provider)
    assert received["failed"] == []


@pytest.mark.parametrize("path", ["/accounts/logout/", "/accounts/identities/1/disconnect/"])
def test_a_busy_database_when_signing_out_or_disconnecting_is_no_failed_sign_in(
    client, op, provider, received, committed, monkeypatch, path
):
    """``sign_in_failed`` announces failed sign-ins only: a sign-out or disconnect that met a busy database is none."""
    from django.db import OperationalError

    with committed():
        sign_in(client, op, provider)

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("accounts.session.auth_logout", busy)
    monkeypatch.setattr("accounts.views.disconnect_identity", busy)
    assert client.post(path).status_code == 503
    assert received["failed"] == []
