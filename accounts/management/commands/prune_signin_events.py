"""``manage.py prune_signin_events --days 90``: delete old audit events, dead session links, spent tokens.

Run it daily (cron, a scheduler): audit events older than the cut-off go, and so do the
back-channel logout links (``ProviderSession``) whose Django session has expired or ended, and the
memories of single-use tokens (``SpentToken``, ``accounts.replay``) that have expired: only those,
since an earlier deletion would make a spent token usable again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import replay, session
from accounts.models import SignInEvent


class Command(BaseCommand):
    help = "Delete sign-in audit events older than --days (default 90)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=90, help="Keep this many days of events.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args: Any, days: int, dry_run: bool, **options: Any) -> None:
        if days < 1:
            raise CommandError("--days must be at least 1.")
        try:
            cut_off = timezone.now() - timedelta(days=days)
        except OverflowError:  # before year 1: say so rather than end in a traceback
            raise CommandError(f"--days {days} is too large.") from None
        old = SignInEvent.objects.filter(created_at__lt=cut_off)
        if dry_run:
            self.stdout.write(f"{old.count()} event(s) older than {days} days would be deleted.")
            self.stdout.write(f"{replay.expired().count()} expired spent token(s) would be forgotten.")
            return
        deleted, _ = old.delete()
        self.stdout.write(f"Deleted {deleted} event(s) older than {days} days.")
        self.stdout.write(f"Forgot {session.forget_dead()} link(s) to sessions that no longer exist.")
        self.stdout.write(f"Forgot {replay.prune()} expired spent token(s).")
