"""The admin turns sign-in without a redirect on and off, per provider (off by default)."""

from __future__ import annotations

import pytest

from accounts.models import Provider
from accounts.no_redirect import Endpoint, is_enabled
from tests.test_admin import form_data, stored  # noqa: F401 -- the fixture, shared

pytestmark = pytest.mark.django_db


def test_the_change_page_offers_both_endpoints(admin_client, stored):  # noqa: F811
    page = admin_client.get(f"/admin/oidc_signin/provider/{stored.pk}/change/").content.decode()
    for name in ("credential_endpoint", "app_client_ids", "app_redirect_uris"):
        assert f'name="{name}"' in page


def test_the_admin_turns_them_on(admin_client, stored):  # noqa: F811
    data = form_data(credential_endpoint="on", app_client_ids="ios, android", app_redirect_uris="com.example:/cb")
    response = admin_client.post(f"/admin/oidc_signin/provider/{stored.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    provider = Provider.objects.get(pk=stored.pk)
    assert is_enabled(provider, Endpoint.CREDENTIAL) and provider.app_client_id_list == ["ios", "android"]
