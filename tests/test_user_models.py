"""Sign-in with custom user models, through a real server.

A user model is fixed when the database is created, so these run the site in its own process.

``tests.settings_emailuser`` (``tests.emailuser.EmailUser``: ``USERNAME_FIELD = "email"``, no
username field). The generated handle used to overwrite the verified email ("alice" stored as the
address), an unverified sign-in stored its handle as the email, and the same person arriving
through a second provider hit the unique email on every retry and was refused for good with a
generic error.

``tests.settings_extrauser`` (``tests.extrauser.ExtraUser``: a required ``display_name`` and a
required ``organisation`` foreign key, which only the project's adapter can fill). A project that
forgot to fill them used to get a NOT NULL error, retried as if it were a race, five times, then
"could not store identity after 5 attempts", which names nothing.
"""

from __future__ import annotations

import pytest
import requests

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import REQUEST_TIMEOUT, SiteProcess

ALICE = {**DEFAULT_USER, "sub": "alice-1", "email": "alice@example.com", "email_verified": True}


@pytest.fixture(scope="module")
def op():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def op2():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def site(tmp_path_factory, op, op2):
    with SiteProcess(tmp_path_factory.mktemp("emailuser"), DJANGO_SETTINGS_MODULE="tests.settings_emailuser") as site:
        for slug, double in (("test-op", op), ("second-op", op2)):
            site.add_provider(slug, double)
        yield site


def sign_in(site: SiteProcess, double, slug: str, user: dict) -> tuple[int, str | None]:
    double.next_user = user
    return site.finish_sign_in(site.start_sign_in(double, slug))


def emails(site: SiteProcess) -> list[str]:
    return [row[0] for row in site.query("SELECT email FROM emailuser_emailuser ORDER BY id")]


def test_a_verified_email_becomes_the_username_and_stays_the_email(site, op):
    assert sign_in(site, op, "test-op", ALICE) == (302, "alice@example.com"), site.log()[-2000:]
    assert emails(site) == ["alice@example.com"]
    assert sign_in(site, op, "test-op", ALICE) == (302, "alice@example.com")  # and again: same account
    assert emails(site) == ["alice@example.com"]


def test_a_sign_in_without_a_verified_email_is_refused_and_stores_nothing(site, op):
    bob = {
        **DEFAULT_USER,
        "sub": "bob-1",
        "preferred_username": "bob",
        "email": "bob@example.com",
        "email_verified": False,
    }
    status, username = sign_in(site, op, "test-op", bob)
    assert (status, username) == (403, None)
    assert (
        "code=sign_in_refused reason=the user model is keyed by email and the provider verified no email" in site.log()
    )
    assert "bob" not in " ".join(emails(site))


def test_the_same_person_through_a_second_provider_gets_a_clear_conflict_not_a_lockout(site, op, op2):
    sign_in(site, op, "test-op", ALICE)
    status, username = sign_in(site, op2, "second-op", {**ALICE, "sub": "alice-at-second"})
    assert (status, username) == (409, None)
    assert "code=account_conflict reason=a user with this verified email exists" in site.log()
    assert "after 5 attempts" not in site.log()
    assert emails(site) == ["alice@example.com"]


# --- a user model with required fields of its own -------------------------------------------------

CAROL = {**DEFAULT_USER, "sub": "carol-1", "preferred_username": "carol", "name": "Carol Kent",
         "email": "carol@example.com", "organisation": "Acme"}  # fmt: skip


def extra_site(workdir, op, op2, adapter: str):
    site = SiteProcess(workdir, DJANGO_SETTINGS_MODULE="tests.settings_extrauser", TESTS_ACCOUNTS_ADAPTER=adapter)
    site.start()
    try:
        for slug, double in (("test-op", op), ("second-op", op2)):
            site.add_provider(slug, double)
    except BaseException:
        site.stop()
        raise
    return site


@pytest.fixture(scope="module")
def filling_site(tmp_path_factory, op, op2):
    """The site with the project's adapter that fills ``display_name`` and ``organisation`` from the claims."""
    site = extra_site(tmp_path_factory.mktemp("extrauser"), op, op2, "tests.extrauser.adapter.ClaimsAdapter")
    yield site
    site.stop()


@pytest.fixture(scope="module")
def forgetful_site(tmp_path_factory, op, op2):
    """The site with an adapter that fills neither."""
    site = extra_site(tmp_path_factory.mktemp("forgetful"), op, op2, "tests.extrauser.adapter.ForgetfulAdapter")
    yield site
    site.stop()


def accounts(site: SiteProcess) -> list[tuple]:
    """(username, email, display_name, organisation) of every user, oldest first."""
    return site.query(
        "SELECT u.username, u.email, u.display_name, o.name FROM extrauser_extrauser u "
        "JOIN extrauser_organisation o ON o.id = u.organisation_id ORDER BY u.id"
    )


def callback_page(site: SiteProcess, double, slug: str, user: dict) -> requests.Response:
    """The callback's own answer (not followed), for what the person reads on a refusal."""
    double.next_user = user
    flow = site.start_sign_in(double, slug)
    return flow.browser.get(flow.callback_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)


def test_the_adapter_fills_the_required_fields_of_a_new_user(filling_site, op):
    assert sign_in(filling_site, op, "test-op", CAROL) == (302, "carol"), filling_site.log()[-2000:]
    assert accounts(filling_site) == [("carol", "carol@example.com", "Carol Kent", "Acme")]
    assert sign_in(filling_site, op, "test-op", CAROL) == (302, "carol")  # and again: the same account
    assert accounts(filling_site) == [("carol", "carol@example.com", "Carol Kent", "Acme")]


def test_the_same_person_through_a_second_provider_gets_a_complete_account_of_its_own(filling_site, op, op2):
    dan = {**CAROL, "sub": "dan-1", "preferred_username": "dan", "name": "Dan Ray", "email": "dan@example.com"}
    sign_in(filling_site, op, "test-op", dan)
    # Linking by email is off by default: a second account, filled in the same way, whose handle is
    # the readable one numbered ("dan" is taken), never the opaque subject.
    assert sign_in(filling_site, op2, "second-op", {**dan, "sub": "dan-at-second"}) == (302, "dan2")
    rows = [row for row in accounts(filling_site) if row[0].startswith("dan")]
    assert rows == [
        ("dan", "dan@example.com", "Dan Ray", "Acme"),
        ("dan2", "dan@example.com", "Dan Ray", "Acme"),
    ]
    assert filling_site.query("SELECT count(*) FROM extrauser_organisation") == [(1,)]
    assert "after 5 attempts" not in filling_site.log()


def test_an_unverified_email_is_left_out_and_the_required_fields_are_still_filled(filling_site, op):
    erin = {**CAROL, "sub": "erin-1", "preferred_username": "erin", "name": "Erin Fox",
            "email": "erin@example.com", "email_verified": False}  # fmt: skip
    assert sign_in(filling_site, op, "test-op", erin) == (302, "erin")
    assert [row for row in accounts(filling_site) if row[0] == "erin"] == [("erin", "", "Erin Fox", "Acme")]


def test_the_adapter_refuses_in_its_own_words_when_the_claims_lack_what_it_needs(filling_site, op):
    frank = {**CAROL, "sub": "frank-1", "preferred_username": "frank", "organisation": None}
    response = callback_page(filling_site, op, "test-op", frank)
    assert response.status_code == 403
    assert "Your sign-in provider did not say which organisation you belong to." in response.text
    assert "code=sign_in_refused reason=the provider sent no organisation claim" in filling_site.log()
    assert not filling_site.query("SELECT 1 FROM extrauser_extrauser WHERE username = 'frank'")


def test_a_required_field_nobody_filled_is_a_clear_refusal_that_stores_nothing(forgetful_site, op):
    response = callback_page(forgetful_site, op, "test-op", CAROL)
    assert response.status_code == 403, forgetful_site.log()[-2000:]
    assert "Your account could not be created" in response.text
    assert "we could not get from your sign-in provider, so no account was created" in response.text
    failures = [line for line in forgetful_site.log().splitlines() if "sign-in failed:" in line]
    assert len(failures) == 1 and failures[0].endswith(
        "code=account_incomplete reason=new extrauser.ExtraUser user lacks required field(s) "
        "display_name, organisation; the adapter's populate_user must fill them"
    ), failures
    assert "after 5 attempts" not in forgetful_site.log() and "Traceback" not in forgetful_site.log()
    assert forgetful_site.query("SELECT count(*) FROM extrauser_extrauser") == [(0,)]
    assert forgetful_site.query("SELECT count(*) FROM oidc_signin_identity") == [(0,)]
