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

        self._provider_changes_void_cached_tokens()

    @staticmethod
    def _provider_changes_void_cached_tokens() -> None:
        """Every save or delete of a provider bumps the version kept rows and verified tokens hold under."""
        from django.db.models.signals import post_delete, post_save

        from .models import Provider
        from .provider_cache import bump_providers_version

        for signal in (post_save, post_delete):
            signal.connect(bump_providers_version, sender=Provider, dispatch_uid=f"token_cache_{signal is post_save}")
