from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    #: Distinctive, so the app installs beside a project's own ``accounts`` app: it names the
    #: tables, the admin URLs, the URL namespace, the template and static folders.
    label = "oidc_signin"
    verbose_name = "Accounts and sign-in providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            provider_tokens,  # noqa: F401  (revokes stored tokens deleted with their identity)
        )
