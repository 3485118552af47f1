"""Admin for providers and identities. The client secret is write-only: never rendered back."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.html import format_html

from .models import Identity, Provider, SignInEvent
from .presets import preset_values


class ProviderForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave blank to keep the stored secret. It is never shown again.",
    )

    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Presets: self-managed GitLab or GitHub Enterprise Server base URL.",
    )
    tenant = forms.CharField(
        required=False,
        initial="common",
        help_text="Microsoft preset: common, organizations, consumers, or your tenant id.",
    )

    class Meta:
        model = Provider
        fields = "__all__"  # noqa: DJ007 -- every field; the fieldsets below decide the layout

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["issuer"].required = False  # a preset can fill it in; the model still requires it

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if not secret and self.instance.pk:
            return self.instance.client_secret  # blank means "unchanged"
        return secret

    def clean(self) -> dict:
        """On a new provider, a preset fills what the admin left blank: only a client id and secret are needed."""
        cleaned = super().clean()
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
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "slug", "preset", "kind", "issuer", "enabled", "display_order", "secret_set")
    list_editable = ("enabled", "display_order")
    list_filter = ("enabled", "kind", "preset")
    search_fields = ("name", "slug", "issuer", "client_id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("redirect_uri", "backchannel_logout_uri", "post_logout_redirect_uri", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "preset", "enabled", "display_order")}),
        (
            "Client registration",
            {
                "fields": (
                    "issuer",
                    "client_id",
                    "client_secret",
                    "redirect_uri",
                    "post_logout_redirect_uri",
                    "backchannel_logout_uri",
                ),
                "description": "Register the three URLs below with the provider.",
            },
        ),
        ("Preset options", {"fields": ("base_url", "tenant"), "description": "Only used when adding with a preset."}),
        ("Request and verification", {"fields": ("kind", "scopes", "allowed_algorithms", "extra_auth_params")}),
        (
            "GitHub-style endpoints",
            {
                "fields": ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint"),
                "classes": ("collapse",),
                "description": "Only for GitHub-style providers; OpenID Connect providers are discovered.",
            },
        ),
        ("Who may sign in", {"fields": ("allowed_email_domains", "allowed_hosted_domains", "allowed_tenants")}),
        ("Accounts", {"fields": ("email_linking", "profile_sync")}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Provider | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._admin_request = request  # lets redirect_uri show an absolute URL for this site
        return obj

    def _absolute(self, obj: Provider, path: str) -> str:
        request = getattr(obj, "_admin_request", None)
        return format_html("<code>{}</code>", request.build_absolute_uri(path) if request else path)

    @admin.display(description="Redirect URI")
    def redirect_uri(self, obj: Provider) -> str:
        if not obj.slug:
            return "Shown once the provider is saved."
        return self._absolute(obj, reverse("accounts:callback", args=[obj.slug]))

    @admin.display(description="Back-channel logout URI")
    def backchannel_logout_uri(self, obj: Provider) -> str:
        if not obj.slug:
            return "Shown once the provider is saved."
        return self._absolute(obj, reverse("accounts:backchannel_logout", args=[obj.slug]))

    @admin.display(description="Post-logout redirect URI")
    def post_logout_redirect_uri(self, obj: Provider) -> str:
        return self._absolute(obj, resolve_url(settings.LOGOUT_REDIRECT_URL or "accounts:login"))

    @admin.display(boolean=True, description="Secret set")
    def secret_set(self, obj: Provider) -> bool:
        return bool(obj.client_secret)


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("user", "provider", "subject", "email", "email_verified", "last_login_at", "created_at")
    list_filter = ("provider", "email_verified")
    search_fields = ("user__username", "user__email", "subject", "email", "issuer")
    raw_id_fields = ("user",)
    readonly_fields = ("issuer", "subject", "claims", "created_at", "last_login_at")
    date_hierarchy = "created_at"


@admin.register(SignInEvent)
class SignInEventAdmin(admin.ModelAdmin):
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
