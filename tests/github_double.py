"""A GitHub double on 127.0.0.1: OAuth 2.0 without OpenID Connect, identity from the REST API.

It answers the way GitHub documents, including the parts that trip clients up:

* the token endpoint answers ``application/x-www-form-urlencoded`` unless the client asks for
  JSON with ``Accept: application/json``, and reports a bad code with HTTP 200 and an ``error``;
* ``GET /api/v3/user`` gives ``login`` (renamable) and the numeric ``id`` (stable);
* ``GET /api/v3/user/emails`` lists addresses with ``primary`` and ``verified`` flags;
* a rate-limited API answers 403 with ``X-RateLimit-Remaining: 0``.

URLs follow GitHub Enterprise Server (``/login/oauth/...`` and ``/api/v3/...`` on one host), so
the ``github`` preset is exercised with a base URL exactly as an admin would configure it.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge


class GitHubDouble:
    def __init__(self, *, client_id: str = "gh-client", client_secret: str = "gh-secret") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.user: dict[str, Any] = {"login": "octo", "id": 583231, "name": "Octo Cat", "email": None}
        self.emails: list[dict[str, Any]] = [
            {"email": "octo@example.com", "primary": True, "verified": True, "visibility": "public"},
            {"email": "old@example.com", "primary": False, "verified": False, "visibility": None},
        ]
        self.rate_limited = False
        self.hits: Counter[str] = Counter()
        self.requests_log: list[tuple[str, str, dict[str, str], str]] = []
        self._codes: dict[str, dict[str, str]] = {}
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.double = self  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> GitHubDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        """What GitHub's authorize page does once the person clicks "Authorize"."""
        assert params["client_id"] == self.client_id
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = dict(params)
        return {"code": code, "state": params["state"]}

    # --- HTTP -------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: str) -> tuple[int, dict, bytes]:
        with self._lock:
            self.hits[path] += 1
            self.requests_log.append((method, path, dict(headers), body))
        if method == "POST" and path == "/login/oauth/access_token":
            return self._token(headers, dict(parse_qsl(body)))
        if method == "GET" and path in ("/api/v3/user", "/api/v3/user/emails"):
            return self._api(path, headers)
        return 404, {"Content-Type": "application/json"}, b'{"message": "Not Found"}'

    def _token(self, headers: Mapping[str, str], form: dict[str, str]) -> tuple[int, dict, bytes]:
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            answer = {"error": "incorrect_client_credentials"}
        elif grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            answer = {"error": "bad_verification_code"}
        elif create_s256_code_challenge(form.get("code_verifier", "")) != grant.get("code_challenge"):
            answer = {"error": "bad_verification_code", "error_description": "PKCE verification failed"}
        else:
            token = "gho_" + secrets.token_urlsafe(20)
            with self._lock:
                self._tokens.add(token)
            answer = {"access_token": token, "token_type": "bearer", "scope": grant.get("scope", "")}
        if "application/json" in headers.get("Accept", ""):
            return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
        return 200, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(answer).encode()

    def _api(self, path: str, headers: Mapping[str, str]) -> tuple[int, dict, bytes]:
        if self.rate_limited:
            body = {"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest"}
            limited = {"Content-Type": "application/json", "X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "60"}
            return 403, limited, json.dumps(body).encode()
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            return 401, {"Content-Type": "application/json"}, b'{"message": "Bad credentials"}'
        data: Any = self.user if path == "/api/v3/user" else self.emails
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(data).encode()


class _Handler(BaseHTTPRequestHandler):
    timeout = 5
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on ``hits`` instead."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        body = self.rfile.read(length).decode() if length else ""
        status, headers, payload = self.server.double.handle(  # type: ignore[attr-defined]
            self.command, urlsplit(self.path).path, self.headers, body
        )
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
