"""The outbound HTTP helper: timeouts, size cap, JSON check, typed errors, https only."""

import base64
import contextlib
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest
import requests
import responses
from django.views.debug import ExceptionReporter

from accounts.errors import ProviderMisconfigured, ProviderTimeout, ProviderUnavailable
from accounts.oidc.http import ProviderHTTPError, _environment, request_json, require_secure_url

URL = "https://idp.example/doc"


@responses.activate
def test_every_call_carries_connect_and_read_timeouts(settings):
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (2.0, 4.0)
    responses.get(URL, json={"ok": True})
    assert request_json("GET", URL, what="doc").data == {"ok": True}
    assert responses.calls[0].request.req_kwargs["timeout"] == (2.0, 4.0)


@responses.activate
def test_timeout_becomes_provider_timeout_504():
    responses.get(URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(ProviderTimeout, match=r"^doc timed out \(ReadTimeout\)$") as info:
        request_json("GET", URL, what="doc")
    assert info.value.status == 504


@responses.activate
def test_unreachable_becomes_provider_unavailable_502():
    responses.get(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ProviderUnavailable, match=r"^doc unreachable \(ConnectionError\)$") as info:
        request_json("GET", URL, what="doc")
    assert info.value.status == 502


@responses.activate
def test_declared_oversized_body_is_refused(settings):
    settings.ACCOUNTS_OIDC_MAX_RESPONSE_BYTES = 100
    responses.get(URL, body="{" + " " * 200 + "}", content_type="application/json")
    with pytest.raises(ProviderUnavailable, match="more than the 100"):
        request_json("GET", URL, what="doc")


@responses.activate
def test_oversized_body_without_declared_length_is_cut_off(settings):
    settings.ACCOUNTS_OIDC_MAX_RESPONSE_BYTES = 1000
    responses.get(URL, body=b'{"a": "' + b"x" * 5000 + b'"}', auto_calculate_content_length=False)
    with pytest.raises(ProviderUnavailable, match="more than the 1000 bytes"):
        request_json("GET", URL, what="doc")
    assert "Content-Length" not in responses.calls[0].response.headers


@responses.activate
def test_body_that_is_not_json_is_refused():
    responses.get(URL, body="<html>hello</html>", content_type="text/html")
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        request_json("GET", URL, what="doc")


@responses.activate
def test_json_that_is_not_an_object_is_refused():
    responses.get(URL, json=[1, 2, 3])
    with pytest.raises(ProviderUnavailable, match="not an object"):
        request_json("GET", URL, what="doc")


@responses.activate
def test_error_status_keeps_the_oauth_error_body():
    responses.post(URL, json={"error": "invalid_grant"}, status=400)
    with pytest.raises(ProviderHTTPError, match=r"^token endpoint answered HTTP 400$") as info:
        request_json("POST", URL, what="token endpoint")
    assert info.value.http_status == 400
    assert info.value.data == {"error": "invalid_grant"}


@responses.activate
def test_redirects_are_not_followed():
    responses.get(URL, status=302, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(ProviderHTTPError, match=r"^doc answered HTTP 302$") as info:
        request_json("GET", URL, what="doc")
    assert info.value.http_status == 302
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://idp.example/", "issuer uses http:// (idp.example); only https is allowed"),
        ("ftp://idp.example/", "issuer is not an absolute https URL"),
        ("/relative", "issuer is not an absolute https URL"),
        ("https://", "issuer is not an absolute https URL"),
    ],
)
def test_non_https_urls_are_refused(settings, url, reason):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True
    with pytest.raises(ProviderMisconfigured) as info:
        require_secure_url(url, what="issuer")
    assert info.value.reason == reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/", "http://localhost/", "http://[::1]:8000/x"])
def test_http_on_loopback_is_allowed_only_in_debug(settings, url):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True
    require_secure_url(url, what="issuer")
    settings.DEBUG = False
    with pytest.raises(ProviderMisconfigured, match=r"^issuer uses http:// \(.*\); only https is allowed$"):
        require_secure_url(url, what="issuer")


def test_explicit_setting_allows_http(settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    require_secure_url("http://idp.internal/", what="issuer")


def test_a_provider_dripping_its_answer_is_cut_off_by_the_total_deadline(settings):
    """Each byte arrives within the read timeout, but the whole answer would take minutes."""
    import socket
    import threading
    import time

    settings.ACCOUNTS_OIDC_HTTP_TOTAL_TIMEOUT = 0.5
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def drip():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            for _ in range(50):  # at most 5 s, then the server gives up by itself
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"took more than 0\.5s"):
        request_json("GET", f"http://127.0.0.1:{server.getsockname()[1]}/", what="doc")
    assert time.monotonic() - started < 2
    server.close()
    thread.join(timeout=6)


# --- errors while the body is read -----------------------------------------------------------------
#
# With stream=True the body comes straight from urllib3, whose errors are not ``requests``'. A raw
# socket server on 127.0.0.1 writes exactly the bytes a broken provider would.

RESET = "reset"  # hang up with a TCP reset (SO_LINGER 0) instead of a clean close
STALL = "stall"  # go silent until the test is over (at most 5 s)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@contextlib.contextmanager
def raw_provider(*script):
    """A provider answering each request by playing ``script``, then closing the connection.

    Steps are bytes to write, a number of seconds to pause, ``RESET`` or ``STALL``. Every wait is
    bounded, so a test that goes wrong cannot hang the run.
    """
    finished = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(5)
            self.request.recv(65536)  # the request: headers and a small form fit in one read
            for step in script:
                if step == STALL:
                    finished.wait(5)
                    return
                if step == RESET:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.request.close()
                    return
                if isinstance(step, int | float):
                    time.sleep(step)
                else:
                    self.request.sendall(step)

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        finished.set()
        server.shutdown()  # after the handler in progress, if any, has returned
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fast_timeouts(settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (1, 0.3)


def error_from(*script, expect=ProviderUnavailable, method="GET", what="doc", **kwargs):
    """The error ``request_json`` raises against ``raw_provider(*script)``; it must be ``expect``."""
    with raw_provider(*script) as url, pytest.raises(expect) as info:
        request_json(method, url, what=what, **kwargs)
    return info.value


def test_a_body_cut_short_of_its_content_length_is_provider_unavailable(fast_timeouts):
    error = error_from(HEAD + b'Content-Length: 1000\r\n\r\n{"access_token": "at-secret-value"', what="token endpoint")
    assert type(error) is ProviderUnavailable and error.status == 502
    assert error.reason == "token endpoint sent an answer that could not be read (ProtocolError: IncompleteRead)"
    assert "at-secret-value" not in error.reason


def test_a_connection_reset_mid_body_is_provider_unavailable(fast_timeouts):
    error = error_from(HEAD + b'Content-Length: 1000\r\n\r\n{"keys": [', 0.2, RESET, what="JWKS")
    assert type(error) is ProviderUnavailable
    assert error.reason == "JWKS sent an answer that could not be read (ProtocolError: ConnectionResetError)"


def test_a_body_not_in_its_declared_content_encoding_is_provider_unavailable(fast_timeouts):
    error = error_from(HEAD + b'Content-Encoding: gzip\r\nContent-Length: 16\r\n\r\n{"not": "gzip"}!', what="discovery")
    assert type(error) is ProviderUnavailable
    assert error.reason == "discovery sent an answer that could not be read (DecodeError)"


def test_a_broken_chunked_encoding_is_provider_unavailable(fast_timeouts):
    error = error_from(HEAD + b"Transfer-Encoding: chunked\r\n\r\nnot-hex\r\n{}\r\n0\r\n\r\n", what="userinfo")
    assert type(error) is ProviderUnavailable
    assert error.reason.startswith("userinfo sent an answer that could not be read (ProtocolError")


def test_a_read_timeout_mid_body_is_provider_timeout(fast_timeouts):
    """urllib3 raises ``ReadTimeoutError`` from read1 itself: no ``requests`` exception wraps it."""
    started = time.monotonic()
    error = error_from(
        HEAD + b'Content-Length: 100\r\n\r\n{"issuer": ', STALL, expect=ProviderTimeout, what="discovery"
    )
    assert error.status == 504
    assert error.reason == "discovery timed out while sending its answer (ReadTimeoutError)"
    assert time.monotonic() - started < 3


def test_a_host_urllib3_cannot_parse_is_provider_unavailable(settings):
    """urllib3 raises ``LocationParseError`` for an empty DNS label, and requests lets it through."""
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    with pytest.raises(ProviderUnavailable) as info:
        request_json("GET", "http://idp..example/jwks", what="jwks_uri")
    assert info.value.reason == "jwks_uri could not be called (LocationParseError)"


def test_a_url_that_cannot_be_split_is_provider_misconfigured():
    with pytest.raises(ProviderMisconfigured) as info:
        request_json("GET", "https://[::1/jwks", what="jwks_uri")
    assert info.value.reason == "jwks_uri is not a valid URL"


def test_a_header_value_that_is_not_latin1_is_provider_unavailable(fast_timeouts):
    """A provider's access token is sent back as a bearer token; http.client refuses non-Latin-1."""
    error = error_from(
        HEAD + b"Content-Length: 2\r\n\r\n{}", what="userinfo", headers={"Authorization": "Bearer t\u20ac"}
    )
    assert error.reason == "userinfo could not be called (UnicodeEncodeError)"


# --- secrets in error reports --------------------------------------------------------------------

CLIENT_SECRET = "client-secret-that-must-never-show-0123456789"


def test_request_secrets_are_masked_in_error_reports(settings, fast_timeouts):
    """Django's error report of a failure inside request_json shows neither the form nor the headers."""
    settings.DEBUG = False  # SafeExceptionReporterFilter masks only then, as in production
    basic = base64.b64encode(f"client:{CLIENT_SECRET}".encode()).decode()
    error = error_from(
        HEAD + b"Content-Length: 1000\r\n\r\n{",
        method="POST",
        what="token endpoint",
        data={"client_id": "client", "client_secret": CLIENT_SECRET},
        headers={"Authorization": f"Basic {basic}"},
    )
    reporter = ExceptionReporter(None, type(error), error, error.__traceback__)
    frames = reporter.get_traceback_data()["frames"]
    # request_json appears twice: where ProviderUnavailable was raised, and in the urllib3 error's chain.
    shown = [dict(f["vars"]) for f in frames if f["function"] == "request_json"]
    assert len(shown) == 2
    for variables in shown:
        assert variables["data"] == "'********************'"
        assert variables["headers"] == "'********************'"
    # Nor does any other frame from request_json down (requests', urllib3's), nor the decorator's.
    for frame in frames:
        if frame["filename"] != __file__:  # this test's own helper holds the secret, of course
            for name, value in frame["vars"]:
                assert CLIENT_SECRET not in value and basic not in value, (frame["function"], name)


# --- JSON nested too deep ------------------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@responses.activate
def test_an_answer_nested_too_deep_is_provider_unavailable():
    responses.get(URL, body=nested(700), content_type="application/json")
    with pytest.raises(ProviderUnavailable) as info:
        request_json("GET", URL, what="discovery document")
    assert type(info.value) is ProviderUnavailable
    assert info.value.reason == "discovery document answered JSON that nests more than 32 levels"


@responses.activate
def test_an_error_answer_nested_too_deep_keeps_its_http_error():
    responses.post(URL, body=nested(700), status=400, content_type="application/json")
    with pytest.raises(ProviderHTTPError) as info:
        request_json("POST", URL, what="token endpoint")
    assert (info.value.http_status, info.value.data) == (400, {})
    assert info.value.reason == "token endpoint answered HTTP 400"


# --- the shared session --------------------------------------------------------------------------


class Seen(NamedTuple):
    path: str  # as sent: absolute-form ("http://host/path") when the request came through as a proxy's
    cookie: str | None
    port: int  # the client's: one port is one reused connection
    authorization: str | None


@contextlib.contextmanager
def recording_provider():
    """An HTTP/1.1 provider on 127.0.0.1 that sets a cookie and records each request (``Seen``);
    yields (base URL, the list of what it saw). It answers every path, so it can play a proxy too."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable
        timeout = 2

        def log_message(self, format, *args):
            pass

        def do_GET(self):
            seen.append(
                Seen(self.path, self.headers.get("Cookie"), self.client_address[1], self.headers.get("Authorization"))
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.send_header("Set-Cookie", "tracker=first-caller; Path=/")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_provider_cookies_are_never_kept_or_sent(settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    with recording_provider() as (base, seen):
        request_json("GET", base + "/first", what="doc")
        request_json("GET", base + "/second", what="doc")
    assert [(s.path, s.cookie) for s in seen] == [("/first", None), ("/second", None)]


def test_provider_connections_are_reused_between_calls(settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    with recording_provider() as (base, seen):
        request_json("GET", base + "/first", what="doc")
        request_json("GET", base + "/second", what="doc")
    assert len({s.port for s in seen}) == 1


# --- what the environment may decide: proxies and CA bundle yes, credentials no -------------------


@pytest.fixture
def environment(monkeypatch, settings):
    """The environment as a test sets it, read afresh (it is read once per origin and process)."""
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _environment.cache_clear()
    yield monkeypatch
    _environment.cache_clear()


def test_a_proxy_the_environment_names_is_used(environment):
    with recording_provider() as (proxy, seen):
        environment.setenv("http_proxy", proxy)
        environment.setenv("no_proxy", "")
        request_json("GET", "http://provider.example/doc", what="doc")
    assert [s.path for s in seen] == ["http://provider.example/doc"]


def test_no_proxy_in_the_environment_is_honoured(environment):
    with recording_provider() as (proxy, through_proxy), recording_provider() as (base, direct):
        environment.setenv("http_proxy", proxy)
        environment.setenv("no_proxy", "127.0.0.1")
        request_json("GET", base + "/doc", what="doc")
    assert ([s.path for s in direct], through_proxy) == (["/doc"], [])


def test_credentials_in_a_netrc_file_are_never_sent_to_a_provider(environment, tmp_path):
    """requests would add Basic credentials from ~/.netrc to any call that has none of its own."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ambient password not-for-providers\n")
    netrc.chmod(0o600)
    environment.setenv("NETRC", str(netrc))
    with recording_provider() as (base, seen):
        request_json("GET", base + "/doc", what="doc")
    assert [s.authorization for s in seen] == [None]


@responses.activate
def test_a_ca_bundle_the_environment_names_is_used(environment):
    environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/company-ca.pem")
    responses.get("https://provider.example/doc", json={})
    request_json("GET", "https://provider.example/doc", what="doc")
    assert responses.calls[0].request.req_kwargs["verify"] == "/etc/ssl/certs/company-ca.pem"


# --- the session a project supplies (ACCOUNTS_OIDC_HTTP_SESSION) -----------------------------------

#: Every request the supplied session sent, by URL: what an instrumenting project would record.
INSTRUMENTED: list[str] = []


def instrumented_session() -> requests.Session:
    """A project's own session: it records each call and sets its own header (instrumentation)."""
    made = requests.Session()
    made.headers["X-Trace"] = "project"
    made.hooks["response"].append(lambda response, *args, **kwargs: INSTRUMENTED.append(response.url))
    return made


def test_a_supplied_session_carries_every_call_and_keeps_the_apps_rules(settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    settings.ACCOUNTS_OIDC_HTTP_SESSION = "tests.oidc.test_http.instrumented_session"
    INSTRUMENTED.clear()
    with recording_provider() as (base, seen):
        request_json("GET", base + "/first", what="doc")
        request_json("GET", base + "/second", what="doc")
    recorded = list(INSTRUMENTED)
    assert recorded == [base + "/first", base + "/second"]
    # Its cookies are refused as the app's own session's are: no call carries another's state.
    assert [(s.path, s.cookie) for s in seen] == [("/first", None), ("/second", None)]


def test_a_supplied_factory_that_makes_no_session_is_a_configuration_error(settings):
    settings.ACCOUNTS_OIDC_HTTP_SESSION = "builtins.dict"
    with pytest.raises(ProviderMisconfigured, match=r"returned no requests\.Session"):
        request_json("GET", URL, what="doc")
