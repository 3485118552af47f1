"""``manage.py oidc_keys generate|rotate|retire|status``: the site's own signing keys (``accounts.site_keys``).

The keys sign the site's ``private_key_jwt`` client assertions; providers fetch their public halves
at ``/accounts/jwks.json``. A safe rotation is two commands apart: ``generate`` publishes a key,
``rotate`` (after ``ACCOUNTS_SITE_KEY_PUBLISH_DELAY``) makes it sign, and ``retire`` deletes the
old one once every assertion it signed has expired.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import site_keys
from accounts.choices import SiteKeyAlgorithm
from accounts.client_secrets import NoSecretKey


class Command(BaseCommand):
    help = "Generate, rotate, retire and list the site's signing keys (published at /accounts/jwks.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        algorithms = [a.value for a in SiteKeyAlgorithm]
        generate = sub.add_parser(
            "generate", help="Publish a new key (it signs once rotated in; a site's first key at once)."
        )
        generate.add_argument(
            "--alg", choices=algorithms, help="Algorithm (default ACCOUNTS_SITE_KEY_ALGORITHM, ES256)."
        )
        rotate = sub.add_parser("rotate", help="Let the next key sign once it has been published long enough.")
        rotate.add_argument("--alg", choices=algorithms, help="Algorithm of the next key, if one must be made.")
        retire = sub.add_parser("retire", help="Delete retiring keys whose assertions have all expired.")
        retire.add_argument("kid", nargs="?", help="Only this key (a next key, or a retiring one past its time).")
        sub.add_parser("status", help="List the keys: kid, algorithm, state, dates (never a private part).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"handle_{action}")(**options)
        except NoSecretKey as exc:
            raise CommandError(str(exc)) from None
        except site_keys.KeyStateError as exc:
            raise CommandError(str(exc)) from None

    def handle_generate(self, *, alg: str | None, **_: Any) -> None:
        key = site_keys.generate(algorithm=alg)
        self.stdout.write(f"Generated {key.algorithm} key {key.kid} ({key.state}).")
        if key.state == "next":
            self.stdout.write("It is published at /accounts/jwks.json; run `oidc_keys rotate` to let it sign.")

    def handle_rotate(self, *, alg: str | None, **_: Any) -> None:
        rotation = site_keys.rotate(algorithm=alg)
        if rotation.waiting is not None and rotation.ready_at is not None:
            wait = site_keys.seconds_until(rotation.ready_at)
            self.stdout.write(
                f"Key {rotation.waiting.kid} is published but not long enough for providers to have it: run "
                f"rotate again in {wait}s (after {rotation.ready_at:%Y-%m-%d %H:%M:%S} UTC)."
            )
            return
        assert rotation.current is not None
        self.stdout.write(f"Key {rotation.current.kid} ({rotation.current.algorithm}) signs now.")
        if rotation.retired is not None:
            until = site_keys.retire_after(rotation.retired)
            self.stdout.write(
                f"Key {rotation.retired.kid} is retiring: published until {until:%Y-%m-%d %H:%M:%S} UTC, then "
                "`oidc_keys retire` deletes it."
            )

    def handle_retire(self, *, kid: str | None, **_: Any) -> None:
        gone = site_keys.retire(kid=kid)
        self.stdout.write(f"Retired {len(gone)} key(s){': ' + ', '.join(gone) if gone else ''}.")

    def handle_status(self, **_: Any) -> None:
        keys = site_keys.status()
        if not keys:
            self.stdout.write("No site keys: run `manage.py oidc_keys generate`.")
            return
        now = timezone.now()
        for key in keys:
            until = site_keys.retire_after(key)
            note = ""
            if until is not None:
                note = " retirable now" if until <= now else f" retirable after {until:%Y-%m-%d %H:%M:%S} UTC"
            self.stdout.write(
                f"{key.kid}  {key.algorithm}  {key.state:<8}  published {key.created_at:%Y-%m-%d %H:%M:%S}{note}"
            )
