"""The views as a reusing project meets them: pages that work whatever else the project has."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_login_page_without_providers_links_to_the_admin_when_there_is_one(client):
    page = client.get("/accounts/login/").content.decode()
    assert "No sign-in provider is configured yet." in page
    assert 'href="/admin/oidc_signin/provider/add/"' in page


def test_the_login_page_works_in_a_project_without_the_admin(client, settings):
    """It was a 500 (NoReverseMatch) when the project had no admin URLs."""
    settings.ROOT_URLCONF = "tests.urls_without_admin"
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "No sign-in provider is configured yet." in page and "/admin/" not in page
    assert "manage.py oidc_provider add" in page
