"""The one way this app talks to a provider: bounded in time and size, JSON checked, errors typed.

Every outbound call goes through ``request_json`` so that no code path can forget a timeout or
read an unbounded body from a hostile provider. One ``requests.Session`` keeps connections alive
between logins (TLS handshakes cost milliseconds; a verified login costs microseconds).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.structures import CaseInsensitiveDict

from ..conf import conf
from ..errors import ProviderMisconfigured, ProviderTimeout, ProviderUnavailable

logger = logging.getLogger(__name__)

_session = requests.Session()
_session.headers["User-Agent"] = "django-accounts-oidc/1.0"


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
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if conf.OIDC_ALLOW_INSECURE_HTTP or (settings.DEBUG and is_loopback(parts.hostname)):
            return
        raise ProviderMisconfigured(f"{what} uses http:// ({parts.hostname}); only https is allowed")
    raise ProviderMisconfigured(f"{what} is not an absolute https URL")


def request_json(
    method: str,
    url: str,
    *,
    what: str,
    data: dict[str, str] | str | None = None,
    headers: dict[str, str] | None = None,
    accept_jwt: bool = False,
    allow_list: bool = False,
) -> Response:
    """Make one call to a provider and return its decoded JSON body.

    ``what`` names the call in errors and logs ("token endpoint"). Raises ``ProviderTimeout``,
    ``ProviderUnavailable`` (unreachable, too large, not JSON), or ``ProviderHTTPError`` for a
    4xx/5xx answer. Redirects are not followed: a provider endpoint that redirects is misconfigured,
    and following it would send credentials somewhere nobody configured.
    """
    require_secure_url(url, what=what)
    limit = conf.OIDC_MAX_RESPONSE_BYTES
    # The read timeout bounds each wait for a byte; this bounds the whole answer, so a provider
    # dripping one byte at a time cannot hold a request (and a worker) for minutes.
    deadline = time.monotonic() + conf.OIDC_HTTP_TOTAL_TIMEOUT
    try:
        with _session.request(
            method,
            url,
            data=data,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=conf.OIDC_HTTP_TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as resp:
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
    except requests.Timeout as exc:
        raise ProviderTimeout(f"{what} timed out ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{what} unreachable ({type(exc).__name__})") from exc

    text = body.decode("utf-8", errors="replace")
    content_type = resp_headers.get("Content-Type", "").split(";")[0].strip().lower()
    if accept_jwt and content_type == "application/jwt":
        parsed: Any = None
    else:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: hostile nesting like [[[[...
            parsed = None
            if 200 <= status < 300:
                raise ProviderUnavailable(f"{what} answered HTTP {status} with a body that is not JSON") from None
    if not 200 <= status < 300:
        raise ProviderHTTPError(f"{what} answered HTTP {status}", status=status, data=parsed, headers=resp_headers)
    if parsed is not None and not isinstance(parsed, dict) and not (allow_list and isinstance(parsed, list)):
        raise ProviderUnavailable(f"{what} answered JSON that is not an object")
    return Response(status=status, data=parsed, headers=resp_headers, text=text)
