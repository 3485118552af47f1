"""accounts.session: Django's login() under a new key, the session written once, its cookie as Django's."""

from __future__ import annotations

import datetime
from email.utils import parsedate_to_datetime
from http.cookies import Morsel
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY, user_logged_in
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.http import HttpResponse
from django.test import Client, RequestFactory

from accounts.errors import SignInRefused
from accounts.models import ProviderSession
from tests.conftest import (
    assert_error_page,
    logout_token,
    post_logout_token,
    sign_in,
    signed_in,
    signed_in_user,
    start_login,
)

pytestmark = pytest.mark.django_db


def _anonymous_session(client, **data) -> str:
    """Give the browser an anonymous session holding ``data`` (a basket, say); returns its key."""
    session = client.session  # the test client makes, saves and sets a session when it has none
    session.update(data)
    session.save()
    assert Session.objects.filter(session_key=session.session_key).exists()
    return session.session_key


def _cookie_from_session_middleware(path: str = "/") -> Morsel:
    """The session cookie Django's SessionMiddleware sends when a request saved the session."""

    def writes_the_session(request):
        request.session["visited"] = True
        return HttpResponse()

    request = RequestFactory().get(path)
    return SessionMiddleware(writes_the_session)(request).cookies[settings.SESSION_COOKIE_NAME]


# --- session fixation -------------------------------------------------------------------------------


def test_a_session_key_planted_before_the_sign_in_is_not_signed_in(op, provider):
    """The attacker gets an anonymous session of the site, plants its cookie in the victim's browser, and waits."""
    attacker = Client()
    planted = _anonymous_session(attacker)
    victim = Client()
    victim.cookies[settings.SESSION_COOKIE_NAME] = planted
    params = op.authorize(start_login(victim, provider))
    assert victim.get(f"/accounts/{provider.slug}/callback/", params).status_code == 302

    assert signed_in(victim)
    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != planted
    assert not Session.objects.filter(session_key=planted).exists()  # the planted session is gone
    assert not signed_in(attacker)


# --- what the session keeps across the sign-in -----------------------------------------------------


def test_an_anonymous_visitors_session_data_is_kept_as_django_keeps_it(client, op, provider):
    _anonymous_session(client, basket=["a book"])
    assert sign_in(client, op, provider).status_code == 302
    assert client.session["basket"] == ["a book"] and signed_in(client)


def test_another_users_session_data_is_not_handed_to_the_next_one(client, op, provider):
    op.next_user = {**op.next_user, "sub": "first", "preferred_username": "first"}
    sign_in(client, op, provider)
    session = client.session
    session["first's draft"] = "private"
    session.save()
    op.next_user = {**op.next_user, "sub": "second", "preferred_username": "second"}
    assert sign_in(client, op, provider).status_code == 302
    assert client.session.get("first's draft") is None
    assert signed_in_user(client).username == "second"


@pytest.mark.parametrize(
    "message_storage",
    [
        "django.contrib.messages.storage.fallback.FallbackStorage",
        # Keeps the "Signed in" message in the session: written again after the sign-in's own write.
        "django.contrib.messages.storage.session.SessionStorage",
    ],
)
def test_the_previous_users_provider_logout_does_not_end_the_next_users_session(
    client, op, provider, settings, message_storage
):
    """Two people take turns on one browser: the first one's back-channel logout is not the second's."""
    settings.MESSAGE_STORAGE = message_storage
    op.next_user = {**op.next_user, "sub": "first", "preferred_username": "first", "sid": "sid-first"}
    sign_in(client, op, provider)
    op.next_user = {**op.next_user, "sub": "second", "preferred_username": "second", "sid": "sid-second"}
    sign_in(client, op, provider)
    assert post_logout_token(logout_token(op, sub="first", sid="sid-first")).status_code == 200
    assert signed_in(client)
    assert list(ProviderSession.objects.values_list("sid", flat=True)) == ["sid-second"]


def test_signing_in_again_keeps_the_sessions_earlier_provider_links(client, op, provider):
    """The same person, same browser: the session goes on under a new key, and so do its links."""
    op.next_user = {**op.next_user, "sid": "sid-1"}
    sign_in(client, op, provider)
    op.next_user = {**op.next_user, "sid": "sid-2"}
    sign_in(client, op, provider)
    key = client.session.session_key
    assert set(ProviderSession.objects.values_list("sid", "session_key")) == {("sid-1", key), ("sid-2", key)}
    assert post_logout_token(logout_token(op, sid="sid-1")).status_code == 200
    assert not signed_in(client)


# --- a sign-in refused after login() ------------------------------------------------------------


def test_a_refusal_after_login_leaves_no_signed_in_session(client, op, provider):
    """A project's user_logged_in receiver may refuse; the rollback must not leave the session signed in."""

    def refuse(**kwargs):
        raise SignInRefused("the project's receiver refused")

    user_logged_in.connect(refuse, dispatch_uid="test-refuse")
    try:
        response = sign_in(client, op, provider)
    finally:
        user_logged_in.disconnect(dispatch_uid="test-refuse")
    assert_error_page(response, 403, code="sign_in_refused", reason="the project's receiver refused")
    assert not signed_in(client)
    assert not any(SESSION_KEY in stored.get_decoded() for stored in Session.objects.all())
    assert not ProviderSession.objects.exists()


# --- the cookie is the one SessionMiddleware would send ------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"SESSION_EXPIRE_AT_BROWSER_CLOSE": True},
        {
            "SESSION_COOKIE_NAME": "site_session",
            "SESSION_COOKIE_AGE": 600,
            "SESSION_COOKIE_DOMAIN": "testserver.local",
            "SESSION_COOKIE_PATH": "/accounts/",
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_HTTPONLY": False,
            "SESSION_COOKIE_SAMESITE": "Strict",
        },
        {"SESSION_COOKIE_SAMESITE": None},
    ],
    ids=["defaults", "browser session", "every attribute changed", "no samesite"],
)
def test_the_sign_ins_session_cookie_is_the_one_session_middleware_sends(client, op, provider, settings, overrides):
    for name, value in overrides.items():
        setattr(settings, name, value)
    started = client.get(f"/accounts/{provider.slug}/login/")
    params = op.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    finished = client.get(f"/accounts/{provider.slug}/callback/", params)
    assert finished.status_code == 302
    by_middleware = _cookie_from_session_middleware("/accounts/")
    by_sign_in = finished.cookies[settings.SESSION_COOKIE_NAME]
    assert by_sign_in.value == client.session.session_key != by_middleware.value
    for attribute in ("max-age", "domain", "path", "secure", "httponly", "samesite"):
        assert by_sign_in[attribute] == by_middleware[attribute], attribute
    if by_middleware["expires"]:  # the same moment, give or take the seconds between the two
        assert abs(parsedate_to_datetime(by_sign_in["expires"]) - parsedate_to_datetime(by_middleware["expires"])) < (
            datetime.timedelta(seconds=5)
        )
    else:
        assert not by_sign_in["expires"]
    assert "Cookie" in finished["Vary"]


@pytest.mark.django_db
def test_a_new_sessions_key_that_exists_already_is_never_reused(op, provider, monkeypatch):
    """The new session is inserted with a key nobody looked up first: a taken key must not be written over.

    Another person's session row has the key the sign-in draws; the INSERT refuses it and Django
    picks another, so neither session becomes the other's.
    """
    from django.contrib.sessions.backends.db import SessionStore

    theirs = SessionStore()
    theirs["who"] = "someone else"
    theirs.create()
    taken = theirs.session_key
    monkeypatch.setattr("accounts.session.get_random_string", lambda *args: taken)
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302
    assert browser.session.session_key != taken
    assert SessionStore(session_key=taken).load() == {"who": "someone else"}
    assert SESSION_KEY in Session.objects.get(session_key=browser.session.session_key).get_decoded()
