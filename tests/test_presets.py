"""Presets and their documented quirks, each against a double that behaves as the provider documents."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command

from accounts.models import Identity, Provider
from accounts.oidc import github as github_style
from accounts.presets import preset_values
from tests.conftest import assert_error_page, sign_in
from tests.op_double import OpenIDProviderDouble

pytestmark = pytest.mark.django_db

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
OTHER_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def make_provider(op, preset, **fields):
    return Provider.objects.create(
        slug=preset, name=preset.title(), preset=preset, issuer=op.issuer, client_id=op.client_id,
        client_secret=op.client_secret, **fields,
    )  # fmt: skip


def refused(response, text, reason):
    """Refused by the provider's restrictions (``accounts.admission``): ``text`` shown, ``reason`` logged."""
    assert_error_page(response, 403, text, code="sign_in_refused", reason=reason)


# --- preset values ------------------------------------------------------------------------------


def test_google_preset_needs_only_client_credentials():
    values = preset_values("google")
    assert values["issuer"] == "https://accounts.google.com" and values["kind"] == "oidc"
    assert values["scopes"] == "openid email profile"


@pytest.mark.parametrize(
    ("tenant", "issuer"),
    [
        ("common", "https://login.microsoftonline.com/common/v2.0"),
        ("organizations", "https://login.microsoftonline.com/organizations/v2.0"),
        (TENANT, f"https://login.microsoftonline.com/{TENANT}/v2.0"),
    ],
)
def test_microsoft_preset_issuer_per_tenant(tenant, issuer):
    assert preset_values("microsoft", tenant=tenant)["issuer"] == issuer


def test_gitlab_preset_for_gitlab_com_and_self_managed():
    assert preset_values("gitlab")["issuer"] == "https://gitlab.com"
    assert preset_values("gitlab", base_url="https://git.example.org/")["issuer"] == "https://git.example.org"


@pytest.mark.parametrize(
    ("preset", "base_url"), [("generic", "https://idp.example"), ("google", ""), ("microsoft", ""), ("gitlab", "")]
)
def test_openid_connect_presets_call_userinfo_only_when_needed(preset, base_url):
    """Google's and GitLab's ID tokens carry email, email_verified and the profile claims; Microsoft's
    lacks email_verified, so "when needed" calls userinfo there anyway."""
    assert preset_values(preset, base_url=base_url)["userinfo"] == Provider.Userinfo.WHEN_NEEDED


def test_github_style_preset_sets_no_userinfo_choice():
    """GitHub-style providers have no ID token: their user API is always read (accounts.oidc.github)."""
    assert "userinfo" not in preset_values("github")


def test_generic_preset_needs_an_issuer():
    with pytest.raises(ValueError, match="needs a base URL"):
        preset_values("generic")


# --- Google -------------------------------------------------------------------------------------


@pytest.fixture
def google(op):
    """Google's documented quirk: iss is 'https://accounts.google.com' *or* 'accounts.google.com'."""
    op.next_user = {**op.next_user, "hd": "example.com"}
    return make_provider(op, "google")


def host_only_issuer(op):
    def mutate(header, claims):
        claims["iss"] = op.issuer.removeprefix("http://")

    return mutate


def test_google_accepts_both_issuer_spellings(client, op, google):
    assert sign_in(client, op, google).status_code == 302
    client.post("/accounts/logout/")
    op.id_token_mutator = host_only_issuer(op)
    assert sign_in(client, op, google).status_code == 302
    assert Identity.objects.count() == 1


def test_other_providers_do_not_accept_the_scheme_less_issuer(client, op):
    generic = make_provider(op, "generic")
    op.id_token_mutator = host_only_issuer(op)
    response = sign_in(client, op, generic)
    assert_error_page(response, 400, code="token_rejected", reason="ID token iss claim is not valid")
    assert SESSION_KEY not in client.session


def test_google_hosted_domain_restriction_admits_the_domain(client, op, google):
    google.allowed_hosted_domains = "example.com"
    google.save()
    assert sign_in(client, op, google).status_code == 302


def test_google_hosted_domain_restriction_refuses_other_domains(client, op, google):
    google.allowed_hosted_domains = "corp.example"
    google.save()
    response = sign_in(client, op, google)
    refused(
        response,
        "Only Google Workspace accounts of corp.example",
        "google: Google hosted domain 'example.com' not allowed",
    )
    assert SESSION_KEY not in client.session


def test_google_hosted_domain_restriction_refuses_personal_accounts(client, op, google):
    google.allowed_hosted_domains = "example.com"
    google.save()
    op.next_user = {k: v for k, v in op.next_user.items() if k != "hd"}
    refused(
        sign_in(client, op, google), "Only Google Workspace accounts", "google: Google hosted domain 'None' not allowed"
    )


def test_hosted_domain_comes_from_the_token_not_the_request_or_userinfo(client, op, google):
    google.allowed_hosted_domains = "corp.example"
    google.userinfo = Provider.Userinfo.ALWAYS  # so that userinfo really offers its hd
    google.save()
    op.userinfo_mutator = lambda info: {**info, "hd": "corp.example"}
    response = sign_in(client, op, google, hd="corp.example")
    refused(
        response,
        "Only Google Workspace accounts of corp.example",
        "google: Google hosted domain 'example.com' not allowed",
    )


# --- Microsoft ----------------------------------------------------------------------------------


@pytest.fixture
def entra():
    """Microsoft's multi-tenant endpoint: discovery issuer has {tenantid}; tokens carry their tenant."""
    with OpenIDProviderDouble(path="/common/v2.0") as double:
        double.metadata["issuer"] = double.base_url + "/{tenantid}/v2.0"
        double.next_user = {**double.next_user, "tid": TENANT}

        def tenant_issuer(header, claims):
            claims["iss"] = f"{double.base_url}/{claims['tid']}/v2.0"

        double.id_token_mutator = tenant_issuer
        yield double


def test_microsoft_multi_tenant_sign_in(client, entra):
    provider = make_provider(entra, "microsoft")
    assert sign_in(client, entra, provider).status_code == 302
    assert Identity.objects.get().issuer == f"{entra.base_url}/{TENANT}/v2.0"


def test_microsoft_token_whose_iss_names_another_tenant_than_tid_is_refused(client, entra):
    provider = make_provider(entra, "microsoft")

    def mismatch(header, claims):
        claims["iss"] = f"{entra.base_url}/{OTHER_TENANT}/v2.0"

    entra.id_token_mutator = mismatch
    response = sign_in(client, entra, provider)
    assert_error_page(response, 400, code="token_rejected", reason="ID token iss claim is not valid")
    assert SESSION_KEY not in client.session


def test_templated_issuer_is_refused_for_non_microsoft_providers(client, entra):
    provider = make_provider(entra, "generic")
    response = client.get(f"/accounts/{provider.slug}/login/")
    assert_error_page(
        response, 502,
        code="provider_misconfigured", reason=f"discovery document says issuer '{entra.base_url}/{{tenantid}}/v2.0'",
    )  # fmt: skip


def test_microsoft_tenant_restriction(client, entra):
    provider = make_provider(entra, "microsoft", allowed_tenants=OTHER_TENANT)
    refused(sign_in(client, entra, provider), "Microsoft tenant", f"microsoft: Microsoft tenant '{TENANT}' not allowed")
    provider.allowed_tenants = f"{OTHER_TENANT} {TENANT}"
    provider.save()
    assert sign_in(client, entra, provider).status_code == 302


def test_same_subject_in_two_tenants_is_two_identities(client, entra):
    provider = make_provider(entra, "microsoft")
    sign_in(client, entra, provider)
    client.post("/accounts/logout/")
    entra.next_user = {**entra.next_user, "tid": OTHER_TENANT}
    sign_in(client, entra, provider)
    assert Identity.objects.count() == 2


# --- GitLab and generic -------------------------------------------------------------------------


def test_gitlab_self_managed_from_a_base_url(client, op):
    values = preset_values("gitlab", base_url=op.issuer)
    provider = Provider.objects.create(
        slug="gitlab", name="GitLab", client_id=op.client_id, client_secret=op.client_secret, **values
    )
    assert sign_in(client, op, provider).status_code == 302


# --- allowed email domains ----------------------------------------------------------------------


def test_email_domain_restriction_uses_verified_emails_only(client, op):
    provider = make_provider(op, "generic", allowed_email_domains="example.com")
    op.next_user = {**op.next_user, "email_verified": False}
    refused(
        sign_in(client, op, provider), "verified email address at example.com",
        "generic: verified email domain 'None' not allowed",
    )  # fmt: skip
    op.next_user = {**op.next_user, "email_verified": True, "email": "mallory@evil.example"}
    refused(
        sign_in(client, op, provider), "at example.com", "generic: verified email domain 'evil.example' not allowed"
    )
    op.next_user = {**op.next_user, "email": "alice@example.com"}
    assert sign_in(client, op, provider).status_code == 302


# --- adding providers with presets --------------------------------------------------------------


def test_command_adds_google_with_only_client_credentials():
    call_command("oidc_provider", "add", "google", "--preset", "google", "--client-id", "id", "--client-secret", "s")
    provider = Provider.objects.get(slug="google")
    assert (provider.name, provider.issuer, provider.preset) == ("Google", "https://accounts.google.com", "google")


def test_command_adds_github_and_microsoft_presets():
    call_command("oidc_provider", "add", "gh", "--preset", "github", "--client-id", "id", "--client-secret", "s")
    call_command(
        "oidc_provider",
        "add",
        "ms",
        "--preset",
        "microsoft",
        "--tenant",
        "organizations",
        "--client-id",
        "id",
        "--client-secret",
        "s",
    )
    gh, ms = Provider.objects.get(slug="gh"), Provider.objects.get(slug="ms")
    assert gh.kind == "github" and gh.emails_endpoint == "https://api.github.com/user/emails"
    assert ms.issuer == "https://login.microsoftonline.com/organizations/v2.0"


def test_command_adds_any_github_style_provider_from_urls():
    call_command(
        "oidc_provider", "add", "forge", "--kind", "github", "--client-id", "id", "--client-secret", "s",
        "--authorize-url", "https://forge.example/oauth/authorize", "--token-url", "https://forge.example/oauth/token",
        "--userinfo-url", "https://api.forge.example/user", "--emails-url", "https://api.forge.example/user/emails",
    )  # fmt: skip
    forge = Provider.objects.get(slug="forge")
    assert forge.kind == "github" and forge.issuer == "https://forge.example"
    assert forge.scopes == "read:user user:email"


def add_with_preset(admin_client, preset: str) -> Provider:
    """The admin's add form as a person fills it for a preset: a name, a client id and a secret."""
    response = admin_client.post("/admin/oidc_signin/provider/add/", {
        "name": preset.title(), "slug": preset, "preset": preset, "enabled": "on", "display_order": "0",
        "issuer": "", "client_id": "cid", "client_secret": "sec", "kind": "oidc", "tenant": "common",
        "scopes": "openid email profile", "allowed_algorithms": "RS256", "extra_auth_params": "{}",
        "email_linking": "never", "profile_sync": "follow", "userinfo": "when-needed",
        # The real provider is not reachable from the suite; the check on save has its own tests.
        "skip_check": "on",
    })  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    return Provider.objects.get(slug=preset)


def test_admin_add_form_fills_a_preset(admin_client):
    google = add_with_preset(admin_client, "google")
    assert google.issuer == "https://accounts.google.com" and google.extra_auth_params == {"prompt": "select_account"}


def test_admin_form_offers_the_userinfo_choice(admin_client):
    page = admin_client.get("/admin/oidc_signin/provider/add/")
    assert "userinfo" in page.context["adminform"].form.fields
    assert 'name="userinfo"' in page.content.decode()
    response = admin_client.post("/admin/oidc_signin/provider/add/", {
        "name": "Corp", "slug": "corp", "preset": "generic", "enabled": "on", "display_order": "0",
        "issuer": "https://idp.example", "client_id": "cid", "client_secret": "sec", "kind": "oidc",
        "scopes": "openid email profile", "allowed_algorithms": "RS256", "extra_auth_params": "{}",
        "email_linking": "never", "profile_sync": "follow", "userinfo": "always", "skip_check": "on",
    })  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Provider.objects.get(slug="corp").userinfo == Provider.Userinfo.ALWAYS


def test_login_page_draws_logos_inline(client, op):
    for preset in ("google", "microsoft", "gitlab"):
        Provider.objects.create(slug=preset, name=preset.title(), preset=preset, issuer=op.issuer, client_id="x")
    page = client.get("/accounts/login/").content.decode()
    assert page.count("<svg") == 3
    assert 'src="http' not in page and 'href="http' not in page


def test_admin_add_form_fills_the_github_preset(admin_client):
    github = add_with_preset(admin_client, "github")
    assert (github.kind, github.issuer, github.scopes) == ("github", "https://github.com", "read:user user:email")
    assert github.userinfo_endpoint == "https://api.github.com/user"


def test_command_sets_a_github_callback_issuer_and_defaults_it_when_omitted():
    call_command("oidc_provider", "add", "gh", "--preset", "github", "--client-id", "id", "--client-secret", "s")
    gh = Provider.objects.get(slug="gh")
    assert gh.callback_issuer == "" and github_style.callback_issuer(gh) == "https://github.com/login/oauth"
    call_command(
        "oidc_provider", "add", "gh", "--preset", "github", "--client-id", "id", "--update",
        "--callback-issuer", "https://github.com/login/oauth2",
    )  # fmt: skip
    gh.refresh_from_db()
    assert gh.callback_issuer == "https://github.com/login/oauth2"
    assert github_style.callback_issuer(gh) == "https://github.com/login/oauth2"


def test_admin_edits_the_github_callback_issuer(admin_client):
    provider = add_with_preset(admin_client, "github")
    page = admin_client.get(f"/admin/oidc_signin/provider/{provider.pk}/change/")
    assert 'name="callback_issuer"' in page.content.decode()
    data = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if name in page.context["adminform"].form.fields and value is not None
    }
    data.update(
        extra_auth_params="{}", client_secret="", skip_check="on", enabled="on",
        callback_issuer="https://github.com/login/oauth-custom",
    )  # fmt: skip
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    provider.refresh_from_db()
    assert github_style.callback_issuer(provider) == "https://github.com/login/oauth-custom"
