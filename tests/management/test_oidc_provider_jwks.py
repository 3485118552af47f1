"""``oidc_provider add --jwks-uri``: an issuer known by its JWKS URL alone, for bearer access tokens."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Provider
from tests.op_double import DISCOVERY_PATH

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("oidc_provider", *args, stdout=out)
    return out.getvalue()


def add_token_issuer(op, *extra: str) -> str:
    return run("add", "m2m", "--issuer", op.issuer, "--jwks-uri", op.issuer + "/jwks", "--client-id", "proj", *extra)


def test_jwks_uri_adds_a_token_issuer(op):
    output = add_token_issuer(op)
    provider = Provider.objects.get(slug="m2m")
    assert (provider.kind, provider.issuer, provider.jwks_uri) == (
        Provider.Kind.TOKEN_ISSUER,
        op.issuer,
        op.issuer + "/jwks",
    )
    assert provider.enabled
    assert "Added provider 'm2m'" in output


def test_a_token_issuer_without_jwks_uri_takes_its_keys_from_discovery(op):
    """Issue 20.5: ``--issuer`` alone: the issuer's discovery document names the keys."""
    op.metadata = {"issuer": op.issuer, "jwks_uri": op.issuer + "/jwks"}  # no endpoints, as GitHub Actions
    run("add", "actions", "--issuer", op.issuer, "--token-profile", "github-actions", "--allowed-callers", "a/*")
    provider = Provider.objects.get(slug="actions")
    assert (provider.kind, provider.jwks_uri, provider.token_profile) == ("token-issuer", "", "github-actions")
    assert "kid='rsa-1'" in run("check", "actions")
    assert op.hits[DISCOVERY_PATH] >= 1


def test_a_token_issuer_without_jwks_uri_needs_a_url_issuer(op):
    with pytest.raises(CommandError, match="issuer: Enter a valid URL"):
        run("add", "m2m", "--kind", "token-issuer", "--issuer", "stytch.com/project-test-1", "--client-id", "proj")


# --- issue 20: presets, profiles and per-provider policy ----------------------------------------------

PROJECT = "project-test-11111111-2222-3333-4444-555555555555"


def test_the_stytch_preset_registers_the_project(op):
    run("add", "stytch", "--preset", "stytch", "--project-id", PROJECT)
    provider = Provider.objects.get(slug="stytch")
    assert provider.issuer == f"stytch.com/{PROJECT}"  # not a URL, stored exactly
    assert provider.jwks_uri == f"https://test.stytch.com/v1/sessions/jwks/{PROJECT}"
    assert (provider.token_profile, provider.token_audience, provider.kind) == ("stytch", PROJECT, "token-issuer")


def test_the_stytch_preset_knows_live_projects_and_refuses_other_ids(op):
    live = PROJECT.replace("-test-", "-live-")
    run("add", "stytch", "--preset", "stytch", "--project-id", live)
    assert Provider.objects.get(slug="stytch").jwks_uri == f"https://api.stytch.com/v1/sessions/jwks/{live}"
    with pytest.raises(CommandError, match="project-test- or project-live-"):
        run("add", "other", "--preset", "stytch", "--project-id", "acme")
    with pytest.raises(CommandError, match="needs a project id"):
        run("add", "other", "--preset", "stytch")


def test_jwks_uri_overrides_the_stytch_key_set(op):
    run("add", "stytch", "--preset", "stytch", "--project-id", PROJECT, "--jwks-uri", op.issuer + "/jwks")
    assert Provider.objects.get(slug="stytch").jwks_uri == op.issuer + "/jwks"


def test_any_token_issuer_with_issuer_jwks_uri_and_token_profile(op):
    run(
        "add", "cognito", "--issuer", "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Ex",
        "--jwks-uri", op.issuer + "/jwks", "--token-profile", "cognito", "--allowed-clients", "a1,b2",
    )  # fmt: skip
    provider = Provider.objects.get(slug="cognito")
    assert (provider.kind, provider.token_profile, provider.client_list) == ("token-issuer", "cognito", ["a1", "b2"])


def test_policy_options_are_stored(op):
    run(
        "add", "entra", "--preset", "entra", "--allowed-tenants", "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "--audience", "api://reports",
    )  # fmt: skip
    provider = Provider.objects.get(slug="entra")
    assert provider.issuer == "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert provider.jwks_uri == "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    assert (provider.tenants, provider.token_audience) == (["72f988bf-86f1-41af-91ab-2d7cd011db47"], "api://reports")
    run(
        "add", "gsa", "--preset", "google-service", "--audience", "https://hooks.example.test/",
        "--allowed-callers", "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
    )  # fmt: skip
    google = Provider.objects.get(slug="gsa")
    assert google.issuer == "https://accounts.google.com" and google.token_profile == "google-service"
    assert google.caller_list == ["a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com"]
    run("add", "gha", "--preset", "github-actions", "--allowed-callers", "octo-org/*@refs/heads/main")
    actions = Provider.objects.get(slug="gha")
    assert (actions.issuer, actions.jwks_uri) == ("https://token.actions.githubusercontent.com", "")


def test_a_multi_tenant_entra_issuer_needs_its_tenants(op):
    with pytest.raises(CommandError, match="allowed_tenants"):
        run("add", "entra", "--preset", "entra")


def test_workload_profiles_need_their_callers(op):
    with pytest.raises(CommandError, match="allowed_callers"):
        run("add", "gha", "--preset", "github-actions")


def test_a_profile_that_does_not_fit_the_kind_is_refused(op):
    with pytest.raises(CommandError, match="token_profile"):
        run("add", "x", "--issuer", op.issuer, "--client-id", "c", "--kind", "oidc", "--token-profile", "stytch")


def test_a_sign_in_provider_still_needs_its_client_id(op):
    with pytest.raises(CommandError, match="--client-id"):
        run("add", "x", "--issuer", op.issuer)


def test_the_jwks_uri_must_be_a_url(op):
    with pytest.raises(CommandError, match="jwks_uri"):
        run("add", "m2m", "--issuer", op.issuer, "--jwks-uri", "not a url", "--client-id", "proj")


def test_check_of_a_token_issuer_fetches_its_keys_and_no_discovery(op):
    op.faults[DISCOVERY_PATH] = {"status": 404, "body": "none"}
    add_token_issuer(op)
    output = run("check", "m2m")
    assert "kid='rsa-1' kty=RSA" in output
    assert op.hits[DISCOVERY_PATH] == 0


def test_refresh_of_a_token_issuer_fetches_its_keys_again(op):
    add_token_issuer(op)
    run("check", "m2m")
    run("refresh", "m2m")
    assert op.hits["/jwks"] == 2
