"""The admin: providers can be managed, and the client secret is never rendered back."""

from __future__ import annotations

import pytest

from accounts.models import Provider

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-value-that-must-not-leak"


@pytest.fixture
def stored(db):
    return Provider.objects.create(
        slug="corp", name="Corp", issuer="https://idp.example", client_id="cid", client_secret=SECRET
    )


def form_data(**overrides):
    data = {
        "name": "Corp",
        "slug": "corp",
        "kind": "oidc",
        "enabled": "on",
        "display_order": "0",
        "issuer": "https://idp.example",
        "client_id": "cid",
        "client_secret": "",
        "scopes": "openid email profile",
        "allowed_algorithms": "RS256 ES256",
        "extra_auth_params": "{}",
        "email_linking": "never",
        "profile_sync": "follow",
        "preset": "generic",
    }
    data.update(overrides)
    return data


def test_change_page_never_renders_the_secret(admin_client, stored):
    page = admin_client.get(f"/admin/accounts/provider/{stored.pk}/change/").content.decode()
    assert SECRET not in page
    assert "http://testserver/accounts/corp/callback/" in page  # the redirect URI to register


def test_list_page_never_renders_the_secret(admin_client, stored):
    assert SECRET not in admin_client.get("/admin/accounts/provider/").content.decode()


def test_blank_secret_on_change_keeps_the_stored_one(admin_client, stored):
    response = admin_client.post(f"/admin/accounts/provider/{stored.pk}/change/", form_data(name="Corp SSO"))
    assert response.status_code == 302
    stored.refresh_from_db()
    assert (stored.name, stored.client_secret) == ("Corp SSO", SECRET)


def test_new_secret_replaces_the_stored_one(admin_client, stored):
    admin_client.post(f"/admin/accounts/provider/{stored.pk}/change/", form_data(client_secret="new-secret"))
    stored.refresh_from_db()
    assert stored.client_secret == "new-secret"


def test_add_provider_through_the_admin(admin_client):
    response = admin_client.post("/admin/accounts/provider/add/", form_data(slug="new", client_secret="abc"))
    assert response.status_code == 302
    assert Provider.objects.get(slug="new").client_secret == "abc"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_algorithms", "RS256 none", "Unsupported algorithm"),
        ("extra_auth_params", '{"state": "fixed"}', "set by the sign-in flow"),
        ("extra_auth_params", '["x"]', "JSON object of strings"),
        ("scopes", "email profile", "needs the &#x27;openid&#x27; scope"),
    ],
)
def test_dangerous_configuration_is_refused(admin_client, field, value, message):
    response = admin_client.post("/admin/accounts/provider/add/", form_data(**{field: value}))
    assert response.status_code == 200 and message in response.content.decode()
    assert not Provider.objects.exists()


def test_identity_admin_lists_identities(admin_client, stored, django_user_model):
    user = django_user_model.objects.create_user("alice")
    stored.identities.create(user=user, issuer=stored.issuer, subject="sub-1", email="a@example.com")
    page = admin_client.get("/admin/accounts/identity/?q=sub-1").content.decode()
    assert "sub-1" in page
