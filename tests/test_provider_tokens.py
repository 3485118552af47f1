"""The token vault (``accounts.provider_tokens``), attacked: storage, refresh, 401 retry, revocation.

Every test runs against the OpenID provider double over real HTTP: it rotates refresh tokens and
revokes the whole grant when a spent one comes back, as Auth0, Okta, Keycloak and GitHub Apps do.
The concurrent refreshes are in ``tests/test_provider_tokens_concurrency.py``.
"""

from __future__ import annotations

import datetime
import logging

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import client_secrets, provider_tokens, signals
from accounts.errors import NoProviderToken, ProviderGrantRevoked, ProviderTokenExpired, TokenRejected
from accounts.models import Identity, Provider, ProviderToken, SignInEvent
from tests.conftest import connect, encodings, sign_in, signed_in_user, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def storing(provider) -> Provider:
    provider.store_tokens = True
    provider.save()
    return provider


@pytest.fixture
def identity(client, op, storing) -> Identity:
    """Alice signed in with tokens stored; the double issued one access and one refresh token."""
    sign_in(client, op, storing)
    return Identity.objects.select_related("provider", "user").get(subject="user-1")


def issued(op, n: int = -1) -> dict:
    return op.issued_tokens[n]


def expire(identity: Identity) -> None:
    ProviderToken.objects.filter(identity=identity).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))


def row(identity: Identity) -> ProviderToken:
    return ProviderToken.objects.get(identity=identity)


def raw_columns(identity: Identity) -> tuple[str, str]:
    """What the database itself holds, read past the ORM."""
    table = ProviderToken._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {table} WHERE identity_id = %s", [identity.pk])
        return cursor.fetchone()


# --- 1. storing, by choice, encrypted ---------------------------------------------------------------


def test_tokens_are_stored_encrypted_and_the_database_never_holds_them_in_clear(identity, op):
    access, refresh = raw_columns(identity)
    for stored, plain in ((access, issued(op)["access_token"]), (refresh, issued(op)["refresh_token"])):
        assert stored.startswith("fernet:")
        assert not any(form in stored for form in encodings(plain))
        assert client_secrets.decrypt(stored, owner="test") == plain
    stored = row(identity)
    assert stored.scopes == "openid email profile" and stored.token_type == "Bearer"
    assert stored.expires_at is not None and stored.has_refresh_token


def test_nothing_is_stored_when_store_tokens_is_off(client, op, provider):
    sign_in(client, op, provider)
    assert not ProviderToken.objects.exists()
    with pytest.raises(NoProviderToken):
        provider_tokens.access_token(signed_in_user(client), provider)


def test_the_field_refuses_to_write_a_token_that_was_not_encrypted(identity):
    stored = row(identity)
    stored.access_token = "plain-access-token"
    with pytest.raises(ValueError, match="must be stored encrypted"):
        stored.save()
    with pytest.raises(ValueError, match="must be stored encrypted"):
        ProviderToken.objects.filter(pk=stored.pk).update(refresh_token="plain-refresh-token")


def test_a_token_that_looks_encrypted_or_like_a_reference_is_still_encrypted():
    for value in ("env:HOME", "fernet:abc"):
        sealed = client_secrets.encrypt(value)
        assert sealed != value and client_secrets.decrypt(sealed, owner="t") == value


def test_connecting_stores_tokens_for_the_connected_identity(client, op, op2, storing, second):
    sign_in(client, op, storing)
    second.store_tokens = True
    second.save()
    connect(client, op2, second)
    connected = Identity.objects.get(subject="second-1")
    assert provider_tokens.access_token(identity=connected) == op2.issued_tokens[-1]["access_token"]


def test_oidc_secrets_reencrypt_moves_stored_tokens_to_the_new_key(identity, op, settings, capsys):
    from django.core.management import call_command

    before = raw_columns(identity)
    old_keys = list(settings.ACCOUNTS_CLIENT_SECRET_KEYS) if hasattr(settings, "ACCOUNTS_CLIENT_SECRET_KEYS") else []
    new_key = client_secrets.generate_key()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [new_key, *old_keys]
    call_command("oidc_secrets", "reencrypt")
    after = raw_columns(identity)
    assert after[0] != before[0] and after[1] != before[1]
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [new_key]  # the old key dropped: the tokens still decrypt
    assert provider_tokens.access_token(identity=identity) == issued(op)["access_token"]
    assert "provider tokens of 1 identit" in capsys.readouterr().out


# --- 2. one call to get a valid token -----------------------------------------------------------------


def test_a_fresh_token_is_handed_out_without_calling_the_provider(identity, op):
    assert provider_tokens.access_token(identity.user, identity.provider) == issued(op)["access_token"]
    assert provider_tokens.access_token(identity.user, "test-op") == issued(op)["access_token"]
    assert op.refresh_requests == 0


def test_an_expired_token_is_refreshed_and_the_rotated_refresh_token_stored(identity, op):
    first = issued(op)
    expire(identity)
    token = provider_tokens.access_token(identity=identity)
    assert op.refreshes == 1 and token == issued(op)["access_token"] != first["access_token"]
    stored = row(identity)
    assert client_secrets.decrypt(stored.refresh_token, owner="t") == issued(op)["refresh_token"]
    assert stored.last_refresh_at is not None and stored.expires_at > timezone.now()
    # The next expiry uses the rotated refresh token: the spent one is never presented again.
    expire(identity)
    provider_tokens.access_token(identity=identity)
    assert op.refreshes == 2 and op.reuse_detected == 0 and not op.revoked_grants


def test_a_token_expiring_within_the_margin_is_refreshed(identity, op, settings):
    settings.ACCOUNTS_PROVIDER_TOKENS_REFRESH_MARGIN = op.token_lifetime + 10
    provider_tokens.access_token(identity=identity)
    assert op.refreshes == 1


def test_the_double_revokes_the_grant_when_a_spent_refresh_token_is_reused(identity, op):
    """The attack the single-flight refresh defends against, shown on the double itself."""
    spent = issued(op)["refresh_token"]
    expire(identity)
    provider_tokens.access_token(identity=identity)
    client = provider_tokens.get_adapter().get_client(identity.provider)
    with pytest.raises(ProviderGrantRevoked):
        client.refresh(refresh_token=spent, issuer=identity.issuer, subject=identity.subject)
    assert op.reuse_detected == 1 and op.grant_of(spent) in op.revoked_grants


def test_a_refresh_whose_id_token_changes_sub_is_refused_and_the_tokens_are_not_used_again(identity, op):
    expire(identity)

    def other_person(header, claims):
        return header, {**claims, "sub": "mallory"}

    op.id_token_mutator = other_person
    with pytest.raises(TokenRejected, match="sub differs"):
        provider_tokens.access_token(identity=identity)
    stored = row(identity)
    assert stored.revoked_at is not None and "sub differs" in stored.last_error
    # Not stored: the access token the answer carried is not handed out.
    assert client_secrets.decrypt(stored.access_token, owner="t") != issued(op)["access_token"]
    with pytest.raises(ProviderGrantRevoked):
        provider_tokens.access_token(identity=identity)
    assert op.refreshes == 1


def test_a_refresh_whose_id_token_is_for_another_audience_is_refused(identity, op):
    expire(identity)
    op.id_token_mutator = lambda header, claims: (header, {**claims, "aud": "someone-else"})
    with pytest.raises(TokenRejected, match="aud"):
        provider_tokens.access_token(identity=identity)


def test_a_refresh_whose_id_token_is_from_another_issuer_is_refused(identity, op):
    expire(identity)
    op.id_token_mutator = lambda header, claims: (header, {**claims, "iss": "https://evil.example"})
    with pytest.raises(TokenRejected, match="iss"):
        provider_tokens.access_token(identity=identity)


def test_a_refresh_whose_id_token_iss_is_not_the_identity_s_issuer_is_refused(identity, op):
    """An admin moved the provider to another issuer: its tokens may not speak for the old identities."""
    Identity.objects.filter(pk=identity.pk).update(issuer="https://old-issuer.example")
    identity.refresh_from_db()
    expire(identity)
    with pytest.raises(TokenRejected, match="iss differs from the identity's issuer"):
        provider_tokens.access_token(identity=identity)


def test_a_refresh_whose_id_token_signature_is_forged_is_refused(identity, op):
    expire(identity)
    op.id_token_override = lambda token, claims, header: token[:-8] + ("A" * 8 if token[-8:] != "A" * 8 else "B" * 8)
    with pytest.raises(TokenRejected, match="signature"):
        provider_tokens.access_token(identity=identity)


def test_an_expired_token_without_a_refresh_token_asks_for_a_reconnect(client, op, storing):
    op.issue_refresh_tokens = False
    sign_in(client, op, storing)
    identity = Identity.objects.get(subject="user-1")
    expire(identity)
    with pytest.raises(ProviderTokenExpired) as raised:
        provider_tokens.access_token(identity=identity)
    assert raised.value.reconnect_url == "/accounts/test-op/reconnect/"


def test_a_provider_that_is_down_leaves_the_tokens_usable_for_a_retry(identity, op):
    expire(identity)
    op.faults["/token"] = {"status": 503, "body": "down"}
    with pytest.raises(provider_tokens.SignInError) as raised:
        provider_tokens.access_token(identity=identity)
    assert raised.value.code == "provider_unavailable"
    assert row(identity).revoked_at is None
    del op.faults["/token"]
    assert provider_tokens.access_token(identity=identity) == issued(op)["access_token"]


# --- 4. when the grant is gone ---------------------------------------------------------------------


def test_invalid_grant_marks_the_tokens_revoked_sends_the_signal_and_offers_a_reconnect(
    identity, op, django_capture_on_commit_callbacks
):
    received = []
    signals.provider_tokens_revoked.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        op.revoked_grants.add(op.grant_of(issued(op)["refresh_token"]))
        expire(identity)
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(ProviderGrantRevoked) as raised:
            provider_tokens.access_token(identity=identity)
    finally:
        signals.provider_tokens_revoked.disconnect(dispatch_uid="t")
    assert raised.value.code == "provider_grant_revoked" and "invalid_grant" in raised.value.reason
    assert raised.value.reconnect_url == "/accounts/test-op/reconnect/"
    assert row(identity).revoked_at is not None
    assert [(r["identity"], r["user"]) for r in received] == [(identity, identity.user)]
    event = SignInEvent.objects.latest("pk")
    assert (event.action, event.outcome, event.code) == ("token-refresh", "failure", "provider_grant_revoked")


def test_the_reconnect_page_asks_first_and_its_post_asks_for_consent_and_the_extra_scopes(client, identity, op):
    url = provider_tokens.reconnect_url(identity, ["calendar.read"])
    page = client.get(url)
    assert page.status_code == 200 and b"calendar.read" in page.content
    response = client.post("/accounts/test-op/reconnect/", {"scope": 'calendar.read bad"scope'})
    assert response.status_code == 302
    location = response["Location"]
    assert "prompt=consent" in location and "calendar.read" in location and "bad" not in location
    # The person consents; the grant is stored again and the scopes merged.
    op.next_user = {**op.next_user}
    from urllib.parse import parse_qsl, urlsplit

    callback = client.get("/accounts/test-op/callback/", op.authorize(dict(parse_qsl(urlsplit(location).query))))
    assert callback.status_code == 302
    assert "calendar.read" in row(identity).scope_list and "openid" in row(identity).scope_list


def test_the_reconnect_url_asks_again_for_the_extra_scopes_granted_before(identity, op):
    ProviderToken.objects.filter(identity=identity).update(scopes="openid email profile calendar.read")
    op.revoked_grants.add(op.grant_of(issued(op)["refresh_token"]))
    expire(identity)
    with pytest.raises(ProviderGrantRevoked) as raised:
        provider_tokens.access_token(identity=identity)
    assert raised.value.reconnect_url == "/accounts/test-op/reconnect/?scope=calendar.read"
    with pytest.raises(ProviderGrantRevoked) as again:
        provider_tokens.access_token(identity=identity)
    assert again.value.reconnect_url == "/accounts/test-op/reconnect/?scope=calendar.read"


def test_reconnecting_clears_the_revoked_mark(client, identity, op):
    ProviderToken.objects.filter(identity=identity).update(revoked_at=timezone.now())
    from urllib.parse import parse_qsl, urlsplit

    location = client.post("/accounts/test-op/reconnect/")["Location"]
    client.get("/accounts/test-op/callback/", op.authorize(dict(parse_qsl(urlsplit(location).query))))
    assert row(identity).revoked_at is None
    assert provider_tokens.access_token(identity=identity) == issued(op)["access_token"]


# --- 3. calling the provider's API -------------------------------------------------------------------


def test_the_auth_helper_sends_the_bearer_token(identity, op):
    response = provider_tokens.api_session(identity).get(op.issuer + "/userinfo")
    assert response.status_code == 200 and response.json()["sub"] == "user-1"
    assert op.refresh_requests == 0


def test_a_401_triggers_one_refresh_and_one_retry(identity, op):
    op._access_tokens.clear()  # the provider forgot the access token before it expired
    response = provider_tokens.api_session(identity).get(op.issuer + "/userinfo")
    assert response.status_code == 200
    assert op.refreshes == 1 and op.hits["/userinfo"] == 2
    assert [r.status_code for r in response.history] == [401]


def test_a_second_401_is_returned_not_retried_again(identity, op):
    op.faults["/userinfo"] = {"status": 401, "body": "{}"}
    response = provider_tokens.api_session(identity).get(op.issuer + "/userinfo")
    assert response.status_code == 401
    assert op.refreshes == 1 and op.hits["/userinfo"] == 2


def test_a_non_idempotent_request_is_not_sent_twice(identity, op):
    op.faults["/userinfo"] = {"status": 401, "body": "{}"}
    response = provider_tokens.api_session(identity).post(op.issuer + "/userinfo", data={"x": "1"})
    assert response.status_code == 401
    assert op.refreshes == 0 and op.hits["/userinfo"] == 1


def test_the_auth_helper_never_sends_the_token_over_plain_http_to_another_host(identity, settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    with pytest.raises(provider_tokens.SignInError, match="http://"):
        provider_tokens.api_session(identity).get("http://api.example.com/user")


def test_call_with_token_refreshes_once_on_a_401(identity, op):
    calls = []

    def call(token):
        calls.append(token)
        client = provider_tokens.get_adapter().get_client(identity.provider)
        return client.fetch_userinfo(access_token=token)

    op._access_tokens.clear()
    assert provider_tokens.call_with_token(identity, call)["sub"] == "user-1"
    assert len(calls) == 2 and calls[0] != calls[1] and op.refreshes == 1


# --- 6. revocation --------------------------------------------------------------------------------


def test_disconnecting_revokes_the_grant_at_the_provider_and_deletes_the_tokens(
    client, identity, op, op2, second, django_capture_on_commit_callbacks
):
    connect(client, op2, second)  # a second way in, so the first can be disconnected
    refresh_token = issued(op, 0)["refresh_token"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/accounts/identities/{identity.pk}/disconnect/")
    assert response.status_code == 302
    assert not ProviderToken.objects.filter(identity_id=identity.pk).exists()
    assert op.revocations == [{"token_type_hint": "refresh_token", "known": True}]
    assert op.grant_of(refresh_token) in op.revoked_grants
    event = SignInEvent.objects.filter(action="tokens-revoked").get()
    assert event.outcome == "success" and "revoked at the provider" in event.reason


@pytest.mark.django_db(transaction=True)
def test_deleting_the_user_revokes_the_grant(identity, op):
    """Committed for real: the audit row must not point at the user being deleted (a foreign key error)."""
    identity.user.delete()
    assert op.revocations == [{"token_type_hint": "refresh_token", "known": True}]
    event = SignInEvent.objects.get(action="tokens-revoked", outcome="success")
    assert event.user is None and event.subject == "user-1"
    assert not ProviderToken.objects.exists()


def test_revocation_is_best_effort_the_tokens_go_even_if_the_provider_is_down(identity, op, caplog):
    op.faults["/revoke"] = {"status": 503, "body": "down"}
    with caplog.at_level(logging.WARNING, logger="accounts.provider_tokens"):
        assert provider_tokens.revoke(identity) is False
    assert not ProviderToken.objects.exists()
    event = SignInEvent.objects.get(action="tokens-revoked")
    assert event.outcome == "failure" and "revocation at the provider failed" in event.reason
    assert "provider token revocation failed" in caplog.text


def test_manage_py_oidc_tokens_revoke_reaches_the_revocation_endpoint(identity, op, capsys):
    from django.core.management import call_command

    call_command("oidc_tokens", "status")
    status = capsys.readouterr().out
    assert "test-op" in status and "refresh=yes" in status
    assert issued(op)["access_token"] not in status and issued(op)["refresh_token"] not in status
    call_command("oidc_tokens", "revoke", "--provider", "test-op")
    assert "1 revocation(s) confirmed" in capsys.readouterr().out
    assert op.hits["/revoke"] == 1 and not ProviderToken.objects.exists()


def test_manage_py_oidc_tokens_revoke_needs_a_selection(identity):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--all"):
        call_command("oidc_tokens", "revoke")
    assert ProviderToken.objects.exists()


# --- never rendered, never logged --------------------------------------------------------------------


def test_the_admin_shows_the_status_and_never_a_token(identity, op, django_user_model):
    admin = staff_client(django_user_model, "view_providertoken")
    stored = row(identity)
    pages = [
        admin.get("/admin/oidc_signin/providertoken/"),
        admin.get(f"/admin/oidc_signin/providertoken/{stored.pk}/change/"),
    ]
    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        for secret in (issued(op)["access_token"], issued(op)["refresh_token"], stored.access_token):
            assert not any(form in body for form in encodings(secret))
    assert "openid email profile" in pages[1].content.decode()


def test_the_admin_refuses_to_filter_on_a_token(identity, django_user_model, caplog):
    from tests.conftest import assert_guess_refused_alike

    admin = staff_client(django_user_model, "view_providertoken")
    stored = row(identity)
    assert_guess_refused_alike(
        admin, caplog, "/admin/oidc_signin/providertoken/", "access_token__startswith", stored.access_token[:12], "x"
    )


def test_a_refresh_failure_is_logged_without_a_token(identity, op, caplog):
    expire(identity)
    op.faults["/token"] = {"status": 500, "body": issued(op)["refresh_token"]}
    with caplog.at_level(logging.DEBUG), pytest.raises(provider_tokens.SignInError):
        provider_tokens.access_token(identity=identity)
    for secret in (issued(op)["access_token"], issued(op)["refresh_token"]):
        assert secret not in caplog.text
    assert "provider token refresh failed" in caplog.text


# --- 7. the profile's "Update from <provider>" ---------------------------------------------------------


def test_update_from_provider_reads_userinfo_with_the_stored_token_and_updates_the_profile(client, identity, op):
    op.next_user = {**op.next_user, "given_name": "Alicia"}
    op._access_tokens[next(iter(op._access_tokens))].user["given_name"] = "Alicia"
    expire(identity)  # refreshed on the way
    response = client.post("/accounts/test-op/refresh-profile/")
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    identity.user.refresh_from_db()
    assert identity.user.first_name == "Alicia" and op.refreshes == 1
    page = client.get("/accounts/profile/").content.decode()
    assert "Update from Test OP" in page and "renewable" in page
    for secret in (issued(op)["access_token"], issued(op)["refresh_token"]):
        assert secret not in page


def test_update_from_provider_is_post_only_csrf_protected_and_for_signed_in_people(identity, op):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(identity.user)
    assert browser.post("/accounts/test-op/refresh-profile/").status_code == 403  # no CSRF token
    assert browser.get("/accounts/test-op/refresh-profile/").status_code == 405
    anonymous = Client().post("/accounts/test-op/refresh-profile/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert op.hits["/userinfo"] == 0


def test_update_from_provider_refuses_an_answer_about_someone_else(client, identity, op):
    op.userinfo_mutator = lambda info: {**info, "sub": "mallory"}
    response = client.post("/accounts/test-op/refresh-profile/")
    assert response.status_code == 302
    identity.refresh_from_db()
    assert identity.claims.get("sub", "user-1") == "user-1"
    assert "Could not update" in client.get("/accounts/profile/").content.decode()


def test_update_from_provider_with_a_revoked_grant_goes_to_the_reconnect_page(client, identity, op):
    op.revoked_grants.add(op.grant_of(issued(op)["refresh_token"]))
    expire(identity)
    response = client.post("/accounts/test-op/refresh-profile/")
    assert response.status_code == 302 and response["Location"] == "/accounts/test-op/reconnect/"


# --- GitHub: OAuth App tokens never expire, GitHub App tokens expire after 8 h and refresh ----------------


@pytest.fixture
def gh():
    from tests.github_double import GitHubDouble

    with GitHubDouble() as double:
        yield double


@pytest.fixture
def github(gh) -> Provider:
    from accounts.presets import preset_values

    return Provider.objects.create(
        slug="gh", name="GitHub", client_id=gh.client_id, client_secret=gh.client_secret, store_tokens=True,
        **preset_values("github", base_url=gh.base_url),
    )  # fmt: skip


def test_a_github_oauth_app_token_never_expires_and_is_never_refreshed(client, gh, github):
    sign_in(client, gh, github)
    stored = ProviderToken.objects.get()
    assert stored.expires_at is None and not stored.has_refresh_token
    assert provider_tokens.access_token(signed_in_user(client), github).startswith("gho_")
    assert gh.refreshes == 0


def test_a_github_app_token_is_refreshed_after_eight_hours_with_its_rotated_refresh_token(client, gh, github):
    gh.github_app = True
    sign_in(client, gh, github)
    identity = Identity.objects.get(provider=github)
    stored = row(identity)
    assert stored.has_refresh_token
    assert 28700 < (stored.expires_at - timezone.now()).total_seconds() <= 28800
    expire(identity)
    token = provider_tokens.access_token(identity=identity)
    assert token.startswith("ghu_") and gh.refreshes == 1
    expire(identity)
    provider_tokens.access_token(identity=identity)
    assert gh.refreshes == 2 and gh.reuse_detected == 0


def test_github_s_bad_refresh_token_answer_marks_the_tokens_revoked(client, gh, github):
    gh.github_app = True
    sign_in(client, gh, github)
    identity = Identity.objects.get(provider=github)
    gh._refresh_tokens.clear()
    expire(identity)
    with pytest.raises(ProviderGrantRevoked, match="bad_refresh_token"):
        provider_tokens.access_token(identity=identity)
    assert row(identity).revoked_at is not None


def test_revoking_a_github_identity_deletes_the_app_s_grant(client, gh, github):
    sign_in(client, gh, github)
    identity = Identity.objects.get(provider=github)
    token = provider_tokens.access_token(identity=identity)
    assert provider_tokens.revoke(identity) is True
    assert gh.deleted_grants == [token] and not ProviderToken.objects.exists()


def test_update_from_github_reads_the_user_api_with_the_stored_token(client, gh, github):
    sign_in(client, gh, github)
    gh.user = {**gh.user, "name": "Octo Renamed"}
    assert client.post("/accounts/gh/refresh-profile/")["Location"] == "/accounts/profile/"
    assert Identity.objects.get(provider=github).claims["name"] == "Octo Renamed"


# --- 5. asking for more, and the presets' refresh-token quirks ---------------------------------------------


def authorization_params_for(preset: str, *, store_tokens: bool) -> dict[str, str]:
    from accounts.oidc.clients import OpenIDConnectClient, PendingLogin
    from accounts.presets import preset_values, quirks_for

    provider = Provider(slug="p", name="P", client_id="c", store_tokens=store_tokens, **preset_values(preset))
    metadata = {"authorization_endpoint": "https://idp.example/authorize"}
    client = OpenIDConnectClient(provider, metadata=metadata, quirks=quirks_for(preset))
    pending = PendingLogin("p", "s", "n", "v" * 43, "https://site/cb", "/", 0.0)
    return client.authorization_params(pending)


def test_google_asks_for_offline_access_and_consent_only_when_tokens_are_stored():
    params = authorization_params_for("google", store_tokens=True)
    assert (params["access_type"], params["prompt"], params["include_granted_scopes"]) == ("offline", "consent", "true")
    plain = authorization_params_for("google", store_tokens=False)
    assert "access_type" not in plain and plain["prompt"] == "select_account"


def test_microsoft_asks_for_the_offline_access_scope_when_tokens_are_stored():
    assert "offline_access" in authorization_params_for("microsoft", store_tokens=True)["scope"].split()
    assert "offline_access" not in authorization_params_for("microsoft", store_tokens=False)["scope"].split()


def test_the_reconnect_template_tag_builds_the_incremental_authorization_url():
    from django.template import engines

    html = (
        engines["django"]
        .from_string(
            '{% load oidc_signin %}{% oidc_reconnect_url "google" scope="https://www.googleapis.com/auth/calendar" %}'
        )
        .render({})
    )
    assert html == "/accounts/google/reconnect/?scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcalendar"


def test_an_error_report_from_inside_a_refresh_masks_every_token(identity, op, monkeypatch):
    """Django's 500 report lists each frame's local variables: the vault's are marked sensitive."""
    import sys

    from django.views.debug import ExceptionReporter

    expire(identity)
    before = issued(op)

    def disk_full(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ProviderToken, "save", disk_full)
    with pytest.raises(RuntimeError):
        try:
            provider_tokens.access_token(identity=identity)
        except RuntimeError:
            frames = ExceptionReporter(None, *sys.exc_info()).get_traceback_data()["frames"]
            raise
    # The app's frames (this test's own locals hold the tokens it compares with).
    report = "\n".join(f"{f['function']}: {f['vars']}" for f in frames if "/accounts/" in f["filename"])
    after = issued(op)
    assert op.refreshes == 1 and "('old_refresh', \"'********************'\")" in report
    for secret in (before["access_token"], before["refresh_token"], after["access_token"], after["refresh_token"]):
        leaked = [line[:300] for line in report.splitlines() if any(form in line for form in encodings(secret))]
        assert not leaked, leaked


# --- configuration ------------------------------------------------------------------------------------


def test_storing_tokens_without_a_key_is_refused_by_the_admin_form_the_check_and_the_sign_in(
    client, op, storing, settings, monkeypatch
):
    from django.core.exceptions import ValidationError

    from accounts.checks import check_stored_provider_tokens
    from tests.conftest import assert_error_page

    assert check_stored_provider_tokens(None, databases=["default"]) == []
    secret = storing.reveal_client_secret()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []
    storing.client_secret = "env:OIDC_SECRET_TEST_OP"  # readable without a key, so only the tokens need one
    with pytest.raises(ValidationError) as raised:
        storing.full_clean()
    assert "store_tokens" in raised.value.message_dict
    Provider.objects.filter(pk=storing.pk).update(client_secret="env:OIDC_SECRET_TEST_OP")
    assert [m.id for m in check_stored_provider_tokens(None, databases=["default"])] == ["oidc_signin.E021"]
    monkeypatch.setenv("OIDC_SECRET_TEST_OP", secret)  # under the default ACCOUNTS_CLIENT_SECRET_ENV_PREFIX
    response = sign_in(client, op, Provider.objects.get(pk=storing.pk))
    assert_error_page(response, 503, code="client_secret_unavailable", reason="ACCOUNTS_CLIENT_SECRET_KEYS is not set")
    assert not ProviderToken.objects.exists() and not Identity.objects.exists()


def test_a_failed_update_from_provider_is_logged_once_with_its_rule(client, identity, op, caplog):
    op.userinfo_mutator = lambda info: {**info, "sub": "mallory\nforged line"}
    with caplog.at_level(logging.WARNING, logger="accounts.views"):
        client.post("/accounts/test-op/refresh-profile/")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "accounts.views"]
    assert line == (
        "profile update failed: provider=test-op code=token_rejected "
        "reason=test-op profile answer is about another subject"
    )
