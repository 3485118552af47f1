"""What the protocol layer reads of a provider, as a type: ``accounts.models.Provider`` fits it.

``accounts.oidc`` never imports the models; it is handed an object with these attributes. A
test, a script or another framework can hand it anything else that has them.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

#: The longest subject an identity can store: OpenID Connect Core 2 limits ``sub`` to 255 ASCII
#: characters, and ``Identity.subject`` (with every other stored subject) is a varchar of this length.
MAX_SUBJECT_LENGTH = 255
#: The longest issuer an identity can store (``Identity.issuer`` and every other stored issuer).
MAX_ISSUER_LENGTH = 500


class ProviderKind(enum.StrEnum):
    """Which protocol a provider speaks: it chooses the client class (``clients.client_class``)."""

    OIDC = "oidc"
    GITHUB = "github"
    #: Known by its issuer and JWKS URL alone: it signs access tokens for this site's APIs, nobody signs in with it.
    TOKEN_ISSUER = "token-issuer"


class UserinfoPolicy(enum.StrEnum):
    """When the OpenID Connect client calls userinfo (``Provider.userinfo`` stores these values)."""

    ALWAYS = "always"
    WHEN_NEEDED = "when-needed"
    NEVER = "never"


class TokenAuthMethod(enum.StrEnum):
    """How a client authenticates at the token, PAR and revocation endpoints (RFC 6749 2.3, RFC 7523, Core 9).

    A provider object may say which (``token_auth_method``; blank: picked from discovery) and, for
    ``private_key_jwt``, signs the assertion itself (``sign_client_assertion``): the protocol layer
    never holds the site's private key.
    """

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"


class ProviderConfig(Protocol):
    """One configured provider: who we are to it (client), where it is (endpoints), what we accept."""

    slug: str
    name: str
    issuer: str
    client_id: str
    client_secret: str
    extra_auth_params: Any
    userinfo: str
    #: GitHub-style providers configure their endpoints; OpenID Connect providers discover them.
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    emails_endpoint: str
    #: GitHub-style providers only: the ``iss`` their callbacks carry (blank: derived, see ``github``).
    callback_issuer: str
    #: Token issuers only: their keys' URL, for an issuer without a discovery document.
    jwks_uri: str

    @property
    def scope_list(self) -> list[str]: ...

    def reveal_client_secret(self) -> str:
        """The plain client secret, at the moment it is sent (``client_secret`` may hold it encrypted).

        Raises a ``SignInError`` when it cannot be had (``accounts.client_secrets.reveal``).
        """
        ...

    @property
    def algorithms(self) -> list[str]: ...
