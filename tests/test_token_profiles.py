"""Token profiles (issue 20): tokens shaped exactly as each vendor documents them, at a real API view.

Every token here is really signed by the provider double's RSA key, served over HTTP as the
vendor's key set; each provider is registered the way ``oidc_provider add`` registers it (a token
issuer with the vendor's issuer spelling and the double's JWKS URL). For each profile: a user's
and a machine's token are admitted as the right kind of caller with the right scopes; the same
token under the strict default profile is refused; the profile's own rule refuses with 401 and
its reason logged; and no token passes as another profile's kind of caller.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
import uuid
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from accounts.api import bearer_token_required, get_bearer
from accounts.models import Identity, Provider
from accounts.oidc import profiles
from accounts.oidc.profiles import ProfileName

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_token_profiles")]

AUDIENCE = "https://api.example.test"
PROJECT = "project-test-11111111-2222-3333-4444-555555555555"
OTHER_PROJECT = "project-test-99999999-2222-3333-4444-555555555555"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
ENTRA_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
HOOK_URL = "https://hooks.example.test/tasks/"
SERVICE_ACCOUNT = "invoker@acme-prod.iam.gserviceaccount.com"


def whoami(request: HttpRequest) -> JsonResponse:
    bearer = get_bearer(request)
    assert bearer is not None
    return JsonResponse(
        {
            "kind": "client" if bearer.is_machine else "user",
            "client_id": bearer.client_id,
            "sub": bearer.subject,
            "scopes": sorted(bearer.scopes),
            "user": request.user.pk if request.user.is_authenticated else None,
        }
    )


urlpatterns = [
    path("api/any/", bearer_token_required(audience=AUDIENCE)(whoami)),
    path("api/reports/", bearer_token_required(audience=AUDIENCE, scopes=["reports:read"])(whoami)),
]


# --- the vendors' tokens, as documented ---------------------------------------------------------


@dataclass
class Vendor:
    """One profile's provider registration and a user's and a machine's token claims (and headers)."""

    profile: ProfileName
    provider: dict[str, Any]
    user: tuple[dict[str, Any], dict[str, Any]] | None
    machine: tuple[dict[str, Any], dict[str, Any]]
    user_scopes: set[str] = field(default_factory=set)
    machine_scopes: set[str] = field(default_factory=set)


def _times(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 300, **extra}


def _vendors() -> dict[ProfileName, Vendor]:
    now = int(time.time())
    jwt = {"alg": "RS256", "typ": "JWT"}
    bare = {"alg": "RS256"}  # Okta and Cognito send no typ at all
    stytch_iss = f"stytch.com/{PROJECT}"
    session = {
        "id": "session-test-fe6c042b-6286-479f-8a4f-b046a6c46509",
        "started_at": "2026-12-08T01:00:00Z",
        "last_accessed_at": "2026-12-08T01:00:00Z",
        "expires_at": "2026-12-08T02:00:00Z",
        "attributes": {"user_agent": "", "ip_address": ""},
        "authentication_factors": [
            {
                "type": "otp",
                "delivery_method": "email",
                "last_authenticated_at": "2026-12-08T01:00:00Z",
                "email_factor": {"email_id": "email-test-81bf03a8", "email_address": "sandbox@stytch.com"},
            }
        ],
    }
    auth0_iss = "https://acme.us.auth0.com/"
    okta_iss = "https://acme.okta.com/oauth2/default"
    cognito_iss = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example1"
    keycloak_iss = "https://sso.example.com/realms/acme"
    entra_iss = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    web_app, service_app = "6e74172b-be56-4843-9ff4-e66a39bb12e3", "0b4e1a21-2c3f-4a5b-9d8e-7f6a5b4c3d2e"
    return {
        ProfileName.STYTCH: Vendor(
            ProfileName.STYTCH,
            {"issuer": stytch_iss, "token_audience": PROJECT, "client_id": PROJECT},
            (
                jwt,
                _times(
                    iss=stytch_iss,
                    aud=[PROJECT],
                    nbf=now,
                    sub="user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6",
                    **{"https://stytch.com/session": session},
                ),
            ),
            (
                jwt,
                _times(
                    iss=stytch_iss,
                    aud=[PROJECT],
                    nbf=now,
                    sub="m2m-client-test-d731954d-dab3-4a2b-bdee-07f3ad1be885",
                    scope="read:users reports:read",
                ),
            ),
            set(),
            {"read:users", "reports:read"},
        ),
        ProfileName.AUTH0: Vendor(
            ProfileName.AUTH0,
            {"issuer": auth0_iss},
            (
                jwt,
                _times(
                    iss=auth0_iss,
                    sub="auth0|64f1c0ffee0123456789abcd",
                    aud=[AUDIENCE, auth0_iss + "userinfo"],
                    azp="8dSbSfLzQ2bUjGqJKWvd3lZqYbnT1kFh",
                    scope="openid profile",
                    permissions=["reports:read"],
                ),
            ),
            (
                jwt,
                _times(
                    iss=auth0_iss,
                    sub="Xq1bW2cE3dR4fT5gY6hU7jI8kO9lP0zA@clients",
                    aud=AUDIENCE,
                    azp="Xq1bW2cE3dR4fT5gY6hU7jI8kO9lP0zA",
                    scope="reports:read",
                    gty="client-credentials",
                    permissions=["reports:read"],
                ),
            ),
            {"openid", "profile", "reports:read"},
            {"reports:read"},
        ),
        ProfileName.OKTA: Vendor(
            ProfileName.OKTA,
            {"issuer": okta_iss},
            (
                bare,
                _times(
                    ver=1,
                    jti="AT.Lk4Qy1vV0mT0aDqzB2m2r5hS6bq8e7Rk",
                    iss=okta_iss,
                    aud=AUDIENCE,
                    cid="0oa1webapp0000000001",
                    uid="00u1alice0000000001",
                    scp=["openid", "reports:read"],
                    auth_time=now,
                    sub="alice@example.com",
                ),
            ),
            (
                bare,
                _times(
                    ver=1,
                    jti="AT.m2m0000000000000000000000000000",
                    iss=okta_iss,
                    aud=AUDIENCE,
                    cid="0oa1service000000001",
                    scp=["reports:read"],
                    sub="0oa1service000000001",
                ),
            ),
            {"openid", "reports:read"},
            {"reports:read"},
        ),
        ProfileName.ENTRA: Vendor(
            ProfileName.ENTRA,
            {"issuer": ENTRA_TEMPLATE, "allowed_tenants": TENANT},
            (
                jwt,
                _times(
                    aud=AUDIENCE,
                    iss=entra_iss,
                    nbf=now,
                    aio="AWQAm/8ZAAAA",
                    azp=web_app,
                    azpacr="0",
                    name="Alice Example",
                    oid="00000000-0000-0000-66f3-3332eca7ea81",
                    preferred_username="alice@contoso.com",
                    rh="0.ARoAv4j5cvGGr0GRqy180BHbR",
                    scp="reports:read User.Read",
                    sub="AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                    tid=TENANT,
                    uti="fqiBqXLPj0eQa82S-IYFAA",
                    ver="2.0",
                ),
            ),
            (
                jwt,
                _times(
                    aud=AUDIENCE,
                    iss=entra_iss,
                    nbf=now,
                    aio="E2ZgYJj",
                    azp=service_app,
                    azpacr="1",
                    idtyp="app",
                    oid="1a2b3c4d-0000-0000-0000-00000000beef",
                    rh="0.ARoAv4j5cvGGr0GRqy180BHbR",
                    roles=["reports:read"],
                    sub="1a2b3c4d-0000-0000-0000-00000000beef",
                    tid=TENANT,
                    uti="w3ZbqXLPj0eQa82S-IYFAA",
                    ver="2.0",
                ),
            ),
            {"reports:read", "User.Read"},
            {"reports:read"},
        ),
        ProfileName.COGNITO: Vendor(
            ProfileName.COGNITO,
            {"issuer": cognito_iss, "allowed_clients": "7abcwebclient0000000000001 7abcserviceclient000000001"},
            (
                bare,
                _times(
                    sub="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                    **{"cognito:groups": ["analysts"]},
                    iss=cognito_iss,
                    version=2,
                    client_id="7abcwebclient0000000000001",
                    origin_jti="c7a1b1c2-0000-0000-0000-000000000001",
                    event_id="e3b1b1c2-0000-0000-0000-000000000002",
                    token_use="access",
                    scope="openid reports:read",
                    auth_time=now,
                    jti="a1b1b1c2-0000-0000-0000-000000000003",
                    username="alice",
                ),
            ),
            (
                bare,
                _times(
                    sub="7abcserviceclient000000001",
                    token_use="access",
                    scope="reports:read",
                    auth_time=now,
                    iss=cognito_iss,
                    version=2,
                    jti="b1b1b1c2-0000-0000-0000-000000000004",
                    client_id="7abcserviceclient000000001",
                ),
            ),
            {"openid", "reports:read"},
            {"reports:read"},
        ),
        ProfileName.KEYCLOAK: Vendor(
            ProfileName.KEYCLOAK,
            {"issuer": keycloak_iss, "token_audience": "reports-api"},
            (
                jwt,
                _times(
                    jti="onrtac:6f1c1b6e-0000-0000-0000-000000000001",
                    iss=keycloak_iss,
                    aud=["reports-api", "account"],
                    sub="f3c2a1b0-0000-0000-0000-00000000a11c",
                    typ="Bearer",
                    azp="web-app",
                    sid="5e1d0000-0000-0000-0000-000000000001",
                    acr="1",
                    realm_access={"roles": ["offline_access", "default-roles-acme"]},
                    resource_access={"reports-api": {"roles": ["reports:read"]}, "account": {"roles": ["view"]}},
                    scope="openid profile email",
                    email_verified=True,
                    preferred_username="alice",
                ),
            ),
            (
                jwt,
                _times(
                    jti="trrtcc:0000-0000-0000-000000000002",
                    iss=keycloak_iss,
                    aud="reports-api",
                    sub="9a8b7c6d-0000-0000-0000-0000000000b7",
                    typ="Bearer",
                    azp="batch-job",
                    acr="1",
                    realm_access={"roles": ["default-roles-acme"]},
                    resource_access={"reports-api": {"roles": ["reports:read"]}},
                    scope="profile email",
                    clientHost="10.0.0.7",
                    preferred_username="service-account-batch-job",
                    clientAddress="10.0.0.7",
                    client_id="batch-job",
                    email_verified=False,
                ),
            ),
            {"openid", "profile", "email", "offline_access", "default-roles-acme", "reports:read"},
            {"profile", "email", "default-roles-acme", "reports:read"},
        ),
        ProfileName.GOOGLE_SERVICE: Vendor(
            ProfileName.GOOGLE_SERVICE,
            {"issuer": "https://accounts.google.com", "token_audience": HOOK_URL, "allowed_callers": SERVICE_ACCOUNT},
            None,
            (
                jwt,
                _times(
                    aud=HOOK_URL,
                    azp="100871997097812345678",
                    email=SERVICE_ACCOUNT,
                    email_verified=True,
                    iss="https://accounts.google.com",
                    sub="100871997097812345678",
                ),
            ),
            set(),
            set(),
        ),
        ProfileName.GITHUB_ACTIONS: Vendor(
            ProfileName.GITHUB_ACTIONS,
            {
                "issuer": "https://token.actions.githubusercontent.com",
                "token_audience": "https://github.com/octo-org",
                "allowed_callers": "octo-org/octo-repo@refs/heads/main",
            },
            None,
            (
                {**jwt, "x5t": "example-thumbprint"},
                _times(
                    jti="example-id",
                    sub="repo:octo-org/octo-repo:ref:refs/heads/main",
                    aud="https://github.com/octo-org",
                    ref="refs/heads/main",
                    sha="example-sha",
                    repository="octo-org/octo-repo",
                    repository_owner="octo-org",
                    actor_id="12",
                    repository_visibility="private",
                    repository_id="74",
                    repository_owner_id="65",
                    run_id="example-run-id",
                    run_number="10",
                    run_attempt="2",
                    runner_environment="github-hosted",
                    actor="octocat",
                    workflow="example-workflow",
                    head_ref="",
                    base_ref="",
                    event_name="workflow_dispatch",
                    ref_type="branch",
                    job_workflow_ref="octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
                    iss="https://token.actions.githubusercontent.com",
                    nbf=now,
                ),
            ),
            set(),
            set(),
        ),
    }


VENDOR_PROFILES = [name for name in ProfileName if name != ProfileName.RFC9068]
#: Workload identities: every token is a machine's, there is no user token.
WORKLOADS = (ProfileName.GOOGLE_SERVICE, ProfileName.GITHUB_ACTIONS)
USER_PROFILES = [name for name in VENDOR_PROFILES if name not in WORKLOADS]


def register(op, vendor: Vendor, **overrides: Any) -> Provider:
    """The provider as ``oidc_provider add --issuer ... --jwks-uri ... --token-profile ...`` makes it."""
    values = {
        "slug": vendor.profile.value,
        "name": vendor.profile.value,
        "kind": Provider.Kind.TOKEN_ISSUER,
        "jwks_uri": op.issuer + "/jwks",
        "token_profile": vendor.profile,
        "client_id": "-",
        **vendor.provider,
        **overrides,
    }
    provider = Provider(**values)
    provider.full_clean()
    provider.save()
    return provider


def sign(op, token: tuple[dict[str, Any], dict[str, Any]], **claims: Any) -> str:
    header, payload = token
    key = op.signing_key_for("RS256")
    merged = {k: v for k, v in {**payload, **claims}.items() if v is not None}
    return op.sign(merged, header={**header, "kid": key.kid})


def with_identity(provider: Provider, claims: dict[str, Any]) -> Any:
    """The user of the token's subject, as a first browser sign-in (or ``create-user``) would leave it."""
    user = get_user_model().objects.create_user(f"u-{uuid.uuid4().hex[:8]}")
    Identity.objects.create(user=user, provider=provider, issuer=claims["iss"], subject=claims["sub"])
    return user


def call(url: str, token: str, caplog) -> Any:
    with caplog.at_level(logging.INFO, logger="accounts"):
        response = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code != 500
    assert token.split(".")[1] not in caplog.text
    return response


def assert_refused(response, caplog, reason: str, status: int = 401) -> None:
    assert response.status_code == status, response.content
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bearer token refused")]
    assert len(lines) == 1, lines
    assert reason in lines[0], lines[0]


@pytest.fixture
def vendors() -> dict[ProfileName, Vendor]:
    return _vendors()


# --- each profile admits its vendor's tokens as the right caller ------------------------------------


@pytest.mark.parametrize("name", USER_PROFILES)
def test_a_users_token_is_the_user_with_its_scopes(op, vendors, caplog, name):
    vendor = vendors[name]
    provider = register(op, vendor)
    assert vendor.user is not None
    user = with_identity(provider, vendor.user[1])
    response = call("/api/any/", sign(op, vendor.user), caplog)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["user"], body["sub"]) == ("user", user.pk, vendor.user[1]["sub"])
    assert set(body["scopes"]) == vendor.user_scopes


@pytest.mark.parametrize("name", VENDOR_PROFILES)
def test_a_machines_token_is_a_client_with_its_scopes(op, vendors, caplog, name):
    vendor = vendors[name]
    register(op, vendor)
    response = call("/api/any/", sign(op, vendor.machine), caplog)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["user"]) == ("client", None)
    assert set(body["scopes"]) == vendor.machine_scopes
    expected_client = {
        ProfileName.STYTCH: vendor.machine[1]["sub"],
        ProfileName.GOOGLE_SERVICE: SERVICE_ACCOUNT,
        ProfileName.GITHUB_ACTIONS: "octo-org/octo-repo",
    }.get(name)
    if expected_client:
        assert body["client_id"] == expected_client


@pytest.mark.parametrize("name", [n for n in VENDOR_PROFILES if n not in (ProfileName.GOOGLE_SERVICE,)])
def test_scopes_in_the_vendors_form_open_the_scoped_api(op, vendors, caplog, name):
    vendor = vendors[name]
    register(op, vendor)
    if name == ProfileName.GITHUB_ACTIONS:  # workflows carry no scopes: an API for them names none
        assert_refused(call("/api/reports/", sign(op, vendor.machine), caplog), caplog, "lacks scope", 403)
        return
    assert call("/api/reports/", sign(op, vendor.machine), caplog).status_code == 200


@pytest.mark.parametrize("name", VENDOR_PROFILES)
def test_the_same_tokens_are_refused_under_the_strict_default_profile(op, vendors, caplog, name):
    vendor = vendors[name]
    overrides: dict[str, Any] = {"token_profile": ProfileName.RFC9068}
    if name == ProfileName.ENTRA:  # the template is the entra profile's; the strict one takes the tenant's issuer
        overrides["issuer"] = vendor.machine[1]["iss"]
    provider = register(op, vendor, **overrides)
    for token in (vendor.user, vendor.machine):
        if token is None:
            continue
        if token is vendor.user:
            with_identity(provider, token[1])
        caplog.clear()
        response = call("/api/any/", sign(op, token), caplog)
        assert_refused(response, caplog, "not at+jwt (token profile rfc9068)")


# --- each profile's own rules, as attacks -----------------------------------------------------------


def test_entra_refuses_a_tenant_not_allowed(op, vendors, caplog):
    vendor = vendors[ProfileName.ENTRA]
    register(op, vendor)
    iss = f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    response = call("/api/any/", sign(op, vendor.machine, tid=OTHER_TENANT, iss=iss), caplog)
    assert_refused(response, caplog, "is not among the allowed tenants")


def test_entra_refuses_an_issuer_that_is_not_the_tokens_own_tenant(op, vendors, caplog):
    """The issuer template takes the tenant from tid: a token of tenant A cannot claim tenant B's issuer."""
    vendor = vendors[ProfileName.ENTRA]
    register(op, vendor, allowed_tenants=f"{TENANT} {OTHER_TENANT}")
    iss = f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    response = call("/api/any/", sign(op, vendor.machine, iss=iss), caplog)
    assert_refused(response, caplog, "is no enabled provider")


def test_entra_accepts_the_v1_spelling_of_the_same_tenant(op, vendors, caplog):
    vendor = vendors[ProfileName.ENTRA]
    register(op, vendor)
    token = sign(op, vendor.machine, iss=f"https://sts.windows.net/{TENANT}/", azp=None, appid="0b4e1a21", ver="1.0")
    response = call("/api/any/", token, caplog)
    assert response.status_code == 200, response.content
    assert response.json()["client_id"] == "0b4e1a21"


def test_entra_refuses_a_tenant_id_that_is_no_guid(op, vendors, caplog):
    vendor = vendors[ProfileName.ENTRA]
    register(op, vendor, allowed_tenants="evil")
    response = call(
        "/api/any/", sign(op, vendor.machine, tid="evil", iss="https://login.microsoftonline.com/evil/v2.0"), caplog
    )
    assert_refused(response, caplog, "no enabled provider")


def test_cognito_refuses_an_id_token(op, vendors, caplog):
    vendor = vendors[ProfileName.COGNITO]
    register(op, vendor)
    response = call("/api/any/", sign(op, vendor.machine, token_use="id"), caplog)
    assert_refused(response, caplog, "token_use claim is not 'access'")


def test_cognito_refuses_a_client_not_allowed(op, vendors, caplog):
    vendor = vendors[ProfileName.COGNITO]
    register(op, vendor, allowed_clients="7abcwebclient0000000000001")
    response = call("/api/any/", sign(op, vendor.machine), caplog)
    assert_refused(response, caplog, "is not among the provider's allowed clients")


def test_cognito_needs_its_allowed_clients(op, vendors):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        register(op, vendors[ProfileName.COGNITO], allowed_clients="")
    assert "allowed_clients" in info.value.message_dict


def test_stytch_refuses_a_token_of_another_project(op, vendors, caplog):
    vendor = vendors[ProfileName.STYTCH]
    register(op, vendor)
    other = sign(op, vendor.machine, iss=f"stytch.com/{OTHER_PROJECT}", aud=[OTHER_PROJECT])
    assert_refused(call("/api/any/", other, caplog), caplog, "is no enabled provider")
    caplog.clear()
    wrong_audience = sign(op, vendor.machine, aud=[OTHER_PROJECT])
    assert_refused(call("/api/any/", wrong_audience, caplog), caplog, "aud claim is not valid")


def test_stytch_refuses_a_user_token_without_its_session(op, vendors, caplog):
    vendor = vendors[ProfileName.STYTCH]
    provider = register(op, vendor)
    assert vendor.user is not None
    with_identity(provider, vendor.user[1])
    token = sign(op, vendor.user, **{"https://stytch.com/session": None})
    assert_refused(call("/api/any/", token, caplog), caplog, "https://stytch.com/session claim (token profile stytch)")


def test_stytch_session_and_b2b_organization_claims_are_on_request_bearer(op, vendors, caplog):
    vendor = vendors[ProfileName.STYTCH]
    provider = register(op, vendor)
    assert vendor.user is not None
    org = {"organization_id": "organization-test-07971b06", "slug": "acme"}
    b2b = (vendor.user[0], {**vendor.user[1], "sub": "member-test-32fc5024", "https://stytch.com/organization": org})
    with_identity(provider, b2b[1])
    from django.test import RequestFactory

    from accounts.api import BearerPolicy, authenticate

    request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {sign(op, b2b)}")
    principal = authenticate(request, BearerPolicy(audience=AUDIENCE))
    assert principal.claims["https://stytch.com/organization"] == org
    assert principal.claims["https://stytch.com/session"]["id"].startswith("session-test-")


def test_stytch_maximum_token_age(op, vendors, caplog):
    vendor = vendors[ProfileName.STYTCH]
    register(op, vendor, token_max_age=60)
    old = sign(op, vendor.machine, iat=int(time.time()) - 120)
    assert_refused(call("/api/any/", old, caplog), caplog, "maximum token age")


def test_github_actions_refuses_an_unlisted_repository(op, vendors, caplog):
    vendor = vendors[ProfileName.GITHUB_ACTIONS]
    register(op, vendor)
    token = sign(op, vendor.machine, repository="mallory/fork", sub="repo:mallory/fork:ref:refs/heads/main")
    assert_refused(call("/api/any/", token, caplog), caplog, "is not among the allowed callers")


def test_github_actions_refuses_an_unlisted_ref(op, vendors, caplog):
    vendor = vendors[ProfileName.GITHUB_ACTIONS]
    register(op, vendor)
    token = sign(op, vendor.machine, ref="refs/heads/feature")
    assert_refused(call("/api/any/", token, caplog), caplog, "is not among the allowed callers")


@pytest.mark.parametrize(
    ("pattern", "admitted"),
    [
        ("octo-org/*", True),
        ("octo-org/octo-repo@refs/heads/*", True),
        ("octo-org/octo-repo@environment:prod", True),
        ("octo-org/octo-repo@environment:staging", False),
        ("octo-org/other", False),
    ],
)
def test_github_actions_glob_policy(op, vendors, caplog, pattern, admitted):
    vendor = vendors[ProfileName.GITHUB_ACTIONS]
    register(op, vendor, allowed_callers=pattern)
    response = call("/api/any/", sign(op, vendor.machine, environment="prod"), caplog)
    assert (response.status_code == 200) is admitted


def test_google_service_refuses_an_unlisted_service_account(op, vendors, caplog):
    vendor = vendors[ProfileName.GOOGLE_SERVICE]
    register(op, vendor)
    token = sign(op, vendor.machine, email="intruder@other-project.iam.gserviceaccount.com")
    assert_refused(call("/api/any/", token, caplog), caplog, "is not among the allowed callers")


def test_google_service_refuses_an_unverified_email(op, vendors, caplog):
    vendor = vendors[ProfileName.GOOGLE_SERVICE]
    register(op, vendor)
    token = sign(op, vendor.machine, email_verified=False)
    assert_refused(call("/api/any/", token, caplog), caplog, "email_verified claim is not True")


def test_google_service_refuses_another_receiving_url(op, vendors, caplog):
    vendor = vendors[ProfileName.GOOGLE_SERVICE]
    register(op, vendor)
    token = sign(op, vendor.machine, aud="https://elsewhere.example.test/")
    assert_refused(call("/api/any/", token, caplog), caplog, "aud claim is not valid")


def test_keycloak_refuses_an_id_token(op, vendors, caplog):
    vendor = vendors[ProfileName.KEYCLOAK]
    provider = register(op, vendor)
    assert vendor.user is not None
    with_identity(provider, vendor.user[1])
    token = sign(op, vendor.user, typ="ID", aud="reports-api", nonce="n-0S6_WzA2Mj")
    assert_refused(call("/api/any/", token, caplog), caplog, "typ claim is not 'Bearer'")


def test_auth0_refuses_an_id_token(op, vendors, caplog):
    """An Auth0 ID token names the application as its audience and carries the sign-in's nonce."""
    vendor = vendors[ProfileName.AUTH0]
    provider = register(op, vendor, token_audience="8dSbSfLzQ2bUjGqJKWvd3lZqYbnT1kFh")
    assert vendor.user is not None
    with_identity(provider, vendor.user[1])
    token = sign(op, vendor.user, aud="8dSbSfLzQ2bUjGqJKWvd3lZqYbnT1kFh", nonce="n-0S6_WzA2Mj", permissions=None)
    assert_refused(call("/api/any/", token, caplog), caplog, "carries a nonce claim")


def test_okta_refuses_an_id_token(op, vendors, caplog):
    vendor = vendors[ProfileName.OKTA]
    provider = register(op, vendor, token_audience="0oa1webapp0000000001")
    assert vendor.user is not None
    with_identity(provider, vendor.user[1])
    token = sign(op, vendor.user, aud="0oa1webapp0000000001", cid=None, scp=None, amr=["pwd"], idp="00o1okta")
    assert_refused(call("/api/any/", token, caplog), caplog, "has no cid claim")


def test_the_signature_rules_never_bend_for_a_profile(op, vendors, caplog):
    """A profile chooses claims and typ, never the algorithm: alg none and HMAC are refused as ever."""
    vendor = vendors[ProfileName.STYTCH]
    register(op, vendor)
    unsigned = op.unsigned(vendor.machine[1], header={"alg": "none", "typ": "JWT"})
    assert_refused(call("/api/any/", unsigned, caplog), caplog, "unsigned")


# --- no token passes as another profile's kind of caller ---------------------------------------------


def _kind(vendor: Vendor, token: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return "user" if token is vendor.user else "client"


@pytest.mark.parametrize("source", VENDOR_PROFILES)
def test_tokens_of_one_profile_never_pass_as_another_profiles_kind_of_caller(op, vendors, caplog, source):
    """Each vendor's tokens at a provider of its issuer with every other profile, as permissive as it gets."""
    vendor = vendors[source]
    tokens = [t for t in (vendor.user, vendor.machine) if t is not None]
    for target in ProfileName:
        if target == source:
            continue
        for token in tokens:
            claims = token[1]
            aud = claims.get("aud")
            audience = aud[0] if isinstance(aud, list) else (aud or AUDIENCE)
            Identity.objects.all().delete()
            Provider.objects.all().delete()
            client = str(claims.get("client_id") or claims.get("azp") or claims.get("cid") or claims["sub"])
            provider = Provider(
                slug="cross",
                name="cross",
                kind=Provider.Kind.TOKEN_ISSUER,
                issuer=claims["iss"],
                jwks_uri=op.issuer + "/jwks",
                client_id="-",
                token_profile=target,
                token_audience=audience,
                allowed_clients=client,
                allowed_tenants=TENANT,
                allowed_callers=f"{claims.get('email', 'x@y')} *",
            )
            provider.save()
            if token is vendor.user:
                with_identity(provider, claims)
            caplog.clear()
            response = call("/api/any/", sign(op, token), caplog)
            if response.status_code == 200:
                assert response.json()["kind"] == _kind(vendor, token), (source, target, response.json())


# --- scopes (issue 19 point 7) ------------------------------------------------------------------------


def test_scopes_are_split_on_u0020_only(op, vendors, caplog):
    """``files:x\\u00a0orders:read`` split on Unicode whitespace would grant orders:read: refused instead."""
    vendor = vendors[ProfileName.STYTCH]
    register(op, vendor)
    token = sign(op, vendor.machine, scope="files:x\u00a0reports:read")
    assert_refused(call("/api/reports/", token, caplog), caplog, "outside RFC 6749 scope-token")


@pytest.mark.parametrize("scope", ["reports:read\tadmin", 'a"b reports:read', "a\\b reports:read", "r\u00e9ports:read"])
def test_a_scope_outside_rfc_6749_is_refused(op, vendors, caplog, scope):
    vendor = vendors[ProfileName.STYTCH]
    register(op, vendor)
    assert_refused(call("/api/any/", sign(op, vendor.machine, scope=scope), caplog), caplog, "scope-token")


def test_an_array_scope_outside_rfc_6749_is_refused(op, vendors, caplog):
    vendor = vendors[ProfileName.OKTA]
    register(op, vendor)
    token = sign(op, vendor.machine, scp=["files:x reports:read"])
    assert_refused(call("/api/any/", token, caplog), caplog, "not an array of RFC 6749 scope-tokens")


def test_scope_words_split_on_spaces():
    assert profiles.scope_words("a  b c", claim="scope") == ["a", "b", "c"]


# --- the admin ------------------------------------------------------------------------------------------


def _admin_post(admin_client, **fields: str):
    data = {
        "name": "",
        "slug": "",
        "preset": "generic",
        "enabled": "on",
        "display_order": "0",
        "issuer": "",
        "client_id": "",
        "kind": "oidc",
        "scopes": "openid email profile",
        "allowed_algorithms": "RS256",
        "extra_auth_params": "{}",
        "userinfo": "when-needed",
        "profile_sync": "follow",
        "email_linking": "never",
        "token_profile": "rfc9068",
        **fields,
    }
    return admin_client.post("/admin/oidc_signin/provider/add/", data)


@pytest.mark.urls("project.urls")
def test_the_admin_adds_stytch_by_preset_and_keeps_its_issuer_as_is(admin_client, op):
    response = _admin_post(admin_client, preset="stytch", project_id=PROJECT, jwks_uri=op.issuer + "/jwks")
    assert response.status_code == 302, response.context["adminform"].form.errors
    provider = Provider.objects.get()
    assert (provider.issuer, provider.kind, provider.token_profile) == (
        f"stytch.com/{PROJECT}",
        "token-issuer",
        "stytch",
    )
    assert (provider.token_audience, provider.client_id) == (PROJECT, PROJECT)
    health = admin_client.get(f"/admin/oidc_signin/provider/{provider.pk}/health/").content.decode()
    assert "<code>stytch</code>" in health and PROJECT in health


@pytest.mark.urls("project.urls")
def test_the_admin_never_adds_a_scheme_to_a_token_issuers_issuer(admin_client, op):
    response = _admin_post(
        admin_client,
        name="S",
        slug="s",
        kind="token-issuer",
        issuer=f"stytch.com/{PROJECT}",
        jwks_uri=op.issuer + "/jwks",
        client_id=PROJECT,
        token_profile="stytch",
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Provider.objects.get().issuer == f"stytch.com/{PROJECT}"


@pytest.mark.urls("project.urls")
def test_the_admin_refuses_a_profile_that_does_not_fit_the_kind(admin_client, op):
    response = _admin_post(
        admin_client, name="S", slug="s", issuer=op.issuer, client_id="c", token_profile="github-actions"
    )
    assert response.status_code == 200
    assert "token_profile" in response.context["adminform"].form.errors
    assert not Provider.objects.exists()


# --- the documented examples: each `oidc_provider add` line, and its tokens, work as documented --------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def documented_examples() -> dict[str, tuple[list[str], dict[str, dict[str, Any]]]]:
    """``{profile: (add-command arguments, {"user"|"machine": {"header", "claims"}})}`` from docs/api.md."""
    text = DOCS.read_text()
    examples: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {}
    for name, command in re.findall(r"<!-- add (\S+) -->\s*```sh\n(.*?)```", text, re.DOTALL):
        args = shlex.split(command.strip())
        assert args[:3] == ["manage.py", "oidc_provider", "add"], command
        examples[name] = (args[2:], {})
    for name, kind, token in re.findall(r"<!-- token (\S+) (user|machine) -->\s*```json\n(.*?)```", text, re.DOTALL):
        examples[name][1][kind] = json.loads(token)
    return examples


def test_every_vendor_profile_is_documented_with_an_add_line_and_its_tokens():
    examples = documented_examples()
    assert set(examples) == {p.value for p in VENDOR_PROFILES}
    for name, (_args, tokens) in examples.items():
        expected = {"machine"} if name in WORKLOADS else {"user", "machine"}
        assert set(tokens) == expected, name


@pytest.mark.parametrize("name", [p.value for p in VENDOR_PROFILES])
def test_the_documented_tokens_are_admitted_through_the_documented_add_line(op, caplog, name):
    args, tokens = documented_examples()[name]
    out = StringIO()
    call_command("oidc_provider", *args, "--jwks-uri", op.issuer + "/jwks", stdout=out)  # Stytch's keys: the double's
    provider = Provider.objects.get()
    assert provider.token_profile == name
    now = int(time.time())
    for kind, example in tokens.items():
        claims = dict(example["claims"])
        for claim in ("iat", "nbf", "auth_time"):
            if claim in claims:
                claims[claim] = now - 5
        claims["exp"] = now + 300
        if kind == "user":
            with_identity(provider, claims)
        caplog.clear()
        header = {k: v for k, v in example["header"].items() if k not in ("kid", "alg")}
        response = call("/api/any/", sign(op, (header, claims)), caplog)
        assert response.status_code == 200, (kind, response.content)
        assert response.json()["kind"] == ("user" if kind == "user" else "client"), kind
        if name not in WORKLOADS:
            assert "reports:read" in response.json()["scopes"] or (kind == "user" and name == "stytch")


def test_cognito_without_allowed_clients_admits_nobody_even_if_stored_so(op, vendors, caplog):
    """``clean`` requires the list; a row written around it (a data migration, raw SQL) still admits no one."""
    provider = register(op, vendors[ProfileName.COGNITO])
    Provider.objects.filter(pk=provider.pk).update(allowed_clients="")
    response = call("/api/any/", sign(op, vendors[ProfileName.COGNITO].machine), caplog)
    assert_refused(response, caplog, "lists no allowed clients")


def test_the_protocol_layer_checks_the_tenants_issuer_itself(op, vendors):
    """Whatever provider the lookup chose, ``verify_access_token`` checks iss against the verified tid."""
    from accounts.errors import TokenRejected
    from accounts.oidc.tokens import verify_access_token

    vendor = vendors[ProfileName.ENTRA]
    provider = register(op, vendor, allowed_tenants=f"{TENANT} {OTHER_TENANT}")
    token = sign(op, vendor.machine, iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    with pytest.raises(TokenRejected) as info:
        verify_access_token(
            provider, token, jwks_uri=op.issuer + "/jwks", audiences=[AUDIENCE], profile=profiles.PROFILES["entra"]
        )
    assert "iss claim is not valid" in info.value.reason
