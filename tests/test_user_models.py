"""Sign-in with a custom user model keyed by email (no username field), through a real server.

A user model is fixed when the database is created, so these run the site in its own process
with ``tests.settings_emailuser`` (``tests.emailuser.EmailUser``: ``USERNAME_FIELD = "email"``).
The generated handle used to overwrite the verified email ("alice" stored as the address), an
unverified sign-in stored its handle as the email, and the same person arriving through a second
provider hit the unique email on every retry and was refused for good with a generic error.
"""

from __future__ import annotations

import pytest

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import SiteProcess

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
            site.manage(
                "oidc_provider", "add", slug, "--issuer", double.issuer,
                "--client-id", double.client_id, "--client-secret", double.client_secret,
            )  # fmt: skip
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
