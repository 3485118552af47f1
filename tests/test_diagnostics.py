"""What the shell and the admin report about a provider, and the cache every process of one site shares."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from accounts import diagnostics
from accounts.oidc import discovery
from tests.conftest import certificate_der, sign_in, signed_in
from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import SiteProcess

CACHE_TABLE = "oidc_signin_cache"
#: The demo's embedded default (project/settings.py).
DATABASE_CACHE_URL = f"dbcache://{CACHE_TABLE}?MAX_ENTRIES=10000"


# --- keys as the health view describes them -----------------------------------------------------------


def test_keys_are_described_by_type_size_curve_and_certificate():
    der = certificate_der(common_name="keys.example")
    rsa = RSAKey.generate_key(3072, parameters={"kid": "r", "use": "sig"}).as_dict(private=False)
    ec_key = ECKey.generate_key("P-384", parameters={"kid": "e", "alg": "ES384"}).as_dict(private=False)
    okp = OKPKey.generate_key("Ed25519", parameters={"kid": "o"}).as_dict(private=False)
    oct_key = OctKey.generate_key(256, parameters={"kid": "h"}).as_dict(private=True)
    with_cert = {**ec_key, "kid": "c", "x5c": [base64.b64encode(der).decode()]}
    broken = {"kty": "RSA", "kid": "b", "n": "AQAB"}  # no exponent
    described = {k.kid: k for k in diagnostics.describe_keys({"keys": [rsa, ec_key, okp, oct_key, with_cert, broken]})}

    assert (described["r"].kty, described["r"].size, described["r"].use, described["r"].ignored) == (
        "RSA",
        "3072 bits",
        "sig",
        "",
    )
    assert (described["e"].size, described["e"].alg) == ("P-384", "ES384")
    assert described["o"].size == "Ed25519"
    assert "never used" in described["h"].ignored  # a shared secret in a JWKS verifies nothing here
    assert described["b"].ignored == "cannot be parsed"
    certificate = described["c"].certificate
    assert certificate is not None and certificate.subject == "CN=keys.example"
    expected = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex(":").upper()
    assert certificate.sha256 == expected


def test_an_unreadable_certificate_is_reported_not_raised():
    key = ECKey.generate_key("P-256", parameters={"kid": "c"}).as_dict(private=False)
    (bad,) = diagnostics.describe_keys({"keys": [{**key, "x5c": ["bm90IGEgY2VydA=="]}]})
    assert (bad.certificate, bad.certificate_error) == (None, "the x5c certificate cannot be parsed")
    (not_a_list,) = diagnostics.describe_keys({"keys": [{**key, "x5c": "MIIB"}]})
    assert not_a_list.certificate_error == "x5c is not a list of certificates"


@pytest.mark.django_db
def test_problems_name_the_field_to_fix(op, provider):
    provider.allowed_algorithms = "PS512"
    op.metadata["id_token_signing_alg_values_supported"] = ["RS256"]
    report = diagnostics.probe(provider)
    assert [(p.field, str(p)) for p in report.problems] == [
        ("allowed_algorithms", "the provider signs ID tokens with ['RS256'], none of which is allowed (['PS512'])"),
    ]


@pytest.mark.django_db
def test_probe_asks_the_provider_and_leaves_every_cache_as_it_was(op, provider):
    diagnostics.check(provider)
    url = discovery.discovery_url(provider.issuer)
    held = discovery.in_process(url)
    op.metadata["token_endpoint"] = op.issuer + "/token-v2"
    report = diagnostics.probe(provider)
    assert report.metadata["token_endpoint"] == op.issuer + "/token-v2"  # what the provider says now
    assert op.hits["/.well-known/openid-configuration"] == 2 and op.hits["/jwks"] == 2
    assert discovery.in_process(url) is held and discovery.cached_data(url)["token_endpoint"] == op.issuer + "/token"


# --- one cache for every process of one site ----------------------------------------------------------


@pytest.fixture
def database_cache(settings, db):
    """The embedded default in this process: Django's database cache, its table made as `migrate` makes it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": CACHE_TABLE,
            "OPTIONS": {"MAX_ENTRIES": 10000},
        }
    }
    call_command("createcachetable", verbosity=0)
    discovery.forget_in_process()
    yield
    discovery.forget_in_process()


def test_a_steady_state_sign_in_reads_nothing_from_the_database_cache(database_cache, client, op, provider):
    """Parsed keys and documents stay in the process between TTL checks: no document is read from the
    cache table per callback. The one read each request makes is the providers' version
    (``accounts.provider_cache``), which is how an admin's change reaches every process."""
    assert signed_in(client) is False
    sign_in(client, op, provider)  # the first loads discovery and JWKS into the shared cache
    client.logout()
    with CaptureQueriesContext(connection) as queries:
        response = sign_in(client, op, provider)
    assert response.status_code == 302
    cache_reads = [q["sql"] for q in queries.captured_queries if CACHE_TABLE in q["sql"]]
    assert [sql for sql in cache_reads if "oidc_signin:providers:version" not in sql] == []
    assert len(cache_reads) <= 2  # the start and the callback: one version read each
    assert op.hits["/jwks"] == 1


def test_the_demo_default_cache_is_the_sites_database():
    from project import settings as project_settings  # what a fresh clone runs with, no CACHE_URL set

    assert project_settings.env.cache_url_config(DATABASE_CACHE_URL) == {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": CACHE_TABLE,
        "OPTIONS": {"MAX_ENTRIES": 10000},
    }
    source = (project_settings.BASE_DIR / "project" / "settings.py").read_text()
    assert f'env.cache("CACHE_URL", default="{DATABASE_CACHE_URL}")' in source


@pytest.fixture
def own_op():
    with OpenIDProviderDouble() as double:
        yield double


def test_the_shell_and_the_running_server_share_one_copy_of_each_document(tmp_path, own_op):
    """``oidc_provider check``/``refresh`` in a shell fill the cache the server reads: it fetches nothing itself.

    With a per-process cache (``locmemcache://``) the server would fetch both documents again, and
    after a rotation only its own refetch would bring it the new key.
    """
    op = own_op
    with SiteProcess(tmp_path, CACHE_URL=DATABASE_CACHE_URL) as site:  # `migrate` made the cache table
        site.add_provider("test-op", op)
        site.manage("oidc_provider", "check", "test-op")
        assert (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"]) == (1, 1)

        status, username = site.finish_sign_in(site.start_sign_in(op, "test-op"))
        assert (status, username) == (302, DEFAULT_USER["preferred_username"]), site.log()[-3000:]
        assert (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"]) == (1, 1)  # the shell's copies

        op.rotate()
        site.manage("oidc_provider", "refresh", "test-op")
        assert op.hits["/jwks"] == 2
        status, username = site.finish_sign_in(site.start_sign_in(op, "test-op"))
        assert (status, username) == (302, DEFAULT_USER["preferred_username"]), site.log()[-3000:]
        assert op.hits["/jwks"] == 2  # the server adopted the refreshed key set instead of fetching its own


def test_the_provider_side_codes_are_every_provider_side_failure():
    """Counted by the errors' own flag, so no provider-side code is forgotten (``provider_error`` once was)."""
    from accounts.diagnostics import PROVIDER_SIDE_CODES

    assert set(PROVIDER_SIDE_CODES) == {
        "par_failed",
        "provider_error",
        "provider_misconfigured",
        "provider_timeout",
        "provider_unavailable",
    }


def test_an_unknown_kid_is_recorded_under_its_own_code(client, op, provider):
    """The health view counts unknown-kid failures by this code, not by reading the reason."""
    from accounts.models import SignInEvent
    from tests.conftest import sign_in

    op.id_token_mutator = lambda header, claims: ({**header, "kid": "made-up"}, claims)
    sign_in(client, op, provider)
    event = SignInEvent.objects.get()
    assert (event.code, event.reason) == ("unknown_key", "ID token kid 'made-up' matches no RS256 key of the provider")
