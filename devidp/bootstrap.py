"""``devidp setup``: everything a fresh clone needs to sign in, made idempotent.

Running it again changes nothing: keys, users and the client are only created when missing, the
client secret is generated once, and the relying party's provider row is saved only if it differs.
Run on another port, it re-points the provider there and moves its sign-ins along (dev only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from django.db import transaction

from accounts.errors import SignInError
from accounts.models import DisconnectedIdentity, Identity, Provider, ProviderSession

from . import keys
from .models import Client, DevUser

CLIENT_ID = "local-dev-client"
CLIENT_NAME = "Local dev site"
PROVIDER_SLUG = "local"
PROVIDER_NAME = "Local dev IdP"
SCOPES = "openid email profile"

SEED_USERS = (
    {
        "name": "Alice Example", "given_name": "Alice", "family_name": "Example",
        "preferred_username": "alice", "email": "alice@example.com", "email_verified": True,
    },
    {
        "name": "Bob Unverified", "given_name": "Bob", "family_name": "Unverified",
        "preferred_username": "bob", "email": "bob@example.com", "email_verified": False,
    },
)  # fmt: skip


@dataclass
class SetupResult:
    client: Client
    provider: Provider
    login_url: str
    changes: list[str] = field(default_factory=list)


def normalize_base_url(base_url: str) -> str:
    """``http(s)://host[:port]`` without a trailing slash; raises ``ValueError`` for anything else."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--base-url must look like http://127.0.0.1:8000, not {base_url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"--base-url must be the site's root, without a path: {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def site_variants(base_url: str) -> list[str]:
    """The base URL plus its loopback twin (127.0.0.1 <-> localhost), as browsers use either."""
    parts = urlsplit(base_url)
    twin = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(parts.hostname or "")
    if twin is None:
        return [base_url]
    netloc = twin + (f":{parts.port}" if parts.port else "")
    return [base_url, urlunsplit((parts.scheme, netloc, "", "", ""))]


def _merged(existing: list[str], wanted: list[str]) -> list[str]:
    """Keep what is registered (another port may still use it) and append what is new."""
    return list(existing) + [uri for uri in wanted if uri not in existing]


def run_setup(base_url: str) -> SetupResult:
    """Keys, test users, the client and the relying party's provider row for ``base_url``."""
    base_url = normalize_base_url(base_url)
    sites = site_variants(base_url)
    changes = [f"created {k.alg} signing key {k.kid}" for k in keys.ensure_keys()]

    with transaction.atomic():
        for seed in SEED_USERS:
            if not DevUser.objects.filter(email__iexact=seed["email"]).exists():
                DevUser.objects.create(**seed)
                changes.append(f"created test user {seed['email']}")

        client, created = Client.objects.get_or_create(client_id=CLIENT_ID, defaults={"client_name": CLIENT_NAME})
        if created:
            changes.append(f"registered client {CLIENT_ID}")
        redirect_uris = _merged(client.redirect_uris, [f"{s}/accounts/{PROVIDER_SLUG}/callback/" for s in sites])
        logout_uris = _merged(client.post_logout_redirect_uris, [f"{s}/accounts/login/" for s in sites])
        if redirect_uris != client.redirect_uris or logout_uris != client.post_logout_redirect_uris:
            client.redirect_uris, client.post_logout_redirect_uris = redirect_uris, logout_uris
            client.save(update_fields=["redirect_uris", "post_logout_redirect_uris"])
            changes.append(f"registered redirect URIs for {', '.join(sites)}")

        provider = _sync_provider(client, issuer=f"{base_url}/devidp", changes=changes)

    return SetupResult(client=client, provider=provider, login_url=f"{base_url}/accounts/login/", changes=changes)


def _sync_provider(client: Client, *, issuer: str, changes: list[str]) -> Provider:
    wanted = {
        "name": PROVIDER_NAME,
        "kind": Provider.Kind.OIDC,
        "issuer": issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "scopes": SCOPES,
        "enabled": True,
        "display_order": 0,
        # The demo's profile has "Update from Dev IdP": it reads userinfo with the stored tokens.
        "store_tokens": True,
    }
    provider = Provider.objects.filter(slug=PROVIDER_SLUG).first()
    if provider is None:
        changes.append(f"added sign-in provider {PROVIDER_SLUG!r}")
        return Provider.objects.create(slug=PROVIDER_SLUG, **wanted)
    differing = [name for name, value in wanted.items() if _current(provider, name) != value]
    if differing:
        for name in differing:
            setattr(provider, name, wanted[name])
        # The dev IdP's own secret, set on purpose: it follows the issuer to this port (a moved
        # provider otherwise loses its stored secret, accounts.models.Provider.save).
        provider.enter_client_secret(client.client_secret)
        provider.save()
        changes.append(f"updated sign-in provider {PROVIDER_SLUG!r}: {', '.join(differing)}")
    _move_identities(provider, changes)
    return provider


def _current(provider: Provider, name: str) -> object:
    """A field as comparable to what setup wants: the secret decrypted (its ciphertext differs every time)."""
    if name != "client_secret":
        return getattr(provider, name)
    try:
        return provider.reveal_client_secret()
    except SignInError:  # encrypted with a key that is gone: set it again
        return None


def _move_identities(provider: Provider, changes: list[str]) -> None:
    """Sign-ins made while the site ran on another port move to the new issuer, so nobody loses an account.

    The dev IdP's issuer is the site's URL, port included: without this, ``PORT=8080 make run``
    after a run on 8000 would make Alice a new user, her account orphaned under the old issuer.
    Development only: a real provider's issuer never changes, and an identity is its issuer's.
    Where one subject has identities under several old issuers, the oldest moves (the account the
    person had first); one already at the new issuer stays as it is.
    """
    issuer = provider.issuer
    taken = set(Identity.objects.filter(issuer=issuer).values_list("subject", flat=True))
    moved = 0
    for identity in Identity.objects.filter(provider=provider).exclude(issuer=issuer).order_by("created_at", "pk"):
        if identity.subject in taken:
            continue
        old = identity.issuer
        Identity.objects.filter(pk=identity.pk).update(issuer=issuer)
        ProviderSession.objects.filter(provider=provider, issuer=old, subject=identity.subject).update(issuer=issuer)
        DisconnectedIdentity.objects.filter(user_id=identity.user_id, issuer=old, subject=identity.subject).update(
            issuer=issuer
        )
        taken.add(identity.subject)
        moved += 1
    if moved:
        changes.append(f"moved {moved} sign-in(s) of {PROVIDER_SLUG!r} to the issuer {issuer}")
