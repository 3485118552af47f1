"""``manage.py devidp setup [--base-url URL]`` and ``manage.py devidp rotate-keys [--alg ALG]``."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devidp import keys
from devidp.bootstrap import normalize_base_url, run_setup
from devidp.models import SIGNING_ALGORITHMS

USAGE = "say what to do: `manage.py devidp setup [--base-url http://127.0.0.1:8000]` or `manage.py devidp rotate-keys`"


class Command(BaseCommand):
    help = "Set up or maintain the local development identity provider."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", metavar="{setup,rotate-keys}")
        setup = commands.add_parser(
            "setup",
            help="Create signing keys, the two test users, the client and the 'local' sign-in provider (idempotent).",
        )
        setup.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the site runs (default: http://127.0.0.1:8000).",
        )
        rotate = commands.add_parser(
            "rotate-keys",
            help="Replace the active signing key with a new one (new kid); the old key leaves the JWKS.",
        )
        rotate.add_argument("--alg", choices=SIGNING_ALGORITHMS, default="RS256", help="Which key (default RS256).")

    def handle(self, *args, action: str | None = None, **options) -> None:
        if not (settings.DEBUG or getattr(settings, "DEVIDP_ALLOW_WITHOUT_DEBUG", False)):
            raise CommandError("the dev IdP only runs with DEBUG on (set DJANGO_DEBUG=1).")
        if action == "setup":
            self._setup(options["base_url"])
        elif action == "rotate-keys":
            self._rotate(options["alg"])
        else:
            raise CommandError(USAGE)

    def _setup(self, base_url: str) -> None:
        try:
            base_url = normalize_base_url(base_url)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        result = run_setup(base_url)
        for change in result.changes:
            self.stdout.write(f"  {change}")
        if not result.changes:
            self.stdout.write("  already set up; nothing changed")
        self.stdout.write(self.style.SUCCESS(f"Local dev IdP ready. Open {result.login_url}"))

    def _rotate(self, alg: str) -> None:
        new, retired = keys.rotate(alg)
        for old in retired:
            self.stdout.write(f"  retired {old.alg} key {old.kid} (removed from the JWKS)")
        self.stdout.write(self.style.SUCCESS(f"New active {new.alg} signing key: {new.kid}"))
