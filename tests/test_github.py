"""GitHub-style providers through the real views, against a double that answers as GitHub documents."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model

from accounts.models import Identity, Provider, SignInEvent
from accounts.oidc import github as github_module
from accounts.presets import preset_values
from tests.conftest import assert_error_page, assert_logout_refused, sign_in, start_login
from tests.github_double import GITHUB_COM_CALLBACK_ISS, GitHubDouble

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def gh():
    with GitHubDouble() as double:
        yield double


@pytest.fixture
def github(gh) -> Provider:
    return Provider.objects.create(
        slug="github", name="GitHub", client_id=gh.client_id, client_secret=gh.client_secret,
        **preset_values("github", base_url=gh.base_url),
    )  # fmt: skip


def test_preset_derives_every_endpoint_from_one_base_url(gh):
    values = preset_values("github", base_url=gh.base_url)
    assert values["kind"] == "github" and values["issuer"] == gh.base_url
    assert values["authorization_endpoint"] == gh.base_url + "/login/oauth/authorize"
    assert values["userinfo_endpoint"] == gh.base_url + "/api/v3/user"
    assert values["emails_endpoint"] == gh.base_url + "/api/v3/user/emails"


def test_github_com_uses_its_api_host():
    values = preset_values("github")
    assert values["token_endpoint"] == "https://github.com/login/oauth/access_token"
    assert values["userinfo_endpoint"] == "https://api.github.com/user"
    assert values["scopes"] == "read:user user:email"


@pytest.fixture
def github_com(gh) -> Provider:
    """github.com exactly as the preset stores it, its back-channel endpoints answered by the double.

    The authorization endpoint stays ``https://github.com/login/oauth/authorize`` (the test browser
    never opens it; the double plays the person who clicks "Authorize"), so the callback issuer is
    derived exactly as for a real github.com provider, and ``callback_issuer`` is left blank, as it
    is on every provider stored before the field existed.
    """
    values = preset_values("github")
    values.update(
        token_endpoint=gh.base_url + "/login/oauth/access_token",
        userinfo_endpoint=gh.base_url + "/api/v3/user",
        emails_endpoint=gh.base_url + "/api/v3/user/emails",
    )
    return Provider.objects.create(
        slug="github", name="GitHub", client_id=gh.client_id, client_secret=gh.client_secret, **values
    )


def test_github_com_callback_issuer_defaults_to_its_oauth_path():
    provider = Provider(**preset_values("github"))
    assert provider.issuer == "https://github.com" and provider.callback_issuer == ""
    assert github_module.callback_issuer(provider) == GITHUB_COM_CALLBACK_ISS


def test_enterprise_server_callback_issuer_defaults_to_its_oauth_path():
    provider = Provider(**preset_values("github", base_url="https://github.example.com"))
    assert github_module.callback_issuer(provider) == "https://github.example.com/login/oauth"


def test_an_authorization_endpoint_shaped_otherwise_keeps_the_identity_issuer():
    provider = Provider(kind="github", issuer="https://git.example", authorization_endpoint="https://git.example/oauth")
    assert github_module.callback_issuer(provider) == "https://git.example"


def test_github_com_callback_with_its_rfc9207_iss_signs_in_and_keeps_the_identity(client, github_com, gh):
    """What github.com sends since April 2026: iss=https://github.com/login/oauth; identities stay under github.com."""
    owner = User.objects.create_user("octo-before", email="octo@example.com")
    Identity.objects.create(user=owner, provider=github_com, issuer="https://github.com", subject="583231")
    gh.callback_iss = GITHUB_COM_CALLBACK_ISS
    params = gh.authorize(start_login(client, github_com))
    assert params["iss"] == "https://github.com/login/oauth"  # exactly what GitHub puts on the redirect
    response = client.get("/accounts/github/callback/", params)
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert int(client.session[SESSION_KEY]) == owner.pk  # the identity stored before the upgrade, kept
    assert list(Identity.objects.values_list("issuer", "subject")) == [("https://github.com", "583231")]


def test_github_com_callback_naming_the_identity_issuer_is_refused_as_a_mix_up(client, github_com, gh):
    """Only the callback issuer passes: ``https://github.com`` keys identities, it does not name callbacks."""
    gh.callback_iss = "https://github.com"
    assert_error_page(sign_in(client, gh, github_com), 400, code="invalid_request", reason="RFC 9207 mix-up defence")
    assert SESSION_KEY not in client.session and not Identity.objects.exists()
    assert "/login/oauth/access_token" not in gh.hits  # refused before the code is spent


@pytest.mark.parametrize(
    "iss", ["https://evil.example/login/oauth", "https://github.com/login/oauth/", "https://github.com/login"]
)
def test_github_com_callback_naming_another_issuer_is_refused_as_a_mix_up(client, github_com, gh, iss):
    gh.callback_iss = iss
    assert_error_page(
        sign_in(client, gh, github_com),
        400,
        code="invalid_request",
        reason="callback iss parameter names another issuer (RFC 9207 mix-up defence)",
    )
    assert SESSION_KEY not in client.session and "/login/oauth/access_token" not in gh.hits


def test_github_com_callback_without_iss_still_signs_in(client, github_com, gh):
    gh.callback_iss = None
    response = sign_in(client, gh, github_com)
    assert response.status_code == 302 and int(client.session[SESSION_KEY]) == User.objects.get().pk


def test_enterprise_server_callback_with_its_own_oauth_issuer_signs_in(client, github, gh):
    gh.callback_iss = gh.base_url + "/login/oauth"
    assert sign_in(client, gh, github).status_code == 302
    assert Identity.objects.get().issuer == gh.base_url


def test_a_configured_callback_issuer_replaces_the_default(client, github, gh):
    github.callback_issuer = "https://sso.github.example/oauth"
    github.full_clean()
    github.save()
    gh.callback_iss = gh.base_url + "/login/oauth"  # the default no longer passes
    assert_error_page(sign_in(client, gh, github), 400, code="invalid_request", reason="RFC 9207 mix-up defence")
    gh.callback_iss = "https://sso.github.example/oauth"
    assert sign_in(client, gh, github).status_code == 302 and SESSION_KEY in client.session


def test_authorization_request_keeps_state_and_pkce_without_nonce(client, github, gh):
    response = client.get("/accounts/github/login/")
    assert response.status_code == 302 and response["Location"].startswith(gh.base_url + "/login/oauth/authorize?")
    params = dict(parse_qsl(urlsplit(response["Location"]).query))
    assert params["code_challenge_method"] == "S256" and params["state"] and "nonce" not in params
    assert params["scope"] == "read:user user:email"


def test_sign_in_uses_the_numeric_id_and_the_primary_verified_email(client, github, gh):
    response = sign_in(client, gh, github)
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    identity = Identity.objects.get()
    assert (identity.issuer, identity.subject) == (gh.base_url, "583231")
    assert (identity.email, identity.email_verified) == ("octo@example.com", True)
    user = User.objects.get()
    assert (user.username, user.email) == ("octo", "octo@example.com")
    assert int(client.session[SESSION_KEY]) == user.pk


def test_token_response_is_requested_as_json(client, github, gh):
    """GitHub answers form-encoded unless asked: the sign-in works only because JSON is requested."""
    assert sign_in(client, gh, github).status_code == 302
    _method, _path, headers, body = next(r for r in gh.requests_log if r[1] == "/login/oauth/access_token")
    assert "application/json" in headers["Accept"]
    assert "client_secret=gh-secret" in body and "code_verifier=" in body


def test_renamed_login_keeps_the_account(client, github, gh):
    sign_in(client, gh, github)
    client.post("/accounts/logout/")
    gh.user = {**gh.user, "login": "octo-renamed"}
    sign_in(client, gh, github)
    assert User.objects.count() == 1 and Identity.objects.get().claims["preferred_username"] == "octo-renamed"


def test_reregistered_login_is_a_different_person(client, github, gh):
    """Somebody renames away from 'octo' and a stranger registers 'octo': the stranger gets a new account."""
    sign_in(client, gh, github)
    client.post("/accounts/logout/")
    gh.user = {**gh.user, "id": 999001}
    gh.emails = [{"email": "stranger@example.com", "primary": True, "verified": True}]
    sign_in(client, gh, github)
    assert User.objects.count() == 2
    assert set(Identity.objects.values_list("subject", flat=True)) == {"583231", "999001"}


def test_only_unverified_email_is_never_trusted(client, github, gh):
    github.email_linking = Provider.EmailLinking.VERIFIED
    github.save()
    victim = User.objects.create_user("victim", email="victim@example.com")
    gh.emails = [{"email": "victim@example.com", "primary": True, "verified": False}]
    assert sign_in(client, gh, github).status_code == 302
    user = User.objects.exclude(pk=victim.pk).get()
    assert user.email == "" and int(client.session[SESSION_KEY]) == user.pk
    assert Identity.objects.get().email_verified is False


def test_public_profile_email_is_ignored(client, github, gh):
    gh.user = {**gh.user, "email": "claimed@example.com"}
    gh.emails = []
    sign_in(client, gh, github)
    assert User.objects.get().email == ""


def test_verified_but_not_primary_email_is_not_used(client, github, gh):
    gh.emails = [
        {"email": "primary@example.com", "primary": True, "verified": False},
        {"email": "other@example.com", "primary": False, "verified": True},
    ]
    sign_in(client, gh, github)
    assert User.objects.get().email == ""


def test_rate_limit_is_a_friendly_error(client, github, gh):
    gh.rate_limited = True
    response = sign_in(client, gh, github)
    assert_error_page(
        response, 502, "limiting requests right now",
        code="provider_unavailable", reason="user API rate limit reached (HTTP 403)",
    )  # fmt: skip
    assert SESSION_KEY not in client.session


def test_bad_code_reported_with_http_200_is_refused(client, github, gh):
    params = start_login(client, github)
    response = client.get("/accounts/github/callback/", {"state": params["state"], "code": "forged"})
    assert_error_page(
        response, 400, "did not accept this sign-in",
        code="token_rejected", reason="token endpoint refused the code: error='bad_verification_code'",
    )  # fmt: skip


def test_user_api_without_numeric_id_is_refused(client, github, gh):
    gh.user = {"login": "octo", "id": "583231"}
    response = sign_in(client, gh, github)
    assert_error_page(response, 502, code="provider_misconfigured", reason="user API answered no numeric id")
    assert SESSION_KEY not in client.session


def test_user_api_id_too_long_for_a_subject_is_refused(client, github, gh):
    """JSON integers are unbounded: 10**300 would be a 301-character subject PostgreSQL refuses."""
    gh.user = {**gh.user, "id": 10**300}
    response = sign_in(client, gh, github)
    assert response.status_code == 502 and SESSION_KEY not in client.session
    event = SignInEvent.objects.get()
    assert (event.outcome, event.code) == ("failure", "provider_misconfigured")
    assert event.reason == "user API answered an id of 301 digits, more than the 255 a subject can hold"
    assert not Identity.objects.exists()


def test_github_sign_in_needs_no_discovery_or_keys(client, github, gh):
    sign_in(client, gh, github)
    assert set(gh.hits) == {"/login/oauth/access_token", "/api/v3/user", "/api/v3/user/emails"}


def test_logout_from_a_github_session_stays_local_without_any_provider_call(client, github, gh):
    """GitHub has no end_session_endpoint and no discovery: signing out must not go looking for one."""
    sign_in(client, gh, github)
    before = dict(gh.hits)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert dict(gh.hits) == before and SESSION_KEY not in client.session


def test_backchannel_logout_is_refused_for_github_style_providers(client, github, gh):
    response = client.post("/accounts/github/backchannel-logout/", {"logout_token": "a.b.c"})
    assert_logout_refused(
        response, 400,
        code="invalid_request", reason="github sends no logout tokens: it is not an OpenID Connect provider",
    )  # fmt: skip
    assert set(gh.hits) == set()
