"""Two adapters for ``tests.extrauser.ExtraUser``: one that fills its required fields from the claims, one that forgets.

``ClaimsAdapter`` is what the README's "custom user model" paragraph describes: the display name
from the ``name`` claim (else the username the provider suggests), the organisation from an
``organisation`` claim, and a refusal in the project's own words when the provider sent none.
"""

from __future__ import annotations

from accounts.adapter import DefaultAccountAdapter
from accounts.errors import SignInRefused

from .models import Organisation


class ClaimsAdapter(DefaultAccountAdapter):
    def populate_user(self, request, user, claims, *, email_verified):
        super().populate_user(request, user, claims, email_verified=email_verified)
        organisation = claims.get("organisation")
        if not isinstance(organisation, str) or not organisation.strip():
            raise SignInRefused(
                "the provider sent no organisation claim",
                message="Your sign-in provider did not say which organisation you belong to.",
            )
        user.organisation, _ = Organisation.objects.get_or_create(name=organisation.strip()[:100])
        name = claims.get("name") or claims.get("preferred_username") or ""
        user.display_name = str(name)[:100] or str(claims["sub"])[:100]


class ForgetfulAdapter(DefaultAccountAdapter):
    """A project that switched to its custom user model and forgot to fill what it requires."""
