"""Bearer access tokens for a site's APIs (RFC 9068, RFC 6750): one attack test per rule.

The OpenID provider double signs real access tokens with real keys over real HTTP; every refusal
asserts the RFC 6750 answer (status, ``WWW-Authenticate`` error) *and* the reason that was logged,
so a rule that is dropped, or caught by another rule by accident, turns its test red. No test's
log may contain the token it sent.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse
from django.test import Client, RequestFactory
from django.urls import include, path

from accounts.api import (
    BearerTokenMiddleware,
    MachinePrincipal,
    UserPrincipal,
    bearer_token_required,
    get_bearer,
)
from accounts.conf import CALLERS_CHOICES, UNKNOWN_SUBJECT_CHOICES
from accounts.models import Identity, Provider
from accounts.oidc import discovery
from tests.conftest import STRANGER_KEY, claims_for, sign_in, signed_in_user
from tests.op_double import DISCOVERY_PATH

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api"), pytest.mark.usefixtures("discovered")]

AUDIENCE = "https://api.example.test"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def caller(request: HttpRequest) -> JsonResponse:
    """What a protected view knows about its caller."""
    bearer = get_bearer(request)
    assert bearer is not None
    return JsonResponse(
        {
            "machine": bearer.is_machine,
            "user": request.user.pk if request.user.is_authenticated else None,
            "client_id": bearer.client_id,
            "subject": bearer.subject,
            "scopes": sorted(bearer.scopes),
            "principal": type(bearer).__name__,
        }
    )


def doc_example(marker: str) -> dict:
    """Run the python block of docs/api.md that follows ``<!-- marker -->`` and return its names."""
    text = DOCS.read_text()
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/api.md has no python example marked {marker}"
    namespace: dict = {"__name__": "docs_api_example"}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)  # our own documentation
    return namespace


urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("api/orders/", bearer_token_required(audience=AUDIENCE, scopes=["orders:read"])(caller)),
    path("api/any/", bearer_token_required(audience=AUDIENCE)(caller)),
    path("api/once/", bearer_token_required(audience=AUDIENCE, refuse_replay=True)(caller)),
    path("api/join/", bearer_token_required(audience=AUDIENCE, unknown_subject="create-user")(caller)),
    path("api/users/", bearer_token_required(audience=AUDIENCE, callers="users")(caller)),
    path("api/machines/", bearer_token_required(audience=AUDIENCE, callers="machines")(caller)),
    path("api/services/", bearer_token_required(audience=AUDIENCE, unknown_subject="machine")(caller)),
    path("api/default-audience/", bearer_token_required(caller)),
    path("mw/orders/", caller),
    path("mw/orders/admin/", caller),
    path("open/", lambda request: JsonResponse({"user": request.user.is_authenticated})),
    path("docs/orders/", doc_example("decorator")["orders"]),
    path("docs/stock/", doc_example("machine")["restock"]),
]


# --- minting tokens ------------------------------------------------------------------------------


def access_claims(op, **overrides) -> dict:
    """Valid RFC 9068 claims of a user's access token from ``op``; ``name=None`` drops a claim."""
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "client_id": op.client_id,
        "scope": "openid orders:read",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def access_token(op, *, alg: str = "RS256", typ: str | None = "at+jwt", **overrides) -> str:
    key = op.signing_key_for(alg)
    header = {"kid": key.kid} if key.kid and not alg.startswith("HS") else {}
    if typ is not None:
        header["typ"] = typ
    return op.sign(access_claims(op, **overrides), alg=alg, header=header)


def machine_token(op, **overrides) -> str:
    """A client-credentials token: the client acts for itself, so its subject is its client id."""
    return access_token(op, **{"sub": op.client_id, "scope": "stock:write", **overrides})


def call(url: str, token: str | None, caplog, *, header: str | None = None, client: Client | None = None, **kw):
    """GET ``url`` with the token; the log must never contain it, whatever happened."""
    client = client or Client()
    authorization = header if header is not None else (f"Bearer {token}" if token else None)
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    with caplog.at_level(logging.INFO, logger="accounts"):
        response = client.get(url, **extra, **kw)
    assert response.status_code != 500
    if token:
        assert not [part for part in token.split(".") if len(part) >= 16 and part in caplog.text]  # not even a part
    return response


def assert_refused(response, caplog, status: int, error: str | None, reason: str, *, no_store: bool = True) -> None:
    """An RFC 6750 refusal: status, the challenge's error code, and the one log line's reason.

    ``no_store``: the answer says so (DRF's exception handler sets no such header of its own).
    """
    assert response.status_code == status, response.content
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
        assert 'error_description="' in challenge
        assert response.json()["error"] == error
    if no_store:
        assert response["Cache-Control"] == "no-store"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bearer token refused")]
    assert len(lines) == 1, lines
    assert reason in lines[0], lines[0]


def assert_denied(response, caplog, reason: str, *, no_store: bool = True) -> None:
    """A valid token whose holder the admission policy refuses: 403 ``access_denied``, no challenge, the rule logged."""
    assert response.status_code == 403, response.content
    assert response.json()["error"] == "access_denied"
    assert "WWW-Authenticate" not in response  # another token of the same account would not help
    if no_store:
        assert response["Cache-Control"] == "no-store"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bearer token refused")]
    assert len(lines) == 1, lines
    assert "status=403 error=access_denied reason=admission refused: " in lines[0], lines[0]
    assert reason in lines[0], lines[0]


@pytest.fixture
def alice(client, op, provider):
    """Alice, signed in once with a browser: her identity (issuer, user-1) exists."""
    response = sign_in(client, op, provider)
    assert response.status_code == 302, response.content
    return signed_in_user(client)


# --- who is calling ------------------------------------------------------------------------------


def test_a_users_token_acts_as_the_user_a_browser_sign_in_gives(op, alice, caplog):
    response = call("/api/orders/", access_token(op), caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "machine": False,
        "user": alice.pk,
        "client_id": op.client_id,
        "subject": "user-1",
        "scopes": ["openid", "orders:read"],
        "principal": "UserPrincipal",
    }


def test_a_subject_without_an_identity_is_refused_by_default(op, provider, caplog):
    response = call("/api/orders/", access_token(op, sub="stranger"), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "has no identity here")
    assert not get_user_model().objects.exists()


def test_a_subject_without_an_identity_gets_a_user_when_the_api_says_so(op, provider, caplog):
    first = call("/api/join/", access_token(op, sub="newcomer", preferred_username="newbie"), caplog)
    assert first.status_code == 200, first.content
    identity = Identity.objects.get(issuer=op.issuer, subject="newcomer")
    assert first.json()["user"] == identity.user_id
    assert identity.user.username == "newbie"
    again = call("/api/join/", access_token(op, sub="newcomer"), caplog)
    assert again.json()["user"] == identity.user_id
    assert get_user_model().objects.count() == 1


def test_the_user_created_for_a_token_is_the_one_the_browser_signs_in_to(client, op, provider, caplog):
    created = call("/api/join/", access_token(op, sub="user-1"), caplog).json()["user"]
    sign_in(client, op, provider)
    assert signed_in_user(client).pk == created


def test_unknown_subject_setting_applies_where_the_api_says_nothing(op, provider, caplog, settings):
    settings.ACCOUNTS_API_UNKNOWN_SUBJECT = "create-user"
    response = call("/api/orders/", access_token(op, sub="newcomer"), caplog)
    assert response.status_code == 200, response.content
    assert Identity.objects.filter(subject="newcomer").exists()


def test_a_client_credentials_token_is_a_machine_principal(op, provider, caplog):
    response = call("/api/any/", machine_token(op), caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "machine": True,
        "user": None,
        "client_id": op.client_id,
        "subject": op.client_id,
        "scopes": ["stock:write"],
        "principal": "MachinePrincipal",
    }


def test_a_machine_principal_is_never_a_user_even_if_one_has_that_subject(op, provider, caplog, django_user_model):
    """``sub == client_id`` is the client itself (RFC 9068 2.2), whoever has an identity with that subject."""
    user = django_user_model.objects.create_user("clash")
    Identity.objects.create(user=user, provider=provider, issuer=op.issuer, subject=op.client_id)
    assert call("/api/any/", machine_token(op), caplog).json()["machine"] is True


def test_unknown_subject_machine_makes_no_machine_of_a_users_token(op, provider, caplog):
    """Issue 19.7: a token that does not show it is a client's own (sub = client_id, or its profile's
    marker) is a user's, whatever the API says about strangers: refused, never a machine."""
    response = call("/api/services/", access_token(op, sub="someone-unknown"), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "does not show a machine client")


def test_a_users_token_no_longer_passes_an_api_for_machines_as_a_stranger(op, provider, caplog):
    view = bearer_token_required(audience=AUDIENCE, callers="machines", unknown_subject="machine")(caller)
    token = access_token(op, sub="someone-unknown")
    with caplog.at_level(logging.INFO, logger="accounts"):
        response = view(RequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert response.status_code == 401, response.content
    assert "does not show a machine client" in caplog.text


def test_unknown_subject_machine_still_admits_a_token_that_shows_a_machine(op, provider, caplog):
    response = call("/api/services/", machine_token(op), caplog)
    assert response.json()["principal"] == "MachinePrincipal"


def test_an_api_for_users_refuses_machines(op, provider, caplog):
    assert_refused(call("/api/users/", machine_token(op), caplog), caplog, 403, "insufficient_scope", "API for users")


def test_an_api_for_machines_refuses_users(op, alice, caplog):
    response = call("/api/machines/", access_token(op), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "API for machine clients")


def test_an_api_for_machines_creates_no_user_for_an_unknown_subject(op, provider, caplog):
    view = bearer_token_required(audience=AUDIENCE, callers="machines", unknown_subject="create-user")(caller)
    token = access_token(op, sub="newcomer")
    response = view(RequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert response.status_code == 403
    assert not Identity.objects.exists()


def test_a_disabled_account_is_refused(op, alice, caplog):
    alice.is_active = False
    alice.save()
    assert_denied(call("/api/orders/", access_token(op), caplog), caplog, f"user {alice.pk} is inactive")


# --- RFC 9068 section 4: the token's rules ---------------------------------------------------------


def test_rejects_alg_none(op, alice, caplog):
    token = op.unsigned(access_claims(op), header={"alg": "none", "typ": "at+jwt"})
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "is unsigned")


def test_rejects_token_signed_with_public_key_as_hmac_secret(op, provider, alice, caplog):
    """Algorithm confusion: even a provider that allows HS256 for ID tokens never gets it for access tokens."""
    provider.allowed_algorithms = "RS256 HS256"
    provider.save()
    public_pem = op.signing_key_for("RS256").as_pem(private=False)
    token = op.sign_unchecked(access_claims(op), header={"alg": "HS256", "typ": "at+jwt"}, key=public_pem)
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "is HMAC, never accepted")


def test_rejects_token_signed_with_the_client_secret(op, provider, alice, caplog):
    provider.allowed_algorithms = "RS256 HS256"
    provider.save()
    token = access_token(op, alg="HS256")
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "is HMAC, never accepted")


def test_rejects_an_algorithm_off_the_providers_allowlist(op, provider, alice, caplog):
    provider.allowed_algorithms = "ES256"
    provider.save()
    response = call("/api/orders/", access_token(op), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "alg RS256 is not allowed for provider test-op")
    assert "signed with an algorithm this API does not accept" in response["WWW-Authenticate"]


def test_rejects_an_id_token_presented_as_access_token(op, alice, caplog):
    """An ID token (typ JWT) names the same subject and is signed by the same key: typ tells them apart."""
    id_token = op.sign({**claims_for(op), "aud": AUDIENCE, "client_id": op.client_id})
    response = call("/api/orders/", id_token, caplog)
    assert_refused(response, caplog, 401, "invalid_token", "typ is 'JWT', not at+jwt")
    assert "typ header must be at+jwt" in response["WWW-Authenticate"]


@pytest.mark.parametrize("typ", [None, "jwt", "logout+jwt", "at+jwt+x"])
def test_rejects_any_other_typ(op, alice, caplog, typ):
    response = call("/api/orders/", access_token(op, typ=typ), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "not at+jwt")


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_accepts_both_spellings_of_the_access_token_type(op, alice, caplog, typ):
    assert call("/api/orders/", access_token(op, typ=typ), caplog).status_code == 200


def test_rejects_a_token_for_another_audience(op, alice, caplog):
    """The client id is the sign-in's audience, not the API's: an ID token's aud never fits."""
    response = call("/api/orders/", access_token(op, aud=op.client_id), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "aud claim is not valid")
    assert "not meant for this API" in response["WWW-Authenticate"]


def test_accepts_a_token_with_several_audiences_among_them_this_api(op, alice, caplog):
    assert call("/api/orders/", access_token(op, aud=["https://other.example", AUDIENCE]), caplog).status_code == 200


def test_rejects_an_expired_token(op, alice, caplog):
    now = int(time.time())
    response = call("/api/orders/", access_token(op, exp=now - 3600, iat=now - 4000), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "access token has expired")
    assert 'error_description="The access token has expired."' in response["WWW-Authenticate"]


def test_the_clock_leeway_applies(op, alice, caplog, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 120
    token = access_token(op, exp=int(time.time()) - 60)
    assert call("/api/orders/", token, caplog).status_code == 200


def test_rejects_a_token_not_valid_yet(op, alice, caplog):
    response = call("/api/orders/", access_token(op, nbf=int(time.time()) + 3600), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "nbf claim is not valid")
    assert "not valid yet" in response["WWW-Authenticate"]


def test_rejects_a_token_issued_in_the_future(op, alice, caplog):
    response = call("/api/orders/", access_token(op, iat=int(time.time()) + 3600), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "iat claim is not valid")


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "client_id", "aud"])
def test_rejects_a_token_missing_a_required_claim(op, alice, caplog, claim):
    response = call("/api/orders/", access_token(op, **{claim: None}), caplog)
    assert_refused(response, caplog, 401, "invalid_token", f"access token has no {claim} claim")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("client_id", ""),
        ("client_id", 7),
        ("sub", ["user-1"]),
        ("sub", "a\x00b"),
        ("scope", ["a"]),
        ("jti", 5),
        ("jti", ""),
    ],
)
def test_rejects_claims_of_the_wrong_shape(op, alice, caplog, claim, value):
    response = call("/api/orders/", access_token(op, **{claim: value}), caplog)
    assert_refused(response, caplog, 401, "invalid_token", f"{claim} claim")


def test_rejects_a_token_from_an_issuer_that_is_no_provider(op, alice, caplog):
    token = access_token(op, iss="https://evil.example")
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "is no enabled provider")


def test_rejects_a_token_from_a_disabled_provider(op, provider, alice, caplog):
    provider.enabled = False
    provider.save()
    assert_refused(
        call("/api/orders/", access_token(op), caplog), caplog, 401, "invalid_token", "is no enabled provider"
    )


def test_rejects_a_token_whose_iss_claim_differs_from_the_provider_that_verified_it(op, provider, op2, second, caplog):
    """The token names op2 to pick its keys but op signed it: op2's key (kid rsa-1 too) does not verify it."""
    token = access_token(op, iss=op2.issuer)
    assert_refused(call("/api/any/", token, caplog), caplog, 401, "invalid_token", "signature is not valid")


def test_rejects_a_token_whose_iss_is_not_the_providers(op, provider):
    """The protocol layer checks ``iss`` itself, whoever chose the provider it is handed."""
    from accounts.errors import TokenRejected
    from accounts.oidc.tokens import verify_access_token

    token = access_token(op, iss="https://elsewhere.example")
    with pytest.raises(TokenRejected) as info:
        verify_access_token(provider, token, jwks_uri=op.issuer + "/jwks", audiences=[AUDIENCE])
    assert info.value.reason == "access token iss claim is not valid (Invalid claim: 'iss')"


def test_rejects_a_token_from_a_provider_without_keys(op, provider, caplog):
    provider.kind = Provider.Kind.GITHUB
    provider.save()
    response = call("/api/any/", machine_token(op), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "publishes no keys")


def test_rejects_a_forged_signature(op, alice, caplog):
    header, payload, _signature = access_token(op).split(".")
    _h, _p, other = access_token(op, sub="someone-else").split(".")
    forged = f"{header}.{payload}.{other}"
    assert_refused(call("/api/orders/", forged, caplog), caplog, 401, "invalid_token", "signature is not valid")


@pytest.mark.parametrize("token", ["abc", "a.b.c", "e30.e30.e30"])
def test_rejects_what_is_not_a_signed_jwt(op, provider, caplog, token):
    response = call("/api/orders/", token, caplog)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


# --- unknown key ids: the budget of tokens anyone can submit -----------------------------------


def test_unknown_kids_in_bearer_tokens_use_the_strict_budget_and_never_the_sign_in_one(client, op, alice, caplog):
    from joserfc import jwt

    def made_up(kid: str) -> str:
        return jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, access_claims(op), STRANGER_KEY)

    before = op.hits["/jwks"]  # the sign-in fetched the key set once
    first = call("/api/orders/", made_up("invented-1"), caplog)
    assert_refused(first, caplog, 401, "invalid_token", "kid 'invented-1' matches no RS256 key")
    assert op.hits["/jwks"] == before + 1  # one refetch, in case the provider rotated
    caplog.clear()
    second = call("/api/orders/", made_up("invented-2"), caplog)
    assert_refused(second, caplog, 401, "invalid_token", "kid 'invented-2' matches no RS256 key")
    assert op.hits["/jwks"] == before + 1  # within the interval: no second fetch
    # The provider really rotates now: a sign-in (back channel) still refetches at once.
    op.rotate("RSA")
    assert sign_in(Client(), op, Provider.objects.get()).status_code == 302
    assert op.hits["/jwks"] == before + 2
    # And the API accepts the new key's tokens from the refreshed key set, without another fetch.
    assert call("/api/orders/", access_token(op), caplog).status_code == 200
    assert op.hits["/jwks"] == before + 2


# --- scopes, replay, the header ------------------------------------------------------------------


def test_insufficient_scope_is_403_naming_the_scope_needed(op, alice, caplog):
    response = call("/api/orders/", access_token(op, scope="openid profile"), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "lacks scope orders:read")
    assert 'scope="orders:read"' in response["WWW-Authenticate"]


def test_a_token_without_scope_grants_none(op, alice, caplog):
    response = call("/api/orders/", access_token(op, scope=None), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "lacks scope orders:read")


def test_scopes_are_whole_words(op, alice, caplog):
    response = call("/api/orders/", access_token(op, scope="orders:readonly"), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "lacks scope orders:read")


def test_a_replayed_token_is_refused_where_the_api_asks(op, alice, caplog):
    token = access_token(op)
    assert call("/api/once/", token, caplog).status_code == 200
    caplog.clear()
    assert_refused(call("/api/once/", token, caplog), caplog, 401, "invalid_token", "jti replay")
    assert call("/api/any/", token, caplog).status_code == 200  # an API that did not ask reuses it freely


def test_an_api_refusing_replays_requires_jti(op, alice, caplog):
    response = call("/api/once/", access_token(op, jti=None), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "access token has no jti claim")


def test_no_authorization_is_a_bare_challenge(op, provider, caplog):
    """RFC 6750 3.1: a request without credentials gets no error code."""
    response = call("/api/orders/", None, caplog)
    assert_refused(response, caplog, 401, None, "no bearer token")
    assert response["WWW-Authenticate"] == "Bearer"


def test_another_scheme_is_a_bare_challenge(op, provider, caplog):
    response = call("/api/orders/", None, caplog, header="Basic dXNlcjpwYXNz")
    assert_refused(response, caplog, 401, None, "scheme 'Basic' is not Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", 'Bearer "quoted"', "Bearer a\tb"])
def test_a_malformed_header_is_invalid_request(op, provider, caplog, header):
    response = call("/api/orders/", None, caplog, header=header)
    assert_refused(response, caplog, 400, "invalid_request", "Authorization header is not 'Bearer <token>'")


def test_the_scheme_is_case_insensitive(op, alice, caplog):
    assert call("/api/orders/", None, caplog, header=f"bearer {access_token(op)}").status_code == 200


def test_the_token_is_not_read_from_the_query_string(op, alice, caplog):
    response = call(f"/api/orders/?access_token={access_token(op)}", None, caplog)
    assert_refused(response, caplog, 401, None, "no bearer token")


def test_descriptions_quote_nothing_from_the_token(op, alice, caplog):
    token = access_token(op, typ='x", error="forged')
    response = call("/api/orders/", token, caplog)
    assert response["WWW-Authenticate"].count("error=") == 1
    assert "forged" not in response["WWW-Authenticate"]


def test_descriptions_are_header_safe_whatever_they_are_given():
    """RFC 6750 3: error_description is ASCII without quote or backslash, so the challenge cannot be split."""
    from accounts.api import InvalidToken

    assert InvalidToken("r", description='no "quotes", \\ or \u00e9').description == "no ?quotes?, ? or ?"


def test_an_unreachable_issuer_is_503_not_401(op, provider, caplog):
    op.faults["/jwks"] = {"status": 500, "body": "down"}
    response = call("/api/any/", machine_token(op), caplog)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in response


def test_an_api_without_an_audience_refuses_rather_than_accepting_any(op, alice, caplog):
    response = call("/api/default-audience/", access_token(op), caplog)
    assert response.status_code == 503


def test_the_audience_setting_applies_where_the_api_names_none(op, alice, caplog, settings):
    settings.ACCOUNTS_API_AUDIENCE = AUDIENCE
    assert call("/api/default-audience/", access_token(op), caplog).status_code == 200
    settings.ACCOUNTS_API_AUDIENCE = ["https://else.example"]
    caplog.clear()
    response = call("/api/default-audience/", access_token(op), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "aud claim is not valid")


def test_a_protected_view_needs_no_csrf_token(op, alice, caplog):
    response = Client(enforce_csrf_checks=True).post("/api/orders/", HTTP_AUTHORIZATION=f"Bearer {access_token(op)}")
    assert response.status_code == 200, response.content


def test_a_session_cookie_is_no_bearer_token(client, op, alice, caplog):
    """Alice's browser is signed in, but the API answers to tokens only."""
    assert_refused(call("/api/orders/", None, caplog, client=client), caplog, 401, None, "no bearer token")


# --- the middleware --------------------------------------------------------------------------------


@pytest.fixture
def middleware(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "accounts.api.BearerTokenMiddleware"]
    settings.ACCOUNTS_API_PREFIXES = {
        "/mw/": {"audience": AUDIENCE},
        "/mw/orders/admin/": {"audience": AUDIENCE, "scopes": ["orders:admin"], "callers": "users"},
    }


def test_the_middleware_protects_its_prefixes(op, alice, caplog, middleware):
    assert call("/mw/orders/", access_token(op), caplog).json()["user"] == alice.pk
    assert_refused(call("/mw/orders/", None, caplog), caplog, 401, None, "no bearer token")


def test_the_longest_prefix_decides(op, alice, caplog, middleware):
    response = call("/mw/orders/admin/", access_token(op), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "lacks scope orders:admin")
    assert call("/mw/orders/admin/", access_token(op, scope="orders:admin"), caplog).status_code == 200


def test_the_middleware_leaves_other_paths_alone(client, op, alice, caplog, middleware):
    assert client.get("/open/").json() == {"user": True}  # the browser's session, as before
    assert Client().get("/open/", HTTP_AUTHORIZATION="Bearer junk").json() == {"user": False}


def test_the_middleware_needs_no_csrf_token(op, alice, middleware):
    response = Client(enforce_csrf_checks=True).post("/mw/orders/", HTTP_AUTHORIZATION=f"Bearer {access_token(op)}")
    assert response.status_code == 200, response.content


def test_the_middleware_can_be_constructed_by_hand():
    assert callable(BearerTokenMiddleware(lambda request: JsonResponse({})))


# --- issuers known by their JWKS alone ---------------------------------------------------------------


@pytest.fixture
def token_issuer(db, op) -> Provider:
    """The double's keys, with no discovery document served at all."""
    op.faults[DISCOVERY_PATH] = {"status": 404, "body": "no discovery here"}
    return Provider.objects.create(
        slug="m2m",
        name="M2M issuer",
        kind=Provider.Kind.TOKEN_ISSUER,
        issuer=op.issuer,
        jwks_uri=op.issuer + "/jwks",
        client_id="project-1",
    )


def test_a_jwks_only_issuer_verifies_access_tokens_without_discovery(op, token_issuer, caplog):
    response = call("/api/any/", machine_token(op), caplog)
    assert response.status_code == 200, response.content
    assert response.json()["machine"] is True
    assert op.hits[DISCOVERY_PATH] == 0
    assert discovery.in_process(op.issuer + "/jwks") is not None  # the same key cache as sign-in
    call("/api/any/", machine_token(op), caplog)
    assert op.hits["/jwks"] == 1


def test_a_jwks_only_issuer_keeps_every_rule(op, token_issuer, caplog):
    response = call("/api/any/", machine_token(op, aud="https://other.example"), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "aud claim is not valid")


def test_a_jwks_only_issuer_is_not_offered_for_sign_in(client, token_issuer):
    assert "M2M issuer" not in client.get("/accounts/login/").content.decode()
    response = client.get("/accounts/m2m/login/")
    assert response.status_code == 404
    assert response.context["error"].code == "unknown_provider"


def test_a_jwks_only_issuer_is_offered_nowhere_for_sign_in(client, provider, token_issuer, django_user_model):
    from accounts.templatetags.oidc_signin import oidc_providers

    assert oidc_providers() == [provider]
    client.force_login(django_user_model.objects.create_user("bob"))
    assert [p.slug for p in client.get("/accounts/profile/").context["connectable"]] == ["test-op"]


@pytest.mark.urls("project.urls")
def test_the_admin_adds_a_jwks_only_issuer(admin_client, op):
    page = admin_client.get("/admin/oidc_signin/provider/add/")
    assert 'name="jwks_uri"' in page.content.decode()
    response = admin_client.post(
        "/admin/oidc_signin/provider/add/",
        {
            "name": "M2M",
            "slug": "m2m",
            "preset": "generic",
            "enabled": "on",
            "display_order": "0",
            "issuer": op.issuer,
            "jwks_uri": op.issuer + "/jwks",
            "client_id": "project-1",
            "kind": "token-issuer",
            "scopes": "openid",
            "allowed_algorithms": "RS256",
            "extra_auth_params": "{}",
            "userinfo": "when-needed",
            "profile_sync": "follow",
            "email_linking": "never",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    provider = Provider.objects.get(slug="m2m")
    assert (provider.kind, provider.jwks_uri) == (Provider.Kind.TOKEN_ISSUER, op.issuer + "/jwks")


def test_a_token_issuer_without_a_jwks_uri_needs_an_issuer_url_for_discovery(token_issuer):
    """Issue 20.5: with --issuer alone the keys come from discovery, so the issuer must be a URL then."""
    from django.core.exceptions import ValidationError

    token_issuer.jwks_uri = ""
    token_issuer.full_clean()  # a URL issuer: its discovery document names the keys
    token_issuer.issuer = "stytch.com/project-test-00000000-0000-0000-0000-000000000000"
    with pytest.raises(ValidationError) as info:
        token_issuer.full_clean()
    assert "issuer" in info.value.message_dict
    token_issuer.jwks_uri = "https://test.stytch.com/v1/sessions/jwks/project-test-1"
    token_issuer.full_clean()  # with its key-set URL, any issuer identifier will do


def test_a_token_issuer_without_a_jwks_uri_takes_its_keys_from_discovery(op, provider, caplog):
    """GitHub Actions publishes a discovery document with no endpoints: issuer and jwks_uri are enough."""
    op.metadata = {"issuer": op.issuer, "jwks_uri": op.issuer + "/jwks"}
    provider.kind, provider.jwks_uri = Provider.Kind.TOKEN_ISSUER, ""
    provider.save()
    response = call("/api/any/", machine_token(op), caplog)
    assert response.status_code == 200, response.content
    assert op.hits[DISCOVERY_PATH] == 1


# --- the documentation ---------------------------------------------------------------------------------


def test_the_documented_view_works_as_documented(op, alice, caplog):
    assert call("/docs/orders/", access_token(op, aud="https://api.example.com"), caplog).status_code == 200
    response = call("/docs/orders/", access_token(op, aud="https://api.example.com", scope="openid"), caplog)
    assert response.status_code == 403


def test_the_documented_machine_view_works_as_documented(op, provider, caplog):
    token = machine_token(op, aud="https://api.example.com", scope="stock:write")
    response = call("/docs/stock/", token, caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {"restocked_by": op.client_id}
    assert call("/docs/stock/", access_token(op, aud="https://api.example.com"), caplog).status_code == 403


def test_the_documented_middleware_settings_are_valid_settings():
    from accounts.conf import AppSettings

    namespace = doc_example("middleware")
    assert AppSettings.API_PREFIXES.valid(namespace["ACCOUNTS_API_PREFIXES"])
    assert "accounts.api.BearerTokenMiddleware" in namespace["MIDDLEWARE"]


def test_the_settings_choices_are_the_enums_values():
    from accounts.api import Callers, UnknownSubject

    assert {c.value for c in Callers} == CALLERS_CHOICES
    assert {u.value for u in UnknownSubject} == UNKNOWN_SUBJECT_CHOICES


def test_a_bare_decorator_uses_the_settings(op, alice, caplog, settings):
    settings.ACCOUNTS_API_AUDIENCE = AUDIENCE
    assert isinstance(MachinePrincipal, type) and isinstance(UserPrincipal, type)
    assert call("/api/default-audience/", access_token(op), caplog).status_code == 200
