"""The former import path of the app's middleware, kept so that existing ``MIDDLEWARE`` settings work.

The middleware is ``accounts.session.SignInSessionMiddleware`` (see ``docs/upgrading.md``).
"""

from __future__ import annotations

from .session import SignInSessionMiddleware as ProviderSessionMiddleware

__all__ = ["ProviderSessionMiddleware"]
