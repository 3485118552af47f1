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


class ProviderForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave blank to keep the stored secret. It is never shown again.",
    )

    class Meta:
        model = Provider
        fields = "__all__"  # noqa: DJ007 -- every field; the fieldsets below decide the layout

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if not secret and self.instance.pk:
            return self.instance.client_secret  # blank means "unchanged"
        return secret


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "slug", "kind", "issuer", "enabled", "display_order", "secret_set")
    list_editable = ("enabled", "display_order")
    list_filter = ("enabled", "kind")
    search_fields = ("name", "slug", "issuer", "client_id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("redirect_uri", "backchannel_logout_uri", "post_logout_redirect_uri", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "kind", "enabled", "display_order")}),
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
        ("Request and verification", {"fields": ("scopes", "allowed_algorithms", "extra_auth_params")}),
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
