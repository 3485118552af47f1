"""panva's certified ``oidc-provider`` (npm, pinned in tests/fapi/package-lock.json) on 127.0.0.1.

``CertifiedProvider`` starts ``node tests/fapi/provider.mjs`` with a fresh port and its own signing
keys (one PS256, one ES256), waits (bounded) until it listens, and stops it. It fetches the site's
JWKS from ``https://site.test/accounts/jwks.json``, which its config maps to the live test server,
so the site's real view serves the keys. ``walk`` follows the provider's redirects the way a
browser would until they reach the site's callback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import requests
from joserfc.jwk import ECKey, RSAKey

HERE = Path(__file__).resolve().parent
INSTALLED = HERE / "node_modules" / "oidc-provider" / "package.json"
SITE_JWKS_URI = "https://site.test/accounts/jwks.json"
REDIRECT_URI = "http://testserver/accounts/fapi/callback/"
PLAIN_SECRET = "plain-site-secret-for-tests-only-0123456789"


def unavailable_reason() -> str | None:
    """Why the certified provider cannot run here (None: it can). Only a missing node or npm skips."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are needed for panva's oidc-provider (make fapi-deps installs it)"
    return None


def ensure_installed() -> None:
    """Install the pinned oidc-provider (``npm ci``, as ``make fapi-deps`` does) when it is missing.

    A failed install fails the tests rather than skipping them: only a missing node or npm skips.
    """
    if INSTALLED.exists():
        return
    done = subprocess.run(
        ["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not INSTALLED.exists():
        raise RuntimeError(f"npm ci in tests/fapi failed: {done.stderr[-2000:]}")


def provider_keys() -> dict:
    """A fresh key set for the provider: PS256 (RSA) and ES256, each with its kid."""
    rsa, ec = RSAKey.generate_key(2048, private=True), ECKey.generate_key("P-256", private=True)
    keys = []
    for key, alg in ((rsa, "PS256"), (ec, "ES256")):
        kid = f"{alg.lower()}-{key.thumbprint()[:8]}"
        keys.append({**key.as_dict(private=True), "kid": kid, "alg": alg, "use": "sig"})
    return {"keys": keys}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CertifiedProvider:
    """One running oidc-provider; ``restart(new_keys=True)`` rotates its signing keys."""

    def __init__(self, *, site_origin: str) -> None:
        self.site_origin = site_origin
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = provider_keys()
        self.process: subprocess.Popen[str] | None = None
        self.browser = requests.Session()

    def __enter__(self) -> CertifiedProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        env = {
            **os.environ,
            "PORT": str(self.port),
            "SITE_JWKS_URI": SITE_JWKS_URI,
            "SITE_ORIGIN": self.site_origin,
            "REDIRECT_URI": REDIRECT_URI,
            "PROVIDER_KEYS": json.dumps(self.keys),
            "NODE_ENV": "test",
        }
        self.process = subprocess.Popen(
            ["node", str(HERE / "provider.mjs")], cwd=HERE, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.process.stdout.read() if self.process.stdout else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("oidc-provider did not listen within 20s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self, *, new_keys: bool = False) -> None:
        self.stop()
        if new_keys:
            self.keys = provider_keys()
        self.start()

    def walk(self, authorization_url: str, *, limit: int = 12) -> str:
        """Follow the provider's redirects like a browser until one leads back to the site; that URL."""
        url = authorization_url
        for _ in range(limit):
            if url.startswith("http://testserver/"):
                return url
            response = self.browser.get(url, allow_redirects=False, timeout=10)
            if response.status_code not in (302, 303):
                raise AssertionError(f"provider answered {response.status_code}: {response.text[:500]}")
            url = urljoin(url, response.headers["Location"])
        raise AssertionError("too many redirects at the provider")
