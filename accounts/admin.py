"""Admin for providers and identities. The client secret is write-only: never rendered back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.checks import ModelAdminChecks
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .models import Identity, Provider, ProviderSession, SignInEvent
from .presets import preset_values

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

#: Fieldset titles the admin looks for by value: lazy, so the comparison holds in every language.
CLIENT_REGISTRATION = _("Client registration")
PRESET_OPTIONS = _("Preset options")


class _SecretFieldsChecks(ModelAdminChecks):
    def check(self, admin_obj: Any, **kwargs: Any) -> list[checks.CheckMessage]:
        """Django's own checks, then ours (``admin_obj`` is always a ``SecretFieldsAdmin``)."""
        return [*super().check(admin_obj, **kwargs), *admin_obj.check_secret_fields()]


class SecretFieldsAdmin(admin.ModelAdmin):
    """The one rule for secrets in the admin: nobody can read one back, not even one bit at a time.

    Django's changelist turns query-string parameters into queryset filters, and
    ``ModelAdmin.lookup_allowed`` lets through any lookup on the model's own fields, so
    ``?client_secret__startswith=a`` answers yes/no about the secret to anyone allowed to view the
    list (Django's own ``UserAdmin`` refuses ``password`` lookups for that reason). Here a lookup is
    refused whenever its path, followed through relations, reaches a field listed in
    ``secret_fields``; Django then answers 400 (``DisallowedModelAdminLookup``). The system checks
    refuse a secret in ``search_fields``, ``list_filter``, ``ordering``, ``date_hierarchy``,
    ``list_display`` (shown, or sortable through ``?o=``) and ``readonly_fields``; a read-only
    change page (view permission only) shows a secret field as ``secret_displays`` says, or not at all.
    """

    checks_class = _SecretFieldsChecks

    #: Secret fields by model, for every model a lookup path may reach (an app extends this mapping).
    secret_fields: Mapping[type[models.Model], frozenset[str]] = {
        Provider: frozenset({"client_secret"}),
        ProviderSession: frozenset({"session_key"}),  # whoever holds it is signed in
        get_user_model(): frozenset({"password"}),  # a hash, still nothing to filter on
    }
    #: On a read-only change page, the admin display shown instead of a secret field (else none).
    secret_displays: Mapping[str, str] = {}

    def secret_reached(self, path: str | models.Expression) -> str | None:
        """The ``app.Model.field`` secret a lookup or an ordering reaches, following relations; else None."""
        if not isinstance(path, str):  # an ordering expression, e.g. Lower("provider__client_secret").desc()
            names = [node.name for node in path.flatten() if isinstance(node, models.F)]  # type: ignore[attr-defined]
            return next(filter(None, map(self.secret_reached, names)), None)
        model = self.model
        for part in path.split(LOOKUP_SEP):
            try:
                field = model._meta.pk if part == "pk" else model._meta.get_field(part)
            except FieldDoesNotExist:
                return None  # a transform or lookup type (startswith, regex, year...): the path ends here
            owner = getattr(field, "model", None) or model  # a parent's field, under multi-table inheritance
            for candidate in (model, model._meta.concrete_model, owner):
                if field.name in self.secret_fields.get(candidate, ()):
                    return f"{owner._meta.label}.{field.name}"
            if not field.is_relation or field.related_model is None:
                return None
            model = field.related_model
        return None

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """Refused (Django answers 400) when the lookup reaches a secret, even through a relation."""
        return self.secret_reached(lookup) is None and super().lookup_allowed(lookup, value, request)

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> list:
        """Django prints a read-only field's stored value, so a secret shown read-only gets swapped out."""
        fieldsets = super().get_fieldsets(request, obj)
        read_only = set(self.get_readonly_fields(request, obj))
        if obj is not None and not self.has_change_permission(request, obj):
            read_only.update(flatten_fieldsets(fieldsets))  # a view-only page: every field is read-only

        def shown(name: Any) -> list[Any]:
            if not isinstance(name, str) or name not in read_only or self.secret_reached(name) is None:
                return [name]
            return [self.secret_displays[name]] if name in self.secret_displays else []

        result = []
        for title, options in fieldsets:
            fields: list[Any] = []
            for item in options["fields"]:
                if isinstance(item, (list, tuple)):  # several fields on one line
                    line = tuple(n for name in item for n in shown(name))
                    fields.extend([line] if line else [])
                else:
                    fields.extend(shown(item))
            if fields:
                result.append((title, {**options, "fields": fields}))
        return result

    def check_secret_fields(self) -> list[checks.CheckMessage]:
        """No option may filter, search, sort or show by a secret (each would answer questions about it)."""
        options: list[tuple[str, str, list[Any]]] = [
            ("search_fields", "oidc_signin.E101", [s.lstrip("^=@") for s in self.search_fields]),
            ("list_filter", "oidc_signin.E102", [_filter_path(item) for item in self.list_filter]),
            ("ordering", "oidc_signin.E103", [_order_path(o) for o in self.ordering or ()]),
            ("list_display", "oidc_signin.E104", [p for item in self.list_display for p in self._display_paths(item)]),
            ("date_hierarchy", "oidc_signin.E105", [self.date_hierarchy] if self.date_hierarchy else []),
            ("readonly_fields", "oidc_signin.E106", [f for f in self.readonly_fields if isinstance(f, str)]),
        ]
        errors: list[checks.CheckMessage] = []
        for option, error_id, paths in options:
            for path in filter(None, paths):
                secret = self.secret_reached(path)
                if secret:
                    errors.append(
                        checks.Error(
                            f"{option} of {type(self).__name__} uses {path!r}, which reaches the secret {secret}.",
                            hint="A secret can be written in the admin, never filtered, searched, sorted or shown.",
                            obj=type(self),
                            id=error_id,
                        )
                    )
        return errors

    def _display_paths(self, item: Any) -> list[Any]:
        """What a list_display entry shows (a field path) and what ``?o=`` would sort it by."""
        paths = [item] if isinstance(item, str) else []
        attr = item if callable(item) else getattr(self, item, None) or getattr(self.model, str(item), None)
        if isinstance(attr, property):
            attr = attr.fget
        order = getattr(attr, "admin_order_field", None)
        return [*paths, _order_path(order)] if order is not None else paths


def _filter_path(item: Any) -> str | None:
    """A list_filter entry's field path; a SimpleListFilter's queries are its own (None)."""
    if isinstance(item, (list, tuple)):
        item = item[0]
    return item if isinstance(item, str) else None


def _order_path(value: Any) -> Any:
    return value.lstrip("-?") if isinstance(value, str) else value


class ProviderForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Write-only: leave blank to keep the stored secret. It is never shown again."),
    )

    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text=_("Presets: self-managed GitLab or GitHub Enterprise Server base URL."),
    )
    tenant = forms.CharField(
        required=False,
        initial="common",
        help_text=_("Microsoft preset: common, organizations, consumers, or your tenant id."),
    )

    class Meta:
        model = Provider
        fields = "__all__"  # noqa: DJ007 -- every field; the fieldsets below decide the layout

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "issuer" in self.fields:  # a view-only page's form has no model fields at all
            self.fields["issuer"].required = False  # a preset can fill it in; the model still requires it

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if not secret and self.instance.pk:
            return self.instance.client_secret  # blank means "unchanged"
        return secret

    def clean(self) -> dict[str, Any]:
        """On a new provider, a preset fills what the admin left blank: only a client id and secret are needed."""
        super().clean()
        cleaned = self.cleaned_data
        preset = cleaned.get("preset")
        if self.instance.pk or not preset or preset == "generic":
            return cleaned
        try:
            values = preset_values(
                preset,
                base_url=cleaned.get("base_url") or cleaned.get("issuer") or "",
                tenant=cleaned.get("tenant") or "common",
            )
        except ValueError as exc:
            self.add_error("base_url", str(exc))
            return cleaned
        default_scopes = Provider._meta.get_field("scopes").default
        for field, value in values.items():
            if (
                field in ("kind", "preset")
                or not cleaned.get(field)
                or (field == "scopes" and cleaned.get(field) == default_scopes)
            ):
                cleaned[field] = value
        return cleaned


@admin.register(Provider)
class ProviderAdmin(SecretFieldsAdmin):
    form = ProviderForm
    secret_displays = {"client_secret": "secret_set"}
    list_display = ("name", "slug", "preset", "kind", "issuer", "enabled", "display_order", "secret_set")
    list_editable = ("enabled", "display_order")
    list_filter = ("enabled", "kind", "preset")
    search_fields = ("name", "slug", "issuer", "client_id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "preset", "enabled", "display_order")}),
        (
            CLIENT_REGISTRATION,
            {
                "fields": (
                    "issuer",
                    "client_id",
                    "client_secret",
                ),
            },
        ),
        (PRESET_OPTIONS, {"fields": ("base_url", "tenant"), "description": _("Only used when adding with a preset.")}),
        (
            _("Request and verification"),
            {"fields": ("kind", "scopes", "allowed_algorithms", "extra_auth_params", "userinfo")},
        ),
        (
            _("GitHub-style endpoints"),
            {
                "fields": ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint"),
                "classes": ("collapse",),
                "description": _("Only for GitHub-style providers; OpenID Connect providers are discovered."),
            },
        ),
        (_("Who may sign in"), {"fields": ("allowed_email_domains", "allowed_hosted_domains", "allowed_tenants")}),
        (_("Accounts"), {"fields": ("email_linking", "profile_sync")}),
        (_("History"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> list:
        assert obj is None or isinstance(obj, Provider)
        fieldsets = [
            (title, {**options, "description": self._registration_urls(request, obj)})
            if title == CLIENT_REGISTRATION
            else (title, options)
            for title, options in super().get_fieldsets(request, obj)
        ]
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only: the preset options are form-only fields (used when adding), nothing stored to show.
        return [(title, options) for title, options in fieldsets if title != PRESET_OPTIONS]

    @staticmethod
    def _registration_urls(request: HttpRequest, obj: Provider | None) -> str:
        """The URLs to register with the provider, absolute for the site the admin is looking at."""
        logout_path = resolve_url(settings.LOGOUT_REDIRECT_URL or "oidc_signin:login")
        rows: list[tuple[_StrOrPromise, _StrOrPromise]] = [
            (_("Post-logout redirect URI"), request.build_absolute_uri(logout_path))
        ]
        if obj is not None and obj.slug:
            rows.insert(
                0, (_("Redirect URI"), request.build_absolute_uri(reverse("oidc_signin:callback", args=[obj.slug])))
            )
            rows.append(
                (
                    _("Back-channel logout URI"),
                    request.build_absolute_uri(reverse("oidc_signin:backchannel_logout", args=[obj.slug])),
                )
            )
        else:
            rows.insert(0, (_("Redirect URI"), _("shown once the provider is saved")))
        items = format_html_join("", "<dt>{}</dt><dd><code>{}</code></dd>", rows)
        return format_html("{}<dl>{}</dl>", _("Register these URLs with the provider:"), items)

    @admin.display(boolean=True, description=_("Secret set"))
    def secret_set(self, obj: Provider) -> bool:
        return bool(obj.client_secret)


@admin.register(Identity)
class IdentityAdmin(SecretFieldsAdmin):
    list_display = ("user", "provider", "subject", "email", "email_verified", "last_login_at", "created_at")
    list_filter = ("provider", "email_verified")
    search_fields = ("user__username", "user__email", "subject", "email", "issuer")
    raw_id_fields = ("user",)
    readonly_fields = ("issuer", "subject", "claims", "created_at", "last_login_at")
    date_hierarchy = "created_at"


@admin.register(SignInEvent)
class SignInEventAdmin(SecretFieldsAdmin):
    """Read-only: an audit trail that admins could edit would prove nothing."""

    list_display = ("created_at", "outcome", "action", "provider_slug", "user", "subject", "code", "ip_address")
    list_filter = ("outcome", "action", "provider_slug", "code", "created_at")
    search_fields = ("user__username", "subject", "issuer", "ip_address", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SignInEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SignInEvent | None = None) -> bool:
        return False  # old events go through `manage.py prune_signin_events`, by policy, not one by one
