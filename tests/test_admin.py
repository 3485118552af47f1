"""The admin: providers are added, checked and diagnosed; the client secret is never rendered back; the audit trail."""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import io
import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.management import call_command
from django.db import connection
from django.db.models.functions import Lower
from django.test import Client, RequestFactory
from django.utils import timezone
from django.utils.html import escape

from accounts import diagnostics
from accounts.admin import IdentityAdmin, ProviderAdmin, SecretFieldsAdmin, SignInEventAdmin, csv_cell
from accounts.conf import DEFAULT_ALGORITHMS
from accounts.models import Identity, Provider, ProviderSession, SignInEvent
from accounts.oidc import discovery
from accounts.presets import PRESETS
from tests.conftest import assert_guess_refused_alike, certificate_der, encodings, staff_client

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
        "allowed_algorithms": " ".join(DEFAULT_ALGORITHMS),
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
    assert (stored.name, stored.reveal_client_secret()) == ("Corp SSO", SECRET)


def test_new_secret_replaces_the_stored_one(admin_client, stored):
    admin_client.post(f"/admin/oidc_signin/provider/{stored.pk}/change/", form_data(client_secret="new-secret"))
    stored.refresh_from_db()
    assert stored.reveal_client_secret() == "new-secret"


def test_add_provider_through_the_admin(admin_client, op):
    response = admin_client.post(
        "/admin/oidc_signin/provider/add/", form_data(slug="new", issuer=op.issuer, client_secret="abc")
    )
    assert response.status_code == 302
    assert Provider.objects.get(slug="new").reveal_client_secret() == "abc"


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
def test_dangerous_configuration_is_refused(admin_client, op, field, value, message):
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(issuer=op.issuer, **{field: value}))
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


# --- adding from a preset, and the check on save ---------------------------------------------------


@pytest.fixture
def google_at(monkeypatch):
    """The Google preset, its issuer pointed at a local double: the suite has no internet."""

    def point(op):
        monkeypatch.setitem(PRESETS, "google", dataclasses.replace(PRESETS["google"], issuer=op.issuer))

    return point


def preset_form(preset: str, **overrides):
    """What the add page posts when only the preset, client id and secret were touched."""
    return form_data(**{"preset": preset, "name": "", "slug": "", "issuer": "", "client_secret": "typed", **overrides})


def test_add_from_a_preset_needs_only_client_id_and_secret(admin_client, op, google_at):
    google_at(op)
    response = admin_client.post("/admin/oidc_signin/provider/add/", preset_form("google"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    added = Provider.objects.get()
    assert (added.name, added.slug, added.issuer, added.preset) == ("Google", "google", op.issuer, "google")
    assert added.reveal_client_secret() == "typed"
    assert op.hits["/.well-known/openid-configuration"] == 1 and op.hits["/jwks"] == 1  # checked on save
    assert status_cell(admin_client, added) == "ok"  # and that check is its first health record


def test_a_preset_name_and_slug_stay_editable(admin_client, op, google_at):
    google_at(op)
    admin_client.post("/admin/oidc_signin/provider/add/", preset_form("google", name="Work Google"))
    assert Provider.objects.get().slug == "work-google"  # the slug follows a typed name (as the page's script does)
    admin_client.post("/admin/oidc_signin/provider/add/", preset_form("google", slug="gmail"))
    assert Provider.objects.get(slug="gmail").name == "Google"


def test_a_generic_provider_still_needs_a_name(admin_client, op):
    response = admin_client.post("/admin/oidc_signin/provider/add/", preset_form("generic", issuer=op.issuer))
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert not Provider.objects.exists()


def test_a_form_with_an_error_keeps_the_typed_secret(admin_client, op):
    response = admin_client.post(
        "/admin/oidc_signin/provider/add/",
        form_data(issuer=op.issuer, allowed_algorithms="none", client_secret="typed-secret"),
    )
    assert response.status_code == 200
    assert 'name="client_secret" value="typed-secret"' in response.content.decode()


def test_a_change_form_with_an_error_never_renders_the_stored_secret(admin_client, stored):
    response = admin_client.post(
        f"/admin/oidc_signin/provider/{stored.pk}/change/", form_data(allowed_algorithms="none")
    )
    assert response.status_code == 200 and "Unsupported algorithm" in response.content.decode()
    page = response.content.decode()
    assert not [form for form in encodings(SECRET) if form in page]
    assert 'name="client_secret" value=' not in page


def test_the_secret_box_starts_empty_on_the_change_page(admin_client, stored):
    """It shows only what the posting request typed: never the stored value, not even encrypted."""
    page = admin_client.get(f"/admin/oidc_signin/provider/{stored.pk}/change/").content.decode()
    assert 'name="client_secret"' in page and 'name="client_secret" value=' not in page


def test_help_texts_render_literally(admin_client):
    page = admin_client.get("/admin/oidc_signin/provider/add/").content.decode()
    assert "Used in URLs: /accounts/&lt;slug&gt;/login/." in page


def _break_discovery(op, how: str) -> None:
    if how == "unreachable":
        op.faults["/.well-known/openid-configuration"] = {"status": 503, "body": "down", "content_type": "text/plain"}
    elif how == "issuer mismatch":
        op.metadata["issuer"] = "https://impostor.example"
    elif how == "no jwks_uri":
        del op.metadata["jwks_uri"]
    elif how == "no allowed algorithm":
        op.metadata["id_token_signing_alg_values_supported"] = ["HS256"]
    elif how == "no token endpoint auth method":
        op.metadata["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]


@pytest.mark.parametrize(
    ("how", "field", "message"),
    [
        ("unreachable", "issuer", "discovery document answered HTTP 503"),
        ("issuer mismatch", "issuer", "discovery document says issuer &#x27;https://impostor.example&#x27;"),
        ("no jwks_uri", "issuer", "discovery document lacks jwks_uri"),
        ("no allowed algorithm", "allowed_algorithms", "the provider signs ID tokens with [&#x27;HS256&#x27;]"),
        ("no token endpoint auth method", None, "supports neither client_secret_basic nor client_secret_post"),
        ("http with debug off", "issuer", "issuer uses http:// (127.0.0.1); only https is allowed"),
    ],
)
def test_save_shows_what_the_provider_check_found_on_the_field_to_fix(admin_client, op, settings, how, field, message):
    if how == "http with debug off":
        settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP, settings.DEBUG = False, False
    _break_discovery(op, how)
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(issuer=op.issuer))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in "".join(escape(e) for e in errors.get(field or NON_FIELD_ERRORS, [])), errors
    assert message in response.content.decode()  # shown on the page, beside that field
    assert not Provider.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_check_on_save_runs_once_and_outside_the_views_transaction(admin_client, op, monkeypatch):
    """Its HTTP calls take time; inside the admin's transaction SQLite's write lock would be held throughout."""
    in_transaction = []
    probe = diagnostics.probe

    def watched(provider, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return probe(provider, **kwargs)

    monkeypatch.setattr(diagnostics, "probe", watched)
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(issuer=op.issuer))
    assert response.status_code == 302
    assert in_transaction == [False]


def test_staff_who_may_not_save_cannot_make_the_server_fetch(django_user_model, op, provider):
    viewer = staff_client(django_user_model, "view_provider")
    data = form_data(issuer=op.issuer + "/elsewhere")
    assert viewer.post("/admin/oidc_signin/provider/add/", data).status_code == 403
    assert viewer.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data).status_code == 403
    assert sum(op.hits.values()) == 0


def test_save_without_checking_saves_a_provider_that_cannot_be_reached(admin_client, op):
    _break_discovery(op, "unreachable")
    response = admin_client.post("/admin/oidc_signin/provider/add/", form_data(issuer=op.issuer, skip_check="on"))
    assert response.status_code == 302
    assert Provider.objects.filter(slug="corp").exists()


def test_a_change_that_leaves_the_connection_alone_asks_no_provider(admin_client, op, provider):
    data = form_data(name="Renamed", slug=provider.slug, issuer=op.issuer, client_id=op.client_id)
    assert admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data).status_code == 302
    assert op.hits["/.well-known/openid-configuration"] == 0
    _break_discovery(op, "issuer mismatch")
    data["allowed_algorithms"] = "RS256"  # now the connection changes: asked again, and refused
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data)
    assert response.status_code == 200 and "discovery document says issuer" in response.content.decode()
    assert status_cell(admin_client, provider) == "unknown"  # a refused edit says nothing of what is stored


# --- the health view and the status column ----------------------------------------------------------


def health_url(provider: Provider) -> str:
    return f"/admin/oidc_signin/provider/{provider.pk}/health/"


def certificate(days: int) -> str:
    """A self-signed certificate valid for ``days`` more days, base64 DER as in a JWK's x5c."""
    return base64.b64encode(certificate_der(days=days)).decode()


def test_health_view_lists_endpoints_documents_and_keys(admin_client, op, provider):
    page = admin_client.get(health_url(provider)).content.decode()
    assert op.issuer + "/token" in page and op.issuer + "/.well-known/openid-configuration" in page
    keys = re.search(r'<table id="health-keys">.*?</table>', page, re.S).group(0)
    assert "rsa-1" in keys and "2048 bits" in keys and "ec-1" in keys and "P-256" in keys and "ES256" in keys
    documents = re.search(r'<table id="health-documents">.*?</table>', page, re.S).group(0)
    assert "not fetched" not in documents  # fetched (as a sign-in would) and dated
    assert 'oidc-health-ok">Working<' in page


def test_health_view_shows_certificates_and_warns_before_they_expire(admin_client, op, provider):
    jwks = op.jwks()
    jwks["keys"][1]["x5c"] = [certificate(days=10)]
    op.jwks_override = jwks
    page = admin_client.get(health_url(provider)).content.decode()
    assert "CN=signing.example" in page
    thumbprint = re.search(r"SHA-256: <code>([0-9A-F:]{95})</code>", page)
    assert thumbprint is not None
    assert "The certificate of key ec-1 expires on" in page
    assert 'oidc-health-warning">Warnings<' in page


def test_health_view_sums_up_the_last_day_of_the_audit_trail(admin_client, provider):
    for _ in range(2):
        SignInEvent.objects.create(outcome="success", provider=provider, provider_slug=provider.slug)
    reason = "ID token kid 'new-1' matches no RS256 key of the provider"
    SignInEvent.objects.create(outcome="failure", provider=provider, code="unknown_key", reason=reason, suppressed=2)
    old = SignInEvent.objects.create(outcome="failure", provider=provider, code="provider_timeout", reason="old")
    SignInEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(hours=25))
    page = admin_client.get(health_url(provider)).content.decode()
    activity = re.search(r'<table id="health-activity">.*?</table>', page, re.S).group(0)
    assert '<th scope="row">Successful</th><td>2</td>' in activity
    assert '<th scope="row">Failed</th><td>3</td>' in activity  # the row, and the two it stood for
    assert (
        "3 \N{MULTIPLICATION SIGN} ID token kid &#x27;new-1&#x27; matches no RS256 key" in activity
        and "old" not in activity
    )
    assert "Sign-ins in the last 24 hours that failed on a key id the cached key set lacks" in page
    assert "found no such key): 3. If the provider rotated its keys, use Refresh keys." in page
    assert "sign-in" in re.search(r'<td id="health-last-error">(.*?)</td>', page, re.S).group(1)  # the old timeout


def test_health_view_of_an_unreachable_provider_says_so(admin_client, op, provider):
    _break_discovery(op, "unreachable")
    page = admin_client.get(health_url(provider)).content.decode()
    assert "The provider cannot be reached: discovery document answered HTTP 503" in page
    assert 'oidc-health-error">Failing<' in page
    last_error = re.search(r'id="health-last-error">(.*?)</td>', page, re.S).group(1)
    assert "discovery document answered HTTP 503" in last_error


def test_check_now_asks_the_provider_past_the_cache(admin_client, op, provider):
    admin_client.get(health_url(provider))
    response = admin_client.post(health_url(provider), {"action": "check"}, follow=True)
    assert op.hits["/.well-known/openid-configuration"] == 2 and op.hits["/jwks"] == 2
    assert "Checked now: the provider answered (keys: rsa-1, ec-1)." in response.content.decode()
    _break_discovery(op, "unreachable")
    response = admin_client.post(health_url(provider), {"action": "check"}, follow=True)
    assert "The provider could not be loaded: discovery document answered HTTP 503" in response.content.decode()
    # ... and sign-ins go on with the copies it left alone
    assert discovery.cached_data(op.issuer + "/.well-known/openid-configuration") is not None


def test_refresh_keys_picks_up_a_rotation(admin_client, op, provider):
    admin_client.get(health_url(provider))
    op.rotate()
    response = admin_client.post(health_url(provider), {"action": "refresh"}, follow=True)
    new_kid = op.keys[-1].kid
    assert "Fetched the discovery document and keys again" in response.content.decode()
    assert new_kid in re.search(r'<table id="health-keys">.*?</table>', response.content.decode(), re.S).group(0)
    assert new_kid in str(discovery.cached_data(op.issuer + "/jwks"))  # the shared copy every process reads


def test_health_actions_need_the_change_permission_and_csrf(django_user_model, provider, op):
    viewer = staff_client(django_user_model, "view_provider")
    page = viewer.get(health_url(provider))
    assert page.status_code == 200 and 'value="refresh"' not in page.content.decode()
    assert viewer.post(health_url(provider), {"action": "refresh"}).status_code == 403
    editor = staff_client_named(django_user_model, "editor", "view_provider", "change_provider")
    editor.handler.enforce_csrf_checks = True
    assert editor.post(health_url(provider), {"action": "refresh"}).status_code == 403  # no CSRF token
    assert op.hits["/jwks"] == 1  # only the viewer's GET loaded it


def test_health_view_refuses_staff_without_view_permission_and_unknown_actions(django_user_model, provider):
    nobody = staff_client(django_user_model)
    assert nobody.get(health_url(provider)).status_code == 403
    editor = staff_client_named(django_user_model, "editor", "view_provider", "change_provider")
    assert "Unknown action." in editor.post(health_url(provider), {"action": "drop"}, follow=True).content.decode()
    assert editor.get("/admin/oidc_signin/provider/999999/health/").status_code == 404


def staff_client_named(django_user_model, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def status_cell(client, provider: Provider) -> str:
    page = client.get("/admin/oidc_signin/provider/").content.decode()
    return re.search(rf'<a class="oidc-health oidc-health-(\w+)" href="{health_url(provider)}">', page).group(1)


def test_status_column_shows_the_last_check_from_any_process(admin_client, op, provider):
    assert status_cell(admin_client, provider) == "unknown"
    call_command("oidc_provider", "check", provider.slug, stdout=io.StringIO())  # a shell's check counts
    assert status_cell(admin_client, provider) == "ok"
    SignInEvent.objects.create(outcome="failure", provider=provider, code="provider_unavailable", reason="x")
    assert status_cell(admin_client, provider) == "warning"  # a sign-in failed on the provider's side since
    _break_discovery(op, "unreachable")
    admin_client.post(health_url(provider), {"action": "check"})
    assert status_cell(admin_client, provider) == "error"
    assert op.hits["/.well-known/openid-configuration"] == 2  # the list itself asked nobody


def test_change_page_links_to_the_health_view(admin_client, stored):
    assert health_url(stored) in admin_client.get(f"/admin/oidc_signin/provider/{stored.pk}/change/").content.decode()


# --- users and the audit trail ----------------------------------------------------------------------


def test_user_admin_lists_the_users_identities(admin_client, stored, django_user_model):
    user = django_user_model.objects.create_user("alice")
    stored.identities.create(user=user, issuer=stored.issuer, subject="sub-inline-1", email="a@example.com")
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert "sub-inline-1" in page and 'name="identities-TOTAL_FORMS"' in page
    assert f"/admin/oidc_signin/identity/{user.identities.get().pk}/change/" in page  # each links to its page


@pytest.fixture
def events(stored):
    other = Provider.objects.create(slug="other", name="Other", issuer="https://other.example", client_id="c")
    rows = {
        "ok": SignInEvent.objects.create(outcome="success", provider=stored, provider_slug="corp", subject="s-ok"),
        "bad": SignInEvent.objects.create(
            outcome="failure", provider=stored, provider_slug="corp", subject="s-bad", code="token_rejected",
            reason='=HYPERLINK("https://evil.example","click")',
        ),
        "connect": SignInEvent.objects.create(
            outcome="success", action="connect", provider=stored, provider_slug="corp", subject="s-connect"
        ),
        "other": SignInEvent.objects.create(
            outcome="failure", provider=other, provider_slug="other", subject="s-other"
        ),
        "old": SignInEvent.objects.create(outcome="success", provider=stored, provider_slug="corp", subject="s-old"),
    }  # fmt: skip
    SignInEvent.objects.filter(pk=rows["old"].pk).update(created_at=timezone.now() - datetime.timedelta(days=40))
    return rows


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"provider_slug": "corp"}, {"s-ok", "s-bad", "s-connect", "s-old"}),
        ({"outcome": "failure"}, {"s-bad", "s-other"}),
        ({"action": "connect"}, {"s-connect"}),
        ({"created_at__gte": "{recent}"}, {"s-ok", "s-bad", "s-connect", "s-other"}),
    ],
    ids=["provider", "outcome", "action", "date"],
)
def test_audit_trail_filters_by_provider_outcome_action_and_date(admin_client, events, query, expected):
    recent = (timezone.now() - datetime.timedelta(days=7)).isoformat()
    query = {k: v.format(recent=recent) for k, v in query.items()}
    response = admin_client.get("/admin/oidc_signin/signinevent/", query)
    shown = {event.subject for event in response.context["cl"].result_list}
    assert shown == expected


def export(client, query: str = "", **data) -> list[list[str]]:
    any_pk = SignInEvent.objects.values_list("pk", flat=True).first()
    response = client.post(
        f"/admin/oidc_signin/signinevent/{query}",
        # "Select all N": the page's checkboxes go along, the action gets every row the filters match.
        {"action": "export_csv", "select_across": "1", "index": "0", "_selected_action": [any_pk], **data},
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="sign-in-events-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_audit_trail_exports_what_the_filters_match_as_csv(django_user_model, events):
    viewer = staff_client(django_user_model, "view_signinevent")  # reading the trail is enough
    header, *rows = export(viewer, "?provider_slug=corp&outcome=failure")
    assert header[:4] == ["time", "outcome", "action", "provider slug"] and "reason" in header
    assert [row[header.index("subject")] for row in rows] == ["s-bad"]
    assert len(export(viewer)) == 1 + len(events)  # everything, oldest first
    assert export(viewer)[1][header.index("subject")] == "s-old"


def test_csv_export_defuses_cells_a_spreadsheet_would_run(admin_client, events):
    header, *rows = export(admin_client, "?outcome=failure&provider_slug=corp")
    assert rows[0][header.index("reason")] == """'=HYPERLINK("https://evil.example","click")"""
    assert [csv_cell(v) for v in ("+1", "-1", "@SUM(A1)", "\tx", "plain", None)] == [
        "'+1", "'-1", "'@SUM(A1)", "'\tx", "plain", "",
    ]  # fmt: skip


def test_csv_export_holds_no_secret(admin_client, events, stored):
    rows = export(admin_client)
    assert not [form for form in encodings(SECRET) if form in str(rows)]
    assert "client_secret" not in SignInEventAdmin.CSV_FIELDS
