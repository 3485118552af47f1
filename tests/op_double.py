"""A real OpenID provider on 127.0.0.1, for tests: real HTTP, real keys, really signed tokens.

Why a double and not mocks: the relying party's security rests on details that mocks paper over
(signatures, key ids, caching headers, timeouts, what goes over the wire to the token endpoint).
This double serves those over a real socket so the code under test runs exactly as in production,
while every field stays within a test's reach:

* ``metadata``, ``keys``, ``next_user``, ``cache_control`` and ``faults`` are plain attributes; the
  next request serves whatever they hold at that moment.
* ``id_token_mutator`` / ``id_token_override`` / ``userinfo_mutator`` tamper with what is issued.
* ``sign``, ``sign_unchecked`` and ``unsigned`` mint tokens directly, including forged ones.
* ``hits``, ``requests_log``, ``issued_tokens`` and ``logout_requests`` record what happened;
  ``errors`` collects exceptions raised inside the double (a crashing hook answers 500).

The authorization endpoint is also a Python method, :meth:`OpenIDProviderDouble.authorize`, because
Django's test client cannot follow a redirect to another server: a test hands it the parameters of
the authorization request and gets back the parameters of the callback.

The HTTP machinery is :class:`HTTPDouble`, shared with the GitHub double (``tests/github_double.py``):
a ``ThreadingHTTPServer`` on 127.0.0.1 whose every wait is bounded, started and stopped by ``with``,
routing ``(method, path)`` to handler methods, counting ``hits`` and injecting ``faults``.

Only the standard library's ``http.server`` and joserfc are used, so the double has no test-runner
dependency and can be used from a shell as well::

    with OpenIDProviderDouble() as op:
        print(op.issuer)
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

__all__ = [
    "DEFAULT_USER",
    "DISCOVERY_PATH",
    "AuthorizationRequestError",
    "HTTPDouble",
    "HangingServer",
    "OpenIDProviderDouble",
    "Request",
    "Response",
    "Route",
]

DISCOVERY_PATH = "/.well-known/openid-configuration"

#: The claims of the user who "signs in" at the double unless a test sets ``next_user``.
DEFAULT_USER: dict[str, Any] = {
    "sub": "user-1",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Example",
    "preferred_username": "alice",
    "given_name": "Alice",
    "family_name": "Example",
}

#: Which keys can sign with which JWS algorithm: (kty, allowed curves or None for any).
_ALGORITHM_KEYS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "ES256K": ("EC", frozenset({"secp256k1"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
    **{alg: ("oct", None) for alg in ("HS256", "HS384", "HS512")},
}

_FAULT_KEYS = frozenset({"status", "body", "content_type", "headers", "delay", "body_bytes", "content_length", "close"})
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_MAX_REQUEST_BODY = 1024 * 1024
_HANDLER_TIMEOUT = 5.0  # seconds a handler may wait on a silent client


class AuthorizationRequestError(ValueError):
    """An authorization request so broken that a real provider would not redirect back at all.

    RFC 6749 4.1.2.1: with an unknown client or no redirect URI the provider must not redirect, so
    :meth:`OpenIDProviderDouble.authorize` raises this instead of returning callback parameters.
    """


class _OAuthError(Exception):
    """An OAuth error answer (RFC 6749 5.2) raised from inside an endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


@dataclass
class _Grant:
    """What a one-time authorization code stands for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    user: dict[str, Any]
    expires_at: float
    #: The request asked for ``max_age``: the ID token must then say when the user authenticated.
    max_age: str | None = None


@dataclass
class _AccessToken:
    user: dict[str, Any]
    expires_at: float
    #: The grant (code exchange and its refreshes) the token belongs to; revoking the grant kills it.
    grant_id: str = ""


@dataclass
class _RefreshToken:
    """One refresh token of a grant; with rotation each is good for one refresh only."""

    grant_id: str
    client_id: str
    user: dict[str, Any]
    scope: str
    used: bool = False


@dataclass
class Request:
    """One HTTP request as a double's handlers see it."""

    method: str
    path: str  # relative to the double's path prefix (when under it), without the query
    under_prefix: bool  # False for paths outside the double's path prefix: those are all 404
    query: dict[str, str]
    headers: Mapping[str, str]  # case-insensitive (an email.message.Message)
    body: str


@dataclass
class Response:
    """What a double's handler answers; ``Response(0)`` (``_HANG_UP``) closes without a word."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Response:
        return cls(status, json.dumps(data).encode(), headers=headers)

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(302, b"", "text/plain", {"Location": location})


Route = Callable[[Request], Response]


class HTTPDouble:
    """A fake HTTP service on ``http://127.0.0.1:<random port>``, answering from daemon threads.

    The server machinery the provider doubles share. The socket is bound in the constructor, so
    ``base_url`` is usable at once; ``start()`` begins answering and ``stop()`` releases the port
    (prefer ``with``). Every request is counted in ``hits`` and ``requests_log`` (by path), then a
    ``faults`` entry for its path, if any, answers instead of (or delays) the handler that
    :meth:`routes` names for its ``(method, path)``. A handler raising is recorded in ``errors``
    and answered with a 500, loudly.

    ``faults`` maps a path to a dict of: ``status``, ``body``, ``content_type``, ``headers`` (answer
    with these), ``body_bytes`` (a JSON-looking body of that size), ``content_length`` (False: do
    not declare it), ``delay`` (seconds to wait first; cut short by ``stop()``), ``close`` (hang up).
    """

    #: What thread names and crash answers call this double.
    name = "HTTP double"
    #: The ``Server`` header's product token.
    server_version = "HTTPDouble/1.0"
    #: Requests under this path prefix are routed relative to it; others are all 404 ("" for none).
    _prefix = ""

    def __init__(self, *, tls: ssl.SSLContext | None = None, latency: float = 0.0, keep_alive: bool = False) -> None:
        #: Seconds added before every answer, and twice that for every new connection (the TCP and
        #: TLS handshakes' round trips): a provider at a realistic distance (``bench/run.py``).
        self.latency = latency
        #: HTTP/1.1 with persistent connections (a real provider's); the default is one request per
        #: connection, which keeps the "close" fault exact.
        self.keep_alive = keep_alive
        #: Connections accepted so far: with ``keep_alive``, how many handshakes clients paid.
        self.connections = 0
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        if tls is not None:  # the handshake runs in the handler's thread, on its first read
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.base_url = f"{'https' if tls is not None else 'http'}://{host}:{port}"
        self.faults: dict[str, dict[str, Any]] = {}
        self.hits: Counter[str] = Counter()
        self.requests_log: list[tuple[str, str, dict[str, str], str]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Self:
        """Begin answering requests in a daemon thread."""
        if self._stopped:
            raise RuntimeError(f"a stopped {type(self).__name__} cannot be restarted; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self.name.lower().replace(" ", "-"),
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; returns within about a second at worst.

        Handlers sleeping in a ``delay`` fault are woken up; handler threads are daemons and are
        not waited for, so a client that stalls cannot hold up the test run.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()  # waits at most one poll interval
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- HTTP dispatch ---------------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Route]:
        """The handlers, by ``(method, path)``; paths are relative to the prefix."""
        return {}

    def _handle(self, request: Request) -> Response:
        """Record the request, apply any fault, and route it (``_HANG_UP`` means: close, say nothing)."""
        with self._lock:
            self.hits[request.path] += 1
            self.requests_log.append((request.method, request.path, dict(request.headers.items()), request.body))
        if self.latency:
            self._stopping.wait(self.latency)
        try:
            spec = self.faults.get(request.path)
            fault = self._apply_fault(spec) if spec is not None else None
            return fault if fault is not None else self._route(request)
        except Exception as exc:  # a bug in the double or a test's hook: make it loud, not a mystery 502
            self.errors.append(exc)
            traceback.print_exc()
            return Response.json({"error": "server_error", "error_description": f"{self.name} crashed: {exc!r}"}, 500)

    def _route(self, request: Request) -> Response:
        routes = self.routes()
        endpoint = routes.get((request.method, request.path)) if request.under_prefix else None
        if endpoint is not None:
            return endpoint(request)
        return self._unrouted(request, routes)

    def _unrouted(self, request: Request, routes: Mapping[tuple[str, str], Route]) -> Response:
        """No handler: 405 for a known path asked with another method, else 404."""
        if request.under_prefix and any(path == request.path for _method, path in routes):
            return Response.json({"error": "invalid_request", "error_description": "method not allowed"}, 405)
        return Response.json({"error": "not_found"}, 404)

    def _apply_fault(self, spec: Mapping[str, Any]) -> Response | None:
        """Turn a ``faults`` entry into the response to give, or None to answer normally (after any delay)."""
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(_FAULT_KEYS)}")
        if "delay" in spec:
            self._stopping.wait(float(spec["delay"]))  # stop() cuts the sleep short
        if spec.get("close"):
            return _HANG_UP
        if "body_bytes" in spec:
            body = _garbage_json(int(spec["body_bytes"]))
            return Response(int(spec.get("status", 200)), body, declare_length=spec.get("content_length", True))
        if "status" in spec or "body" in spec:
            body = spec.get("body", "")
            return Response(
                int(spec.get("status", 500)),
                body if isinstance(body, bytes) else str(body).encode(),
                spec.get("content_type", "text/plain"),
                dict(spec.get("headers", {})),
                declare_length=spec.get("content_length", True),
            )
        return None


#: The response of the "close" fault: the handler hangs up without writing anything.
_HANG_UP = Response(0)


class OpenIDProviderDouble(HTTPDouble):
    """An OpenID provider listening on ``http://127.0.0.1:<random port>`` in a daemon thread.

    The socket is bound in the constructor, so ``issuer`` and ``metadata`` are usable at once;
    ``start()`` begins answering and ``stop()`` releases the port. Prefer ``with``.
    """

    name = "OP double"
    server_version = "OPDouble/1.0"

    #: Lifetime of the ID and access tokens (seconds); also the token response's ``expires_in``.
    token_lifetime = 300
    #: Lifetime of an authorization code (seconds).
    code_lifetime = 60

    def __init__(
        self,
        *,
        path: str = "/",
        client_id: str = "test-client",
        client_secret: str = "test-secret-0123456789abcdefghijklmnop",
        tls: ssl.SSLContext | None = None,
        latency: float = 0.0,
        keep_alive: bool = False,
    ) -> None:
        super().__init__(tls=tls, latency=latency, keep_alive=keep_alive)
        self._prefix = "" if path.strip("/") == "" else "/" + path.strip("/")
        #: Exactly ``base_url + path``, no trailing slash: what ID tokens carry in ``iss``.
        self.issuer = self.base_url + self._prefix
        self.client_id = client_id
        self.client_secret = client_secret

        #: Published keys, private halves included. For each algorithm the *first* key that fits it
        #: signs (see ``signing_key_for``). The RSA key has no ``alg`` member because it signs RS256,
        #: RS384, RS512 and PS256 alike; a JWK ``alg`` would pin it to one of them.
        self.keys: list[Any] = [
            RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"}),
            ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"}),
        ]
        self.metadata: dict[str, Any] = self._default_metadata()
        self.jwks_override: Any = None
        self.cache_control: str | None = "max-age=3600"

        self.next_user: dict[str, Any] = copy.deepcopy(DEFAULT_USER)
        self.send_iss_param = False
        self.id_token_alg = "RS256"
        self.id_token_mutator: Callable[[dict, dict], tuple[dict, dict] | None] | None = None
        self.id_token_override: Callable[[str, dict, dict], str] | None = None
        self.userinfo_mutator: Callable[[dict], dict] | None = None
        self.userinfo_as_jwt = False

        self.issued_tokens: list[dict[str, Any]] = []
        self.logout_requests: list[dict[str, str]] = []

        #: Refresh tokens (RFC 6749 section 6): issued with every code exchange when set; rotated
        #: (each good once, a new one with every refresh) when ``rotate_refresh_tokens``; presenting
        #: a spent one revokes the whole grant, as Auth0, Okta, Keycloak and GitHub Apps do.
        self.issue_refresh_tokens = True
        self.rotate_refresh_tokens = True
        #: Successful refreshes; refresh requests however they ended; grants revoked (by reuse or RFC 7009).
        self.refreshes = 0
        self.refresh_requests = 0
        self.revoked_grants: set[str] = set()
        self.reuse_detected = 0
        #: What reached the revocation endpoint (RFC 7009): the hint and whether the token was known.
        self.revocations: list[dict[str, Any]] = []
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._grant_ids = itertools.count(1)

        self._codes: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._kids = itertools.count(2)

    # --- keys and signing -----------------------------------------------------------------------

    def add_key(self, key: Any) -> Any:
        """Publish ``key`` in the JWKS after the existing ones (so it does not become a default)."""
        self.keys.append(key)
        return key

    def rotate(self, kty: str = "RSA") -> Any:
        """Replace the default signing key of a family ("RSA", "EC" or "OKP") with a new one.

        The new key gets a fresh kid, takes the old key's place (so it signs from now on) and the
        old key disappears from the JWKS, as after a real rotation. Returns the new key.
        """
        old = next((k for k in self.keys if k.key_type == kty and k.get("use", "sig") == "sig"), None)
        new = self._generate_like(old, kty)
        if old is None:
            self.keys.insert(0, new)
        else:
            self.keys[self.keys.index(old)] = new
        return new

    def signing_key_for(self, alg: str) -> Any:
        """The key that signs with ``alg``: the first published key fit for it.

        HMAC algorithms use the client secret, as OpenID Connect Core 10.1 says.
        """
        if alg not in _ALGORITHM_KEYS:
            raise ValueError(f"the OP double does not know the algorithm {alg!r}")
        if _ALGORITHM_KEYS[alg][0] == "oct":
            return OctKey.import_key(self.client_secret)
        for key in self.keys:
            if _key_fits(key, alg):
                return key
        raise LookupError(f"no published key can sign {alg}; add_key() one first")

    def jwks(self) -> dict[str, Any]:
        """The public JWK set built from ``keys`` (what ``/jwks`` serves unless ``jwks_override``)."""
        return {"keys": [_public_jwk(key) for key in self.keys]}

    def sign(
        self, claims: Mapping[str, Any], *, alg: str = "RS256", header: dict | None = None, key: Any = None
    ) -> str:
        """Sign ``claims`` as a compact JWS with the OP's key for ``alg`` (or ``key``).

        By default the header is ``{"alg", "kid", "typ": "JWT"}``. A ``header`` given replaces it
        entirely (leave out ``kid`` to sign without one); its ``alg``, if any, wins over ``alg``.
        Claims are serialised as they are, so tests can sign deliberately malformed values, in
        ASCII JSON: a lone surrogate (``"\\ud800"``) or a NUL is sent as its ``\\u`` escape, as a
        hostile provider may send it (joserfc's own UTF-8 serialisation cannot encode a surrogate).
        """
        if header is None:
            key = key if key is not None else self.signing_key_for(alg)
            header = _default_header(alg, key)
        else:
            header = {"alg": alg, **header}
            alg = header["alg"]
            key = key if key is not None else self.signing_key_for(alg)
        return jwt.encode(header, dict(claims), key, algorithms=[alg], encoder_cls=_AsciiJSON)

    @staticmethod
    def sign_unchecked(claims: Mapping[str, Any], *, header: dict[str, Any], key: Any) -> str:
        """Sign the way an attacker would, past the safety checks joserfc applies when signing.

        ``key`` is a joserfc key whose ``use``, ``alg`` and ``key_ops`` members are ignored (so a key
        published for encryption or for another algorithm can still sign), or ``bytes``/``str``
        used as a raw HMAC secret (e.g. the provider's public key PEM, for algorithm confusion).
        The header is used exactly as given: no ``typ`` is added.
        """
        alg = header["alg"]
        if isinstance(key, bytes | str):
            signing_input = ".".join(_b64url(json.dumps(part).encode()) for part in (header, dict(claims)))
            secret = key.encode() if isinstance(key, str) else key
            digest = hmac.new(secret, signing_input.encode("ascii"), "sha" + alg[-3:]).digest()
            return f"{signing_input}.{_b64url(digest)}"
        members = {k: v for k, v in key.as_dict(private=True).items() if k not in ("use", "alg", "key_ops")}
        return jwt.encode(header, dict(claims), type(key).import_key(members), algorithms=[alg], default_type=None)

    @staticmethod
    def unsigned(claims: Mapping[str, Any], header: dict | None = None) -> str:
        """An ``alg: none`` token (RFC 7519 6.1), which joserfc rightly refuses to produce."""
        parts = [header if header is not None else {"alg": "none"}, dict(claims)]
        return ".".join(_b64url(json.dumps(part).encode()) for part in parts) + "."

    # --- the authorization endpoint ----------------------------------------------------------------

    def authorize(self, params: Mapping[str, str]) -> dict[str, str]:
        """Act as the authorization endpoint for ``next_user``; return the callback's parameters.

        Raises :class:`AuthorizationRequestError` for an unknown client or a missing redirect URI.
        Other mistakes come back as an OAuth error response (``{"error": ..., "state": ...}``),
        as a real provider would redirect them. Success gives ``{"code", "state"}``, plus ``iss``
        when ``send_iss_param`` is set (RFC 9207).
        """
        if params.get("client_id") != self.client_id:
            raise AuthorizationRequestError(f"unknown client_id {params.get('client_id')!r}")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise AuthorizationRequestError("redirect_uri is missing")
        problem = _authorization_request_problem(params)
        if problem is not None:
            return self._callback_params({"error": problem[0], "error_description": problem[1]}, params)
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=params["code_challenge"],
            nonce=params.get("nonce"),
            scope=params["scope"],
            user=copy.deepcopy(self.next_user),
            expires_at=time.time() + self.code_lifetime,
            max_age=params.get("max_age"),
        )
        with self._lock:
            self._codes[code] = grant
        return self._callback_params({"code": code}, params)

    def _callback_params(self, result: dict[str, str], request: Mapping[str, str]) -> dict[str, str]:
        if request.get("state") is not None:
            result["state"] = request["state"]
        if self.send_iss_param:
            result["iss"] = self.issuer
        return result

    # --- HTTP dispatch ---------------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", DISCOVERY_PATH): self._serve_discovery,
            ("GET", "/jwks"): self._serve_jwks,
            ("GET", "/authorize"): self._serve_authorize,
            ("POST", "/token"): self._serve_token,
            ("GET", "/userinfo"): self._serve_userinfo,
            ("POST", "/userinfo"): self._serve_userinfo,
            ("GET", "/logout"): self._serve_logout,
            ("POST", "/revoke"): self._serve_revoke,
        }

    def _route(self, request: Request) -> Response:
        try:
            return super()._route(request)
        except _OAuthError as exc:
            return _oauth_error_response(exc)

    # --- endpoints ------------------------------------------------------------------------------

    def _default_metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "jwks_uri": self.issuer + "/jwks",
            "end_session_endpoint": self.issuer + "/logout",
            "revocation_endpoint": self.issuer + "/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "RS384", "RS512", "PS256", "ES256", "HS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", *sorted(set(DEFAULT_USER) - {"sub"})],
        }

    def _cacheable_json(self, data: Any) -> Response:
        headers = {"Cache-Control": self.cache_control} if self.cache_control is not None else {}
        return Response.json(data, **headers)

    def _serve_discovery(self, request: Request) -> Response:
        return self._cacheable_json(self.metadata)

    def _serve_jwks(self, request: Request) -> Response:
        return self._cacheable_json(self.jwks_override if self.jwks_override is not None else self.jwks())

    def _serve_authorize(self, request: Request) -> Response:
        """The browser-facing authorization endpoint: sign ``next_user`` in and redirect back."""
        try:
            result = self.authorize(request.query)
        except AuthorizationRequestError as exc:
            return Response(400, f"Bad authorization request: {exc}".encode(), "text/plain")
        return Response.redirect(_add_query(request.query["redirect_uri"], result))

    def _serve_token(self, request: Request) -> Response:
        """The code exchange of OpenID Connect Core 3.1.3: client auth, one-time code, PKCE."""
        form = _single_values(request.body)
        client_id = self._authenticate_client(request.headers.get("Authorization"), form)
        if form.get("grant_type") == "refresh_token":
            return Response.json(self._refresh(form, client_id), **{"Cache-Control": "no-store", "Pragma": "no-cache"})
        if form.get("grant_type") != "authorization_code":
            raise _OAuthError("unsupported_grant_type", "only authorization_code and refresh_token are supported")
        grant = self._redeem_code(form.get("code"), client_id)
        if form.get("redirect_uri") != grant.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        if not _pkce_matches(form.get("code_verifier"), grant.code_challenge):
            raise _OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return Response.json(self._issue_tokens(grant), **{"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _serve_userinfo(self, request: Request) -> Response:
        token = _bearer_token(request.headers.get("Authorization"))
        with self._lock:
            record = self._access_tokens.get(token) if token else None
        if record is None or record.expires_at < time.time() or record.grant_id in self.revoked_grants:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return Response.json({"error": "invalid_token"}, 401, **challenge)
        info = copy.deepcopy(record.user)
        if self.userinfo_mutator is not None:
            info = self.userinfo_mutator(info)
        if self.userinfo_as_jwt:
            signed = self.sign({**info, "iss": self.issuer, "aud": self.client_id}, alg="RS256")
            return Response(200, signed.encode(), "application/jwt")
        return Response.json(info)

    def _serve_logout(self, request: Request) -> Response:
        """RP-initiated logout: record the request, go back to the RP if it asked to."""
        with self._lock:
            self.logout_requests.append(dict(request.query))
        target = request.query.get("post_logout_redirect_uri")
        if not target:
            return Response(200, b"<!doctype html><title>Signed out</title><p>Signed out.", "text/html")
        state = request.query.get("state")
        return Response.redirect(_add_query(target, {"state": state} if state is not None else {}))

    # --- token endpoint helpers -----------------------------------------------------------------

    def _authenticate_client(self, authorization: str | None, form: Mapping[str, str]) -> str:
        """RFC 6749 2.3.1: exactly one of client_secret_basic or client_secret_post, as advertised."""
        if authorization and "client_secret" in form:
            raise _OAuthError("invalid_request", "more than one client authentication method")
        if authorization:
            method = "client_secret_basic"
            client_id, secret = _parse_basic(authorization)
            if "client_id" in form and form["client_id"] != client_id:
                raise _OAuthError("invalid_request", "client_id in the body differs from the Authorization header")
        elif "client_secret" in form:
            method, client_id, secret = "client_secret_post", form.get("client_id", ""), form["client_secret"]
        else:
            raise _OAuthError("invalid_client", "no client authentication", 401)
        allowed = self.metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if method not in allowed:
            raise _OAuthError("invalid_client", f"{method} is not an advertised authentication method", 401)
        if not (_same(client_id, self.client_id) and _same(secret, self.client_secret)):
            raise _OAuthError("invalid_client", "client authentication failed", 401)
        return client_id

    def _redeem_code(self, code: str | None, client_id: str) -> _Grant:
        """Take the code out of circulation, whatever happens next: codes are single-use."""
        with self._lock:
            grant = self._codes.pop(code, None) if code else None
        if grant is None:
            raise _OAuthError("invalid_grant", "unknown or already used code")
        if grant.client_id != client_id:
            raise _OAuthError("invalid_grant", "code was issued to another client")
        if grant.expires_at < time.time():
            raise _OAuthError("invalid_grant", "code expired")
        return grant

    def _issue_tokens(self, grant: _Grant, *, grant_id: str | None = None, refresh: bool = True) -> dict[str, Any]:
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            grant_id = grant_id or f"grant-{next(self._grant_ids)}"
            self._access_tokens[access_token] = _AccessToken(grant.user, time.time() + self.token_lifetime, grant_id)
        response = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "id_token": self._id_token(grant, access_token),
            "scope": grant.scope,
        }
        if self.issue_refresh_tokens and refresh:
            refresh_token = secrets.token_urlsafe(32)
            with self._lock:
                self._refresh_tokens[refresh_token] = _RefreshToken(grant_id, grant.client_id, grant.user, grant.scope)
            response["refresh_token"] = refresh_token
        with self._lock:
            self.issued_tokens.append(dict(response))
        return response

    def _refresh(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        """RFC 6749 section 6, with rotation and reuse detection: a spent refresh token revokes the grant."""
        with self._lock:
            self.refresh_requests += 1
            record = self._refresh_tokens.get(form.get("refresh_token") or "")
            if record is None or record.client_id != client_id:
                raise _OAuthError("invalid_grant", "unknown refresh token")
            if record.grant_id in self.revoked_grants:
                raise _OAuthError("invalid_grant", "the grant was revoked")
            if record.used:
                self.revoked_grants.add(record.grant_id)
                self.reuse_detected += 1
                raise _OAuthError("invalid_grant", "refresh token reused: the whole grant is revoked")
            if self.rotate_refresh_tokens:
                record.used = True
            self.refreshes += 1
        grant = _Grant(
            client_id=client_id, redirect_uri="", code_challenge="", nonce=None, scope=record.scope,
            user=copy.deepcopy(record.user), expires_at=0,
        )  # fmt: skip
        answer = self._issue_tokens(grant, grant_id=record.grant_id, refresh=self.rotate_refresh_tokens)
        return answer

    def _serve_revoke(self, request: Request) -> Response:
        """RFC 7009: revoke a refresh token's (or an access token's) whole grant; 200 whether known or not."""
        form = _single_values(request.body)
        self._authenticate_client(request.headers.get("Authorization"), form)
        token = form.get("token", "")
        with self._lock:
            refresh = self._refresh_tokens.get(token)
            access = self._access_tokens.get(token)
            grant_id = refresh.grant_id if refresh is not None else access.grant_id if access is not None else None
            if grant_id is not None:
                self.revoked_grants.add(grant_id)
            self.revocations.append({"token_type_hint": form.get("token_type_hint"), "known": grant_id is not None})
        return Response(200, b"", "text/plain")

    def grant_of(self, refresh_token: str) -> str | None:
        """The grant a refresh token belongs to (for asserting it was, or was not, revoked)."""
        record = self._refresh_tokens.get(refresh_token)
        return record.grant_id if record is not None else None

    def _id_token(self, grant: _Grant, access_token: str) -> str:
        """Build, let the test tamper with, and sign the ID token (OpenID Connect Core 2, 3.1.3.6)."""
        alg = self.id_token_alg
        now = int(time.time())
        claims: dict[str, Any] = {
            **grant.user,
            "iss": self.issuer,
            "aud": self.client_id,
            "exp": now + self.token_lifetime,
            "iat": now,
            "at_hash": _left_half_hash(access_token, alg),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if grant.max_age is not None:  # Core 3.1.2.1: auth_time is then REQUIRED; the user "just" signed in
            claims.setdefault("auth_time", now)
        header = _default_header(alg, self.signing_key_for(alg))
        if self.id_token_mutator is not None:
            mutated = self.id_token_mutator(header, claims)
            if mutated is not None:
                header, claims = mutated
        token = self.sign(claims, alg=alg, header=header)
        if self.id_token_override is not None:
            token = self.id_token_override(token, claims, header)
        return token

    def _generate_like(self, old: Any, kty: str) -> Any:
        """A new key of the same type, curve and ``alg`` member as ``old`` (if any), with a fresh kid."""
        params: dict[str, Any] = {"kid": f"{kty.lower()}-{next(self._kids)}", "use": "sig"}
        if old is not None and old.get("alg"):
            params["alg"] = old.get("alg")
        if kty == "RSA":
            return RSAKey.generate_key(2048, parameters=params)
        if kty == "EC":
            return ECKey.generate_key(old.get("crv") if old is not None else "P-256", parameters=params)
        if kty == "OKP":
            return OKPKey.generate_key(old.get("crv") if old is not None else "Ed25519", parameters=params)
        raise ValueError(f"cannot rotate keys of type {kty!r}; use RSA, EC or OKP")


class _AsciiJSON(json.JSONEncoder):
    """JSON in ASCII whatever the caller asks: every non-ASCII character, a lone surrogate too, escaped."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "ensure_ascii": True})


# --- the HTTP plumbing ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """A threading HTTP server bound to a free port on 127.0.0.1, knowing its double."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for handlers still talking to a stalled client
    allow_reuse_address = False
    # socketserver's default backlog is 5: twenty parallel sign-ins on a busy machine overflow it
    # and a connection is refused, which no real provider would do. Keep room for every test's burst.
    request_queue_size = 128

    def __init__(self, double: HTTPDouble) -> None:
        self.double = double
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up or timing out is routine in these tests; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into a ``Request`` for the double and its ``Response`` back into HTTP."""

    server: _Server
    timeout = _HANDLER_TIMEOUT  # applied to the client socket by StreamRequestHandler.setup()
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and "close" faults stay exact
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

    def version_string(self) -> str:
        return f"{self.server.double.server_version} {self.sys_version}"

    def setup(self) -> None:
        double = self.server.double
        if double.keep_alive:
            self.timeout = 120.0  # an idle persistent connection stays open, as real providers keep it a while
        super().setup()
        with double._lock:
            double.connections += 1
        if double.keep_alive:
            self.protocol_version = "HTTP/1.1"
        if double.latency:
            double._stopping.wait(2 * double.latency)  # the TCP and TLS handshakes' round trips

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines of BaseHTTPRequestHandler: tests assert on ``hits``."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        request = self._read_request()
        if request is None:
            return
        response = self.server.double._handle(request)
        if response is _HANG_UP:
            self.close_connection = True
            return
        self._write(response)

    def _read_request(self) -> Request | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_REQUEST_BODY:
            self._write(Response.json({"error": "invalid_request", "error_description": "bad Content-Length"}, 400))
            return None
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length > 0 else ""
        target = urlsplit(self.path)
        path, under_prefix = self._relative(target.path)
        return Request(
            method=self.command,
            path=path,
            under_prefix=under_prefix,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
        )

    def _relative(self, path: str) -> tuple[str, bool]:
        """Strip the double's path prefix, so hits and faults use the same keys whatever the prefix."""
        prefix = self.server.double._prefix
        if not prefix:
            return path, True
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :] or "/", True
        return path, False

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.declare_length:
            self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)


# --- small pure helpers ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _default_header(alg: str, key: Any) -> dict[str, Any]:
    """``{"alg", "kid"}``; no kid for HMAC, whose key (the client secret) is not published."""
    header: dict[str, Any] = {"alg": alg}
    if key.kid and not alg.startswith("HS"):
        header["kid"] = key.kid
    return header


def _key_fits(key: Any, alg: str) -> bool:
    kty, curves = _ALGORITHM_KEYS[alg]
    return (
        key.key_type == kty
        and (curves is None or key.get("crv") in curves)
        and key.get("use", "sig") == "sig"
        and key.get("alg") in (None, alg)
    )


def _public_jwk(key: Any) -> dict[str, Any]:
    jwk = dict(key.as_dict(private=False))
    jwk.setdefault("use", "sig")
    return jwk


def _left_half_hash(value: str, alg: str) -> str:
    """at_hash / c_hash (OpenID Connect Core 3.1.3.6): left half of the hash the alg uses."""
    bits = "512" if alg in ("EdDSA", "Ed25519") else alg[-3:]
    digest = hashlib.new("sha" + (bits if bits in ("256", "384", "512") else "256"), value.encode()).digest()
    return _b64url(digest[: len(digest) // 2])


def _authorization_request_problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    """The OAuth error a provider would redirect back with, or None if the request is fine."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "only response_type=code is supported"
    if "openid" not in params.get("scope", "").split():
        return "invalid_scope", "scope must include openid"
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        return "invalid_request", "PKCE with code_challenge_method=S256 is required"
    return None


def _pkce_matches(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 4.6: BASE64URL(SHA256(code_verifier)) == code_challenge."""
    if verifier is None or not _PKCE_VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(_b64url(hashlib.sha256(verifier.encode("ascii")).digest()), challenge)


def _parse_basic(authorization: str) -> tuple[str, str]:
    """RFC 6749 2.3.1: id and secret are form-urlencoded, joined by ':', then base64-encoded."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise _OAuthError("invalid_client", f"unsupported Authorization scheme {scheme!r}", 401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _OAuthError("invalid_client", "malformed Basic credentials", 401)
    return unquote_plus(client_id), unquote_plus(secret)


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _single_values(body: str) -> dict[str, str]:
    """Parse a form body; RFC 6749 3.2 forbids repeating a parameter."""
    pairs = parse_qsl(body, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _OAuthError("invalid_request", f"repeated parameters: {', '.join(repeated)}")
    return dict(pairs)


def _oauth_error_response(exc: _OAuthError) -> Response:
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="op-double"'
    return Response.json({"error": exc.error, "error_description": exc.description}, exc.status, **headers)


def _add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))


def _garbage_json(size: int) -> bytes:
    """``size`` bytes that start like a JSON object: the shape of an oversized document."""
    head, tail = b'{"padding": "', b'"}'
    if size < len(head) + len(tail):
        return b"x" * size
    return head + b"x" * (size - len(head) - len(tail)) + tail


class HangingServer:
    """A provider that hangs: it accepts every connection on 127.0.0.1 and never answers a byte.

    ``accepted`` counts the connections made to it (every outbound call is one: the app's requests
    session cannot reuse a connection that never answered). Connections are held open until
    ``stop()`` (prefer ``with``); the accepting thread checks for it every 50 ms.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging provider", daemon=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for conn in [*self._held, self._listener]:
            conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def self_signed_tls(directory: Any) -> tuple[ssl.SSLContext, str]:
    """A throwaway certificate for 127.0.0.1: the server's TLS context, and the PEM path clients trust.

    Point ``REQUESTS_CA_BUNDLE`` at the path and ``requests`` (the app's HTTP helper, the peers')
    verify the double as they would a real provider, hostname included.
    """
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(directory)
    cert_path, key_path = folder / "provider-cert.pem", folder / "provider-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, str(cert_path)
