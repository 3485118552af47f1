"""Verified claims -> a local user. The identity key is issuer + subject, never an email.

``sign_in_identity`` is the whole policy in one function, atomic and safe under concurrency:

1. a known (issuer, subject) signs in its user;
2. otherwise, only if the provider is configured to link by *verified* email and exactly one user
   has that email, the identity is attached to that user;
3. otherwise a new user is created with a unique username.

Two first sign-ins of the same identity racing each other create one user: the loser's
transaction rolls back on the (issuer, subject) unique constraint and it then finds the winner's
identity. A unique-constraint error never leads to "some existing user" -- only to the identity
with exactly this issuer and subject.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import NOT_PROVIDED
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import session, signals
from .adapter import get_adapter
from .admission import admit_user
from .claims import storable, verified_email
from .errors import AccountConflict, AccountIncomplete, ReconnectRequired, SignInError, SignInRefused
from .models import DisconnectedIdentity, Identity, Provider, ProviderSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

logger = logging.getLogger(__name__)

_ATTEMPTS = 5


@dataclass
class SignInResult:
    user: AbstractBaseUser
    identity: Identity
    user_created: bool
    identity_created: bool


def sign_in_identity(
    *, request: HttpRequest | None, provider: Provider, issuer: str, subject: str, claims: dict[str, Any]
) -> SignInResult:
    """Find or create the user for a verified, admitted identity (``accounts.admission``); see above.

    Run inside the sign-in's transaction (``accounts.flow``), a returning sign-in adds no savepoint
    of its own: its writes commit with the session, its provider link and the audit row. Only a
    first sign-in gets one, because a concurrent first sign-in of the same identity may win the
    unique constraint, and the loser must roll back just its own rows to look again.
    """
    claims = storable(claims)  # whoever calls (a callback, a bearer token), nothing unstorable is read
    for _attempt in range(_ATTEMPTS):
        identity = Identity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is not None:
            result = _sign_in_returning(request=request, provider=provider, identity=identity, claims=claims)
        else:
            try:
                with transaction.atomic():
                    result = _sign_in_new(
                        request=request, provider=provider, issuer=issuer, subject=subject, claims=claims
                    )
            except IntegrityError:
                continue  # a concurrent sign-in won a unique constraint: look again
        _send_signals(request, result, claims)
        return result
    # Not a race (it would have been won by now): what this sign-in stores collides every time with
    # another account's unique field, e.g. a name or email the adapter's update_user sets.
    raise AccountConflict(
        f"could not store identity for {provider.slug} after {_ATTEMPTS} attempts: "
        "a unique field collides with another account's each time",
        message=_("Your profile from this provider matches another account on this site, so it was not stored."),
    )


def _sign_in_returning(
    *, request: HttpRequest | None, provider: Provider, identity: Identity, claims: dict[str, Any]
) -> SignInResult:
    user = identity.user
    admit_user(user)
    # The caller's transaction, or one of its own: a conflict ends the whole sign-in.
    _apply_claims(request, provider, identity, claims, last_login_at=timezone.now(), savepoint=False)
    return SignInResult(user, identity, user_created=False, identity_created=False)


def _apply_claims(
    request: HttpRequest | None,
    provider: Provider,
    identity: Identity,
    claims: dict[str, Any],
    *,
    last_login_at: datetime | None,
    savepoint: bool,
) -> None:
    """A returning identity's claims stored, and its user's profile updated as its provider says.

    Raises ``AccountConflict`` when what the claims (or the adapter) asked to store collides with
    another account's unique field, say an email that account already has: nothing to retry, the
    identity exists.
    """
    email, email_verified = verified_email(claims)
    user = identity.user
    try:
        with transaction.atomic(savepoint=savepoint):
            _refresh(identity, claims, email, email_verified, last_login_at)
            if provider.profile_sync == Provider.ProfileSync.FOLLOW:
                _sync_profile(request, user, claims, email_verified)
            _update_user(request, user, claims, created=False)
    except IntegrityError:
        raise AccountConflict(
            f"updating user {user.pk} from {provider.slug} collides with another account's unique field",
            message=_("Your profile from this provider matches another account on this site, so it was not updated."),
        ) from None


def _sign_in_new(
    *, request: HttpRequest | None, provider: Provider, issuer: str, subject: str, claims: dict[str, Any]
) -> SignInResult:
    email, email_verified = verified_email(claims)
    user = _user_by_verified_email(provider, email, email_verified)
    if user is not None:
        _refuse_linking_unless_allowed(provider, user, issuer, subject)
    user_created = user is None
    if user is None:
        user = _create_user(request, claims, email_verified=email_verified)
    else:
        admit_user(user)
        if provider.profile_sync == Provider.ProfileSync.FOLLOW:
            _sync_profile(request, user, claims, email_verified)
    identity = _create_identity(user, provider, issuer, subject, claims, timezone.now())
    _update_user(request, user, claims, created=user_created)
    return SignInResult(user, identity, user_created=user_created, identity_created=True)


def _update_user(request: HttpRequest | None, user: AbstractBaseUser, claims: dict[str, Any], *, created: bool) -> None:
    """The adapter's ``update_user``, on every sign-in; the user's fields it changed are saved."""
    _save_changes(user, lambda: get_adapter().update_user(request, user, claims, created=created))


def _save_changes(user: AbstractBaseUser, change: Callable[[], None]) -> None:
    """Run an adapter hook on ``user`` and save the fields it changed, and only those.

    Only those, because a full save would write back every field as loaded (``is_active``,
    ``is_staff``...), undoing an admin's change made while the sign-in was under way; and the fields
    are the model's own, because a custom user model need not have a name field, and may have
    fields of its own (a display name) that the adapter fills.
    """
    fields = [f.attname for f in user._meta.concrete_fields if not f.primary_key]
    before = [getattr(user, name) for name in fields]
    change()
    changed = [name for name, value in zip(fields, before, strict=True) if getattr(user, name) != value]
    if changed:
        user.save(update_fields=changed)


def _create_identity(
    user: AbstractBaseUser, provider: Provider, issuer: str, subject: str, claims: dict[str, Any], now
) -> Identity:
    email, email_verified = verified_email(claims)
    return Identity.objects.create(
        user=user,  # type: ignore[misc]  # the stubs type it as the project's user model; any user model will do
        provider=provider,
        issuer=issuer,
        subject=subject,
        email=email,
        email_verified=email_verified,
        claims=storable(claims),
        last_login_at=now,
    )


def _refresh(identity: Identity, claims: dict[str, Any], email: str, email_verified: bool, now) -> None:
    identity.email, identity.email_verified = email, email_verified
    identity.claims, identity.last_login_at = storable(claims), now
    identity.save(update_fields=["email", "email_verified", "claims", "last_login_at"])


def _sync_profile(
    request: HttpRequest | None, user: AbstractBaseUser, claims: dict[str, Any], email_verified: bool
) -> None:
    """Refresh the profile from the provider: whatever the adapter's ``populate_user`` fills, not just names."""
    _save_changes(user, lambda: get_adapter().populate_user(request, user, claims, email_verified=email_verified))


def connect_identity(
    *,
    request: HttpRequest | None,
    provider: Provider,
    user: AbstractBaseUser,
    issuer: str,
    subject: str,
    claims: dict[str, Any],
) -> Identity:
    """Attach a verified identity to the signed-in ``user`` (the profile page's "connect").

    An identity that already belongs to someone else is refused, never moved: moving it would let
    whoever controls that provider account take over, or lock out, the other user.
    """
    claims = storable(claims)
    email, email_verified = verified_email(claims)
    admit_user(user)
    with transaction.atomic():
        identity = Identity.objects.select_for_update().filter(issuer=issuer, subject=subject).first()
        if identity is not None and identity.user_id != user.pk:
            raise AccountConflict(f"{provider.slug} identity already belongs to user {identity.user_id}")
        if identity is not None:
            _refresh(identity, claims, email, email_verified, timezone.now())
            return identity
        try:
            with transaction.atomic():
                identity = _create_identity(user, provider, issuer, subject, claims, timezone.now())
        except IntegrityError as exc:  # connected to someone else a moment ago
            raise AccountConflict(f"{provider.slug} identity was connected concurrently") from exc
        # Connecting on purpose is the one way back for an identity this user disconnected. Only
        # this user's own record goes: another user's stays, or whoever holds the provider account
        # could connect it to their own account, disconnect it, and be linked into the other's.
        DisconnectedIdentity.objects.filter(user_id=user.pk, issuer=issuer, subject=subject).delete()
    transaction.on_commit(
        lambda: signals.identity_connected.send(sender=Provider, request=request, user=user, identity=identity)
    )
    return identity


def update_from_provider(*, request: HttpRequest | None, identity: Identity, claims: dict[str, Any]) -> None:
    """Claims read from the provider on demand ("Update from <provider>"), applied as a sign-in would.

    The identity's stored claims and email follow them; the user's profile follows when the
    provider's ``profile_sync`` says so, and the adapter's ``update_user`` runs. The last sign-in
    time is left alone: nobody signed in.
    """
    _apply_claims(request, identity.provider, identity, claims, last_login_at=identity.last_login_at, savepoint=True)


@dataclass(frozen=True)
class Disconnected:
    identity: Identity
    #: The sessions it had signed in have ended; ``ended.includes_current`` means the caller's own
    #: session was one of them, and the caller must sign the person out (``auth.logout``).
    ended: session.Ended


def disconnect_identity(
    *, request: HttpRequest | None, user: AbstractBaseUser, identity_id: int, current_session_key: str | None = None
) -> Disconnected:
    """Remove one of ``user``'s identities, unless it is their last way to sign in.

    Disconnecting is meant to last: every session that provider account signed in here ends (a
    person disconnects an account that is compromised or no longer theirs), and the account is
    remembered as disconnected, so verified-email linking never attaches it again by itself.
    """
    with transaction.atomic():
        # Lock the user's identities so two parallel disconnects cannot remove the last two.
        identities = list(Identity.objects.select_for_update().filter(user_id=user.pk).select_related("provider"))
        identity = next((i for i in identities if i.pk == identity_id), None)
        if identity is None:
            raise SignInError(
                f"user {user.pk} has no identity {identity_id}",
                message=_("That sign-in method is not connected to your account."),
            )
        # The adapter's rule; by default, not the last way in (``LastSignInMethod``).
        if not get_adapter().is_disconnect_allowed(request, identity):
            raise SignInRefused(
                f"adapter refused disconnecting {identity.provider.slug} identity of user {user.pk}",
                message=_("This sign-in method cannot be disconnected from your account."),
            )
        DisconnectedIdentity.objects.update_or_create(user_id=user.pk, issuer=identity.issuer, subject=identity.subject)
        ended = session.end(
            ProviderSession.objects.filter(user_id=user.pk, issuer=identity.issuer, subject=identity.subject),
            current_key=current_session_key,
        )
        identity.delete()
    transaction.on_commit(
        lambda: signals.identity_disconnected.send(sender=Provider, request=request, user=user, identity=identity)
    )
    return Disconnected(identity=identity, ended=ended)


def _refuse_linking_unless_allowed(provider: Provider, user: AbstractBaseUser, issuer: str, subject: str) -> None:
    """Refuse to attach (issuer, subject) to ``user`` by verified email where that would hand over an account.

    * A staff or superuser account is never linked by email: whoever may edit providers could
      otherwise add one that vouches for the superuser's address and sign in as them. Such
      accounts connect providers explicitly, while signed in (``connect_identity``).
    * A provider account that *any* user here disconnected is not linked by email until that user
      connects it again on purpose: a disconnect says "this provider account is not (or no longer)
      to be trusted", and it must not be undone by someone else connecting and disconnecting it.
    """
    if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        raise AccountConflict(
            f"verified-email linking never attaches an identity from {provider.slug} to staff or superuser "
            f"account {user.pk}",
            message=_(
                "An account with this email address already exists here. Sign in the way you did before, "
                "then connect this provider from your profile page."
            ),
        )
    disconnected_by = (
        DisconnectedIdentity.objects.filter(issuer=issuer, subject=subject)
        .order_by("disconnected_at")
        .values_list("user_id", flat=True)
        .first()
    )
    if disconnected_by is not None:
        raise ReconnectRequired(
            f"{provider.slug} identity was disconnected by user {disconnected_by}; not re-linking by email"
        )


def _user_by_verified_email(provider: Provider, email: str, email_verified: bool) -> AbstractBaseUser | None:
    """The one user whose email the provider verified, when the admin opted in to linking; else None.

    Two addresses are the same only if they are equal once ASCII letters are lowercased. Databases
    fold case more widely -- PostgreSQL's ``UPPER()`` turns the dotless i (U+0131) into ``I`` and the
    long s (U+017F) into ``S`` -- so ``admin@b\u0131gcorp.example`` would "match" ``admin@bigcorp.example``,
    and whoever registered the look-alike at a provider would take over the account. The database
    query only narrows the candidates; the comparison that decides is made here. A non-ASCII
    address is never linked automatically: Unicode offers too many ways to look the same.
    """
    if provider.email_linking != Provider.EmailLinking.VERIFIED or not email_verified or not email.isascii():
        return None
    User = get_user_model()
    field = User.get_email_field_name()
    wanted = _ascii_lower(email)
    candidates = User._default_manager.filter(**{f"{field}__iexact": email})[:10]
    matches = [user for user in candidates if _ascii_lower(getattr(user, field) or "") == wanted]
    return matches[0] if len(matches) == 1 else None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(value: str) -> str:
    """Lowercase A-Z only: unlike ``str.lower``/``casefold``, it never folds a look-alike into ASCII."""
    return value.translate(_ASCII_LOWER)


def _create_user(request: HttpRequest | None, claims: dict[str, Any], *, email_verified: bool) -> AbstractBaseUser:
    adapter = get_adapter()
    user = adapter.new_user(request)
    adapter.populate_user(request, user, claims, email_verified=email_verified)
    User = get_user_model()
    if User.get_email_field_name() == User.USERNAME_FIELD:
        _require_free_verified_email(User, claims, email_verified)  # the email is the username
    else:
        setattr(user, User.USERNAME_FIELD, _unique_username(adapter.username_candidates(request, claims)))
    _require_filled(user)
    user.save()
    return user


def _require_filled(user: AbstractBaseUser) -> None:
    """Refuse to save a new user whose model requires a field nobody filled (``AccountIncomplete``).

    The app fills the username and the email; a custom user model's other required fields are the
    adapter's to fill (``populate_user``). Saved empty, such a field either breaks a NOT NULL
    constraint -- an ``IntegrityError``, which the sign-in takes for a concurrent first sign-in and
    retries until it gives up with an error that names nothing -- or, for text, stores the empty
    string the model says is not allowed. "Required" is what a form of the model would require:
    editable, not ``blank``, not ``null``, no default (in Python or in the database).
    """
    missing = [
        field.name
        for field in user._meta.concrete_fields
        if field.editable
        and not (field.blank or field.null or field.has_default() or field.db_default is not NOT_PROVIDED)
        and getattr(user, field.attname) in field.empty_values
    ]
    if missing:
        raise AccountIncomplete(
            f"new {user._meta.label} user lacks required field(s) {', '.join(missing)}; "
            "the adapter's populate_user must fill them"
        )


def _require_free_verified_email(User: Any, claims: dict[str, Any], email_verified: bool) -> None:
    """A user model keyed by email gets a new account only for a vouched-for address nobody has.

    A generated handle in that field would overwrite the address with "alice"; an unverified
    address may be somebody else's; and an address another account already has would fail the
    unique constraint on every attempt. Each is refused with words the person can act on.
    """
    email = verified_email(claims)[0]  # (not "email, _ =": ``_`` is gettext here)
    if not email or not email_verified:
        raise SignInRefused(
            "the user model is keyed by email and the provider verified no email address",
            message=_(
                "This site needs an email address your provider has verified, and it sent none. "
                "Verify your email address with the provider, or sign in another way."
            ),
        )
    if User._default_manager.filter(**{f"{User.USERNAME_FIELD}__iexact": email}).exists():
        raise AccountConflict(
            "a user with this verified email exists and the provider does not link by email",
            message=_(
                "An account with this email address already exists here. Sign in the way you did before, "
                "then connect this provider from your profile page."
            ),
        )


def _unique_username(candidates: list[str]) -> str:
    User = get_user_model()
    field = User.USERNAME_FIELD
    manager = User._default_manager
    for name in candidates:
        if not manager.filter(**{f"{field}__iexact": name}).exists():
            return name
    base = candidates[0][:140]
    taken = {value.lower() for value in manager.filter(**{f"{field}__istartswith": base}).values_list(field, flat=True)}
    suffix = 2
    while f"{base}{suffix}".lower() in taken:
        suffix += 1
    return f"{base}{suffix}"


def _send_signals(request: HttpRequest | None, result: SignInResult, claims: dict[str, Any]) -> None:
    def send() -> None:
        if result.user_created:
            signals.user_created_from_provider.send(
                sender=Provider, request=request, user=result.user, identity=result.identity, claims=claims
            )
        if result.identity_created:
            signals.identity_connected.send(
                sender=Provider, request=request, user=result.user, identity=result.identity
            )

    transaction.on_commit(send)
