"""``manage.py oidc_tokens status|revoke``: the provider tokens stored for calling providers' APIs.

``revoke`` revokes each selected grant at its provider (RFC 7009, Google's revoke endpoint, GitHub's
grant deletion) before deleting the stored tokens, best effort, with an audit row each; the people
concerned connect again to grant access anew. ``status`` shows what is stored, never a token.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from accounts import provider_tokens
from accounts.models import ProviderToken


class Command(BaseCommand):
    help = "Show or revoke the provider tokens stored for calling providers' APIs (never shows a token)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name, text in (
            ("status", "List stored tokens: identity, expiry, refresh token or not, scopes, last error."),
            ("revoke", "Revoke at the provider, then delete, the stored tokens selected."),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument("--provider", help="Only this provider (its slug).")
            action.add_argument("--user", help="Only this user (their username).")
            if name == "revoke":
                action.add_argument(
                    "--all", action="store_true", help="Every stored token (needed when neither filter is given)."
                )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action}")(**options)

    def _selected(self, *, provider: str | None, user: str | None, **_: Any) -> QuerySet[ProviderToken]:
        rows = ProviderToken.objects.select_related("identity__provider", "identity__user").order_by("pk")
        if provider:
            rows = rows.filter(identity__provider__slug=provider)
        if user:
            User = get_user_model()
            found = User._default_manager.filter(**{User.USERNAME_FIELD: user}).first()
            if found is None:
                raise CommandError(f"No user {user!r}.")
            rows = rows.filter(identity__user_id=found.pk)
        return rows

    def handle_status(self, **options: Any) -> None:
        for row in self._selected(**options):
            identity = row.identity
            state = (
                "revoked"
                if row.revoked_at
                else f"expires {row.expires_at:%Y-%m-%d %H:%M}"
                if row.expires_at
                else "no expiry"
            )
            self.stdout.write(
                f"{identity.provider.slug:<16} {identity.user.get_username():<20} {state:<24} "
                f"refresh={'yes' if row.has_refresh_token else 'no':<3} scopes={row.scopes or '-'}"
                + (f" last_error={row.last_error}" if row.last_error else "")
            )

    def handle_revoke(self, *, all: bool, **options: Any) -> None:
        if not (all or options.get("provider") or options.get("user")):
            raise CommandError("Name --provider and/or --user, or give --all to revoke every stored token.")
        confirmed = total = 0
        for row in list(self._selected(**options)):
            total += 1
            confirmed += provider_tokens.revoke(row.identity, reason="revoked by manage.py oidc_tokens revoke")
        self.stdout.write(
            f"Deleted the stored tokens of {total} identit(ies); {confirmed} revocation(s) confirmed by the provider."
        )
