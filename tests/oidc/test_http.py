"""The outbound HTTP helper: timeouts, size cap, JSON check, typed errors, https only."""

import pytest
import requests
import responses

from accounts.errors import ProviderMisconfigured, ProviderTimeout, ProviderUnavailable
from accounts.oidc.http import ProviderHTTPError, request_json, require_secure_url

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
    with pytest.raises(ProviderTimeout) as info:
        request_json("GET", URL, what="doc")
    assert info.value.status == 504


@responses.activate
def test_unreachable_becomes_provider_unavailable_502():
    responses.get(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ProviderUnavailable) as info:
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
    with pytest.raises(ProviderHTTPError) as info:
        request_json("POST", URL, what="token endpoint")
    assert info.value.http_status == 400
    assert info.value.data == {"error": "invalid_grant"}


@responses.activate
def test_redirects_are_not_followed():
    responses.get(URL, status=302, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(ProviderHTTPError) as info:
        request_json("GET", URL, what="doc")
    assert info.value.http_status == 302
    assert len(responses.calls) == 1


@pytest.mark.parametrize("url", ["http://idp.example/", "ftp://idp.example/", "/relative", "https://"])
def test_non_https_urls_are_refused(settings, url):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True
    with pytest.raises(ProviderMisconfigured):
        require_secure_url(url, what="issuer")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/", "http://localhost/", "http://[::1]:8000/x"])
def test_http_on_loopback_is_allowed_only_in_debug(settings, url):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True
    require_secure_url(url, what="issuer")
    settings.DEBUG = False
    with pytest.raises(ProviderMisconfigured):
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
