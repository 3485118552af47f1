"""``oidc_provider add --credential-endpoint --app-client-ids a,b``: both endpoints off unless asked."""

from __future__ import annotations

import pytest

from accounts.models import Provider
from accounts.no_redirect import Endpoint, is_enabled
from tests.management.test_oidc_provider import run

pytestmark = pytest.mark.django_db


def test_both_endpoints_are_off_by_default(op):
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid")
    provider = Provider.objects.get(slug="corp")
    assert not is_enabled(provider, Endpoint.CREDENTIAL)
    assert not is_enabled(provider, Endpoint.APP)


def test_add_turns_on_the_credential_endpoint_and_lists_app_client_ids(op):
    run(
        "add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--credential-endpoint",
        "--app-client-ids", "ios-app, android-app", "--app-redirect-uris", "com.example:/cb",
    )  # fmt: skip
    provider = Provider.objects.get(slug="corp")
    assert is_enabled(provider, Endpoint.CREDENTIAL) and is_enabled(provider, Endpoint.APP)
    assert provider.app_client_id_list == ["ios-app", "android-app"]
    assert provider.app_redirect_uri_list == ["com.example:/cb"]


def test_update_without_the_options_keeps_them_and_an_empty_list_turns_the_app_endpoint_off(op):
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--credential-endpoint", "--app-client-ids", "a")
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--update")
    provider = Provider.objects.get(slug="corp")
    assert provider.credential_endpoint and provider.app_client_id_list == ["a"]
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--update", "--app-client-ids", "")
    assert not is_enabled(Provider.objects.get(slug="corp"), Endpoint.APP)


def test_a_github_style_provider_never_has_them(op):
    provider = Provider(kind=Provider.Kind.GITHUB, credential_endpoint=True, app_client_ids="a")
    assert not is_enabled(provider, Endpoint.CREDENTIAL) and not is_enabled(provider, Endpoint.APP)
