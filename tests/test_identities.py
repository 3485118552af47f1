"""Verified claims -> users: issuer + subject is the key; emails link only when verified and allowed."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client

from accounts import signals
from accounts.identities import sign_in_identity
from accounts.models import Identity, Provider
from tests.conftest import connect, sign_in, signed_in_user

User = get_user_model()
ISSUER = "https://idp.example"


@pytest.fixture
def offline_provider(db):
    """A provider row no double answers for: these tests call the identity logic directly."""
    return Provider.objects.create(slug="idp", name="IdP", issuer=ISSUER, client_id="c", client_secret="s")


def login(provider, sub="sub-1", issuer=ISSUER, **claims):
    claims = {"iss": issuer, "sub": sub, **claims}
    return sign_in_identity(request=None, provider=provider, issuer=issuer, subject=sub, claims=claims)


def test_known_identity_signs_in_its_user(offline_provider):
    first = login(offline_provider, email="a@example.com", email_verified=True, preferred_username="alice")
    again = login(offline_provider, email="changed@example.com", email_verified=True, preferred_username="renamed")
    assert again.user == first.user and not again.user_created
    assert Identity.objects.get().email == "changed@example.com"


def test_same_subject_from_two_issuers_is_two_identities(offline_provider):
    other = Provider.objects.create(slug="other", name="Other", issuer="https://other.example", client_id="c")
    a = login(offline_provider, sub="42")
    b = login(other, sub="42", issuer="https://other.example")
    assert a.user != b.user and Identity.objects.count() == 2


def test_email_is_copied_only_when_verified(offline_provider):
    assert login(offline_provider, sub="1", email="v@example.com", email_verified=True).user.email == "v@example.com"
    assert login(offline_provider, sub="2", email="u@example.com", email_verified=False).user.email == ""
    # a string is not true
    assert login(offline_provider, sub="3", email="s@example.com", email_verified="true").user.email == ""


def test_unverified_email_never_takes_over_an_existing_account(offline_provider):
    """The account-takeover attempt: an attacker registers the victim's email at a lax provider."""
    offline_provider.email_linking = Provider.EmailLinking.VERIFIED
    offline_provider.save()
    victim = User.objects.create_user("victim", email="victim@example.com")
    result = login(offline_provider, sub="attacker", email="victim@example.com", email_verified=False)
    assert result.user != victim and result.user_created


def test_verified_email_does_not_link_unless_the_provider_opts_in(offline_provider):
    existing = User.objects.create_user("someone", email="someone@example.com")
    result = login(offline_provider, email="someone@example.com", email_verified=True)
    assert result.user != existing


def test_verified_email_links_when_the_provider_opts_in(offline_provider):
    offline_provider.email_linking = Provider.EmailLinking.VERIFIED
    offline_provider.save()
    existing = User.objects.create_user("someone", email="Someone@Example.com")
    result = login(offline_provider, email="someone@example.com", email_verified=True)
    assert result.user == existing and not result.user_created and result.identity_created


def test_verified_email_matching_two_users_creates_a_new_user(offline_provider):
    offline_provider.email_linking = Provider.EmailLinking.VERIFIED
    offline_provider.save()
    User.objects.create_user("one", email="dup@example.com")
    User.objects.create_user("two", email="dup@example.com")
    assert login(offline_provider, email="dup@example.com", email_verified=True).user_created


@pytest.mark.parametrize(
    ("claims", "username"),
    [
        ({"preferred_username": "alice"}, "alice"),
        ({"email": "bob@example.com"}, "bob"),
        ({}, "sub-1"),
        ({"preferred_username": "Zoë Ångström"}, "ZoeAngstrom"),
    ],
)
def test_username_is_derived_from_claims(offline_provider, claims, username):
    assert login(offline_provider, **claims).user.username == username


def test_a_taken_readable_name_is_numbered_rather_than_replaced_by_the_opaque_subject(offline_provider):
    User.objects.create_user("alice")
    result = login(offline_provider, sub="f554adc7c16e43a2ac715143c97f0c65", email="alice@other.org")
    assert result.user.username == "alice2"


def test_username_collision_gets_a_suffix_and_never_reuses_the_user(offline_provider):
    taken = User.objects.create_user("alice")
    User.objects.create_user("alice2")
    result = login(offline_provider, sub="alice", preferred_username="alice")  # every candidate is taken
    assert result.user != taken and result.user.username == "alice3"


def test_signals_are_sent_once_on_first_sign_in(offline_provider, django_capture_on_commit_callbacks):
    created, connected = [], []
    signals.user_created_from_provider.connect(lambda **kw: created.append(kw["user"]), weak=False, dispatch_uid="t1")
    signals.identity_connected.connect(lambda **kw: connected.append(kw["identity"]), weak=False, dispatch_uid="t2")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = login(offline_provider)
        with django_capture_on_commit_callbacks(execute=True):
            login(offline_provider)
    finally:
        signals.user_created_from_provider.disconnect(dispatch_uid="t1")
        signals.identity_connected.disconnect(dispatch_uid="t2")
    assert created == [first.user] and connected == [first.identity]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sign_ins_create_one_user():
    """Two tabs (or a double click) completing the first sign-in at the same moment."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for truly concurrent transactions (second pass of make test)")
    provider = Provider.objects.create(slug="race", name="Race", issuer=ISSUER, client_id="c")
    barrier, results = threading.Barrier(8), []

    def worker():
        try:
            barrier.wait(timeout=5)
            results.append(login(provider, sub="racer", preferred_username="racer").user.pk)
        except Exception as exc:  # collected and asserted below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 and len(set(results)) == 1, results
    assert User.objects.count() == 1 and Identity.objects.count() == 1


# --- verified-email linking compares exactly (look-alike addresses) -------------------------------

DOTLESS_I, LONG_S = "\u0131", "\u017f"  # PostgreSQL's UPPER() folds them to I and S, as casefold() does


@pytest.fixture
def linking(offline_provider):
    offline_provider.email_linking = Provider.EmailLinking.VERIFIED
    offline_provider.save()
    return offline_provider


@pytest.mark.services
@pytest.mark.parametrize(
    "look_alike",
    [f"admin@b{DOTLESS_I}gcorp.example", f"{LONG_S}ecurity@bigcorp.example", f"ADM{DOTLESS_I}N@BIGCORP.EXAMPLE"],
    ids=["dotless-i", "long-s", "upper-case-dotless-i"],
)
def test_look_alike_verified_email_never_takes_over_an_account(linking, look_alike):
    """The takeover a review found on PostgreSQL: a provider-verified look-alike of the admin's email."""
    User.objects.create_superuser("admin", email="admin@bigcorp.example", password="a long password")
    User.objects.create_user("security", email="security@bigcorp.example")
    result = login(linking, sub="attacker", email=look_alike, email_verified=True)
    assert result.user_created and not result.user.is_superuser
    assert result.user.username not in ("admin", "security")


@pytest.mark.services
def test_verified_email_links_when_equal_ignoring_ascii_case(linking):
    existing = User.objects.create_user("someone", email="Someone@Example.com")
    result = login(linking, sub="s-1", email="someone@EXAMPLE.com", email_verified=True)
    assert result.user == existing and not result.user_created


@pytest.mark.services
def test_non_ascii_verified_email_is_never_linked_automatically(linking):
    User.objects.create_user("elodie", email="\u00e9lodie@example.com")
    result = login(linking, sub="s-2", email="\u00e9lodie@example.com", email_verified=True)
    assert result.user_created and result.user.username != "elodie"


@pytest.mark.services
def test_ascii_verified_email_does_not_link_to_a_stored_look_alike(linking):
    """The other direction: the stored address is the look-alike, the provider's is plain ASCII."""
    look_alike = User.objects.create_user("lookalike", email=f"admin@b{DOTLESS_I}gcorp.example")
    result = login(linking, sub="s-3", email="admin@bigcorp.example", email_verified=True)
    assert result.user != look_alike and result.user_created


# --- disconnecting ends the sessions of that provider account, and only those ---------------------
# Found by mutation testing (mutmut over accounts/identities.py): nothing failed when the filter of
# the sessions to end lost its user, its issuer or its subject (the signal's request: tests/test_signals.py).


def disconnect(client, identity: Identity):
    return client.post(f"/accounts/identities/{identity.pk}/disconnect/")


def test_disconnect_ends_no_session_of_the_same_subject_at_another_issuer(client, op, op2, provider, second):
    """A subject is unique per issuer only: the same ``sub`` at another provider is another account."""
    op2.next_user = {**op2.next_user, "sub": op.next_user["sub"]}
    sign_in(client, op, provider)
    alice = signed_in_user(client)
    connect(client, op2, second)
    elsewhere = Client()
    sign_in(elsewhere, op2, second)
    disconnect(client, Identity.objects.get(provider=second))
    assert signed_in_user(client) == alice  # signed in with test-op: not ended
    assert signed_in_user(elsewhere) is None  # signed in with the removed account: ended


def test_disconnect_ends_no_session_of_another_account_at_the_same_provider(client, op, provider):
    sign_in(client, op, provider)
    alice = signed_in_user(client)
    op.next_user = {**op.next_user, "sub": "user-2"}
    connect(client, op, provider)  # a second account at the same provider
    elsewhere = Client()
    sign_in(elsewhere, op, provider)
    disconnect(client, Identity.objects.get(subject="user-2"))
    assert signed_in_user(client) == alice  # signed in with user-1: not ended
    assert signed_in_user(elsewhere) is None


def test_disconnect_ends_no_session_of_another_user(client, op, op2, provider, second):
    """Bob's session from that provider account outlives the account being deleted from his user in the
    admin and connected by Alice: her disconnect ends her sessions, never his."""
    bobs_browser = Client()
    sign_in(bobs_browser, op2, second)
    bob = signed_in_user(bobs_browser)
    Identity.objects.filter(user=bob).delete()
    sign_in(client, op, provider)
    connect(client, op2, second)
    assert Identity.objects.get(provider=second).user == signed_in_user(client) != bob
    disconnect(client, Identity.objects.get(provider=second))
    assert signed_in_user(bobs_browser) == bob


# --- connecting finds the identity by issuer and subject both, and refreshes one already there ------
# Found by mutation testing (mutmut over accounts/identities.py): nothing failed when the lookup lost
# its issuer or its subject, or when connecting an already-connected identity refreshed it wrongly.


def test_connect_of_the_same_subject_at_another_issuer_is_a_new_identity(client, op, op2, provider, second):
    op2.next_user = {**op2.next_user, "sub": op.next_user["sub"]}
    sign_in(client, op, provider)
    connect(client, op2, second)
    assert sorted(Identity.objects.values_list("provider__slug", "subject")) == [
        ("second-op", "user-1"), ("test-op", "user-1"),
    ]  # fmt: skip


def test_connect_is_not_refused_for_another_users_account_at_the_same_provider(client, op, op2, provider, second):
    op2.next_user = {**op2.next_user, "sub": "bob-1"}
    sign_in(Client(), op2, second)  # bob's account at second-op
    sign_in(client, op, provider)
    op2.next_user = {**op2.next_user, "sub": "alice-2"}
    assert connect(client, op2, second).status_code == 302
    assert Identity.objects.get(subject="alice-2").user == signed_in_user(client)


def test_connecting_an_identity_already_connected_refreshes_it(client, op, provider):
    sign_in(client, op, provider)
    before = Identity.objects.get()
    op.next_user = {**op.next_user, "email": "new@example.com", "email_verified": True}
    assert connect(client, op, provider).status_code == 302
    after = Identity.objects.get()
    assert (after.pk, after.email, after.email_verified) == (before.pk, "new@example.com", True)
    assert after.claims["email"] == "new@example.com" and after.last_login_at > before.last_login_at


# --- connecting on purpose lifts only that identity's tombstone -------------------------------------


def test_connecting_one_disconnected_account_keeps_the_others_out_of_email_linking(offline_provider):
    """Reconnecting account A on purpose must not re-open account B, disconnected too, to email linking."""
    from accounts.identities import connect_identity
    from accounts.models import DisconnectedIdentity

    user = User.objects.create_user("owner", email="owner@example.com")
    for subject in ("account-a", "account-b"):
        DisconnectedIdentity.objects.create(user=user, issuer=ISSUER, subject=subject)
    DisconnectedIdentity.objects.create(user=User.objects.create_user("other"), issuer=ISSUER, subject="account-b")
    connect_identity(
        request=None,
        provider=offline_provider,
        user=user,
        issuer=ISSUER,
        subject="account-a",
        claims={"sub": "account-a"},
    )
    left = set(DisconnectedIdentity.objects.values_list("user__username", "subject"))
    assert left == {("owner", "account-b"), ("other", "account-b")}


class TakesAnotherUsersName:
    """An adapter whose update collides with another account's unique username on a returning sign-in."""

    def __getattr__(self, name):
        from accounts.adapter import DefaultAccountAdapter

        return getattr(DefaultAccountAdapter(), name)

    def update_user(self, request, user, claims, *, created):
        if not created:
            user.username = "bob"


def test_a_returning_update_that_collides_is_a_conflict_and_writes_nothing(offline_provider, monkeypatch):
    from accounts import identities
    from accounts.errors import AccountConflict

    User.objects.create(username="bob")
    first = login(offline_provider, preferred_username="alice", email="a@example.com", email_verified=True)
    before = Identity.objects.get().last_login_at
    monkeypatch.setattr(identities, "get_adapter", TakesAnotherUsersName)
    with pytest.raises(AccountConflict) as refused, transaction.atomic():  # the sign-in's, as in accounts.flow
        login(offline_provider, preferred_username="alice", email="new@example.com", email_verified=True)
    assert "collides with another account's unique field" in refused.value.reason
    identity = Identity.objects.get()
    assert (identity.email, identity.last_login_at) == ("a@example.com", before)  # rolled back together
    assert User.objects.get(pk=first.user.pk).username == "alice"
