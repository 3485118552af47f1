"""Token profiles on the product side: which provider a bearer token names, and that provider's policy.

The profiles themselves are protocol data (``accounts.oidc.profiles``); this module reads a
``Provider`` row into them -- its profile and its ``CallerPolicy`` (audience, allowed clients,
tenants and callers, maximum token age) -- and finds the provider a token's unverified ``iss``
names, including an Entra issuer template (``{tenantid}``) or its other spelling (v1.0/v2.0).
``accounts.api`` calls these three functions and nothing else of profiles but ``read``.
"""

from __future__ import annotations

from . import provider_cache
from .models import Provider
from .oidc import profiles, tokens
from .oidc.profiles import CallerPolicy, ProfileName, TokenProfile

#: How many providers sharing one issuer are considered (a site has a handful at most).
_SAME_ISSUER = 10


def _takes_typ(profile: TokenProfile, typ: object) -> bool:
    value = "" if typ is None else typ
    return isinstance(value, str) and value.lower() in profile.typ


def profile_of(provider: Provider) -> TokenProfile:
    return profiles.profile_named(provider.token_profile)


def policy_of(provider: Provider) -> CallerPolicy:
    return CallerPolicy(
        audience=provider.token_audience,
        allowed_clients=tuple(provider.client_list),
        allowed_tenants=tuple(provider.tenants),
        allowed_callers=tuple(provider.caller_list),
        max_age=provider.token_max_age,
    )


def provider_for_issuer(issuer: str, raw: str) -> Provider | None:
    """The enabled provider whose tokens say ``iss`` = ``issuer``; only a choice of keys, nothing verified.

    An exact match first (one indexed query; among several providers of one issuer, the first whose
    profile accepts the token's ``typ``); then the few providers with several issuer
    spellings (the ``entra`` profile), each asked whether ``issuer`` is one of them for the
    token's ``tid``. ``verify_access_token`` checks ``iss`` again against the verified claims.
    """
    same = provider_cache.kept(
        ("issuer", issuer),
        lambda: list(Provider.objects.filter(issuer=issuer, enabled=True).order_by("pk")[:_SAME_ISSUER]),
    )
    if len(same) > 1:  # e.g. Google sign-in and Google service tokens: the one whose profile takes this typ
        typ = tokens.unverified_typ(raw)
        return next((p for p in same if _takes_typ(profile_of(p), typ)), same[0])
    if same:
        return same[0]
    candidates = provider_cache.kept(
        ("entra",), lambda: list(Provider.objects.filter(enabled=True, token_profile=ProfileName.ENTRA).order_by("pk"))
    )
    if not candidates:
        return None
    claims = tokens.unverified_claims(raw)
    for candidate in candidates:
        if issuer in profiles.accepted_issuers(profile_of(candidate), candidate.issuer, claims):
            return candidate
    return None
