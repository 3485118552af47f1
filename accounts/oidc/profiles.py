"""Token profiles: how each vendor shapes the JWT access tokens it issues, as data.

RFC 9068 says what a JWT access token looks like (``typ: at+jwt``, ``client_id``, a ``scope``
string, ``aud`` naming the API), and almost no vendor issues exactly that: Stytch says
``typ: JWT`` and has no ``client_id``, Auth0 puts the client in ``azp``, Okta in ``cid`` with an
``scp`` array, Entra in ``azp``/``appid`` with per-tenant issuers, Cognito has no ``aud`` at all.
A ``TokenProfile`` records, from each vendor's public documentation, only the places where its
tokens differ: which ``typ`` headers it sends, where the client id and the scopes are, how the
audience is checked, which extra claims must hold and what marks a machine caller.

What a profile can never change is the signature: the algorithm comes from the provider's
allowlist (never ``none``, never HMAC), the key from the provider's key set by ``kid``, through the
same rotation-aware cache (``accounts.oidc.tokens.verify_access_token``). ``rfc9068`` is the
default and the strictest. Adding a vendor is adding one ``TokenProfile`` to ``PROFILES``.

Pure protocol data: nothing here imports the models; the provider's policy (allowed clients,
tenants and callers) is handed in as a ``CallerPolicy``.
"""

from __future__ import annotations

import enum
import fnmatch
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import TokenRejected
from .quirks import TENANT_PLACEHOLDER  # the Microsoft sign-in preset's: one spelling of the template

#: RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: Entra tenant ids are GUIDs; only such a ``tid`` is ever put into an issuer template.
_TENANT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Entra's two issuer spellings, v2.0 and v1.0 tokens, for one tenant (or the template): one key set serves both.
_ENTRA_ISSUERS = (
    (re.compile(r"https://login\.microsoftonline\.com/([^/]+)/v2\.0"), "https://login.microsoftonline.com/{}/v2.0"),
    (re.compile(r"https://sts\.windows\.net/([^/]+)/"), "https://sts.windows.net/{}/"),
)


class ProfileName(enum.StrEnum):
    """The token profiles there are; stored in ``Provider.token_profile``."""

    RFC9068 = "rfc9068"
    STYTCH = "stytch"
    AUTH0 = "auth0"
    OKTA = "okta"
    ENTRA = "entra"
    COGNITO = "cognito"
    KEYCLOAK = "keycloak"
    GOOGLE_SERVICE = "google-service"
    GITHUB_ACTIONS = "github-actions"


class ScopeForm(enum.StrEnum):
    """How a claim carries scopes: RFC 6749's space-separated string, or a JSON array of scope tokens."""

    STRING = "string"
    ARRAY = "array"
    #: Either of the two (Okta documents ``scp`` as an array; some of its authorization servers send a string).
    EITHER = "either"


class AudienceRule(enum.StrEnum):
    """How a token shows it is meant for this API."""

    #: ``aud`` names the API (RFC 9068 section 4): one of the API's audiences, or the provider's own.
    AUD = "aud"
    #: The token has no ``aud`` (Cognito access tokens): its client id must be one the provider admits.
    ALLOWED_CLIENT = "allowed-client"


class CallerRule(enum.StrEnum):
    """Who the caller is, and so what the provider's ``allowed_callers`` list admits."""

    #: The client (and, for a user's token, its subject): no list of callers.
    CLIENT = "client"
    #: A Google service account in ``email``, verified (``email_verified``), exactly as listed.
    SERVICE_ACCOUNT = "service-account"
    #: A GitHub Actions workflow: ``repository`` and ``ref`` (or ``environment``), matched by glob patterns.
    REPOSITORY = "repository"


@dataclass(frozen=True)
class ScopeSource:
    """One place a profile reads scopes from: a claim (``path`` into nested objects), in one ``form``.

    A ``path`` element ``"{audience}"`` stands for each audience the token was accepted for
    (Keycloak's ``resource_access.<client>.roles``).
    """

    path: tuple[str, ...]
    form: ScopeForm = ScopeForm.STRING


@dataclass(frozen=True)
class MachineMarker:
    """A claim that shows a token is a client's own: present, with one of ``values`` or ``prefix``, and
    none of the claims in ``unless`` present."""

    claim: str
    values: frozenset[str] = frozenset()
    prefix: str = ""
    unless: tuple[str, ...] = ()

    def matches(self, claims: Mapping[str, Any]) -> bool:
        if self.claim not in claims or any(name in claims for name in self.unless):
            return False
        value = claims[self.claim]
        if self.values:
            return isinstance(value, str) and value in self.values
        if self.prefix:
            return isinstance(value, str) and value.startswith(self.prefix)
        return True


@dataclass(frozen=True)
class TokenProfile:
    """What one vendor's access tokens look like (see the module docstring); every field is data."""

    name: ProfileName
    #: Accepted ``typ`` header values, lowercase (media types compare case-insensitively); ``""``
    #: accepts a header without ``typ``.
    typ: frozenset[str]
    #: How the typ rule is named in refusals ("at+jwt", "JWT").
    typ_label: str
    #: The claims holding the client id, in order of preference; the first present is read.
    client_id_claims: tuple[str, ...]
    #: Whether a token without any of ``client_id_claims`` is refused (Stytch sessions name no client).
    client_id_required: bool = True
    #: Where scopes are; every source adds to one set.
    scopes: tuple[ScopeSource, ...] = ()
    audience: AudienceRule = AudienceRule.AUD
    #: Claims that must hold exactly this value (Cognito ``token_use: access``).
    required_claims: Mapping[str, Any] = field(default_factory=dict)
    #: Claims that must be present, whatever their value.
    present_claims: tuple[str, ...] = ()
    #: Claims an access token never carries and another token of the vendor does (an ID token's ``nonce``).
    forbidden_claims: tuple[str, ...] = ("nonce",)
    #: Each token's issuer holds its tenant (``tid``): Entra's per-tenant issuers, v1.0 and v2.0.
    tenant_issuer: bool = False
    #: Besides ``sub`` equal to the client id, what marks a client's own token.
    machine_markers: tuple[MachineMarker, ...] = ()
    #: Claims a user's token (one that no marker shows to be a machine's) must carry (Stytch's session).
    user_claims: tuple[str, ...] = ()
    #: Every token of this profile is a machine's (workload identity): no user behind any of them.
    always_machine: bool = False
    caller: CallerRule = CallerRule.CLIENT
    #: Provider kinds (``Provider.Kind`` values) whose tokens may have this shape.
    kinds: frozenset[str] = frozenset({"oidc", "token-issuer"})
    #: One line for the admin and the docs.
    description: str = ""

    @property
    def caller_rule_needs_list(self) -> bool:
        """Workload identities are admitted only from the provider's ``allowed_callers``."""
        return self.caller is not CallerRule.CLIENT


#: The sign-in kinds and the token issuer: a profile of a vendor people also sign in with.
_SIGN_IN_AND_TOKENS = frozenset({"oidc", "token-issuer"})
_TOKENS_ONLY = frozenset({"token-issuer"})

PROFILES: dict[ProfileName, TokenProfile] = {
    p.name: p
    for p in (
        TokenProfile(
            name=ProfileName.RFC9068,
            typ=frozenset({"at+jwt", "application/at+jwt"}),
            typ_label="at+jwt",
            client_id_claims=("client_id",),
            scopes=(ScopeSource(("scope",)),),
            kinds=frozenset({"oidc", "github", "token-issuer"}),
            description="RFC 9068 exactly: typ at+jwt, client_id, a space-separated scope, aud naming the API.",
        ),
        TokenProfile(
            name=ProfileName.STYTCH,
            typ=frozenset({"jwt"}),
            typ_label="JWT",
            # A connected app's token names its client; an M2M token's client is its subject; a session has none.
            client_id_claims=("client_id",),
            client_id_required=False,
            scopes=(ScopeSource(("scope",)),),
            machine_markers=(MachineMarker("sub", prefix="m2m-client-", unless=("https://stytch.com/session",)),),
            user_claims=("https://stytch.com/session",),
            kinds=_TOKENS_ONLY,
            description="Stytch session and M2M JWTs: typ JWT, iss stytch.com/PROJECT_ID, aud [PROJECT_ID].",
        ),
        TokenProfile(
            name=ProfileName.AUTH0,
            typ=frozenset({"jwt", "at+jwt", "application/at+jwt"}),
            typ_label="JWT or at+jwt",
            client_id_claims=("client_id", "azp"),
            scopes=(ScopeSource(("scope",)), ScopeSource(("permissions",), ScopeForm.ARRAY)),
            machine_markers=(MachineMarker("gty", values=frozenset({"client-credentials"})),),
            kinds=_SIGN_IN_AND_TOKENS,
            description="Auth0: client in azp, machines marked gty client-credentials, RBAC in permissions.",
        ),
        TokenProfile(
            name=ProfileName.OKTA,
            typ=frozenset({"", "jwt", "application/okta-internal-at+jwt", "at+jwt", "application/at+jwt"}),
            typ_label="JWT",
            client_id_claims=("cid",),
            scopes=(ScopeSource(("scp",), ScopeForm.EITHER),),
            kinds=_SIGN_IN_AND_TOKENS,
            description="Okta: client in cid, scopes in an scp array, client credentials with sub equal to cid.",
        ),
        TokenProfile(
            name=ProfileName.ENTRA,
            typ=frozenset({"jwt"}),
            typ_label="JWT",
            client_id_claims=("azp", "appid"),
            scopes=(ScopeSource(("scp",)), ScopeSource(("roles",), ScopeForm.ARRAY)),
            present_claims=("tid",),
            tenant_issuer=True,
            machine_markers=(
                MachineMarker("idtyp", values=frozenset({"app"})),
                MachineMarker("roles", unless=("scp",)),
            ),
            kinds=_SIGN_IN_AND_TOKENS,
            description="Microsoft Entra ID: azp (v2.0) or appid (v1.0), scp and roles, per-tenant issuers.",
        ),
        TokenProfile(
            name=ProfileName.COGNITO,
            typ=frozenset({"", "jwt"}),
            typ_label="JWT",
            client_id_claims=("client_id",),
            scopes=(ScopeSource(("scope",)),),
            audience=AudienceRule.ALLOWED_CLIENT,
            required_claims={"token_use": "access"},
            kinds=_SIGN_IN_AND_TOKENS,
            description="Amazon Cognito: no aud, client_id among the allowed clients, token_use access.",
        ),
        TokenProfile(
            name=ProfileName.KEYCLOAK,
            typ=frozenset({"jwt", "at+jwt", "application/at+jwt"}),
            typ_label="JWT",
            client_id_claims=("client_id", "azp"),
            scopes=(
                ScopeSource(("scope",)),
                ScopeSource(("realm_access", "roles"), ScopeForm.ARRAY),
                ScopeSource(("resource_access", "{audience}", "roles"), ScopeForm.ARRAY),
            ),
            required_claims={"typ": "Bearer"},  # the payload's typ: "ID" for an ID token, "Refresh" for a refresh token
            machine_markers=(MachineMarker("preferred_username", prefix="service-account-"),),
            kinds=_SIGN_IN_AND_TOKENS,
            description="Keycloak: client in azp, payload typ Bearer, roles in realm_access and resource_access.",
        ),
        TokenProfile(
            name=ProfileName.GOOGLE_SERVICE,
            typ=frozenset({"", "jwt"}),
            typ_label="JWT",
            client_id_claims=("email",),
            forbidden_claims=(),
            required_claims={"email_verified": True},
            always_machine=True,
            caller=CallerRule.SERVICE_ACCOUNT,
            kinds=_SIGN_IN_AND_TOKENS,
            description="Google-signed ID tokens of a service account: aud the receiving URL, caller in email.",
        ),
        TokenProfile(
            name=ProfileName.GITHUB_ACTIONS,
            typ=frozenset({"jwt"}),
            typ_label="JWT",
            client_id_claims=("repository",),
            present_claims=("ref", "repository_id", "run_id"),
            always_machine=True,
            caller=CallerRule.REPOSITORY,
            kinds=_TOKENS_ONLY,
            description="GitHub Actions OIDC tokens: a workflow run of repository at ref, admitted by policy.",
        ),
    )
}

DEFAULT = PROFILES[ProfileName.RFC9068]

#: ``(value, label)`` pairs for a model field's choices.
PROFILE_CHOICES = [(p.value, p.value) for p in ProfileName]


def profile_named(name: str) -> TokenProfile:
    """The profile called ``name``; an unknown name (a stored value from a newer version) is the strict default."""
    try:
        return PROFILES[ProfileName(name)]
    except ValueError:
        return DEFAULT


@dataclass(frozen=True)
class CallerPolicy:
    """A provider's own rules for the tokens it issues (``Provider`` fields; empty admits any)."""

    #: This provider's tokens must carry this audience instead of the API's own.
    audience: str = ""
    allowed_clients: tuple[str, ...] = ()
    allowed_tenants: tuple[str, ...] = ()
    allowed_callers: tuple[str, ...] = ()
    #: Refuse tokens issued (``iat``) longer ago than this many seconds.
    max_age: int | None = None


@dataclass(frozen=True)
class AccessToken:
    """What a verified access token says, read by its profile: the caller and what it may do."""

    client_id: str
    scopes: frozenset[str]
    is_machine: bool
    #: The caller a workload-identity profile admitted (service account, ``repository@ref``), else "".
    caller: str = ""


def refused(reason: str, message: str = "The access token claims are not valid.") -> TokenRejected:
    return TokenRejected(reason, message=message)


# --- issuers -------------------------------------------------------------------------------------


def issuer_spellings(profile: TokenProfile, configured: str) -> list[str]:
    """The issuer templates a provider configured as ``configured`` stands for (one key set, several spellings).

    Entra's v1.0 and v2.0 tokens of one tenant (or of any tenant, with ``{tenantid}``) come from the
    same keys under two issuers; every other profile has exactly the configured one.
    """
    if profile.tenant_issuer:
        for pattern, _template in _ENTRA_ISSUERS:
            match = pattern.fullmatch(configured)
            if match:
                return [template.format(match.group(1)) for _pattern, template in _ENTRA_ISSUERS]
    return [configured]


def accepted_issuers(profile: TokenProfile, configured: str, claims: Mapping[str, Any]) -> list[str]:
    """The ``iss`` values a token of this provider may carry, given its claims (a ``tid`` for a template).

    A template's ``{tenantid}`` is replaced only by a ``tid`` that is a tenant id (a GUID), so a
    token cannot make itself an issuer by writing one into ``tid``: its ``iss`` must still be the
    tenant's own issuer, under the provider's keys.
    """
    tid = claims.get("tid")
    accepted = []
    for spelling in issuer_spellings(profile, configured):
        if TENANT_PLACEHOLDER not in spelling:
            accepted.append(spelling)
        elif profile.tenant_issuer and isinstance(tid, str) and _TENANT_ID.fullmatch(tid):
            accepted.append(spelling.replace(TENANT_PLACEHOLDER, tid))
    return accepted


# --- the header -----------------------------------------------------------------------------------


def check_typ(profile: TokenProfile, typ: Any) -> None:
    """The ``typ`` header must be one the profile's vendor sends (RFC 8725 3.11: no cross-JWT confusion)."""
    value = "" if typ is None else typ
    if not isinstance(value, str) or value.lower() not in profile.typ:
        raise TokenRejected(
            f"access token typ is {str(typ)[:40]!r}, not {profile.typ_label} (token profile {profile.name})",
            message=f"The token is not a JWT access token (its typ header must be {profile.typ_label}).",
        )


# --- the claims ----------------------------------------------------------------------------------


def client_id_of(profile: TokenProfile, claims: Mapping[str, Any]) -> str | None:
    """The client id, from the first of the profile's claims present; None when there is none."""
    for name in profile.client_id_claims:
        if name in claims:
            value = claims[name]
            if not isinstance(value, str) or not value or "\x00" in value:
                raise refused(f"access token {name} claim is not a non-empty string")
            return value
    return None


def check_shape(profile: TokenProfile, claims: Mapping[str, Any]) -> None:
    """The profile's own claim rules, after the signature and the registered claims are checked."""
    for name, value in profile.required_claims.items():
        if claims.get(name) != value or type(claims.get(name)) is not type(value):
            raise refused(
                f"access token {name} claim is not {value!r} (token profile {profile.name})",
                "The access token is not an access token this API accepts.",
            )
    for name in profile.present_claims:
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise refused(f"access token has no {name} claim (token profile {profile.name})")
    for name in profile.forbidden_claims:
        if name in claims:
            raise refused(
                f"access token carries a {name} claim, so it is not an access token (token profile {profile.name})",
                "The access token is not an access token this API accepts.",
            )


def scope_words(value: str, *, claim: str) -> list[str]:
    """A space-separated scope string (RFC 6749 3.3), split on U+0020 only.

    Any other character outside scope-token (another whitespace, a control character, ``"``,
    ``\\``, anything non-ASCII) refuses the whole token: split on Unicode whitespace,
    ``files:x\\u00a0orders:read`` would grant ``orders:read``, which the issuer never wrote.
    """
    words = [word for word in value.split(" ") if word]
    for word in words:
        if not _SCOPE_TOKEN.fullmatch(word):
            raise refused(f"access token {claim} claim has characters outside RFC 6749 scope-token")
    return words


def _scope_values(value: Any, form: ScopeForm, claim: str) -> list[str]:
    if isinstance(value, str) and form in (ScopeForm.STRING, ScopeForm.EITHER):
        return scope_words(value, claim=claim)
    if isinstance(value, list) and form in (ScopeForm.ARRAY, ScopeForm.EITHER):
        if not all(isinstance(item, str) and _SCOPE_TOKEN.fullmatch(item) for item in value):
            raise refused(f"access token {claim} claim is not an array of RFC 6749 scope-tokens")
        return list(value)
    expected = {ScopeForm.STRING: "a space-separated string", ScopeForm.ARRAY: "an array"}.get(form, "scopes")
    raise refused(f"access token {claim} claim is not {expected}")


def scopes_of(profile: TokenProfile, claims: Mapping[str, Any], audiences: Collection[str]) -> frozenset[str]:
    """Every scope the token grants, from each of the profile's sources."""
    found: set[str] = set()
    for source in profile.scopes:
        paths = [
            tuple(audience if part == "{audience}" else part for part in source.path)
            for audience in (audiences if "{audience}" in source.path else [""])
        ]
        for path in paths:
            value: Any = claims
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                found.update(_scope_values(value, source.form, ".".join(path)))
    return frozenset(found)


def is_machine(profile: TokenProfile, claims: Mapping[str, Any], client_id: str | None) -> bool:
    """Whether the token shows it is a client's own: ``sub`` equal to the client id, or the profile's marker."""
    if profile.always_machine:
        return True
    subject = claims.get("sub")
    if client_id is not None and isinstance(subject, str) and subject == client_id:
        return True
    return any(marker.matches(claims) for marker in profile.machine_markers)


def _words(values: Collection[str]) -> str:
    return ", ".join(sorted(values))[:200]


def _check_caller(profile: TokenProfile, claims: Mapping[str, Any], policy: CallerPolicy) -> str:
    """The workload caller the provider's ``allowed_callers`` admits; refused when it admits none."""
    if profile.caller is CallerRule.SERVICE_ACCOUNT:
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise refused("service token has no verified email")
        if email.lower() not in {c.lower() for c in policy.allowed_callers}:
            raise refused(
                f"service account {email[:100]!r} is not among the allowed callers",
                "The caller is not allowed to call this API.",
            )
        return email
    if profile.caller is CallerRule.REPOSITORY:
        repository, ref = claims["repository"], claims["ref"]
        environment = claims.get("environment")
        candidates = [repository, f"{repository}@{ref}"]
        if isinstance(environment, str) and environment:
            candidates.append(f"{repository}@environment:{environment}")
        if not any(fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in policy.allowed_callers):
            raise refused(
                f"workflow of {repository[:100]!r} at {str(ref)[:100]!r} is not among the allowed callers",
                "The caller is not allowed to call this API.",
            )
        return f"{repository}@{ref}"
    return ""


def read(
    profile: TokenProfile, claims: Mapping[str, Any], *, audiences: Collection[str], policy: CallerPolicy
) -> AccessToken:
    """Who is calling and with which scopes, by the profile; the provider's policy applied. Raises ``TokenRejected``.

    ``claims`` are the signature-verified claims ``verify_access_token`` returned (so the profile's
    shape rules already hold).
    """
    client_id = client_id_of(profile, claims)
    machine = is_machine(profile, claims, client_id)
    if client_id is None and machine:
        client_id = claims["sub"]  # Stytch M2M: the client is the subject
    missing = [name for name in profile.user_claims if not machine and not isinstance(claims.get(name), dict)]
    if missing:
        raise refused(
            f"access token is neither a machine's nor has a {missing[0]} claim (token profile {profile.name})"
        )
    if profile.audience is AudienceRule.ALLOWED_CLIENT and not policy.allowed_clients:
        raise refused(
            f"token profile {profile.name} checks no audience, and the provider lists no allowed clients",
            "This API is not configured to accept access tokens of this issuer.",
        )
    if policy.allowed_clients and client_id not in policy.allowed_clients:
        raise refused(
            f"access token client {str(client_id)[:100]!r} is not among the provider's allowed clients",
            "The access token's client may not call this API.",
        )
    # Entra's own rule: each token names its tenant. Other profiles leave a provider's tenant list to
    # the admission policy, which reads the identity's stored claims (accounts.admission; 403).
    if profile.tenant_issuer and policy.allowed_tenants and claims.get("tid") not in policy.allowed_tenants:
        raise refused(
            f"access token tenant {str(claims.get('tid'))[:40]!r} is not among the allowed tenants",
            "The access token's tenant may not call this API.",
        )
    if policy.max_age is not None and time.time() - float(claims["iat"]) > policy.max_age:
        raise refused(
            f"access token was issued more than {policy.max_age} s ago (the provider's maximum token age)",
            "The access token is too old.",
        )
    caller = _check_caller(profile, claims, policy)
    return AccessToken(
        client_id=client_id or "",
        scopes=scopes_of(profile, claims, audiences),
        is_machine=machine,
        caller=caller,
    )
