"""``manage.py devidp setup [--base-url URL]``, ``rotate-keys [--alg ALG]``, ``credentials [--base-url URL]``
and ``token [--base-url URL] [--expired] [--stytch PROJECT_ID] [--scope SCOPE]``."""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from joserfc import jwt

from devidp import keys, server
from devidp.bootstrap import normalize_base_url, run_setup
from devidp.models import SIGNING_ALGORITHMS, Client

USAGE = "say what to do: `manage.py devidp setup [--base-url http://127.0.0.1:8000]` or `manage.py devidp rotate-keys`"


class Command(BaseCommand):
    help = "Set up or maintain the local development identity provider."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", metavar="{setup,rotate-keys,credentials}")
        setup = commands.add_parser(
            "setup",
            help="Create signing keys, the two test users, the client and the 'local' sign-in provider (idempotent). "
            "With another --base-url (another PORT), the 'local' provider is re-pointed there and the accounts "
            "signed in through it move along, so everyone keeps their account: development only, a real "
            "provider's issuer never changes.",
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
        credentials = commands.add_parser(
            "credentials",
            help="Print the dev client's id and secret, and a curl command that gets a client-credentials token.",
        )
        credentials.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the site runs.")
        token = commands.add_parser(
            "token",
            help="Print an access token signed with the dev IdP's key, offline: the dev client's own "
            "(client credentials, as /devidp/token gives it), an expired one, or a Stytch-shaped M2M token.",
        )
        token.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the site runs.")
        token.add_argument("--expired", action="store_true", help="A token that expired an hour ago (a 401 to see).")
        token.add_argument(
            "--stytch",
            metavar="PROJECT_ID",
            help="A Stytch-shaped M2M token of this project (typ JWT, iss stytch.com/PROJECT_ID, aud [PROJECT_ID]).",
        )
        token.add_argument("--scope", default=None, help="Its scope (default: openid; Stytch: reports:read).")

    def handle(self, *args, action: str | None = None, **options) -> None:
        if not (settings.DEBUG or getattr(settings, "DEVIDP_ALLOW_WITHOUT_DEBUG", False)):
            raise CommandError("the dev IdP only runs with DEBUG on (set DJANGO_DEBUG=1).")
        if action == "setup":
            self._setup(options["base_url"])
        elif action == "rotate-keys":
            self._rotate(options["alg"])
        elif action == "credentials":
            self._credentials(options["base_url"])
        elif action == "token":
            self._token(
                options["base_url"], expired=options["expired"], stytch=options["stytch"], scope=options["scope"]
            )
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

    def _credentials(self, base_url: str) -> None:
        """The test client's secret, for trying an API by hand (docs/api.md); it is a test IdP's, never real."""
        try:
            base_url = normalize_base_url(base_url)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        client = Client.objects.order_by("pk").first()
        if client is None:
            raise CommandError("no client yet: run `manage.py devidp setup` first.")
        self.stdout.write(f"client_id:     {client.client_id}")
        self.stdout.write(f"client_secret: {client.client_secret}")
        self.stdout.write(
            f"curl -s -u '{client.client_id}:{client.client_secret}' -d grant_type=client_credentials "
            f"-d scope=openid {base_url}/devidp/token"
        )

    def _token(self, base_url: str, *, expired: bool, stytch: str | None, scope: str | None) -> None:
        """A token for the README's walk-through, signed with the key /devidp/jwks publishes."""
        try:
            base_url = normalize_base_url(base_url)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        client = Client.objects.order_by("pk").first()
        if client is None:
            raise CommandError("no client yet: run `manage.py devidp setup` first.")
        now = int(time.time()) - (7200 if expired else 0)
        if stytch:
            header = {"alg": "RS256", "typ": "JWT"}
            claims = {
                "iss": f"stytch.com/{stytch}",
                "aud": [stytch],
                "sub": "m2m-client-test-devidp-0000-0000-000000000000",
                "scope": scope if scope is not None else "reports:read",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            }
        else:
            header = {"alg": "RS256", "typ": "at+jwt"}
            claims = {
                "iss": server.issuer_for(base_url + "/"),
                "aud": server.access_token_audience(base_url),
                "exp": now + 3600,
                "iat": now,
                "jti": secrets.token_urlsafe(18),
                "client_id": client.client_id,
                "sub": client.client_id,
                "scope": scope if scope is not None else "openid",
            }
        self.stdout.write(jwt.encode(header, claims, keys.signing_keys("RS256"), algorithms=["RS256"]))
