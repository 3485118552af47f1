"""Managing the sign-in methods of an account: connect, disconnect, and what the profile shows.

Connecting runs the real flow against a second provider double; every callback is tied to the
session, and to the user, that started it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import DisconnectedIdentity, Identity, Provider, SignInEvent
from tests.conftest import (
    assert_error_page,
    connect,
    pending_flows,
    refused_by_csrf,
    sign_in,
    signed_in_user,
    start_connect,
)

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def signed_in_alice(client, op, provider):
    """Alice, signed in with the first provider (her only sign-in method)."""
    sign_in(client, op, provider)
    return User.objects.get(username="alice")


#: Why a callback whose state names no sign-in started in this session is refused (accounts.flow).
NO_SUCH_STATE = "callback state matches no sign-in started in this browser"


# --- connecting -----------------------------------------------------------------------------------


def test_profile_offers_to_connect_providers_not_yet_connected(client, signed_in_alice, second):
    page = client.get("/accounts/profile/").content.decode()
    assert 'action="/accounts/second-op/connect/"' in page and "Connect Second OP" in page
    assert 'action="/accounts/test-op/connect/"' not in page  # already connected
    assert 'name="csrfmiddlewaretoken"' in page


def test_connect_attaches_the_new_identity_to_the_signed_in_user(client, op2, signed_in_alice, second):
    response = connect(client, op2, second)
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert User.objects.count() == 1
    assert signed_in_user(client) == signed_in_alice
    identity = Identity.objects.get(provider=second)
    assert (identity.user, identity.issuer, identity.subject) == (signed_in_alice, op2.issuer, "second-1")
    assert "Second OP is now connected to your account." in client.get("/accounts/profile/").content.decode()


def test_connected_provider_signs_in_to_the_same_account(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    client.post("/accounts/logout/")
    sign_in(client, op2, second)
    assert signed_in_user(client) == signed_in_alice and User.objects.count() == 1


def test_connect_requires_sign_in_and_comes_back_to_the_profile(client, op, second):
    """Signing in returns to the profile page: the connect URL itself only answers POST."""
    response = client.post("/accounts/second-op/connect/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/accounts/profile/"
    assert not pending_flows(client)


def test_connect_requires_post(client, signed_in_alice, second):
    response = client.get("/accounts/second-op/connect/")
    assert response.status_code == 405 and response["Allow"] == "POST"  # require_POST's answer
    assert not pending_flows(client)


def test_connect_is_csrf_protected(op, provider, second, caplog):
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, op, provider)
    assert browser.post("/accounts/second-op/connect/").status_code == 403
    assert refused_by_csrf(caplog)
    assert not pending_flows(browser)


def test_connect_to_an_unknown_provider_is_404(client, signed_in_alice):
    response = client.post("/accounts/nope/connect/")
    assert_error_page(response, 404, "does not exist", code="unknown_provider", reason="no enabled provider 'nope'")


def test_identity_of_another_user_is_refused_never_moved(client, op, op2, provider, second):
    bob_browser = Client()
    sign_in(bob_browser, op2, second)
    bob = Identity.objects.get(provider=second).user
    sign_in(client, op, provider)
    alice = signed_in_user(client)
    assert alice != bob
    response = connect(client, op2, second)
    assert_error_page(
        response, 409, "already connected to another account",
        code="account_conflict", reason=f"second-op identity already belongs to user {bob.pk}",
    )  # fmt: skip
    assert Identity.objects.get(provider=second).user == bob
    assert signed_in_user(client) == alice
    assert signed_in_user(bob_browser) == bob


def test_connect_callback_delivered_to_another_browser_is_refused(client, op, op2, provider, second):
    """Login CSRF: the attacker starts a connect and feeds its callback to the victim's browser."""
    attacker = Client()
    op.next_user = {**op.next_user, "sub": "attacker-1"}
    sign_in(attacker, op, provider)
    op2.next_user = {**op2.next_user, "sub": "attacker-second"}
    attacker_params = op2.authorize(start_connect(attacker, second))
    op.next_user = {**op.next_user, "sub": "victim-1"}
    sign_in(client, op, provider)
    response = client.get("/accounts/second-op/callback/", attacker_params)
    assert_error_page(response, 400, "did not match", code="invalid_request", reason=NO_SUCH_STATE)
    assert not Identity.objects.filter(subject="attacker-second").exists()


def test_connect_callback_after_sign_out_is_refused(client, op2, signed_in_alice, second):
    params = op2.authorize(start_connect(client, second))
    client.post("/accounts/logout/")
    response = client.get("/accounts/second-op/callback/", params)
    assert_error_page(response, 400, "did not match", code="invalid_request", reason=NO_SUCH_STATE)
    assert not Identity.objects.filter(provider=second).exists()
    assert User.objects.count() == 1


def test_connect_callback_in_a_session_of_another_user_is_refused(client, op2, signed_in_alice, second):
    """The started connect is bound to the user who started it, not just to the browser session."""
    params = op2.authorize(start_connect(client, second))
    mallory = User.objects.create_user("mallory")
    client.force_login(mallory)  # the same browser, its started connect still there, now mallory's session
    response = client.get("/accounts/second-op/callback/", params)
    assert_error_page(
        response, 400, "did not match",
        code="invalid_request", reason="connect callback arrived in a session of another (or no) user",
    )  # fmt: skip
    assert not Identity.objects.filter(provider=second).exists()
    assert signed_in_user(client) == mallory


def test_connect_callback_is_single_use(client, op2, signed_in_alice, second):
    params = op2.authorize(start_connect(client, second))
    assert client.get("/accounts/second-op/callback/", params).status_code == 302
    response = client.get("/accounts/second-op/callback/", params)
    assert_error_page(response, 400, "already used", code="invalid_request", reason=NO_SUCH_STATE)
    assert Identity.objects.filter(provider=second).count() == 1


def test_connect_does_not_change_which_sign_in_the_session_came_from(client, op, op2, signed_in_alice, second):
    connect(client, op2, second)
    response = client.post("/accounts/logout/")
    assert response["Location"].startswith(op.issuer + "/logout?")  # the provider the session signed in with


# --- disconnecting --------------------------------------------------------------------------------


def disconnect(client, identity: Identity):
    return client.post(f"/accounts/identities/{identity.pk}/disconnect/")


def disconnect_refusals(caplog) -> list[str]:
    """The reasons of the refused disconnects logged (``accounts.views``: "disconnect refused: <reason>")."""
    prefix = "disconnect refused: "
    return [
        r.getMessage().removeprefix(prefix)
        for r in caplog.records
        if r.name == "accounts.views" and r.getMessage().startswith(prefix)
    ]


def test_disconnect_removes_a_connected_provider(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    response = disconnect(client, Identity.objects.get(provider=second))
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert list(Identity.objects.values_list("provider__slug", flat=True)) == ["test-op"]
    assert "Second OP was disconnected from your account." in client.get("/accounts/profile/").content.decode()


def test_last_sign_in_method_cannot_be_disconnected(client, signed_in_alice, caplog):
    only = Identity.objects.get()
    with caplog.at_level(logging.INFO, logger="accounts.views"):
        response = disconnect(client, only)
    assert response.status_code == 302
    assert disconnect_refusals(caplog) == [f"user {signed_in_alice.pk} tried to remove their only sign-in method"]
    assert Identity.objects.filter(pk=only.pk).exists()
    page = client.get("/accounts/profile/").content.decode()
    assert "You cannot disconnect your only sign-in method." in page


def test_last_sign_in_method_can_go_when_the_account_has_a_password(client, signed_in_alice):
    signed_in_alice.set_password("a long local password")
    signed_in_alice.save()
    client.force_login(signed_in_alice)  # changing the password ended the session, as Django does
    disconnect(client, Identity.objects.get())
    assert not Identity.objects.exists()


def test_profile_offers_no_disconnect_for_the_only_sign_in_method(client, signed_in_alice):
    page = client.get("/accounts/profile/").content.decode()
    assert "/disconnect/" not in page


def test_profile_offers_disconnect_when_there_is_another_way_in(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    page = client.get("/accounts/profile/").content.decode()
    for identity in Identity.objects.all():
        assert f'href="/accounts/identities/{identity.pk}/disconnect/"' in page


def test_cannot_disconnect_another_users_identity(client, op2, signed_in_alice, second, caplog):
    other_browser = Client()
    sign_in(other_browser, op2, second)
    bobs = Identity.objects.get(provider=second)
    signed_in_alice.set_password("a long local password")  # so "last method" is not why it is refused
    signed_in_alice.save()
    client.force_login(signed_in_alice)
    with caplog.at_level(logging.INFO, logger="accounts.views"):
        response = disconnect(client, bobs)
    assert response.status_code == 302
    assert disconnect_refusals(caplog) == [f"user {signed_in_alice.pk} has no identity {bobs.pk}"]
    assert Identity.objects.filter(pk=bobs.pk, user=bobs.user).exists()
    assert "That sign-in method is not connected to your account." in client.get("/accounts/profile/").content.decode()


def test_disconnect_asks_first_and_only_a_post_disconnects(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    identity = Identity.objects.get(provider=second)
    url = f"/accounts/identities/{identity.pk}/disconnect/"
    response = client.get(url)
    assert response.status_code == 200
    assert response.templates[0].name == "oidc_signin/disconnect_confirm.html"
    page = response.content.decode()
    assert "<h1" in page and "Disconnect Second OP?" in page
    assert f'<form method="post" action="{url}">' in page and "csrfmiddlewaretoken" in page
    assert 'href="/accounts/profile/">Cancel</a>' in page
    assert "you will be signed out too" not in page  # this session signed in with the first provider
    assert Identity.objects.filter(pk=identity.pk).exists()  # asking changes nothing

    assert client.post(url).status_code == 302
    assert not Identity.objects.filter(pk=identity.pk).exists()


def test_the_profile_links_to_the_question_instead_of_disconnecting_on_one_click(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    identity = Identity.objects.get(provider=second)
    page = client.get("/accounts/profile/").content.decode()
    assert f'href="/accounts/identities/{identity.pk}/disconnect/"' in page
    assert f'action="/accounts/identities/{identity.pk}/disconnect/"' not in page


def test_the_question_says_when_this_very_session_ends_too(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    first = Identity.objects.exclude(provider=second).get()
    page = client.get(f"/accounts/identities/{first.pk}/disconnect/").content.decode()
    assert "You signed in with this account, so you will be signed out too." in page


def test_the_question_about_the_last_way_in_offers_no_button(client, signed_in_alice):
    identity = Identity.objects.get()
    response = client.get(f"/accounts/identities/{identity.pk}/disconnect/")
    page = response.content.decode()
    assert response.status_code == 200 and "cannot be disconnected" in page
    assert 'method="post" action="/accounts/identities/' not in page


def test_the_question_about_someone_elses_identity_goes_back_to_the_profile(client, op, signed_in_alice):
    bob = User.objects.create(username="bob")
    bobs = Identity.objects.create(user=bob, provider=Identity.objects.get().provider, issuer=op.issuer, subject="b")
    response = client.get(f"/accounts/identities/{bobs.pk}/disconnect/")
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert "That sign-in method is not connected to your account." in client.get("/accounts/profile/").content.decode()


def test_disconnect_answers_neither_put_nor_delete(client, signed_in_alice):
    response = client.delete(f"/accounts/identities/{Identity.objects.get().pk}/disconnect/")
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    assert Identity.objects.exists()


@pytest.mark.parametrize(
    ("sync", "what_changes_it"),
    [("follow", "sign in with Corp again"), ("keep", "ask the site's administrator to add a verified address")],
)
def test_the_profile_says_why_an_unverified_email_is_not_used_and_what_would_change_that(
    client, db, sync, what_changes_it
):
    provider = Provider.objects.create(
        slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid", profile_sync=sync
    )
    bob = User.objects.create(username="bob")
    Identity.objects.create(
        user=bob, provider=provider, issuer=provider.issuer, subject="b", email="bob@example.com", email_verified=False
    )
    client.force_login(bob)
    page = client.get("/accounts/profile/").content.decode()
    assert "Corp says your email address is bob@example.com but has not verified it" in page
    assert what_changes_it in page

    bob.email = "bob@example.com"  # once the address is the account's, nothing needs explaining
    bob.save()
    assert "has not verified it" not in client.get("/accounts/profile/").content.decode()


def test_disconnect_is_csrf_protected(op, op2, provider, second, caplog):
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, op, provider)
    user = Identity.objects.get().user
    other = Identity.objects.create(user=user, provider=second, issuer=op2.issuer, subject="second-1")
    assert disconnect(browser, other).status_code == 403
    assert refused_by_csrf(caplog)
    assert Identity.objects.filter(pk=other.pk).exists()


def test_disconnect_requires_sign_in_and_comes_back_to_the_profile(client, op2, second):
    owner = User.objects.create_user("owner", password="a long local password")
    identity = Identity.objects.create(user=owner, provider=second, issuer=op2.issuer, subject="second-1")
    response = disconnect(client, identity)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/accounts/profile/"
    assert Identity.objects.filter(pk=identity.pk).exists()


# --- what the profile and the session endpoint show ----------------------------------------------


def test_profile_lists_identities_with_their_last_sign_in_time(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    page = client.get("/accounts/profile/").content.decode()
    for identity in Identity.objects.select_related("provider"):
        assert identity.provider.name in page
        assert f'<time datetime="{identity.last_login_at.isoformat()}">' in page


def test_session_json_lists_every_identity_with_its_provider_name(client, op, op2, signed_in_alice, second):
    connect(client, op2, second)
    assert client.get("/accounts/session/").json()["identities"] == [
        {"provider": "test-op", "provider_name": "Test OP", "issuer": op.issuer, "sub": "user-1"},
        {"provider": "second-op", "provider_name": "Second OP", "issuer": op2.issuer, "sub": "second-1"},
    ]


# --- disconnecting lasts --------------------------------------------------------------------------


def test_disconnect_ends_the_sessions_that_provider_account_signed_in(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    elsewhere = Client()  # Alice's other browser, signed in with the second provider
    assert sign_in(elsewhere, op2, second).status_code == 302 and signed_in_user(elsewhere) == signed_in_alice
    disconnect(client, Identity.objects.get(provider=second))
    assert signed_in_user(elsewhere) is None
    assert signed_in_user(client) == signed_in_alice  # this session came from the first provider: it stays


def test_disconnect_signs_out_the_session_that_signed_in_with_it(client, op2, signed_in_alice, second):
    connect(client, op2, second)
    browser = Client()
    assert sign_in(browser, op2, second).status_code == 302 and signed_in_user(browser) == signed_in_alice
    response = disconnect(browser, Identity.objects.get(provider=second))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert signed_in_user(browser) is None
    assert "you were signed out because you signed in with it" in browser.get("/accounts/login/").content.decode()


def test_disconnected_account_is_not_linked_again_by_verified_email(client, op2, signed_in_alice, second):
    second.email_linking = Provider.EmailLinking.VERIFIED
    second.save()
    op2.next_user["email"] = signed_in_alice.email  # the provider vouches for Alice's own address
    connect(client, op2, second)
    disconnect(client, Identity.objects.get(provider=second))

    response = sign_in(Client(), op2, second)

    assert_error_page(
        response, 403, "connect it again from your profile page",
        code="identity_disconnected", reason="second-op identity was disconnected by user",
    )  # fmt: skip
    assert not Identity.objects.filter(provider=second).exists()
    assert SignInEvent.objects.filter(code="identity_disconnected").count() == 1


def test_a_thief_cannot_undo_the_owners_disconnect_by_connecting_and_disconnecting(
    client, op2, signed_in_alice, second
):
    """The route of issue 19: whoever holds provider account X connects it to their own account T,
    disconnects it again, then signs in with X -- verified-email linking must not put them in Alice's."""
    second.email_linking = Provider.EmailLinking.VERIFIED
    second.save()
    op2.next_user["email"] = signed_in_alice.email  # X: a provider account vouching for Alice's address
    x = (op2.issuer, op2.next_user["sub"])

    # 1. The owner connects X, then disconnects it (it is compromised, or no longer hers).
    assert connect(client, op2, second).status_code == 302
    assert disconnect(client, Identity.objects.get(provider=second)).status_code == 302
    assert list(DisconnectedIdentity.objects.values_list("user", "issuer", "subject")) == [(signed_in_alice.pk, *x)]

    # 2. The thief, signed in to an account of their own, connects X to it: allowed, X is theirs to use...
    thief = User.objects.create_user("mallory", email="mallory@example.com", password="correct horse battery")
    thief_browser = Client()
    thief_browser.force_login(thief)
    assert connect(thief_browser, op2, second).status_code == 302
    assert Identity.objects.get(provider=second).user == thief
    # ...but it leaves Alice's word about X alone.
    assert DisconnectedIdentity.objects.filter(user=signed_in_alice, issuer=x[0], subject=x[1]).exists()

    # 3. The thief disconnects X again (their password is another way in).
    assert disconnect(thief_browser, Identity.objects.get(provider=second)).status_code == 302
    assert not Identity.objects.filter(provider=second).exists()

    # 4. The thief signs in with X: linking by Alice's verified address is refused.
    browser = Client()
    response = sign_in(browser, op2, second)
    assert_error_page(
        response, 403, "connect it again from your profile page",
        code="identity_disconnected", reason="second-op identity was disconnected by user",
    )  # fmt: skip
    assert signed_in_user(browser) is None
    assert not Identity.objects.filter(provider=second).exists()
    assert list(Identity.objects.filter(user=signed_in_alice).values_list("provider__slug", flat=True)) == ["test-op"]


def test_disconnected_account_can_be_connected_again_on_purpose(client, op2, signed_in_alice, second):
    second.email_linking = Provider.EmailLinking.VERIFIED
    second.save()
    op2.next_user["email"] = signed_in_alice.email
    connect(client, op2, second)
    disconnect(client, Identity.objects.get(provider=second))

    assert connect(client, op2, second).status_code == 302
    assert Identity.objects.get(provider=second).user == signed_in_alice
    assert not DisconnectedIdentity.objects.exists()
    browser = Client()
    assert sign_in(browser, op2, second).status_code == 302 and signed_in_user(browser) == signed_in_alice


def test_a_connect_started_with_next_comes_back_there(client, op, provider, op2, second):
    assert sign_in(client, op, provider).status_code == 302
    started = client.post(f"/accounts/{second.slug}/connect/?next=/reports/%3Fyear%3D2026")
    params = op2.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    done = client.get(f"/accounts/{second.slug}/callback/", params)
    assert (done.status_code, done["Location"]) == (302, "/reports/?year=2026")


def test_a_connect_next_off_this_site_falls_back_to_the_profile(client, op, provider, op2, second):
    assert sign_in(client, op, provider).status_code == 302
    started = client.post(f"/accounts/{second.slug}/connect/", {"next": "https://evil.example/"})
    params = op2.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    done = client.get(f"/accounts/{second.slug}/callback/", params)
    assert (done.status_code, done["Location"]) == (302, "/accounts/profile/")


def test_messages_are_a_list_inside_a_status_region(client, op2, signed_in_alice, second):
    """role="status" on the <ul> itself would strip its list role, leaving orphan <li>s (axe: listitem)."""
    connect(client, op2, second)
    page = client.get("/accounts/profile/").content.decode()
    region = page[page.index('<div role="status"') : page.index("</div>", page.index('<div role="status"'))]
    assert '<ul class="messages">' in region and "Second OP is now connected to your account." in region
    assert not re.search(r"<ul[^>]*role=", page)
