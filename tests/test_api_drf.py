"""Bearer access tokens in Django REST framework: the same rules and RFC 6750 answers as ``accounts.api``.

DRF is an optional dependency (the ``drf`` extra); these tests skip without it, and the last one
checks that nothing but ``accounts.drf`` ever imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("rest_framework")

from django.urls import include, path
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.drf import BearerTokenAuthentication, RequiredScopes
from tests.test_api import (
    AUDIENCE,
    access_claims,
    access_token,
    alice,
    assert_refused,
    call,
    doc_example,
    machine_token,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api_drf"), pytest.mark.usefixtures("discovered")]

__all__ = ["alice"]  # the fixture, shared with tests/test_api.py


class Whoami(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [RequiredScopes]
    renderer_classes = [JSONRenderer]
    bearer_audience = AUDIENCE
    required_scopes = ["orders:read"]

    def get(self, request):
        return Response(
            {
                "user": request.user.pk if request.user.is_authenticated else None,
                "machine": request.auth.is_machine,
                "client_id": request.auth.client_id,
            }
        )


class UsersOnly(Whoami):
    permission_classes = [IsAuthenticated]


class Machines(Whoami):
    bearer_callers = "machines"
    required_scopes = []


class Once(Whoami):
    bearer_refuse_replay = True


DocOrders = doc_example("drf")["OrderList"]

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("drf/whoami/", Whoami.as_view()),
    path("drf/users/", UsersOnly.as_view()),
    path("drf/machines/", Machines.as_view()),
    path("drf/once/", Once.as_view()),
    path("drf/docs/", type("Doc", (DocOrders,), {"renderer_classes": [JSONRenderer]}).as_view()),
]


def test_a_users_token_authenticates_the_user(op, alice, caplog):
    response = call("/drf/whoami/", access_token(op), caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {"user": alice.pk, "machine": False, "client_id": op.client_id}


def test_a_machine_token_is_a_machine_principal_with_no_user(op, provider, caplog):
    response = call("/drf/machines/", machine_token(op), caplog)
    assert response.json() == {"user": None, "machine": True, "client_id": op.client_id}


def test_is_authenticated_refuses_a_machine(op, provider, caplog):
    assert call("/drf/users/", machine_token(op), caplog).status_code == 403


def test_no_token_is_a_bare_401_challenge(op, provider, caplog):
    response = call("/drf/whoami/", None, caplog)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_an_expired_token_is_401_invalid_token(op, alice, caplog):
    response = call("/drf/whoami/", access_token(op, exp=1, iat=0), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "access token has expired", no_store=False)
    assert response.json()["error_description"] == "The access token has expired."


def test_an_id_token_is_refused(op, alice, caplog):
    response = call("/drf/whoami/", access_token(op, typ="JWT"), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "not at+jwt", no_store=False)


def test_the_audience_is_the_views(op, alice, caplog):
    response = call("/drf/whoami/", access_token(op, aud="https://other.example"), caplog)
    assert_refused(response, caplog, 401, "invalid_token", "aud claim is not valid", no_store=False)


def test_insufficient_scope_is_403_naming_the_scope(op, alice, caplog):
    response = call("/drf/whoami/", access_token(op, scope="openid"), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "lacks scope orders:read", no_store=False)
    assert 'scope="orders:read"' in response["WWW-Authenticate"]


def test_a_malformed_header_is_400_invalid_request(op, provider, caplog):
    response = call("/drf/whoami/", None, caplog, header="Bearer a b")
    assert_refused(response, caplog, 400, "invalid_request", "is not 'Bearer <token>'", no_store=False)


def test_callers_are_the_views(op, alice, caplog):
    response = call("/drf/machines/", access_token(op), caplog)
    assert_refused(response, caplog, 403, "insufficient_scope", "API for machine clients", no_store=False)


def test_replays_are_refused_where_the_view_asks(op, alice, caplog):
    token = access_token(op)
    assert call("/drf/once/", token, caplog).status_code == 200
    caplog.clear()
    assert_refused(call("/drf/once/", token, caplog), caplog, 401, "invalid_token", "jti replay", no_store=False)


def test_an_unreachable_issuer_is_503(op, provider, caplog):
    op.faults["/jwks"] = {"status": 500, "body": "down"}
    response = call("/drf/machines/", machine_token(op), caplog)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_the_documented_view_works_as_documented(op, alice, caplog):
    response = call("/drf/docs/", access_token(op, aud="https://api.example.com"), caplog)
    assert response.json() == {"client_id": op.client_id, "machine": False}
    response = call("/drf/docs/", access_token(op, aud="https://api.example.com", scope="openid"), caplog)
    assert response.status_code == 403


def test_nothing_but_accounts_drf_imports_rest_framework():
    app = Path(__file__).resolve().parent.parent / "accounts"
    importers = set()
    for source in app.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            if any(n.startswith("rest_framework") or n in ("accounts.drf", ".drf", "drf") for n in names):
                importers.add(source.relative_to(app).as_posix())
            if isinstance(node, ast.ImportFrom) and node.level and any(a.name == "drf" for a in node.names):
                importers.add(source.relative_to(app).as_posix())
    assert importers == {"drf.py"}


class Reports(Whoami):
    required_scopes = ["reports:read"]


urlpatterns.append(path("drf/reports/", Reports.as_view()))


def test_a_vendor_profiles_machine_token_through_drf(op, caplog):
    """Issue 20: one DRF setting plus one ``oidc_provider add``; here an Auth0 M2M token (gty, permissions)."""
    from io import StringIO

    from django.core.management import call_command

    call_command(
        "oidc_provider", "add", "auth0", "--preset", "auth0", "--issuer", "https://acme.us.auth0.com/",
        "--jwks-uri", op.issuer + "/jwks", stdout=StringIO(),
    )  # fmt: skip
    claims = {
        "iss": "https://acme.us.auth0.com/", "sub": "svc@clients", "aud": AUDIENCE, "azp": "svc",
        "gty": "client-credentials", "permissions": ["reports:read"],
    }  # fmt: skip
    token = op.sign(
        access_claims(op, **claims, client_id=None, scope=None, jti=None), header={"typ": "JWT", "kid": "rsa-1"}
    )
    response = call("/drf/reports/", token, caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {"user": None, "machine": True, "client_id": "svc"}
