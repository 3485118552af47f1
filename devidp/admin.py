"""Admin pages for looking around the dev IdP: users and clients are editable, keys read-only."""

from django.contrib import admin

from .models import Client, DevUser, SigningKey


@admin.register(DevUser)
class DevUserAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "email_verified", "sub", "created_at"]
    search_fields = ["name", "email", "sub"]
    readonly_fields = ["sub", "created_at"]


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["client_name", "client_id", "token_endpoint_auth_method", "id_token_signed_response_alg"]


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ["kid", "alg", "active", "created_at", "retired_at"]
    list_filter = ["alg", "active"]
    exclude = ["private_jwk"]  # never put private key material on a page
    readonly_fields = ["kid", "kty", "alg", "active", "created_at", "retired_at"]

    def has_add_permission(self, request) -> bool:
        return False  # keys come from `manage.py devidp setup` / `rotate-keys`
