"""``manage.py oidc_secrets generate-key|reencrypt|status``: the keys client secrets are encrypted with.

Rotating a key: put a new one first in ``ACCOUNTS_CLIENT_SECRET_KEYS`` (the old one stays after it, so
everything stored keeps decrypting), run ``reencrypt``, then drop the old key. ``reencrypt`` also
encrypts secrets stored before encryption existed, or while no key was configured.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts import client_secrets
from accounts.models import Provider, ProviderToken
from accounts.provider_cache import bump_providers_version


class Command(BaseCommand):
    help = "Make a key for ACCOUNTS_CLIENT_SECRET_KEYS, or re-encrypt every stored client secret with the newest key."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("generate-key", help="Print a new random key for ACCOUNTS_CLIENT_SECRET_KEYS.")
        sub.add_parser(
            "reencrypt",
            help="Encrypt every provider's client secret with the first key of ACCOUNTS_CLIENT_SECRET_KEYS "
            "(after putting a new key in front); env:NAME references are left as they are.",
        )
        sub.add_parser("status", help="How each provider's client secret is stored (never the secret itself).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action.replace('-', '_')}")()

    def handle_generate_key(self) -> None:
        self.stdout.write(client_secrets.generate_key())

    def handle_status(self) -> None:
        for slug, stored in Provider.objects.order_by("slug").values_list("slug", "client_secret"):
            form = client_secrets.form_of(stored)
            detail = (
                f" ({client_secrets.environment_name(stored)})" if form == client_secrets.SecretForm.ENVIRONMENT else ""
            )
            if form == client_secrets.SecretForm.ENCRYPTED and not client_secrets.decryptable(stored):
                detail = " (no configured key decrypts it)"
            self.stdout.write(f"{slug:<20} {form}{detail}")

    def handle_reencrypt(self) -> None:
        if not client_secrets.keys_configured():
            raise CommandError("ACCOUNTS_CLIENT_SECRET_KEYS is not set: add a key first (oidc_secrets generate-key).")
        changed, unreadable = 0, []
        with transaction.atomic():
            for pk, slug, stored in Provider.objects.select_for_update().values_list("pk", "slug", "client_secret"):
                if client_secrets.form_of(stored) in (
                    client_secrets.SecretForm.NONE,
                    client_secrets.SecretForm.ENVIRONMENT,
                ):
                    continue
                try:
                    renewed = client_secrets.reencrypt(stored)
                except InvalidToken:
                    unreadable.append(slug)
                    continue
                # update(): no save signal, no updated_at -- the provider's settings did not change.
                Provider.objects.filter(pk=pk).update(client_secret=renewed)
                bump_providers_version()  # update() sends no post_save: the kept rows must go
                changed += 1
        self.stdout.write(f"Re-encrypted {changed} client secret(s) with the newest key.")
        tokens, unreadable_tokens = self._reencrypt_provider_tokens()
        self.stdout.write(f"Re-encrypted the stored provider tokens of {tokens} identit(ies) with the newest key.")
        if unreadable_tokens:
            self.stderr.write(
                f"No configured key decrypts the stored provider tokens of {unreadable_tokens} identit(ies); "
                "they cannot be used until their key is back (or their owners connect again)."
            )
        if unreadable:
            raise CommandError(
                f"No configured key decrypts the client secret of: {', '.join(unreadable)}. Put the key they were "
                "encrypted with back into ACCOUNTS_CLIENT_SECRET_KEYS, or enter those secrets again."
            )

    @staticmethod
    def _reencrypt_provider_tokens() -> tuple[int, int]:
        """The stored provider tokens (``accounts.provider_tokens``) moved to the newest key, row by row.

        Each row is locked while it is rewritten, as a refresh locks it, so a refresh running at the
        same moment never has its rotated token overwritten with the old one.
        """
        changed = unreadable = 0
        for pk in ProviderToken.objects.values_list("pk", flat=True).iterator():
            with transaction.atomic():
                row = ProviderToken.objects.select_for_update().filter(pk=pk).first()
                if row is None:
                    continue
                try:
                    renewed = {
                        name: client_secrets.reencrypt(getattr(row, name)) if getattr(row, name) else ""
                        for name in ("access_token", "refresh_token")
                    }
                except InvalidToken:
                    unreadable += 1
                    continue
                ProviderToken.objects.filter(pk=pk).update(**renewed)
                changed += 1
        return changed, unreadable
