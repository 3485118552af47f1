"""The admin: providers can be managed, and the client secret is never rendered back."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db.models.functions import Lower
from django.test import RequestFactory

from accounts.admin import IdentityAdmin, ProviderAdmin, SecretFieldsAdmin
from accounts.models import Identity, Provider, ProviderSession, SignInEvent
from tests.conftest import assert_guess_refused_alike, encodings, staff_client

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
        "userinfo": "when-needed",
        "email_linking": "never",
        "profile_sync": "follow",
        "preset": "generic",
    }
    data.update(overrides)
    return data


def test_change_page_never_renders_the_secret(admin_client, stored):
    page = admin_client.get(f"/admin/oidc_signin/provider/{stored.pk}/change/").content.decode()
    assert SECRET not in page
    assert "http://testserver/accounts/corp/callback/" in page  # the redirect URI to register


def test_list_page_never_renders_the_secret(admin_client, stored):
    assert SECRET not in admin_client.get("/admin/oidc_signin/provider/").content.decode()


def test_blank_secret_on_change_keeps_the_stored_one(admin_client, stored):
    response = admin_client.post(f"/admin/oidc_signin/provider/{stored.pk}/change/", form_data(name="Corp SSO"))
    assert response.status_code == 302
    stored.refresh_from_db()
    assert (stored.name, stored.client_secret) == ("Corp SSO", SECRET)


def test_new_secret_replaces_the_stored_one(admin_client, stored):
    admin_client.post(f"/admin/oidc_signin/provider/{stored.pk}/change/", form_data(client_secret="new-secret"))
    stored.refresh_from_db()
    assert stored.client_secret == "new-secret"


def test_add_provider_through_the_admin(admin_client):
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(slug="new", client_secret="abc"))
    assert response.status_code == 302
    assert Provider.objects.get(slug="new").client_secret == "abc"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_algorithms", "RS256 none", "Unsupported algorithm"),
        ("extra_auth_params", '{"state": "fixed"}', "set by the sign-in flow"),
        ("extra_auth_params", '["x"]', "JSON object of strings"),
        ("extra_auth_params", '{"max_age": "an hour"}', "max_age must be a whole number of seconds"),
        ("scopes", "email profile", "needs the &#x27;openid&#x27; scope"),
    ],
)
def test_dangerous_configuration_is_refused(admin_client, field, value, message):
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(**{field: value}))
    assert response.status_code == 200 and message in response.content.decode()
    assert not Provider.objects.exists()


def test_identity_admin_lists_identities(admin_client, stored, django_user_model):
    user = django_user_model.objects.create_user("alice")
    stored.identities.create(user=user, issuer=stored.issuer, subject="sub-1", email="a@example.com")
    page = admin_client.get("/admin/oidc_signin/identity/?q=sub-1").content.decode()
    assert "sub-1" in page


# --- a view-only staff member cannot read the secret back -------------------------------------------


#: (lookup, a guess that matches the stored secret, one that does not)
SECRET_GUESSES = [
    ("client_secret", SECRET, "wrong"),
    ("client_secret__exact", SECRET, "wrong"),
    ("client_secret__iexact", SECRET.upper(), "WRONG"),
    ("client_secret__startswith", SECRET[:1], "x"),
    ("client_secret__istartswith", SECRET[:1].upper(), "X"),
    ("client_secret__regex", f"^{SECRET[:1]}", "^x"),
    ("client_secret__iregex", f"^{SECRET[:1]}", "^x"),
    ("client_secret__contains", SECRET[2:6], "zz"),
    ("client_secret__endswith", SECRET[-3:], "zz"),
    ("client_secret__gt", "r", "t"),
    ("client_secret__lte", "t", "r"),
    ("client_secret__in", SECRET, "wrong"),
]


@pytest.mark.parametrize(("lookup", "right", "wrong"), SECRET_GUESSES, ids=[g[0] for g in SECRET_GUESSES])
def test_provider_changelist_refuses_lookups_on_the_client_secret(
    django_user_model, caplog, stored, lookup, right, wrong
):
    client = staff_client(django_user_model, "view_provider")
    assert_guess_refused_alike(client, caplog, "/admin/oidc_signin/provider/", lookup, right, wrong)


@pytest.fixture
def related_rows(stored, django_user_model):
    """A row of every model that points at the provider (or its user), so a guess through them could match."""
    user = django_user_model.objects.create_user("alice", password="alice-password")
    Identity.objects.create(user=user, provider=stored, issuer=stored.issuer, subject="sub-1")
    ProviderSession.objects.create(
        provider=stored, user=user, issuer=stored.issuer, subject="sub-1", session_key="sessionkey123"
    )
    SignInEvent.objects.create(outcome="success", provider=stored, provider_slug=stored.slug, user=user)
    return user


RELATED_GUESSES = [
    ("identity", "provider__client_secret__startswith", SECRET[:1], "x"),
    ("identity", "provider__client_secret__regex", f"^{SECRET[:1]}", "^x"),
    ("identity", "user__password__startswith", "md5$", "pbkdf2"),
    ("signinevent", "provider__client_secret__startswith", SECRET[:1], "x"),
    ("signinevent", "user__password__startswith", "md5$", "pbkdf2"),
    ("provider", "sessions__session_key__startswith", "s", "x"),
    ("provider", "identities__provider__client_secret__startswith", SECRET[:1], "x"),
    ("provider", "identities__user__password__startswith", "md5$", "pbkdf2"),
]


@pytest.mark.parametrize(
    ("model", "lookup", "right", "wrong"), RELATED_GUESSES, ids=[f"{g[0]}-{g[1]}" for g in RELATED_GUESSES]
)
def test_changelists_refuse_lookups_reaching_a_secret_through_a_relation(
    django_user_model, caplog, related_rows, model, lookup, right, wrong
):
    client = staff_client(django_user_model, f"view_{model}")
    assert_guess_refused_alike(client, caplog, f"/admin/oidc_signin/{model}/", lookup, right, wrong)


def test_secret_rule_follows_relations_even_where_list_filter_would_let_django_through(rf: RequestFactory):
    """Django allows a relational lookup named in list_filter; the secret rule refuses it anyway."""

    class FilteringByProvider(IdentityAdmin):
        list_filter = ("provider__name", "provider__client_secret")

    model_admin = FilteringByProvider(Identity, admin.site)
    request = rf.get("/")
    assert model_admin.lookup_allowed("provider__name__startswith", "C", request)  # Django's rule lets these by
    assert not model_admin.lookup_allowed("provider__client_secret__startswith", "s", request)
    assert not model_admin.lookup_allowed("provider__client_secret", SECRET, request)


def test_view_only_provider_page_renders_read_only_without_the_secret(django_user_model, stored):
    client = staff_client(django_user_model, "view_provider")
    response = client.get(f"/admin/oidc_signin/provider/{stored.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert not [form for form in encodings(SECRET) if form in page]
    assert "Secret set" in page and 'name="client_secret"' not in page
    assert 'name="_save"' not in page  # read-only: nothing to submit
    assert "https://idp.example" in page  # the rest of the configuration is shown
    assert "Preset options" not in page  # form-only fields (used when adding): nothing stored to show


# --- every admin of both apps follows the rule, and its options are checked ----------------------------


def our_admins() -> list[admin.ModelAdmin]:
    return [a for m, a in admin.site._registry.items() if m.__module__.split(".")[0] in ("accounts", "devidp")]


def test_every_admin_of_both_apps_refuses_secrets():
    admins = our_admins()
    assert {type(a).__name__ for a in admins} >= {"ProviderAdmin", "IdentityAdmin", "ClientAdmin", "SigningKeyAdmin"}
    assert [type(a).__name__ for a in admins if not isinstance(a, SecretFieldsAdmin)] == []
    assert [e.id for a in admins for e in a.check()] == []  # no search, filter, sort or display by a secret


@pytest.mark.parametrize(
    ("options", "error_id"),
    [
        ({"search_fields": ("name", "=client_secret")}, "oidc_signin.E101"),
        ({"list_filter": ("enabled", "client_secret")}, "oidc_signin.E102"),
        ({"list_filter": (("client_secret", admin.AllValuesFieldListFilter),)}, "oidc_signin.E102"),
        ({"ordering": ("-client_secret",)}, "oidc_signin.E103"),
        ({"ordering": (Lower("client_secret").desc(),)}, "oidc_signin.E103"),
        ({"list_display": ("name", "client_secret")}, "oidc_signin.E104"),
        ({"readonly_fields": ("client_secret",)}, "oidc_signin.E106"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_admin_option_using_the_secret_is_a_system_check_error(options, error_id):
    leaky = type("Leaky", (ProviderAdmin,), options)(Provider, admin.site)
    assert error_id in [e.id for e in leaky.check()]


def test_column_sortable_by_the_secret_is_a_system_check_error():
    """``?o=`` sorts by a column's ``ordering``: rows in secret order would compare the secrets."""

    class Leaky(ProviderAdmin):
        list_display = ("name", "harmless_looking")

        @admin.display(ordering="-client_secret")
        def harmless_looking(self, obj):
            return "?"

    assert "oidc_signin.E104" in [e.id for e in Leaky(Provider, admin.site).check()]


def test_date_hierarchy_through_a_relation_to_a_secret_is_a_system_check_error():
    leaky = type("Leaky", (IdentityAdmin,), {"date_hierarchy": "user__password"})(Identity, admin.site)
    assert "oidc_signin.E105" in [e.id for e in leaky.check()]
