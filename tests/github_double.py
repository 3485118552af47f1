"""A GitHub double on 127.0.0.1: OAuth 2.0 without OpenID Connect, identity from the REST API.

It answers the way GitHub documents, including the parts that trip clients up:

* the token endpoint answers ``application/x-www-form-urlencoded`` unless the client asks for
  JSON with ``Accept: application/json``, and reports a bad code with HTTP 200 and an ``error``;
* ``GET /api/v3/user`` gives ``login`` (renamable) and the numeric ``id`` (stable);
* ``GET /api/v3/user/emails`` lists addresses with ``primary`` and ``verified`` flags;
* a rate-limited API answers 403 with ``X-RateLimit-Remaining: 0``;
* the redirect back to the site carries RFC 9207's ``iss`` when ``callback_iss`` is set: github.com
  sends ``https://github.com/login/oauth`` (``GITHUB_COM_CALLBACK_ISS``), not its identity
  namespace ``https://github.com``; ``None`` (the default) sends none, as GitHub did before 2026.

URLs follow GitHub Enterprise Server (``/login/oauth/...`` and ``/api/v3/...`` on one host), so
the ``github`` preset is exercised with a base URL exactly as an admin would configure it.

The HTTP side is the OpenID provider double's (:class:`tests.op_double.HTTPDouble`): the same
bounded server on 127.0.0.1, ``with`` to start and stop it, ``hits``, ``requests_log``, ``faults``
and ``errors``; this module only says what each endpoint answers.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.op_double import HTTPDouble, Request, Response, Route

__all__ = ["GITHUB_COM_CALLBACK_ISS", "GitHubDouble"]

#: What github.com puts in ``iss`` on its OAuth callbacks (announced April 2026).
GITHUB_COM_CALLBACK_ISS = "https://github.com/login/oauth"


class GitHubDouble(HTTPDouble):
    name = "GitHub double"
    server_version = "GitHubDouble/1.0"

    def __init__(self, *, client_id: str = "gh-client", client_secret: str = "gh-secret") -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.user: dict[str, Any] = {"login": "octo", "id": 583231, "name": "Octo Cat", "email": None}
        self.emails: list[dict[str, Any]] = [
            {"email": "octo@example.com", "primary": True, "verified": True, "visibility": "public"},
            {"email": "old@example.com", "primary": False, "verified": False, "visibility": None},
        ]
        self.rate_limited = False
        #: The ``iss`` parameter of the redirect back to the site (RFC 9207), or None for none.
        self.callback_iss: str | None = None
        self._codes: dict[str, dict[str, str]] = {}
        self._tokens: set[str] = set()
        #: A GitHub App's user tokens expire after eight hours and come with a refresh token (rotated,
        #: each good once); an OAuth App's (the default) never expire and have none.
        self.github_app = False
        self.refreshes = 0
        self.reuse_detected = 0
        self._refresh_tokens: dict[str, bool] = {}  # refresh token -> spent
        #: Access tokens whose grant was deleted through ``DELETE /applications/{client_id}/grant``.
        self.deleted_grants: list[str] = []

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        """What GitHub's authorize page does once the person clicks "Authorize"."""
        assert params["client_id"] == self.client_id
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = dict(params)
        answer = {"code": code, "state": params["state"]}
        if self.callback_iss is not None:
            answer["iss"] = self.callback_iss
        return answer

    # --- HTTP -------------------------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("POST", "/login/oauth/access_token"): self._serve_token,
            ("GET", "/api/v3/user"): self._serve_api,
            ("GET", "/api/v3/user/emails"): self._serve_api,
            ("DELETE", f"/api/v3/applications/{self.client_id}/grant"): self._serve_delete_grant,
        }

    def _unrouted(self, request: Request, routes: Mapping[tuple[str, str], Route]) -> Response:
        """GitHub answers 404 for anything it does not serve, a wrong method included."""
        return Response.json({"message": "Not Found"}, 404)

    def _serve_token(self, request: Request) -> Response:
        form = dict(parse_qsl(request.body))
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            answer = {"error": "incorrect_client_credentials"}
        elif form.get("grant_type") == "refresh_token":
            answer = self._refresh(form.get("refresh_token", ""))
        elif grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            answer = {"error": "bad_verification_code"}
        elif create_s256_code_challenge(form.get("code_verifier", "")) != grant.get("code_challenge"):
            answer = {"error": "bad_verification_code", "error_description": "PKCE verification failed"}
        else:
            answer = self._issue(grant.get("scope", ""))
        if "application/json" in request.headers.get("Accept", ""):
            return Response.json(answer)
        return Response(200, urlencode(answer).encode(), "application/x-www-form-urlencoded")

    def _issue(self, scope: str) -> dict[str, Any]:
        token = ("ghu_" if self.github_app else "gho_") + secrets.token_urlsafe(20)
        answer: dict[str, Any] = {"access_token": token, "token_type": "bearer", "scope": scope}
        with self._lock:
            self._tokens.add(token)
            if self.github_app:
                refresh = "ghr_" + secrets.token_urlsafe(40)
                self._refresh_tokens[refresh] = False
                answer.update(expires_in=28800, refresh_token=refresh, refresh_token_expires_in=15811200)
        return answer

    def _refresh(self, refresh_token: str) -> dict[str, Any]:
        """GitHub answers a bad refresh token with HTTP 200 and ``bad_refresh_token``."""
        with self._lock:
            spent = self._refresh_tokens.get(refresh_token)
            if spent is None:
                return {"error": "bad_refresh_token"}
            if spent:
                self.reuse_detected += 1
                return {"error": "bad_refresh_token"}
            self._refresh_tokens[refresh_token] = True
            self.refreshes += 1
        return self._issue("")

    def _serve_delete_grant(self, request: Request) -> Response:
        """``DELETE /applications/{client_id}/grant``: Basic auth with the app's credentials, the token in JSON."""
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Response.json({"message": "Requires authentication"}, 401)
        token = json.loads(request.body or "{}").get("access_token", "")
        with self._lock:
            if token not in self._tokens:
                return Response.json({"message": "Validation Failed"}, 422)
            self._tokens.discard(token)
            self.deleted_grants.append(token)
        return Response(204, b"", "text/plain")

    def _serve_api(self, request: Request) -> Response:
        if self.rate_limited:
            body = {"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest"}
            return Response.json(body, 403, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "60"})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            known = token in self._tokens
        if not known:
            return Response.json({"message": "Bad credentials"}, 401)
        data: Any = self.user if request.path == "/api/v3/user" else self.emails
        return Response(200, json.dumps(data).encode(), "application/json; charset=utf-8")
