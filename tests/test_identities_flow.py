"""Email linking and profile data, through the real views and a provider double (see test_identities.py
for the same rules at unit level). What a person relies on: nobody gets into their account with an
email address the provider did not verify, and their profile follows the provider only if the admin said so.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.adapter import DefaultAccountAdapter
from accounts.models import Identity, Provider
from tests.conftest import assert_error_page, call_userinfo_always, sign_in, signed_in_user

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def linking(provider) -> Provider:
    provider.email_linking = Provider.EmailLinking.VERIFIED
    provider.save()
    return provider


@pytest.fixture
def victim(db):
    """An existing account, with a password: worth taking over."""
    return User.objects.create_user("victim", email="victim@example.com", password="a long local password")


# --- linking by email -----------------------------------------------------------------------------


def test_verified_email_signs_in_to_the_existing_account_when_linking_is_on(client, op, linking, victim):
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    assert sign_in(client, op, linking).status_code == 302
    assert signed_in_user(client) == victim
    assert Identity.objects.get().user == victim and User.objects.count() == 1


@pytest.mark.parametrize("role", ["is_staff", "is_superuser"])
def test_verified_email_never_signs_in_to_a_staff_or_superuser_account(client, op, linking, victim, role):
    """Whoever may edit providers could make one vouch for an admin's address: admins connect explicitly."""
    User.objects.filter(pk=victim.pk).update(**{role: True})
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    assert_error_page(
        sign_in(client, op, linking), 409, "connect this provider from your profile page",
        code="account_conflict",
        reason=f"never attaches an identity from test-op to staff or superuser account {victim.pk}",
    )  # fmt: skip
    assert signed_in_user(client) is None and not Identity.objects.exists() and User.objects.count() == 1


def test_verified_email_gets_a_new_account_when_linking_is_off(client, op, provider, victim):
    assert provider.email_linking == "never"  # the default
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    sign_in(client, op, provider)
    assert signed_in_user(client) != victim and User.objects.count() == 2


@pytest.mark.parametrize(
    "verified",
    [False, "true", None],
    ids=["email_verified false", "email_verified a string", "email_verified missing"],
)
def test_unverified_email_never_takes_over_an_existing_account(client, op, linking, victim, verified):
    """The account-takeover attempt: the attacker registers the victim's email at a provider that
    does not verify it, then signs in here with it."""
    op.next_user = {**op.next_user, "sub": "attacker", "email": "victim@example.com", "email_verified": verified}
    if verified is None:
        del op.next_user["email_verified"]
    assert sign_in(client, op, linking).status_code == 302
    attacker = signed_in_user(client)
    assert attacker != victim and not attacker.is_staff
    assert attacker.email == ""  # an unverified address is not copied either
    assert not victim.identities.exists()
    victim.refresh_from_db()
    assert victim.email == "victim@example.com"


def test_unverified_email_in_userinfo_overrides_a_verified_id_token(client, op, linking, victim):
    """The provider's latest word wins: userinfo saying "not verified" means not verified."""
    call_userinfo_always(linking)
    op.next_user = {**op.next_user, "sub": "attacker", "email": "victim@example.com", "email_verified": True}
    op.userinfo_mutator = lambda info: {**info, "email_verified": False}
    sign_in(client, op, linking)
    assert signed_in_user(client) != victim and not victim.identities.exists()


def test_email_matching_two_accounts_links_to_neither(client, op, linking, victim):
    twin = User.objects.create_user("twin", email="victim@example.com")
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    sign_in(client, op, linking)
    assert signed_in_user(client) not in (victim, twin) and User.objects.count() == 3


def test_email_matching_nobody_creates_a_new_account(client, op, linking, victim):
    sign_in(client, op, linking)
    user = signed_in_user(client)
    assert user != victim and user.email == "alice@example.com"


def test_linking_happens_only_at_the_first_sign_in(client, op, linking, victim):
    """Once the identity exists its user is fixed: a later email change at the provider moves nothing."""
    sign_in(client, op, linking)
    alice = signed_in_user(client)
    client.post("/accounts/logout/")
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    linking.profile_sync = "keep"
    linking.save()
    sign_in(client, op, linking)
    assert signed_in_user(client) == alice


# --- profile data ---------------------------------------------------------------------------------


def sign_in_again(op, provider, **changes):
    op.next_user = {**op.next_user, **changes}
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302
    return signed_in_user(browser)


def test_profile_follows_the_provider_by_default(op, provider):
    user = sign_in_again(op, provider)
    assert provider.profile_sync == "follow"
    again = sign_in_again(op, provider, given_name="Alicia", family_name="Renamed", email="alicia@example.com")
    assert again == user
    assert (again.first_name, again.last_name, again.email) == ("Alicia", "Renamed", "alicia@example.com")


def test_kept_profile_survives_the_next_sign_in(op, provider):
    provider.profile_sync = "keep"
    provider.save()
    user = sign_in_again(op, provider)
    assert (user.first_name, user.email) == ("Alice", "alice@example.com")  # copied when created
    user.first_name, user.last_name, user.email = "Local", "Edit", "local@example.com"
    user.save()
    again = sign_in_again(op, provider, given_name="Alicia", family_name="Renamed", email="alicia@example.com")
    assert (again.first_name, again.last_name, again.email) == ("Local", "Edit", "local@example.com")


def test_unverified_email_never_overwrites_the_users_email(op, provider):
    user = sign_in_again(op, provider)
    again = sign_in_again(op, provider, email="attacker@example.com", email_verified=False, given_name="Alicia")
    assert again == user
    assert (again.email, again.first_name) == ("alice@example.com", "Alicia")
    assert Identity.objects.get().email_verified is False  # the identity records what the provider said


def test_linking_sign_in_refreshes_the_profile_when_following_the_provider(client, op, linking, victim):
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    sign_in(client, op, linking)
    assert signed_in_user(client) == victim
    victim.refresh_from_db()
    assert (victim.first_name, victim.last_name) == ("Alice", "Example")


def test_disabled_account_is_refused_and_nothing_is_linked_to_it(client, op, linking, victim):
    victim.is_active = False
    victim.save()
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    response = sign_in(client, op, linking)
    assert_error_page(response, 403, "disabled", code="sign_in_refused", reason=f"user {victim.pk} is inactive")
    assert SESSION_KEY not in client.session
    assert not Identity.objects.exists()


def test_disabled_account_cannot_sign_in_with_its_identity(client, op, provider):
    user = sign_in_again(op, provider)
    user.is_active = False
    user.save()
    response = sign_in(client, op, provider)
    assert_error_page(response, 403, code="sign_in_refused", reason=f"user {user.pk} is inactive")
    assert SESSION_KEY not in client.session


# --- a returning sign-in writes only what changed ------------------------------------------------


def user_updates_during_a_sign_in(op, provider, **changes) -> list[str]:
    """The UPDATE statements a returning sign-in sends for the user's row."""
    with CaptureQueriesContext(connection) as queries:
        sign_in_again(op, provider, **changes)
    table = get_user_model()._meta.db_table
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(f'UPDATE "{table}"')]


def test_an_unchanged_profile_is_not_written_again(op, provider):
    sign_in_again(op, provider)
    updates = user_updates_during_a_sign_in(op, provider)
    assert [sql for sql in updates if "first_name" in sql or '"email"' in sql] == []
    assert len(updates) == 1 and '"last_login"' in updates[0]  # Django's user_logged_in, nothing else


def test_a_changed_profile_writes_only_the_profile_fields(op, provider):
    """A full save would also write is_active or is_staff as loaded, undoing an admin's change in between."""
    sign_in_again(op, provider)
    updates = user_updates_during_a_sign_in(op, provider, given_name="Alicia")
    [profile] = [sql for sql in updates if "first_name" in sql]
    assert "is_active" not in profile and "is_staff" not in profile and "password" not in profile


def test_refreshing_the_identity_writes_only_its_sign_in_fields(op, provider):
    sign_in_again(op, provider)
    with CaptureQueriesContext(connection) as queries:
        sign_in_again(op, provider)
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "oidc_signin_identity"')]
    assert '"user_id"' not in update and '"provider_id"' not in update and '"last_login_at"' in update


# --- following the provider on a user model of the project's own ----------------------------------


def test_a_followed_profile_keeps_the_custom_user_models_own_fields_current(tmp_path, op):
    """``tests.extrauser.ExtraUser`` has no first or last name, and a ``display_name`` its adapter fills
    from the ``name`` claim. Following the provider used to save only first name, last name and email:
    the new display name was set on the user and then silently dropped."""
    from tests.sites import SiteProcess

    carol = {**op.next_user, "sub": "carol-1", "preferred_username": "carol", "name": "Carol Kent",
             "organisation": "Acme", "email_verified": True}  # fmt: skip
    with SiteProcess(
        tmp_path, DJANGO_SETTINGS_MODULE="tests.settings_extrauser",
        TESTS_ACCOUNTS_ADAPTER="tests.extrauser.adapter.ClaimsAdapter",
    ) as site:  # fmt: skip
        site.add_provider("test-op", op)
        for name, email in (("Carol Kent", "carol@example.com"), ("Carol Kent-Ray", "carol@ray.example")):
            op.next_user = {**carol, "name": name, "email": email}
            assert site.finish_sign_in(site.start_sign_in(op, "test-op")) == (302, "carol"), site.log()[-2000:]
        rows = site.query("SELECT username, email, display_name FROM extrauser_extrauser")
    assert rows == [("carol", "carol@ray.example", "Carol Kent-Ray")]


class RecordsPopulate(DefaultAccountAdapter):
    calls: list = []

    def populate_user(self, request, user, claims, *, email_verified):
        type(self).calls.append((request.path, email_verified))
        super().populate_user(request, user, claims, email_verified=email_verified)


def test_linking_refreshes_the_profile_with_the_request_and_the_verified_email(client, op, linking, victim, settings):
    settings.ACCOUNTS_ADAPTER = "tests.test_identities_flow.RecordsPopulate"
    RecordsPopulate.calls = []
    op.next_user = {**op.next_user, "email": "victim@example.com", "email_verified": True}
    sign_in(client, op, linking)
    assert signed_in_user(client) == victim
    assert RecordsPopulate.calls == [("/accounts/test-op/callback/", True)]
