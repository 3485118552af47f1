"""Verified claims -> users: issuer + subject is the key; emails link only when verified and allowed."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client

from accounts import signals
from accounts.identities import connect_identity, disconnect_identity, sign_in_identity
from accounts.models import Identity, Provider
from tests.conftest import connect, sign_in, signed_in_user

User = get_user_model()
ISSUER = "https://idp.example"


@pytest.fixture
def offline_provider(db):
    """A provider row no double answers for: these tests call the identity logic directly."""
    return Provider.objects.create(slug="idp", name="IdP", issuer=ISSUER, client_id="c", client_secret="s")


def connect_offline(provider, user, subject):
    """Connect (ISSUER, ``subject``) to ``user`` as the profile page's connect would."""
    return connect_identity(
        request=None, provider=provider, user=user, issuer=ISSUER, subject=subject, claims={"sub": subject}
    )


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


def test_the_new_identity_records_what_the_provider_said_of_its_email(offline_provider):
    first = login(offline_provider, sub="1", email="v@example.com", email_verified=True).identity
    second = login(offline_provider, sub="2", email="u@example.com", email_verified=False).identity
    stored = Identity.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
    assert [(i.email, i.email_verified) for i in stored] == [("v@example.com", True), ("u@example.com", False)]


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
    from accounts.models import DisconnectedIdentity

    user = User.objects.create_user("owner", email="owner@example.com")
    for subject in ("account-a", "account-b"):
        DisconnectedIdentity.objects.create(user=user, issuer=ISSUER, subject=subject)
    DisconnectedIdentity.objects.create(user=User.objects.create_user("other"), issuer=ISSUER, subject="account-b")
    connect_offline(offline_provider, user, "account-a")
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
    assert (
        refused.value.reason == f"updating user {first.user.pk} from idp collides with another account's unique field"
    )
    assert refused.value.message == (
        "Your profile from this provider matches another account on this site, so it was not updated."
    )
    identity = Identity.objects.get()
    assert (identity.email, identity.last_login_at) == ("a@example.com", before)  # rolled back together
    assert User.objects.get(pk=first.user.pk).username == "alice"


# --- the retry on a lost unique race, and the end of retrying -------------------------------------
# Found by mutation testing (mutmut over accounts/identities.py): only the PostgreSQL race test (second
# pass) reached the retry, so nothing failed on SQLite when the loser stopped looking again.


def lookups_that_miss_first(monkeypatch, misses: int) -> list[tuple]:
    """Identity lookups by (issuer, subject) that see no identity the first ``misses`` times.

    The race's timeline in one connection: the loser looks and finds nothing; the winner's rows
    (made by the test beforehand) "commit"; the loser's own insert then fails the unique constraint.
    """
    calls: list[tuple] = []
    real = Identity.objects.select_related

    def select_related(*fields):
        calls.append(fields)
        found = real(*fields)
        return found.none() if len(calls) <= misses else found

    monkeypatch.setattr(Identity.objects, "select_related", select_related)
    return calls


def test_a_first_sign_in_that_loses_the_race_signs_in_the_winners_user(offline_provider, monkeypatch):
    winner = login(offline_provider, sub="racer", preferred_username="racer")
    lookups = lookups_that_miss_first(monkeypatch, misses=1)
    loser = login(offline_provider, sub="racer", preferred_username="racer")
    assert (loser.user, loser.identity) == (winner.user, winner.identity)
    assert not loser.user_created and not loser.identity_created
    assert len(lookups) == 2  # looked again once, and found the winner's identity
    assert User.objects.count() == 1 and Identity.objects.count() == 1  # the loser's new user rolled back


def test_a_lost_race_announces_nothing_new(offline_provider, monkeypatch, django_capture_on_commit_callbacks):
    """The winner announced the user and identity it created; the loser only signed in to them."""
    login(offline_provider, sub="racer")
    lookups_that_miss_first(monkeypatch, misses=1)
    created, connected = [], []
    signals.user_created_from_provider.connect(lambda **kw: created.append(kw), weak=False, dispatch_uid="t3")
    signals.identity_connected.connect(lambda **kw: connected.append(kw), weak=False, dispatch_uid="t4")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            login(offline_provider, sub="racer")
    finally:
        signals.user_created_from_provider.disconnect(dispatch_uid="t3")
        signals.identity_connected.disconnect(dispatch_uid="t4")
    assert created == [] and connected == []


class TakesBobsNameAtCreation:
    """An adapter whose new user always collides with bob's unique username: no retry can succeed."""

    calls = 0

    def __getattr__(self, name):
        from accounts.adapter import DefaultAccountAdapter

        return getattr(DefaultAccountAdapter(), name)

    def update_user(self, request, user, claims, *, created):
        type(self).calls += 1
        user.username = "bob"


def test_a_first_sign_in_that_collides_on_every_attempt_is_a_conflict_after_five(offline_provider, monkeypatch):
    """Not a race lost five times, but a unique field the adapter sets to another account's value."""
    from accounts import identities
    from accounts.errors import AccountConflict

    User.objects.create(username="bob")
    TakesBobsNameAtCreation.calls = 0
    monkeypatch.setattr(identities, "get_adapter", TakesBobsNameAtCreation)
    with pytest.raises(AccountConflict) as refused:
        login(offline_provider, preferred_username="alice")
    assert (refused.value.status, refused.value.code, refused.value.reason) == (
        409,
        "account_conflict",
        "could not store identity for idp after 5 attempts: a unique field collides with another account's each time",
    )
    assert "matches another account" in str(refused.value.message)
    assert TakesBobsNameAtCreation.calls == 5
    assert list(User.objects.values_list("username", flat=True)) == ["bob"] and not Identity.objects.exists()


# --- a user model keyed by email (USERNAME_FIELD is its email field) --------------------------------
# Found by mutation testing: only tests/test_user_models.py (a site in its own process) reached these
# rules, so no in-process test failed when they changed. Here Django's User is made to name its
# username as its email field, the shape of ``tests.emailuser.EmailUser``.


@pytest.fixture
def keyed_by_email(monkeypatch):
    monkeypatch.setattr(User, "EMAIL_FIELD", "username")
    assert User.get_email_field_name() == User.USERNAME_FIELD


def test_a_verified_email_becomes_the_key_of_the_new_user(offline_provider, keyed_by_email):
    result = login(offline_provider, preferred_username="alice", email="Alice@Example.com", email_verified=True)
    assert result.user_created and User.objects.get().username == "Alice@Example.com"  # not "alice"


@pytest.mark.parametrize(
    "claims",
    [{"email": "alice@example.com", "email_verified": False}, {"email": "alice@example.com"}, {}],
    ids=["unverified", "verification missing", "no email"],
)
def test_no_verified_email_refuses_a_user_keyed_by_email(offline_provider, keyed_by_email, claims):
    from accounts.errors import SignInRefused

    with pytest.raises(SignInRefused) as refused:
        login(offline_provider, preferred_username="alice", **claims)
    assert refused.value.reason == "the user model is keyed by email and the provider verified no email address"
    assert refused.value.message == (
        "This site needs an email address your provider has verified, and it sent none. "
        "Verify your email address with the provider, or sign in another way."
    )
    assert not User.objects.exists() and not Identity.objects.exists()


def test_an_email_key_another_account_has_is_a_conflict_not_a_retry(offline_provider, keyed_by_email):
    """Linking is off: the address is someone's key already, so a second account cannot have it."""
    from accounts.errors import AccountConflict

    User.objects.create(username="ALICE@example.COM")
    with pytest.raises(AccountConflict) as refused:
        login(offline_provider, email="alice@example.com", email_verified=True)
    assert refused.value.reason == "a user with this verified email exists and the provider does not link by email"
    assert refused.value.message == (
        "An account with this email address already exists here. Sign in the way you did before, "
        "then connect this provider from your profile page."
    )
    assert User.objects.count() == 1 and not Identity.objects.exists()


# --- a new user's required fields ------------------------------------------------------------------


class ForgetsThePassword:
    """An adapter whose ``new_user`` returns a bare user: its password, required by the model, is empty."""

    def __getattr__(self, name):
        from accounts.adapter import DefaultAccountAdapter

        return getattr(DefaultAccountAdapter(), name)

    def new_user(self, request):
        return User()


def test_a_new_user_missing_a_required_field_is_refused_naming_it(offline_provider, monkeypatch):
    from accounts import identities
    from accounts.errors import AccountIncomplete

    monkeypatch.setattr(identities, "get_adapter", ForgetsThePassword)
    with pytest.raises(AccountIncomplete) as refused:
        login(offline_provider, preferred_username="alice")
    assert refused.value.reason == (
        "new auth.User user lacks required field(s) password; the adapter's populate_user must fill them"
    )
    assert not User.objects.exists() and not Identity.objects.exists()


@pytest.mark.parametrize(
    ("field", "loosened"),
    [("last_login", {"blank": False}), ("first_name", {"blank": False, "default": ""})],
    ids=["may be null", "has a default"],
)
def test_a_field_the_model_lets_stay_empty_is_not_demanded(offline_provider, monkeypatch, field, loosened):
    """A field that is not ``blank`` is required only if nothing else lets it be empty: ``null``, a default."""
    for name, value in loosened.items():
        monkeypatch.setattr(User._meta.get_field(field), name, value)
    result = login(offline_provider, preferred_username="alice")  # no given_name: first_name stays ""
    assert result.user_created and getattr(User.objects.get(), field) in (None, "")


# --- connecting loses a race; disconnect refusals speak to the person ------------------------------


def test_a_connect_that_loses_the_race_to_another_user_is_a_conflict(offline_provider, monkeypatch):
    """Bob connected this provider account a moment after Alice's lookup found it free: refused, not moved."""
    from accounts.errors import AccountConflict
    from accounts.models import DisconnectedIdentity

    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    DisconnectedIdentity.objects.create(user=alice, issuer=ISSUER, subject="shared")
    Identity.objects.create(user=bob, provider=offline_provider, issuer=ISSUER, subject="shared")
    real = Identity.objects.select_for_update
    monkeypatch.setattr(Identity.objects, "select_for_update", lambda *a, **kw: real(*a, **kw).none())
    with pytest.raises(AccountConflict) as refused:
        connect_offline(offline_provider, alice, "shared")
    assert refused.value.reason == "idp identity was connected concurrently"
    assert Identity.objects.get().user == bob
    assert DisconnectedIdentity.objects.filter(user=alice, subject="shared").exists()  # the tombstone stays


def test_disconnect_refusals_say_what_happened_in_the_persons_words(offline_provider, settings):
    from accounts.errors import SignInError, SignInRefused

    alice, bob = User.objects.create_user("alice", password="a long password"), User.objects.create_user("bob")
    bobs = Identity.objects.create(user=bob, provider=offline_provider, issuer=ISSUER, subject="bob")
    with pytest.raises(SignInError) as not_hers:
        disconnect_identity(request=None, user=alice, identity_id=bobs.pk)
    assert not_hers.value.message == "That sign-in method is not connected to your account."
    hers = Identity.objects.create(user=alice, provider=offline_provider, issuer=ISSUER, subject="alice")
    settings.ACCOUNTS_ADAPTER = "tests.test_identities.KeepsEverything"
    with pytest.raises(SignInRefused) as kept:
        disconnect_identity(request=None, user=alice, identity_id=hers.pk)
    assert kept.value.message == "This sign-in method cannot be disconnected from your account."
    assert kept.value.reason == f"adapter refused disconnecting idp identity of user {alice.pk}"
    assert Identity.objects.count() == 2


class KeepsEverything:
    def __getattr__(self, name):
        from accounts.adapter import DefaultAccountAdapter

        return getattr(DefaultAccountAdapter(), name)

    def is_disconnect_allowed(self, request, identity):
        return False


# --- a returning sign-in: what it records and what it tells the adapter ------------------------------


class RecordsCreated:
    seen: list = []

    def __getattr__(self, name):
        from accounts.adapter import DefaultAccountAdapter

        return getattr(DefaultAccountAdapter(), name)

    def update_user(self, request, user, claims, *, created):
        type(self).seen.append(created)


def test_a_returning_sign_in_records_when_and_says_nothing_was_created(offline_provider, monkeypatch):
    from accounts import identities

    RecordsCreated.seen = []
    monkeypatch.setattr(identities, "get_adapter", RecordsCreated)
    first = login(offline_provider)
    Identity.objects.update(last_login_at=first.identity.last_login_at - timedelta(days=1))
    again = login(offline_provider)
    assert (again.user_created, again.identity_created) == (False, False)
    assert RecordsCreated.seen == [True, False]  # update_user's ``created``: exactly a bool
    assert Identity.objects.get().last_login_at >= first.identity.last_login_at  # moved on from a day before


def test_connecting_lifts_the_tombstone_of_that_issuers_account_only(offline_provider):
    """The same subject at another issuer is another account, whose owner's disconnect still holds."""
    from accounts.models import DisconnectedIdentity

    user = User.objects.create_user("owner")
    for issuer in (ISSUER, "https://other.example"):
        DisconnectedIdentity.objects.create(user=user, issuer=issuer, subject="account-a")
    connect_identity(request=None, provider=offline_provider, user=user, issuer=ISSUER, subject="account-a", claims={})
    assert list(DisconnectedIdentity.objects.values_list("issuer", flat=True)) == ["https://other.example"]


def test_a_first_sign_in_announces_its_identity_with_the_callbacks_request(
    client, op, provider, django_capture_on_commit_callbacks
):
    """A receiver that logs who connected what, and from where, needs the request on the first sign-in too."""
    announced = []
    signals.identity_connected.connect(lambda **kw: announced.append(kw), weak=False, dispatch_uid="t5")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert sign_in(client, op, provider).status_code == 302
    finally:
        signals.identity_connected.disconnect(dispatch_uid="t5")
    [kw] = announced
    assert kw["request"].path == "/accounts/test-op/callback/" and kw["identity"] == Identity.objects.get()


# --- a disconnect of this very identity, by anyone, keeps it from being linked by email -----------


@pytest.mark.parametrize(
    ("owner", "issuer", "subject"),
    [("alice", "https://other.example", "s-1"), ("alice", ISSUER, "s-2")],
    ids=["the same subject at another issuer", "another subject at this issuer"],
)
def test_a_disconnect_of_another_account_does_not_stop_email_linking(linking, owner, issuer, subject):
    from accounts.models import DisconnectedIdentity

    alice = User.objects.create_user("alice", email="alice@example.com")
    User.objects.create_user("bob")
    DisconnectedIdentity.objects.create(user=User.objects.get(username=owner), issuer=issuer, subject=subject)
    result = login(linking, sub="s-1", email="alice@example.com", email_verified=True)
    assert result.user == alice and result.identity_created


@pytest.mark.parametrize("disconnected_by", ["alice", "bob"], ids=["the matched user", "any other user"])
def test_an_identity_any_user_disconnected_is_never_linked_by_email(linking, disconnected_by):
    """A disconnect says "do not trust this provider account here" -- whoever said it, linking obeys."""
    from accounts.errors import ReconnectRequired
    from accounts.models import DisconnectedIdentity

    alice = User.objects.create_user("alice", email="alice@example.com")
    User.objects.create_user("bob")
    by = User.objects.get(username=disconnected_by)
    DisconnectedIdentity.objects.create(user=by, issuer=ISSUER, subject="s-1")
    with pytest.raises(ReconnectRequired) as refused:
        login(linking, sub="s-1", email="alice@example.com", email_verified=True)
    assert refused.value.code == "identity_disconnected"
    assert refused.value.reason == f"idp identity was disconnected by user {by.pk}; not re-linking by email"
    assert not Identity.objects.exists()
    assert list(User.objects.order_by("pk").values_list("username", flat=True)) == ["alice", "bob"]
    assert alice.identities.count() == 0


def test_connecting_an_identity_removes_only_the_connecting_users_own_disconnect(linking):
    """Connecting X to B on purpose is B's word about X, never A's: A's record that A disconnected X stays."""
    from accounts.models import DisconnectedIdentity

    alice = User.objects.create_user("alice", email="alice@example.com")
    bob = User.objects.create_user("bob")
    DisconnectedIdentity.objects.create(user=alice, issuer=ISSUER, subject="s-1")
    DisconnectedIdentity.objects.create(user=bob, issuer=ISSUER, subject="s-1")
    claims = {"iss": ISSUER, "sub": "s-1", "email": "alice@example.com", "email_verified": True}
    connect_identity(request=None, provider=linking, user=bob, issuer=ISSUER, subject="s-1", claims=claims)
    assert list(DisconnectedIdentity.objects.values_list("user__username", "issuer", "subject")) == [
        ("alice", ISSUER, "s-1")
    ]


@pytest.mark.parametrize("role", ["is_staff", "is_superuser"])
def test_verified_email_linking_never_attaches_an_identity_to_staff_or_superusers(linking, role):
    """Whoever may edit providers could add one that vouches for the superuser's address: no linking to them."""
    from accounts.errors import AccountConflict

    admin = User.objects.create_user("root", email="root@example.com", **{role: True})
    with pytest.raises(AccountConflict) as refused:
        login(linking, sub="s-1", email="root@example.com", email_verified=True)
    assert refused.value.code == "account_conflict"
    assert refused.value.reason == (
        f"verified-email linking never attaches an identity from idp to staff or superuser account {admin.pk}"
    )
    assert not Identity.objects.exists() and User.objects.get() == admin


def test_staff_connect_a_provider_explicitly_while_signed_in(linking):
    staff = User.objects.create_user("root", email="root@example.com", is_staff=True, is_superuser=True)
    claims = {"iss": ISSUER, "sub": "s-1", "email": "root@example.com", "email_verified": True}
    connect_identity(request=None, provider=linking, user=staff, issuer=ISSUER, subject="s-1", claims=claims)
    assert login(linking, sub="s-1", email="root@example.com", email_verified=True).user == staff
