"""Signals a reusing project can connect to. Each lists the arguments it is sent with.

They are sent after the database work they describe has been committed, so a receiver that
sends an email or calls an API never acts on something that was rolled back.
"""

from django.dispatch import Signal

#: A local user was created from a provider sign-in.
#: Arguments: ``sender`` (the Provider class), ``request``, ``user``, ``identity``, ``claims``.
user_created_from_provider = Signal()

#: An identity was attached to a user (first sign-in, email linking, or "connect" on the profile).
#: Arguments: ``sender``, ``request``, ``user``, ``identity``.
identity_connected = Signal()

#: An identity was removed from a user. Arguments: ``sender``, ``request``, ``user``, ``identity``.
identity_disconnected = Signal()

#: A sign-in attempt failed. Arguments: ``sender``, ``request``, ``provider`` (or None when the
#: provider itself is unknown), ``code`` (a short machine-readable reason, see accounts.errors),
#: ``reason`` (the log line; never a token or a secret).
sign_in_failed = Signal()

#: The stored tokens of an identity became unusable: the provider answered ``invalid_grant`` to a
#: refresh (the grant was revoked there, or a reused refresh token made it revoke the grant).
#: Arguments: ``sender`` (the ProviderToken class), ``user``, ``identity``, ``reason`` (never a token).
provider_tokens_revoked = Signal()
