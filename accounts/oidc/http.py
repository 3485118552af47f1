"""The one way this app talks to a provider: bounded in time and size, JSON checked, errors typed.

Every outbound call goes through ``request_json`` so that no code path can forget a timeout or
read an unbounded body from a hostile provider. One ``requests.Session`` keeps connections alive
between logins (TLS handshakes cost milliseconds; a verified login costs microseconds); it keeps
no cookies, so one call never carries state a provider set on another.
"""

from __future__ import annotations

import functools
import http.client
import http.cookiejar
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from django.conf import settings
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables
from requests.structures import CaseInsensitiveDict

from ..conf import conf
from ..errors import ProviderMisconfigured, ProviderTimeout, ProviderUnavailable
from . import safejson

logger = logging.getLogger(__name__)


@functools.cache
def session(factory: str = "") -> requests.Session:
    """The process's one ``requests.Session`` for providers: the app's own, or the one ``factory`` makes.

    ``factory`` is ``ACCOUNTS_OIDC_HTTP_SESSION`` (a dotted path to a callable), for a project that
    needs a proxy of its own, client certificates, or instrumentation; the rules below apply to it
    too, and are not the factory's to undo.
    """
    made = import_string(factory)() if factory else requests.Session()
    if not isinstance(made, requests.Session):
        raise ProviderMisconfigured(f"ACCOUNTS_OIDC_HTTP_SESSION {factory!r} returned no requests.Session")
    if made.headers.get("User-Agent") == requests.utils.default_user_agent():  # not one the factory chose
        made.headers["User-Agent"] = "django-accounts-oidc/1.0"
    # The session is shared by every login in the process: a cookie one provider answer sets would ride
    # along on other people's later calls (and let a provider link them). A policy that allows no
    # domain refuses every Set-Cookie and sends nothing; connections are still pooled and reused.
    made.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # With ``trust_env`` requests reads the proxy and CA-bundle variables and ~/.netrc again on every
    # call: half a millisecond of each sign-in on a small machine. A process's environment does not
    # change while it runs, so ``_environment`` reads it once per provider origin instead. ~/.netrc is
    # not read at all: a provider's credentials are its configuration here, never ambient ones.
    made.trust_env = False
    return made


#: Waits that ran out, whoever noticed: requests before the answer, urllib3 while the body streams
#: in (``ReadTimeoutError`` is not a ``requests`` exception), the socket itself.
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
#: Everything else a call can fail with. With ``stream=True`` the body is read from urllib3 directly,
#: so its errors (``ProtocolError`` for a body cut short, reset or badly chunked, ``DecodeError`` for
#: a body that is not in its declared Content-Encoding) arrive unwrapped; so do a host urllib3
#: cannot parse (``LocationParseError``, a ``ValueError``) and a header value that is not Latin-1
#: (``UnicodeEncodeError``, e.g. a provider's access token sent back as a bearer token).
_FAILURES = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)


@dataclass(frozen=True)
class Response:
    status: int
    data: Any
    headers: CaseInsensitiveDict
    #: The undecoded body, for the few answers that are not JSON (a signed userinfo JWT).
    text: str


class ProviderHTTPError(ProviderUnavailable):
    """The provider answered with an HTTP error status. ``data`` holds its JSON error body, if any."""

    def __init__(self, reason: str, *, status: int, data: Any, headers: CaseInsensitiveDict | None = None) -> None:
        super().__init__(reason)
        self.http_status = status
        self.data = data if isinstance(data, dict) else {}
        self.headers = headers if headers is not None else CaseInsensitiveDict()


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_secure_url(url: str, *, what: str) -> None:
    """Refuse non-https provider URLs, except loopback while DEBUG is on, or when explicitly allowed.

    Tokens and client secrets travel to these URLs; plain http would hand them to anyone on the path.
    A URL with control characters is refused too: it is logged, and a newline in it would forge a line.
    """
    if not url.isprintable():
        raise ProviderMisconfigured(f"{what} contains control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1/": an unclosed IPv6 bracket
        raise ProviderMisconfigured(f"{what} is not a valid URL") from None
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if conf.OIDC_ALLOW_INSECURE_HTTP or (settings.DEBUG and is_loopback(parts.hostname)):
            return
        raise ProviderMisconfigured(f"{what} uses http:// ({parts.hostname}); only https is allowed")
    raise ProviderMisconfigured(f"{what} is not an absolute https URL")


@functools.lru_cache(maxsize=256)
def _environment(origin: str) -> tuple[dict[str, str], bool | str]:
    """The proxies (``*_proxy``, honouring ``no_proxy``) and CA bundle the environment names for ``origin``."""
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return requests.utils.get_environ_proxies(origin), verify


def _describe(exc: BaseException) -> str:
    """The exception's type, and for urllib3's ``ProtocolError`` the type it wraps; never its message.

    Messages can quote what went over the wire (a header value, part of a body), and the reason
    ends up in the log and the audit trail.
    """
    name = type(exc).__name__
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        inner = next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
        if inner is not None:
            name += f": {type(inner).__name__}"
    return name


# ``data`` and ``headers`` carry the client secret (client_secret_post) and bearer tokens or Basic
# credentials; ``body``, ``chunk``, ``text`` and ``parsed`` carry the answer (the token endpoint's
# holds the tokens). Django's error reports mask these names in this frame and in every frame it
# calls (requests', urllib3's and http.client's, where the encoded request is also called ``body``).
@sensitive_variables("data", "headers", "body", "chunk", "text", "parsed")
def request_json(
    method: str,
    url: str,
    *,
    what: str,
    data: dict[str, str] | str | None = None,
    headers: dict[str, str] | None = None,
    accept_jwt: bool = False,
    allow_list: bool = False,
    allow_empty: bool = False,
) -> Response:
    """Make one call to a provider and return its decoded JSON body.

    ``what`` names the call in errors and logs ("token endpoint"). Raises ``ProviderTimeout``,
    ``ProviderUnavailable`` (unreachable, broken off or unreadable, too large, not JSON, nested too
    deep), ``ProviderHTTPError`` for a 4xx/5xx answer, or ``ProviderMisconfigured`` for a URL that
    is not https; never anything that is not a ``SignInError``. Redirects are not followed: a
    provider endpoint that redirects is misconfigured, and following it would send credentials
    somewhere nobody configured. ``allow_empty`` accepts a success with no body at all (``data`` is
    then None): what a revocation endpoint answers (RFC 7009 2.2, GitHub's 204).
    """
    require_secure_url(url, what=what)
    limit = conf.OIDC_MAX_RESPONSE_BYTES
    # The read timeout bounds each wait for a byte; this bounds the whole answer, so a provider
    # dripping one byte at a time cannot hold a request (and a worker) for minutes.
    deadline = time.monotonic() + conf.OIDC_HTTP_TOTAL_TIMEOUT
    reading = False
    try:
        parts = urlsplit(url)
        proxies, verify = _environment(f"{parts.scheme}://{parts.netloc}")
        outbound = session(conf.OIDC_HTTP_SESSION)
        if isinstance(outbound.verify, str):  # a CA bundle the supplied session chose (mTLS, a private CA)
            verify = outbound.verify
        with outbound.request(
            method,
            url,
            data=data,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=conf.OIDC_HTTP_TIMEOUT,
            allow_redirects=False,
            stream=True,
            proxies=dict(proxies),
            verify=verify,
        ) as resp:
            reading = True
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ProviderUnavailable(f"{what} answered {declared} bytes, more than the {limit} allowed")
            body = bytearray()
            # read1 returns what has arrived so far, so the deadline is checked while a body trickles in.
            while chunk := resp.raw.read1(65536, decode_content=True):
                body += chunk
                if len(body) > limit:
                    raise ProviderUnavailable(f"{what} answered more than the {limit} bytes allowed")
                if time.monotonic() > deadline:
                    raise ProviderTimeout(f"{what} took more than {conf.OIDC_HTTP_TOTAL_TIMEOUT}s to answer")
            status, resp_headers = resp.status_code, resp.headers
    except _TIMEOUTS as exc:
        during = " while sending its answer" if reading else ""
        raise ProviderTimeout(f"{what} timed out{during} ({_describe(exc)})") from exc
    except _FAILURES as exc:
        if reading:
            raise ProviderUnavailable(f"{what} sent an answer that could not be read ({_describe(exc)})") from exc
        if isinstance(exc, ValueError):  # a URL or header value the HTTP stack refuses before any connection
            raise ProviderUnavailable(f"{what} could not be called ({_describe(exc)})") from exc
        raise ProviderUnavailable(f"{what} unreachable ({_describe(exc)})") from exc

    text = body.decode("utf-8", errors="replace")
    content_type = resp_headers.get("Content-Type", "").split(";")[0].strip().lower()
    if (accept_jwt and content_type == "application/jwt") or (allow_empty and not text.strip()):
        parsed: Any = None
    else:
        try:
            parsed = safejson.loads(text)
        except safejson.TooDeep:  # valid JSON like [[[[...: every later walk of it would overflow the stack
            parsed = None  # an error answer nested like that simply has no usable error body
            if 200 <= status < 300:
                raise ProviderUnavailable(
                    f"{what} answered JSON that nests more than {safejson.MAX_DEPTH} levels"
                ) from None
        except ValueError:
            parsed = None
            if 200 <= status < 300:
                raise ProviderUnavailable(f"{what} answered HTTP {status} with a body that is not JSON") from None
    if not 200 <= status < 300:
        raise ProviderHTTPError(f"{what} answered HTTP {status}", status=status, data=parsed, headers=resp_headers)
    if parsed is not None and not isinstance(parsed, dict) and not (allow_list and isinstance(parsed, list)):
        raise ProviderUnavailable(f"{what} answered JSON that is not an object")
    return Response(status=status, data=parsed, headers=resp_headers, text=text)
