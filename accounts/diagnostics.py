"""What would make sign-ins with a provider fail, found before a person hits it.

One source of diagnostics for the shell and the admin:

* ``check`` loads a provider's metadata and keys the way a sign-in does (through the same caches)
  and lists ``problems`` in words an admin can act on; ``oidc_provider check`` prints it, the
  admin's health view shows it.
* ``probe`` asks the provider now, past every cache and without changing one: the admin's
  provider form runs it on save (so a typo in the issuer is an inline error, not a failed sign-in
  later) and its **Check now** button too.
* ``refresh`` drops the cached documents and loads them again (``oidc_provider refresh``, the
  admin's **Refresh keys**). With a cache every process shares, the next sign-in of every process
  adopts the new key set on the first unknown key id, without a refetch of its own.
* ``health`` adds what only the site knows: when each document was fetched and expires, each key
  and certificate, the last fetch error, the last 24 hours of the audit trail, and warnings.

The outcome of every check is recorded in the shared cache, so the provider list can show a
status without asking any provider, and a check from a shell shows in the admin. Nothing here
changes what a sign-in accepts: the rules themselves live in ``accounts.oidc``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.core.cache import caches
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .adapter import get_adapter
from .conf import conf
from .errors import ProviderUnavailable, SignInError, UnknownKey, provider_side_codes
from .models import SignInEvent
from .oidc import discovery
from .oidc.http import request_json, require_secure_url
from .oidc.tokens import matching_keys

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import Provider

#: The endpoints worth showing, in the order a sign-in uses them: a discovered provider's, and
#: those a provider without discovery has configured (GitHub-style).
DISCOVERED_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
)
CONFIGURED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint")

#: How far ahead a certificate's expiry is worth a warning.
CERTIFICATE_WARNING = dt.timedelta(days=30)
#: The stretch of the audit trail the health view sums up.
ACTIVITY_WINDOW = dt.timedelta(hours=24)
#: How long the outcome of a check (and the last fetch error) is remembered in the shared cache.
RECORD_TIMEOUT = 30 * 86400
#: Failure codes that say the provider, not the person, was the trouble (``SignInError.provider_side``).
PROVIDER_SIDE_CODES = tuple(sorted(provider_side_codes()))
_CACHE_PREFIX = "oidc_signin:diagnostics:"


class Status(enum.Enum):
    """A provider's health at a glance, as the provider list shows it."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return str(_STATUS_LABELS[self])


_STATUS_LABELS = {
    Status.OK: gettext_lazy("Working"),
    Status.WARNING: gettext_lazy("Warnings"),
    Status.ERROR: gettext_lazy("Failing"),
    Status.UNKNOWN: gettext_lazy("Not checked yet"),
}


@dataclass(frozen=True)
class Problem:
    """One thing that would fail sign-ins, and the form field an admin would change to fix it."""

    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    """A provider's endpoints, keys and problems, as one check found them."""

    provider: Provider
    metadata: dict[str, Any]
    #: None for a provider without keys (GitHub-style: no ID token).
    keys: KeySet | None
    problems: list[Problem] = field(default_factory=list)
    #: The JWKS document as published (every key, used or not), when there is one.
    jwks: dict[str, Any] | None = None

    @property
    def endpoints(self) -> dict[str, str | None]:
        names = DISCOVERED_ENDPOINTS if self.keys is not None else CONFIGURED_ENDPOINTS
        return {name: self.metadata.get(name) for name in names}


# --- checking -------------------------------------------------------------------------------------


def check(provider: Provider) -> Report:
    """Load ``provider``'s metadata and keys as a sign-in would and report. Raises ``SignInError``.

    The outcome (or the error) is recorded for the provider list.
    """
    try:
        report = _check(provider)
    except SignInError as exc:
        record_failure(provider, exc)
        raise
    record_success(provider, report)
    return report


def _check(provider: Provider) -> Report:
    client = get_adapter().get_client(provider)
    jwks_uri = client.metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):  # GitHub-style: no ID tokens, so no keys
        return Report(provider=provider, metadata=client.metadata, keys=None)
    keys = discovery.get_keys(jwks_uri).keys
    held = discovery.in_process(jwks_uri)
    return Report(
        provider=provider,
        metadata=client.metadata,
        keys=keys,
        problems=problems(provider, client.metadata, keys),
        jwks=held.data if held is not None else None,
    )


def probe(provider: Provider, *, record: bool = True) -> Report:
    """Ask the provider now, past every cache and changing none. Raises ``SignInError``.

    The documents are validated by the rules a sign-in applies (``discovery.validate_metadata``,
    https only) and the keys parsed one by one, so a single odd key is reported, not fatal. The
    provider need not be saved: the admin's form probes what was typed before it is stored.
    The outcome (or the error) is recorded, as ``check`` records its own, unless ``record`` is off:
    the form's probe is of a configuration not stored (yet), and must not speak for the stored one.
    """
    try:
        report = _probe(provider)
    except SignInError as exc:
        if record:
            record_failure(provider, exc)
        raise
    if record:
        record_success(provider, report)
    return report


def _probe(provider: Provider) -> Report:
    adapter = get_adapter()
    kind = adapter.client_class(provider)
    quirks = adapter.quirks(provider)
    if kind.discovers:
        require_secure_url(provider.issuer, what="issuer")
        metadata = request_json("GET", discovery.discovery_url(provider.issuer), what="discovery document").data
        discovery.validate_metadata(metadata, issuer=provider.issuer, quirks=quirks)
    else:
        metadata = kind.load_metadata(provider, quirks)
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        report = Report(provider=provider, metadata=metadata, keys=None)
    else:
        jwks = request_json("GET", jwks_uri, what="JWKS").data
        keys = KeySet(keys=[key for key, _note in map(_parse_key, _jwk_list(jwks)) if key is not None])
        report = Report(
            provider=provider, metadata=metadata, keys=keys, problems=problems(provider, metadata, keys), jwks=jwks
        )
    return report


def refresh(provider: Provider) -> Report:
    """Drop the provider's cached documents, shared and in-process, and load them again. Raises ``SignInError``."""
    for url in document_urls(provider):
        discovery.forget(url)
    return check(provider)


def document_urls(provider: Provider) -> list[str]:
    """The documents a sign-in with ``provider`` reads: discovery (if it discovers), then its JWKS."""
    return [url for _what, url in _documents(provider)]


def _documents(provider: Provider) -> list[tuple[str, str]]:
    found = []
    if get_adapter().client_class(provider).discovers:
        url = discovery.discovery_url(provider.issuer)
        found.append((_("discovery document"), url))
        cached = discovery.cached_data(url)
        if cached and isinstance(cached.get("jwks_uri"), str):
            found.append((_("JWKS"), cached["jwks_uri"]))
    if provider.jwks_uri and provider.jwks_uri not in [url for _what, url in found]:
        found.append((_("JWKS"), provider.jwks_uri))  # a token issuer's keys, known without discovery
    return found


def problems(provider: Provider, metadata: dict[str, Any], keys: KeySet) -> list[Problem]:
    """What in this metadata and key set would make sign-ins fail, in words an admin can act on."""
    found: list[Problem] = []

    def listed(name: str, default: list[str]) -> list[str]:
        value = metadata.get(name)
        if value is None:
            return default
        if not isinstance(value, list):
            found.append(Problem(_("%(name)s is not a list") % {"name": name}))
            return default
        return [v for v in value if isinstance(v, str)]

    advertised = listed("id_token_signing_alg_values_supported", [])
    allowed = provider.algorithms
    if advertised and not set(advertised) & set(allowed):
        found.append(
            Problem(
                _("the provider signs ID tokens with %(advertised)s, none of which is allowed (%(allowed)s)")
                % {"advertised": advertised, "allowed": allowed},
                "allowed_algorithms",
            )
        )
    usable = [alg for alg in allowed if not alg.startswith("HS") and matching_keys(keys, {}, alg)]
    if not usable and not any(alg.startswith("HS") for alg in allowed):
        found.append(Problem(_("no published key can verify any allowed algorithm"), "allowed_algorithms"))
    if not any(k.kid for k in keys.keys) and len(keys.keys) > 1:
        found.append(Problem(_("several keys have no kid, so tokens without a kid cannot be verified")))
    methods = listed("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not {"client_secret_basic", "client_secret_post"} & set(methods):
        found.append(
            Problem(
                _("token endpoint supports neither client_secret_basic nor client_secret_post (%(methods)s)")
                % {"methods": methods}
            )
        )
    if "S256" not in listed("code_challenge_methods_supported", ["S256"]):
        found.append(Problem(_("the provider does not advertise PKCE S256 (PKCE is sent anyway)")))
    return found


# --- what the check leaves behind, for the provider list --------------------------------------------


@dataclass(frozen=True)
class CheckRecord:
    """The outcome of the last check of a provider, from any process of the site."""

    at: dt.datetime
    status: Status
    problems: int
    error: str


@dataclass(frozen=True)
class FetchError:
    """The last time the provider's documents could not be loaded, and why (a reason, never a secret)."""

    at: dt.datetime
    reason: str
    #: "check" when a check or refresh found it, "sign-in" when a sign-in did (the audit trail).
    source: str


def _cache():
    return caches[conf.OIDC_CACHE_ALIAS]


def _record_key(kind: str, provider: Provider) -> str:
    return f"{_CACHE_PREFIX}{kind}:{provider.pk}"


def record_success(provider: Provider, report: Report) -> None:
    """Remember that ``provider`` was checked just now and what was found (nothing, for one not yet saved)."""
    status = Status.WARNING if report.problems else Status.OK
    _store(provider, {"at": time.time(), "status": status.value, "problems": len(report.problems), "error": ""})


def record_failure(provider: Provider, error: SignInError) -> None:
    """Remember that checking ``provider`` failed just now, and why: its status and its last fetch error."""
    now = time.time()
    _store(provider, {"at": now, "status": Status.ERROR.value, "problems": 0, "error": error.reason})
    if provider.pk:
        _cache().set(_record_key("error", provider), {"at": now, "reason": error.reason}, timeout=RECORD_TIMEOUT)


def _store(provider: Provider, value: dict[str, Any]) -> None:
    if provider.pk:
        _cache().set(_record_key("check", provider), value, timeout=RECORD_TIMEOUT)


def _when(value: object) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if isinstance(value, int | float) else None


def last_check(provider: Provider) -> CheckRecord | None:
    raw = _cache().get(_record_key("check", provider))
    if not isinstance(raw, dict) or (at := _when(raw.get("at"))) is None:
        return None
    try:
        status = Status(raw.get("status"))
    except ValueError:
        return None
    return CheckRecord(at=at, status=status, problems=int(raw.get("problems") or 0), error=str(raw.get("error") or ""))


def last_fetch_error(provider: Provider) -> FetchError | None:
    """The newer of the last check's fetch error and the last sign-in that failed on the provider's side."""
    found = []
    raw = _cache().get(_record_key("error", provider))
    if isinstance(raw, dict) and (at := _when(raw.get("at"))) is not None:
        found.append(FetchError(at=at, reason=str(raw.get("reason", "")), source="check"))
    event = (
        SignInEvent.objects.filter(provider=provider, outcome=SignInEvent.Outcome.FAILURE, code__in=PROVIDER_SIDE_CODES)
        .only("created_at", "reason")
        .first()
    )
    if event is not None:
        found.append(FetchError(at=event.created_at, reason=event.reason, source="sign-in"))
    return max(found, key=lambda e: e.at, default=None)


def provider_side_failures(since: dt.datetime) -> QuerySet[SignInEvent]:
    """Failures since ``since`` that the provider caused (for one aggregate over many providers)."""
    return SignInEvent.objects.filter(
        outcome=SignInEvent.Outcome.FAILURE, created_at__gte=since, code__in=PROVIDER_SIDE_CODES
    )


def listed_status(provider: Provider, *, recent_provider_failures: int) -> Status:
    """The provider list's status: the last check's, made a warning by provider-side failures since."""
    record = last_check(provider)
    status = record.status if record is not None else Status.UNKNOWN
    if recent_provider_failures and status in (Status.OK, Status.UNKNOWN):
        return Status.WARNING
    return status


# --- keys and certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """The first certificate of a key's ``x5c`` chain: whom it names and until when."""

    subject: str
    sha256: str
    not_after: dt.datetime


@dataclass(frozen=True)
class KeyDescription:
    """One key of a published JWKS, as an admin needs to recognise it."""

    kid: str
    kty: str
    alg: str
    use: str
    #: "2048 bits" for RSA, the curve for EC and OKP keys.
    size: str
    #: Empty when sign-ins may use the key; else why they never do.
    ignored: str
    certificate: Certificate | None = None
    certificate_error: str = ""


def _jwk_list(jwks: dict[str, Any] | None) -> list[Any]:
    keys = (jwks or {}).get("keys")
    return keys if isinstance(keys, list) else []


def _parse_key(jwk: Any) -> tuple[Any, str]:
    """The key as token verification would import it, or None and why not (as ``discovery`` filters them)."""
    if not isinstance(jwk, dict):
        return None, _("not a JSON object")
    if jwk.get("kty") not in ("RSA", "EC", "OKP"):
        return None, _("never used: only RSA, EC and OKP public keys verify tokens")
    try:
        return KeySet.import_key_set({"keys": [jwk]}).keys[0], ""
    except (JoseError, ValueError, TypeError, KeyError):
        return None, _("cannot be parsed")


def describe_keys(jwks: dict[str, Any] | None) -> list[KeyDescription]:
    """Every key the document lists, in its order, used or not."""
    described = []
    for jwk in _jwk_list(jwks):
        _key, ignored = _parse_key(jwk)
        values = jwk if isinstance(jwk, dict) else {}
        certificate, certificate_error = _certificate(values.get("x5c"))
        described.append(
            KeyDescription(
                kid=str(values.get("kid") or ""),
                kty=str(values.get("kty") or ""),
                alg=str(values.get("alg") or ""),
                use=str(values.get("use") or ""),
                size=_size(values),
                ignored=ignored,
                certificate=certificate,
                certificate_error=certificate_error,
            )
        )
    return described


def _size(jwk: dict[str, Any]) -> str:
    if jwk.get("kty") == "RSA" and isinstance(jwk.get("n"), str):
        try:
            modulus = base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))
        except (binascii.Error, ValueError):
            return ""
        return _("%(bits)d bits") % {"bits": int.from_bytes(modulus, "big").bit_length()}
    return str(jwk.get("crv") or "")


def _certificate(chain: object) -> tuple[Certificate | None, str]:
    """The leaf of an ``x5c`` chain (RFC 7517 4.7: base64 DER, not base64url), or why it cannot be read."""
    if chain is None:
        return None, ""
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        return None, _("x5c is not a list of certificates")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except (binascii.Error, ValueError):
        return None, _("the x5c certificate cannot be parsed")
    return (
        Certificate(
            subject=cert.subject.rfc4514_string(),
            sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            not_after=cert.not_valid_after_utc,
        ),
        "",
    )


# --- the health view ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentState:
    """A cached document as this process holds it: when it was fetched and until when it is used."""

    what: str
    url: str
    fetched_at: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class FailureCount:
    code: str
    reason: str
    count: int


@dataclass
class Activity:
    """What the audit trail says about a provider's recent sign-ins."""

    since: dt.datetime
    successes: int = 0
    failures: int = 0
    by_reason: list[FailureCount] = field(default_factory=list)
    unknown_kid_failures: int = 0
    provider_side_failures: int = 0


@dataclass
class Health:
    provider: Provider
    report: Report | None
    #: Why the documents could not be loaded just now, if they could not.
    error: SignInError | None
    documents: list[DocumentState]
    keys: list[KeyDescription]
    last_check: CheckRecord | None
    last_error: FetchError | None
    activity: Activity
    warnings: list[str]

    @property
    def status(self) -> Status:
        if self.error is not None:
            return Status.ERROR
        if self.warnings or (self.report is not None and self.report.problems):
            return Status.WARNING
        return Status.OK


def health(provider: Provider, *, now: dt.datetime | None = None) -> Health:
    """Everything the health view shows. Loads the documents as a sign-in would (a fetch only if expired)."""
    now = now or timezone.now()
    report: Report | None = None
    error: SignInError | None = None
    try:
        report = check(provider)
    except SignInError as exc:
        error = exc
    documents = [_document_state(what, url) for what, url in _documents(provider)]
    keys = describe_keys(report.jwks if report is not None else None)
    activity = recent_activity(provider, since=now - ACTIVITY_WINDOW)
    return Health(
        provider=provider,
        report=report,
        error=error,
        documents=documents,
        keys=keys,
        last_check=last_check(provider),
        last_error=last_fetch_error(provider),
        activity=activity,
        warnings=_warnings(error, keys, activity, now=now),
    )


def _document_state(what: str, url: str) -> DocumentState:
    doc = discovery.in_process(url)
    return DocumentState(
        what=what,
        url=url,
        fetched_at=_when(doc.fetched_at) if doc is not None else None,
        expires_at=_when(doc.expires_at) if doc is not None else None,
    )


def recent_activity(provider: Provider, *, since: dt.datetime) -> Activity:
    """Sign-ins and failures by reason since ``since``; suppressed (rate-limited) failures are counted too."""
    events = SignInEvent.objects.filter(provider=provider, created_at__gte=since)
    totals = events.aggregate(
        successes=Count("pk", filter=Q(outcome=SignInEvent.Outcome.SUCCESS)),
        failures=Count("pk", filter=Q(outcome=SignInEvent.Outcome.FAILURE)),
        suppressed=Coalesce(Sum("suppressed", filter=Q(outcome=SignInEvent.Outcome.FAILURE)), 0),
    )
    failures = events.filter(outcome=SignInEvent.Outcome.FAILURE)
    grouped = (
        failures.values("code", "reason")
        .annotate(count=Count("pk") + Coalesce(Sum("suppressed"), 0))
        .order_by("-count", "code", "reason")
    )
    by_reason = [FailureCount(code=row["code"], reason=row["reason"], count=row["count"]) for row in grouped]
    return Activity(
        since=since,
        successes=totals["successes"],
        failures=totals["failures"] + totals["suppressed"],
        by_reason=by_reason[:10],
        unknown_kid_failures=sum(f.count for f in by_reason if f.code == UnknownKey.code),
        provider_side_failures=sum(f.count for f in by_reason if f.code in PROVIDER_SIDE_CODES),
    )


def _warnings(
    error: SignInError | None, keys: list[KeyDescription], activity: Activity, *, now: dt.datetime
) -> list[str]:
    found = []
    if isinstance(error, ProviderUnavailable):
        found.append(_("The provider cannot be reached: %(reason)s") % {"reason": error.reason})
    elif error is not None:
        found.append(_("The provider's documents cannot be used: %(reason)s") % {"reason": error.reason})
    for key in keys:
        if key.certificate is None:
            continue
        name = key.kid or key.certificate.subject
        if key.certificate.not_after <= now:
            found.append(_("The certificate of key %(kid)s has expired.") % {"kid": name})
        elif key.certificate.not_after - now <= CERTIFICATE_WARNING:
            found.append(
                _("The certificate of key %(kid)s expires on %(date)s.")
                % {"kid": name, "date": key.certificate.not_after.date().isoformat()}
            )
    if activity.unknown_kid_failures:
        found.append(
            _(
                "Sign-ins in the last 24 hours that failed on a key id the cached key set lacks (a refetch was "
                "refused or found no such key): %(count)d. If the provider rotated its keys, use Refresh keys."
            )
            % {"count": activity.unknown_kid_failures}
        )
    if activity.provider_side_failures:
        found.append(
            _(
                "Sign-ins in the last 24 hours that failed because the provider was unreachable or answered "
                "something unusable: %(count)d."
            )
            % {"count": activity.provider_side_failures}
        )
    return found
