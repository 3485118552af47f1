"""``manage.py oidc_provider add|list|check|refresh``: manage providers from a shell or a script."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import diagnostics
from accounts.choices import TokenAuth
from accounts.errors import SignInError
from accounts.models import Provider
from accounts.oidc.clients import client_class
from accounts.oidc.profiles import ProfileName
from accounts.presets import PRESETS, PresetKey, preset_values


def _listed(value: str | None) -> str | None:
    """A comma-separated option as the model stores it (space separated)."""
    return " ".join(w for w in value.replace(",", " ").split() if w) if value else value


class Command(BaseCommand):
    help = "Add, list, check or refresh sign-in providers."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add (or update) a provider.")
        add.add_argument("slug")
        add.add_argument(
            "--preset",
            choices=sorted(PRESETS),
            help="Sign-in: google, github, microsoft, gitlab or generic. Token issuers: stytch, auth0, okta, "
            "entra, cognito, keycloak, google-service, github-actions.",
        )
        add.add_argument(
            "--kind", choices=[k.value for k in Provider.Kind], help="oidc (default), github or token-issuer."
        )
        add.add_argument("--issuer", help="Issuer URL (OpenID Connect) or base URL (GitHub-style).")
        add.add_argument("--base-url", default="", help="Self-managed GitLab or GitHub Enterprise Server base URL.")
        add.add_argument("--tenant", default="common", help="Microsoft tenant: common, organizations, or an id.")
        add.add_argument(
            "--client-id",
            help="The client id this site has at the provider (required, except for a token issuer: there it "
            "defaults to the Stytch project id or the slug).",
        )
        add.add_argument(
            "--client-secret",
            default="",
            help="The secret (stored encrypted with ACCOUNTS_CLIENT_SECRET_KEYS), or env:NAME to read it from the "
            "environment variable NAME each time it is used (NAME must start with ACCOUNTS_CLIENT_SECRET_ENV_PREFIX, "
            "default OIDC_SECRET_, or be listed in ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED). With --update, changing the "
            "issuer, kind, an endpoint or the JWKS URI clears the stored secret unless this is given again.",
        )
        add.add_argument("--name")
        add.add_argument("--scopes")
        add.add_argument("--authorize-url", help="GitHub-style authorization endpoint.")
        add.add_argument("--token-url", help="GitHub-style token endpoint.")
        add.add_argument("--userinfo-url", help="GitHub-style user API endpoint.")
        add.add_argument("--emails-url", help="GitHub-style emails API endpoint.")
        add.add_argument(
            "--callback-issuer",
            help="GitHub-style: the issuer its callbacks name (RFC 9207 iss); any other is refused. Default: the "
            "authorization endpoint without its final /authorize (https://github.com/login/oauth for github.com).",
        )
        add.add_argument(
            "--jwks-uri",
            help="Token issuers: the JWKS URL of an issuer without a discovery document, whose access tokens "
            "protect this site's APIs (implies --kind token-issuer; never offered for sign-in).",
        )
        add.add_argument(
            "--userinfo",
            choices=[u.value for u in Provider.Userinfo],
            help="OpenID Connect: when to call the userinfo endpoint (default when-needed: if the ID token lacks "
            "the email or profile claims).",
        )
        # --- token issuers and token profiles (docs/api.md) ---
        add.add_argument("--project-id", default="", help="Stytch preset: the project id (project-test-... or -live-).")
        add.add_argument(
            "--token-profile",
            choices=[p.value for p in ProfileName],
            help="How the provider shapes its access tokens (default rfc9068; a --preset sets its vendor's).",
        )
        add.add_argument("--audience", help="This provider's tokens must carry this audience instead of the API's own.")
        add.add_argument("--allowed-clients", help="Comma-separated client ids admitted (required for cognito).")
        add.add_argument("--allowed-tenants", help="Comma-separated Entra tenant ids admitted.")
        add.add_argument(
            "--allowed-callers",
            help="Comma-separated: service-account emails (google-service), or repository / repository@ref / "
            "repository@environment:NAME glob patterns (github-actions).",
        )
        add.add_argument("--max-token-age", type=int, help="Refuse tokens issued longer ago than this (seconds).")
        add.add_argument(
            "--credential-endpoint",
            action="store_true",
            default=None,
            help="OpenID Connect: accept Google Identity Services' button and One Tap at /accounts/<slug>/credential/.",
        )
        add.add_argument(
            "--app-client-ids",
            help="Comma-separated client ids of native or single-page apps whose ID tokens /accounts/<slug>/token/ "
            "accepts (empty: that endpoint is off).",
        )
        add.add_argument(
            "--app-redirect-uris",
            help="Comma-separated redirect URIs of the apps' own authorization requests whose codes the token "
            "endpoint redeems.",
        )
        add.add_argument(
            "--store-tokens",
            action="store_true",
            help="Keep each person's access and refresh tokens (encrypted) to call the provider's APIs for them "
            "(accounts.provider_tokens); needs ACCOUNTS_CLIENT_SECRET_KEYS.",
        )
        # High assurance (docs/high-assurance.md).
        add.add_argument(
            "--token-auth",
            choices=[choice.value for choice in TokenAuth],
            help="How the site authenticates to the token endpoint (default: from discovery). private_key_jwt signs "
            "with the site's key (manage.py oidc_keys) and needs no --client-secret.",
        )
        add.add_argument(
            "--par", action="store_true", default=None, help="Push authorization requests first (RFC 9126)."
        )
        add.add_argument(
            "--dpop", action="store_true", default=None, help="Bind the provider's tokens to a DPoP key (RFC 9449)."
        )
        add.add_argument("--disabled", action="store_true", help="Add it switched off.")
        add.add_argument("--update", action="store_true", help="Update the provider if the slug exists.")
        sub.add_parser("list", help="List providers.")
        check = sub.add_parser("check", help="Fetch discovery and JWKS now and report problems.")
        check.add_argument("slug")
        refresh = sub.add_parser("refresh", help="Drop cached discovery and JWKS documents and fetch them again.")
        refresh.add_argument("slug")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action}")(**options)

    def handle_add(self, *, slug: str, client_id: str | None, client_secret: str, update: bool, **options: Any) -> None:
        existing = Provider.objects.filter(slug=slug).first()
        if existing and not update:
            raise CommandError(f"Provider {slug!r} already exists (use --update to change it).")
        provider = existing or Provider(slug=slug)
        values = self._values(options)
        for field, value in values.items():
            setattr(provider, field, value)
        provider.name = options["name"] or provider.name or self._default_name(slug, options["preset"])
        if client_id is None:
            if values.get("kind") != Provider.Kind.TOKEN_ISSUER:
                raise CommandError("Give --client-id (only a token issuer may go without).")
            client_id = values.get("client_id") or provider.client_id or slug
        provider.client_id = client_id
        if client_secret or not existing:
            provider.enter_client_secret(client_secret)
        provider.enabled = not options["disabled"]
        self._no_redirect_options(provider, options)
        if options.get("store_tokens"):
            provider.store_tokens = True
        self._high_assurance_options(provider, options)
        self._save(provider)
        self.stdout.write(f"{'Updated' if existing else 'Added'} provider {slug!r} ({provider.name}).")
        if provider.client_secret_cleared:
            changed = ", ".join(provider.secret_binding_changes_at_save)
            self.stdout.write(
                self.style.WARNING(
                    f"The stored client secret was cleared because {changed} changed: a secret never follows a "
                    "provider to another server. Give --client-secret again."
                )
            )

    @staticmethod
    def _high_assurance_options(provider: Provider, options: dict[str, Any]) -> None:
        """--token-auth, --par, --dpop: only what was given changes (a preset may have set them)."""
        if options.get("token_auth"):
            provider.token_auth_method = options["token_auth"]
        for field in ("par", "dpop"):
            if options.get(field) is not None:
                setattr(provider, field, options[field])

    @staticmethod
    def _no_redirect_options(provider: Provider, options: dict[str, Any]) -> None:
        """Sign-in without a redirect (docs/sign-in-without-redirect.md): only what was given changes."""
        if options["credential_endpoint"] is not None:
            provider.credential_endpoint = options["credential_endpoint"]
        for field, given in (("app_client_ids", "app_client_ids"), ("app_redirect_uris", "app_redirect_uris")):
            if options[given] is not None:
                setattr(provider, field, " ".join(v.strip() for v in options[given].split(",") if v.strip()))

    def _values(self, options: dict[str, Any]) -> dict[str, Any]:
        """Field values from a preset (if any), overridden by what was given explicitly."""
        values: dict[str, Any] = {}
        if options["preset"]:
            try:
                values = preset_values(
                    options["preset"],
                    base_url=options["base_url"] or options["issuer"] or "",
                    tenant=options["tenant"],
                    project_id=options["project_id"],
                )
            except ValueError as exc:
                hint = "--project-id" if options["preset"] == PresetKey.STYTCH else "--base-url or --issuer"
                raise CommandError(f"{exc} (give {hint}).") from None

        explicit = {
            "kind": options["kind"],
            "issuer": options["issuer"],
            "scopes": options["scopes"],
            "authorization_endpoint": options["authorize_url"],
            "token_endpoint": options["token_url"],
            "userinfo_endpoint": options["userinfo_url"],
            "emails_endpoint": options["emails_url"],
            "callback_issuer": options["callback_issuer"],
            "userinfo": options["userinfo"],
            "jwks_uri": options["jwks_uri"],
            "token_profile": options["token_profile"],
            "token_audience": options["audience"],
            "allowed_clients": _listed(options["allowed_clients"]),
            "allowed_tenants": _listed(options["allowed_tenants"]),
            "allowed_callers": _listed(options["allowed_callers"]),
            "token_max_age": options["max_token_age"],
        }
        values.update({k: v for k, v in explicit.items() if v})
        if values.get("token_profile") and not values.get("kind") and not values.get("preset"):
            values["kind"] = Provider.Kind.TOKEN_ISSUER  # --issuer --token-profile: a token issuer, keys by discovery
        if values.get("jwks_uri") and not values.get("kind"):
            values["kind"] = Provider.Kind.TOKEN_ISSUER
        try:
            kind = client_class(values.get("kind") or Provider.Kind.OIDC)
        except SignInError as exc:
            raise CommandError(exc.reason) from None
        if not kind.discovers and not values.get("issuer") and values.get("authorization_endpoint"):
            parts = urlsplit(values["authorization_endpoint"])  # the identity namespace: the provider's origin
            values["issuer"] = f"{parts.scheme}://{parts.netloc}"
        if not values.get("issuer"):
            raise CommandError("Give --issuer (or a --preset that knows it).")
        if kind.default_scopes:  # a token issuer has none: the field keeps its default, unused
            values.setdefault("scopes", kind.default_scopes)
        return values

    @staticmethod
    def _default_name(slug: str, preset: str | None) -> str:
        if preset and preset != PresetKey.GENERIC:
            return PRESETS[preset].label
        return slug.replace("-", " ").title()

    def handle_list(self, **_: Any) -> None:
        providers = Provider.objects.all()
        if not providers:
            self.stdout.write("No providers. Add one with: manage.py oidc_provider add <slug> --issuer URL ...")
        for p in providers:
            state = "enabled " if p.enabled else "disabled"
            profile = f"  token_profile={p.token_profile}" if p.token_profile != ProfileName.RFC9068 else ""
            self.stdout.write(f"{p.slug:<20} {state} {p.kind:<8} {p.issuer}  client_id={p.client_id}{profile}")

    def handle_check(self, *, slug: str, **_: Any) -> None:
        self._report(self._provider(slug))

    def handle_refresh(self, *, slug: str, **_: Any) -> None:
        provider = self._provider(slug)
        self._report(provider, diagnostics.refresh)
        self.stdout.write("Cached documents refreshed.")

    # --- helpers --------------------------------------------------------------------------------

    def _provider(self, slug: str) -> Provider:
        provider = Provider.objects.filter(slug=slug).first()
        if provider is None:
            raise CommandError(f"No provider {slug!r}. See: manage.py oidc_provider list")
        return provider

    def _save(self, provider: Provider) -> None:
        try:
            provider.full_clean()
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(f"Invalid provider: {problems}") from None
        provider.save()

    def _report(self, provider: Provider, load: Callable[[Provider], diagnostics.Report] = diagnostics.check) -> None:
        try:
            report = load(provider)
        except SignInError as exc:
            raise CommandError(f"{provider.slug}: {exc.reason}") from None
        if report.keys is None:
            self.stdout.write(f"Provider {provider.slug} ({provider.name}) is GitHub-style: no discovery or keys.")
        else:
            self.stdout.write(f"Provider {provider.slug} ({provider.name}) - issuer {report.metadata['issuer']}")
        for name, url in report.endpoints.items():
            self.stdout.write(f"  {name:<24} {url or '(none)'}")
        if report.keys is not None:
            self.stdout.write(f"  keys ({len(report.keys.keys)}):")
            for key in report.keys.keys:
                self.stdout.write(
                    f"    kid={key.kid!r} kty={key.key_type} alg={key.get('alg') or '-'} use={key.get('use') or '-'}"
                )
        for problem in report.problems:
            self.stdout.write(self.style.WARNING(f"  problem: {problem}"))
