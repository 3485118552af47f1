"""Admin for providers and identities. The client secret is write-only: never rendered back."""

from __future__ import annotations

import copy
import csv
import datetime
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.checks import ModelAdminChecks
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, resolve_url
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.urls import path as url_path
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from . import diagnostics, token_profiles
from .errors import SignInError
from .models import Identity, Provider, ProviderSession, ProviderToken, SignInEvent, SiteKey
from .oidc.profiles import ProfileName
from .presets import PRESETS, PresetKey, preset_values

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

#: Fieldset titles the admin looks for by value: lazy, so the comparison holds in every language.
CLIENT_REGISTRATION = _("Client registration")
PRESET_OPTIONS = _("Preset options")
CHECK_ON_SAVE = _("Check on save")


class HealthAction(models.TextChoices):
    """The buttons of a provider's health view."""

    CHECK = "check", _("Check now")
    REFRESH = "refresh", _("Refresh keys")


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
        ProviderToken: frozenset({"access_token", "refresh_token", "dpop_key"}),  # encrypted, never filtered on
        SiteKey: frozenset({"private_jwk"}),  # the site's private keys: encrypted, never shown or filtered on
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


class TypedSecretInput(forms.PasswordInput):
    """A password box that shows again what was typed into it when the form comes back with an error.

    Only ever the value of the very request that posted it: the form drops the stored secret from
    its initial data, so an unbound page (add, change, view) renders the box empty.
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, render_value=True)


class ProviderForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=TypedSecretInput(attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Write-only: leave blank to keep the stored secret. It is never shown again. Changing the issuer, "
            "kind, an endpoint or the JWKS URI clears the stored secret unless you enter it again here in the "
            "same save: the secret must never follow a provider to another server."
        ),
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
    project_id = forms.CharField(
        required=False,
        help_text=_("Stytch preset: the project id (project-test-... or project-live-...)."),
    )
    skip_check = forms.BooleanField(
        required=False,
        label=_("Save without checking"),
        help_text=_(
            "On save the provider's discovery document and keys are fetched and checked, and what would make "
            "sign-ins fail is shown here. Tick this to save anyway, e.g. while the provider cannot be reached "
            "from this server."
        ),
    )

    class Meta:
        model = Provider
        fields = "__all__"  # noqa: DJ007 -- every field; the fieldsets below decide the layout

    #: What this request's checks found, by the configuration checked (set by ``ProviderAdmin.get_form``).
    probes: dict[tuple[str, ...], diagnostics.Report | SignInError] | None = None
    #: Fields whose change on an existing provider is worth asking the provider about again on save.
    CHECKED_FIELDS = frozenset({"issuer", "kind", "preset", "allowed_algorithms", "jwks_uri"})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("client_secret", None)  # the box shows what this request typed, never what is stored
        #: What the check on save found (None when it did not run), for the admin to record once saved.
        self.report: diagnostics.Report | None = None
        for form_field in self.fields.values():
            # The admin marks help texts safe; ours are text ("/accounts/<slug>/login/" must show its <slug>).
            if form_field.help_text:
                form_field.help_text = escape(form_field.help_text)
        if "issuer" in self.fields:  # a view-only page's form has no model fields at all
            self.fields["issuer"].required = False  # a preset can fill it in; the model still requires it
        if "token_profile" in self.fields:  # left out (a script's POST): the stored one, else the strict default
            self.fields["token_profile"].required = False
        if not self.instance.pk:
            for name in ("name", "slug", "client_id"):  # a preset names itself (Stytch: the project); see clean()
                if name in self.fields:
                    self.fields[name].required = False

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if not secret and self.instance.pk:
            return self.instance.client_secret  # blank means "unchanged" (cleared on save if the provider moved)
        self.instance.client_secret_entered = bool(secret)  # typed now: kept even if the provider moved
        return secret

    def clean(self) -> dict[str, Any]:
        """On a new provider, a preset fills what the admin left blank: only a client id and secret are needed.

        Then the provider is asked, as a sign-in would ask it, and what would fail is an error on the field to change.
        """
        super().clean()
        cleaned = self.cleaned_data
        if "token_profile" in self.fields and not cleaned.get("token_profile"):
            cleaned["token_profile"] = self.instance.token_profile or ProfileName.RFC9068
        preset = cleaned.get("preset")
        if self.instance.pk or not preset:
            self._check_provider()
            return cleaned
        self._name_from_preset(preset)
        if preset == "generic":
            self._check_provider()
            return cleaned
        try:
            values = preset_values(
                preset,
                base_url=cleaned.get("base_url") or cleaned.get("issuer") or "",
                tenant=cleaned.get("tenant") or "common",
                project_id=cleaned.get("project_id") or "",
            )
        except ValueError as exc:
            self.add_error("project_id" if preset == PresetKey.STYTCH else "base_url", str(exc))
            return cleaned
        defaults = {"scopes": Provider._meta.get_field("scopes").default, "token_profile": ProfileName.RFC9068}
        for field, value in values.items():
            if (
                field in ("kind", "preset")
                or not cleaned.get(field)
                or (field in defaults and cleaned.get(field) == defaults[field])
            ):
                cleaned[field] = value
        self._check_provider()
        return cleaned

    def _name_from_preset(self, preset: str) -> None:
        """A blank display name is the preset's (Google, GitHub...); a blank slug is made from the name."""
        cleaned = self.cleaned_data
        if "name" in self.fields and not cleaned.get("name") and "name" not in self.errors:
            if preset in PRESETS and preset != PresetKey.GENERIC:
                cleaned["name"] = PRESETS[preset].label
            else:
                self.add_error("name", self.fields["name"].error_messages["required"])
        if "slug" in self.fields and not cleaned.get("slug") and "slug" not in self.errors:
            slug = slugify(cleaned.get("name") or "")[: Provider._meta.get_field("slug").max_length]
            if slug:
                cleaned["slug"] = slug
            else:
                self.add_error("slug", self.fields["slug"].error_messages["required"])

    def _check_provider(self) -> None:
        """Probe the provider as configured on this form; each problem becomes an error where it is fixed."""
        cleaned = self.cleaned_data
        if "issuer" not in self.fields or self.errors or cleaned.get("skip_check"):
            return  # the list page's editable columns, a form already wrong, or an admin who said so
        if self.instance.pk and not self.CHECKED_FIELDS & set(self.changed_data):
            return
        model_fields = {f.name for f in Provider._meta.concrete_fields}
        candidate = copy.copy(self.instance)
        for name, value in cleaned.items():
            if name in model_fields and name != "client_secret":
                setattr(candidate, name, value)
        where = "jwks_uri" if candidate.kind == Provider.Kind.TOKEN_ISSUER else "issuer"
        memo = self.probes if self.probes is not None else {}
        key = (candidate.kind, candidate.issuer, candidate.jwks_uri, candidate.preset, candidate.allowed_algorithms)
        if key not in memo:
            try:
                memo[key] = diagnostics.probe(candidate, record=False)  # recorded once saved (save_model)
            except SignInError as exc:
                memo[key] = exc
        outcome = memo[key]
        if isinstance(outcome, SignInError):
            self.add_error(
                where,
                _("Checking the provider failed: %(reason)s. Correct the configuration, or tick “%(skip)s”.")
                % {"reason": outcome.reason, "skip": self.fields["skip_check"].label},
            )
            return
        self.report = outcome
        for problem in self.report.problems:
            self.add_error(
                problem.field if problem.field in self.fields else None,
                _("The check found a problem: %(problem)s. Correct the configuration, or tick “%(skip)s”.")
                % {"problem": problem, "skip": self.fields["skip_check"].label},
            )


@admin.register(Provider)
class ProviderAdmin(SecretFieldsAdmin):
    form = ProviderForm
    secret_displays = {"client_secret": "secret_set"}
    list_display = ("name", "slug", "preset", "kind", "issuer", "enabled", "display_order", "secret_set", "health")
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
                    "jwks_uri",
                    "client_id",
                    "client_secret",
                ),
            },
        ),
        (
            PRESET_OPTIONS,
            {"fields": ("base_url", "tenant", "project_id"), "description": _("Only used when adding with a preset.")},
        ),
        (CHECK_ON_SAVE, {"fields": ("skip_check",)}),
        (
            _("Request and verification"),
            {"fields": ("kind", "scopes", "allowed_algorithms", "extra_auth_params", "userinfo")},
        ),
        (
            _("GitHub-style endpoints"),
            {
                "fields": (
                    "authorization_endpoint",
                    "token_endpoint",
                    "userinfo_endpoint",
                    "emails_endpoint",
                    "callback_issuer",
                ),
                "classes": ("collapse",),
                "description": _("Only for GitHub-style providers; OpenID Connect providers are discovered."),
            },
        ),
        (_("Who may sign in"), {"fields": ("allowed_email_domains", "allowed_hosted_domains", "allowed_tenants")}),
        (
            _("Access tokens for this site's APIs"),
            {
                "fields": ("token_profile", "token_audience", "allowed_clients", "allowed_callers", "token_max_age"),
                "description": _(
                    "How this provider's access tokens are read (docs/api.md). Allowed tenants (above) also "
                    "apply to entra tokens."
                ),
            },
        ),
        (
            _("Sign-in without a redirect"),
            {
                "fields": ("credential_endpoint", "app_client_ids", "app_redirect_uris"),
                "classes": ("collapse",),
                "description": _("Off unless turned on here; see docs/sign-in-without-redirect.md."),
            },
        ),
        (_("Accounts"), {"fields": ("email_linking", "profile_sync")}),
        (_("Provider API access"), {"fields": ("store_tokens",)}),
        (
            _("High assurance"),
            {
                "fields": ("token_auth_method", "par", "dpop"),
                "classes": ("collapse",),
                "description": _(
                    "private_key_jwt, pushed authorization requests and DPoP; see docs/high-assurance.md. "
                    "Register /accounts/jwks.json with the provider for private_key_jwt."
                ),
            },
        ),
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
        # Read-only: the preset options and the check are form-only fields, nothing stored to show.
        return [(title, options) for title, options in fieldsets if title not in (PRESET_OPTIONS, CHECK_ON_SAVE)]

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

    # --- health: the status column, the health view and its two actions -------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        """With each provider's failures on the provider's side over the last day, counted in the same query."""
        since = timezone.now() - diagnostics.ACTIVITY_WINDOW
        failures = (
            diagnostics.provider_side_failures(since)
            .filter(provider=OuterRef("pk"))
            .values("provider")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(recent_provider_failures=Coalesce(Subquery(failures), 0))

    @admin.display(description=_("Health"))
    def health(self, obj: Provider) -> str:
        """The last check's outcome (from any process, the shell's included), linking to the health view."""
        status = diagnostics.listed_status(obj, recent_provider_failures=getattr(obj, "recent_provider_failures", 0))
        url = reverse(f"{self.admin_site.name}:oidc_signin_provider_health", args=[obj.pk])
        return format_html('<a class="oidc-health oidc-health-{}" href="{}">{}</a>', status.value, url, status.label)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.health_view)
        return [url_path("<path:object_id>/health/", view, name="oidc_signin_provider_health"), *super().get_urls()]

    def health_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """What a sign-in would find now; POST runs Check now or Refresh keys (change permission, CSRF-protected)."""
        provider = self.get_object(request, unquote(object_id))
        if provider is None:
            raise Http404(_("No such provider."))
        if not self.has_view_permission(request, provider):
            raise PermissionDenied
        can_change = self.has_change_permission(request, provider)
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            self._health_action(request, provider, request.POST.get("action", ""))
            return redirect(request.path)
        report = diagnostics.health(provider)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": provider,
            "title": _("Health of %(provider)s") % {"provider": provider.name},
            "health": report,
            "token_profile": token_profiles.profile_of(provider),
            "can_change": can_change,
            "actions": HealthAction,
            "audit_url": f"{reverse(f'{self.admin_site.name}:oidc_signin_signinevent_changelist')}?"
            + urlencode({"provider_slug": provider.slug}),
        }
        return TemplateResponse(request, "admin/oidc_signin/provider/health.html", context)

    def _health_action(self, request: HttpRequest, provider: Provider, name: str) -> None:
        try:
            action = HealthAction(name)
        except ValueError:
            self.message_user(request, _("Unknown action."), messages.ERROR)
            return
        load = diagnostics.probe if action is HealthAction.CHECK else diagnostics.refresh
        try:
            report = load(provider)
        except SignInError as exc:
            self.message_user(
                request, _("The provider could not be loaded: %(reason)s") % {"reason": exc.reason}, messages.ERROR
            )
            return
        for problem in report.problems:
            self.message_user(request, _("Problem: %(problem)s") % {"problem": problem}, messages.WARNING)
        kids = ", ".join(key.kid or "?" for key in report.keys.keys) if report.keys is not None else ""
        if action is HealthAction.CHECK:
            done = _("Checked now: the provider answered (keys: %(kids)s).") % {"kids": kids or "-"}
        else:
            done = _("Fetched the discovery document and keys again; every sign-in now uses them (keys: %(kids)s).") % {
                "kids": kids or "-"
            }
        self.message_user(request, done, messages.SUCCESS if not report.problems else messages.WARNING)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        """The form, sharing one memo of provider checks per request (see ``changeform_view``)."""
        form = super().get_form(request, obj, change=change, **kwargs)
        probes = request.__dict__.setdefault("_oidc_signin_probes", {})
        return type(form.__name__, (form,), {"probes": probes})

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """A POST's provider check runs before Django opens the view's transaction.

        The check makes HTTP calls, which may take seconds; inside ``transaction.atomic`` (with
        SQLite's IMMEDIATE mode, from BEGIN on) the site's write lock would be held all that time
        and every sign-in would wait for it. So the posted form is validated once first, outside
        the transaction, by someone allowed to save it; the validation inside reuses what it found.
        """
        if request.method == "POST" and "_saveasnew" not in request.POST:
            self._check_outside_transaction(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _check_outside_transaction(self, request: HttpRequest, object_id: str | None) -> None:
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if object_id and obj is None:
            return  # Django answers that itself
        allowed = self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)
        if not allowed:
            return  # nobody gets the server to fetch a URL of their choosing without the right to save it
        fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        form_class = self.get_form(request, obj, change=obj is not None, fields=fields)
        form_class(request.POST, request.FILES, instance=obj).is_valid()

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        """Saved; what the check on save found is the provider's first health record."""
        super().save_model(request, obj, form, change)
        report = getattr(form, "report", None)
        if report is not None:
            diagnostics.record_success(obj, report)
        if obj.client_secret_cleared:
            self.message_user(
                request,
                _(
                    "The stored client secret of %(name)s was cleared because its %(fields)s changed: a secret "
                    "never follows a provider to another server. Enter the secret again."
                )
                % {"name": obj.name, "fields": ", ".join(obj.secret_binding_changes_at_save)},
                messages.WARNING,
            )


@admin.register(Identity)
class IdentityAdmin(SecretFieldsAdmin):
    list_display = ("user", "provider", "subject", "email", "email_verified", "last_login_at", "created_at")
    list_filter = ("provider", "email_verified")
    search_fields = ("user__username", "user__email", "subject", "email", "issuer")
    raw_id_fields = ("user",)
    readonly_fields = ("issuer", "subject", "claims", "created_at", "last_login_at")
    date_hierarchy = "created_at"


@admin.register(ProviderToken)
class ProviderTokenAdmin(SecretFieldsAdmin):
    """Status only: whether a refresh token is kept, until when, for which scopes; never a token.

    The token fields are not editable, so no form has them; nothing here renders, filters, searches
    or orders by them (``secret_fields``). Revoking is ``manage.py oidc_tokens revoke`` or deleting
    the row here, which revokes the grant at the provider too (``accounts.provider_tokens``).
    """

    list_display = ("identity", "has_refresh", "expires_at", "scopes", "last_refresh_at", "revoked_at", "last_error")
    list_filter = ("identity__provider", "revoked_at")
    search_fields = ("identity__user__username", "identity__subject")
    list_select_related = ("identity__provider", "identity__user")
    fields = (
        "identity",
        "token_type",
        "has_refresh",
        "expires_at",
        "scopes",
        "created_at",
        "last_refresh_at",
        "revoked_at",
        "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ProviderToken | None = None) -> bool:
        return False

    @admin.display(boolean=True, description=_("Refresh token"))
    def has_refresh(self, obj: ProviderToken) -> bool:
        return obj.has_refresh_token


#: What a CSV cell may not start with: a spreadsheet would run it as a formula (CSV injection).
#: Reasons quote what providers sent, so an audit trail is exactly where such cells turn up.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """``value`` as text a spreadsheet shows instead of evaluating: a leading apostrophe where it would."""
    text = "" if value is None else value.isoformat() if isinstance(value, datetime.datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class _Echo:
    """The file-like object ``csv.writer`` writes one row to, handing it straight back (for streaming)."""

    def write(self, value: str) -> str:
        return value


@admin.register(SignInEvent)
class SignInEventAdmin(SecretFieldsAdmin):
    """Read-only: an audit trail that admins could edit would prove nothing."""

    list_display = ("created_at", "outcome", "action", "provider_slug", "user", "subject", "code", "ip_address")
    list_filter = ("outcome", "action", "provider_slug", "code", "created_at")
    search_fields = ("user__username", "subject", "issuer", "ip_address", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    actions = ["export_csv"]

    #: The CSV's columns: the row's fields, never anything secret (the trail holds no token or secret).
    CSV_FIELDS = (
        "created_at", "outcome", "action", "provider_slug", "user", "issuer", "subject", "code", "reason",
        "ip_address", "user_agent", "suppressed",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SignInEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SignInEvent | None = None) -> bool:
        return False  # old events go through `manage.py prune_signin_events`, by policy, not one by one

    @admin.action(permissions=["view"], description=_("Export selected sign-in events as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[SignInEvent]) -> StreamingHttpResponse:
        """The selection (every row the filters match, with "select all") streamed, oldest first."""
        writer = csv.writer(_Echo())
        header = [str(getattr(SignInEvent._meta.get_field(name), "verbose_name", name)) for name in self.CSV_FIELDS]

        def rows() -> Iterator[str]:
            yield writer.writerow(header)
            for event in queryset.select_related("user").order_by("created_at", "pk").iterator(chunk_size=500):
                user = event.user.get_username() if event.user is not None else ""
                values = [user if name == "user" else getattr(event, name) for name in self.CSV_FIELDS]
                yield writer.writerow([csv_cell(value) for value in values])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="sign-in-events-{stamp}.csv"'
        return response


class IdentityInline(admin.TabularInline):
    """A user's provider identities on the user's own admin page: read-only, each linking to its page."""

    model = Identity
    fk_name = "user"
    fields = ("provider", "issuer", "subject", "email", "email_verified", "created_at", "last_login_at")
    readonly_fields = fields
    extra = 0
    can_delete = False  # disconnecting ends provider sessions too: the profile page does it properly
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


def add_identities_to_user_admin(site: admin.AdminSite = admin.site) -> None:
    """Show identities inline on the user admin, whichever admin class the project registered for its user model.

    Runs when this module is imported (admin autodiscovery, after ``django.contrib.auth``'s admin in
    INSTALLED_APPS order); a project that registers its user admin later can call it again.
    """
    user_model = get_user_model()
    current = site._registry.get(user_model)
    if current is None or any(issubclass(inline, IdentityInline) for inline in current.inlines):
        return
    with_identities = type(type(current).__name__, (type(current),), {"inlines": [*current.inlines, IdentityInline]})
    site.unregister(user_model)
    site.register(user_model, with_identities)


add_identities_to_user_admin()


@admin.register(SiteKey)
class SiteKeyAdmin(SecretFieldsAdmin):
    """The site's signing keys (``manage.py oidc_keys``): kid, algorithm, state and dates, never the private part.

    Keys are made, rotated and retired by the command only, whose rules keep a rotation safe; the
    admin lists them and nothing here can change one.
    """

    list_display = ("kid", "algorithm", "state", "created_at", "activated_at", "retiring_since")
    list_filter = ("state", "algorithm")
    fields = ("kid", "algorithm", "state", "created_at", "activated_at", "retiring_since")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SiteKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SiteKey | None = None) -> bool:
        return False
