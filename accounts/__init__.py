"""Sign in with OpenID Connect (and GitHub-style OAuth 2.0) providers.

Read ``accounts/oidc/`` for the protocol, ``accounts/identities.py`` for how a verified identity
becomes a local user, ``accounts/adapter.py`` for the one place a project customises behaviour.
"""

__version__ = "0.1.0"
