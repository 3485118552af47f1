"""The demo stays true: another port, two tabs, a key rotation -- each as `make run` would meet it."""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import DisconnectedIdentity, Identity, Provider, ProviderSession
from devidp.models import DevUser
from tests.devidp.test_end_to_end import TIMEOUT, _assert_on_profile

User = get_user_model()
ON_8000, ON_8080 = "http://127.0.0.1:8000/devidp", "http://127.0.0.1:8080/devidp"


def setup(base_url: str) -> str:
    out = io.StringIO()
    call_command("devidp", "setup", "--base-url", base_url, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_another_port_keeps_every_local_account():
    setup("http://127.0.0.1:8000")
    provider = Provider.objects.get(slug="local")
    alice = DevUser.objects.get(email="alice@example.com")
    user = User.objects.create(username="alice")
    Identity.objects.create(user=user, provider=provider, issuer=ON_8000, subject=alice.sub)
    ProviderSession.objects.create(provider=provider, user=user, issuer=ON_8000, subject=alice.sub, session_key="k")
    DisconnectedIdentity.objects.create(user=user, issuer=ON_8000, subject="gone")  # another account, not moved

    assert "moved 1 sign-in(s) of 'local' to the issuer http://127.0.0.1:8080/devidp" in setup("http://127.0.0.1:8080")

    identity = Identity.objects.get()
    assert (identity.issuer, identity.subject, identity.user) == (ON_8080, alice.sub, user)
    assert Provider.objects.get(slug="local").issuer == ON_8080
    assert ProviderSession.objects.get().issuer == ON_8080  # back-channel logout still finds the session
    assert DisconnectedIdentity.objects.get().issuer == ON_8000
    assert "moved" not in setup("http://127.0.0.1:8080")  # nothing left to move


@pytest.mark.django_db
def test_an_account_already_at_the_new_issuer_is_left_alone_and_the_oldest_moves():
    """After the bug this fixes, Alice may have had an orphan "alice2" under 8080: no second identity is made."""
    setup("http://127.0.0.1:8000")
    provider = Provider.objects.get(slug="local")
    sub = DevUser.objects.get(email="alice@example.com").sub
    first = User.objects.create(username="alice")
    Identity.objects.create(user=first, provider=provider, issuer=ON_8000, subject=sub)
    setup("http://127.0.0.1:9000")
    assert Identity.objects.get().issuer == "http://127.0.0.1:9000/devidp"

    later = User.objects.create(username="alice2")
    Identity.objects.create(user=later, provider=provider, issuer=ON_8080, subject=sub)  # made by the old bug
    setup("http://127.0.0.1:8080")
    assert dict(Identity.objects.values_list("user__username", "issuer")) == {
        "alice": "http://127.0.0.1:9000/devidp",
        "alice2": ON_8080,
    }


def _open_sign_in_page(browser: requests.Session, live_url: str) -> tuple[str, str]:
    """One tab: from the site's sign-in link to the dev IdP's page; returns its URL and form token."""
    page = browser.get(f"{live_url}/accounts/local/login/", timeout=TIMEOUT)
    assert page.status_code == 200 and urlsplit(page.url).path == "/devidp/authorize", page.text[:500]
    return page.url, re.search(r'name="devidp_form_token" value="([^"]+)"', page.text).group(1)


def _pick(browser: requests.Session, url: str, token: str, email: str) -> requests.Response:
    user = DevUser.objects.get(email=email)
    return browser.post(url, data={"devidp_form_token": token, "user": str(user.pk)}, timeout=TIMEOUT)


@pytest.mark.django_db(transaction=True)
def test_two_tabs_signing_in_at_once_both_complete(live_server):
    """The second tab finishes first, which rotates the site's session and CSRF cookie; the first still works."""
    setup(live_server.url)
    browser = requests.Session()  # one browser: the tabs share its cookies
    first_url, first_token = _open_sign_in_page(browser, live_server.url)
    second_url, second_token = _open_sign_in_page(browser, live_server.url)

    _assert_on_profile(_pick(browser, second_url, second_token, "alice@example.com"), "Alice Example")
    csrf_after_sign_in = browser.cookies.get("csrftoken")
    _assert_on_profile(_pick(browser, first_url, first_token, "alice@example.com"), "Alice Example")

    assert csrf_after_sign_in  # the sign-in did set a new CSRF cookie, which the first tab's form never saw
    assert Identity.objects.count() == 1 and User.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_forged_post_from_another_site_is_refused(live_server):
    setup(live_server.url)
    attacker = requests.Session()
    url, token = _open_sign_in_page(attacker, live_server.url)
    victim = requests.Session()
    victim.get(f"{live_server.url}/accounts/login/", timeout=TIMEOUT)
    forged = victim.post(url, data={"devidp_form_token": token, "user": "1"}, timeout=TIMEOUT, allow_redirects=False)
    assert forged.status_code == 403 and "not sent from this browser" in forged.text
    assert not Identity.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_rotate_keys_then_at_once_a_sign_in_works(live_server):
    """The relying party refetches the key set for the new kid at once: no minute of failing sign-ins."""
    setup(live_server.url)
    browser = requests.Session()
    _assert_on_profile(_pick(browser, *_open_sign_in_page(browser, live_server.url), "alice@example.com"), "Alice")
    browser.post(
        f"{live_server.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": browser.cookies.get("csrftoken")},
        headers={"Referer": f"{live_server.url}/accounts/profile/"},
        timeout=TIMEOUT,
    )
    call_command("devidp", "rotate-keys", stdout=io.StringIO())
    _assert_on_profile(_pick(browser, *_open_sign_in_page(browser, live_server.url), "alice@example.com"), "Alice")
