"""Admin pages for looking around the dev IdP: users and clients are editable, keys read-only.

Every admin here follows the accounts app's rule for secrets (``SecretFieldsAdmin``): client
secrets, private keys, codes and access tokens can be neither filtered, searched, sorted nor shown.
"""

from django import forms
from django.contrib import admin

from accounts.admin import SecretFieldsAdmin

from .models import AuthorizationCode, Client, DevUser, SigningKey, Token, _new_secret


class DevIdPAdmin(SecretFieldsAdmin):
    secret_fields = {
        **SecretFieldsAdmin.secret_fields,
        Client: frozenset({"client_secret"}),
        SigningKey: frozenset({"private_jwk"}),
        AuthorizationCode: frozenset({"code"}),  # bearer credentials too, reachable through relations
        Token: frozenset({"access_token"}),
    }


@admin.register(DevUser)
class DevUserAdmin(DevIdPAdmin):
    list_display = ["name", "email", "email_verified", "sub", "created_at"]
    search_fields = ["name", "email", "sub"]
    readonly_fields = ["sub", "created_at"]


class ClientForm(forms.ModelForm):
    """The secret is write-only here too: a page that showed it would hand it to anyone looking over a shoulder."""

    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave blank to keep the stored secret (a new client gets a random one). "
        "`manage.py devidp setup` copies it to the 'local' sign-in provider.",
    )

    class Meta:
        model = Client
        fields = "__all__"  # noqa: DJ007 -- every field, as the admin's default form

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "")
        if secret:
            return secret
        return self.instance.client_secret if self.instance.pk else _new_secret()


@admin.register(Client)
class ClientAdmin(DevIdPAdmin):
    form = ClientForm
    list_display = ["client_name", "client_id", "token_endpoint_auth_method", "id_token_signed_response_alg"]
    secret_displays = {"client_secret": "secret_set"}

    @admin.display(boolean=True, description="Secret set")
    def secret_set(self, obj: Client) -> bool:
        return bool(obj.client_secret)


@admin.register(SigningKey)
class SigningKeyAdmin(DevIdPAdmin):
    list_display = ["kid", "alg", "active", "created_at", "retired_at"]
    list_filter = ["alg", "active"]
    exclude = ["private_jwk"]  # never put private key material on a page
    readonly_fields = ["kid", "kty", "alg", "active", "created_at", "retired_at"]

    def has_add_permission(self, request) -> bool:
        return False  # keys come from `manage.py devidp setup` / `rotate-keys`
