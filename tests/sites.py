"""The demo site as a real server process on 127.0.0.1, for tests that need what a test client hides.

Django's test client runs a view in the test's own thread, inside the test's transaction, against
an in-memory database. Concurrency, database locking and the real middleware stack only show up
with a separate server process, its own database file and browsers that are really parallel.
``SiteProcess`` migrates a fresh database, registers providers with ``manage.py oidc_provider
add``, serves the site with ``runserver`` (threaded), and drives sign-ins with ``requests``.
Every wait is bounded and the process is always stopped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Flow:
    """One browser's started sign-in: its cookies and the callback URL the provider sent it to."""

    browser: requests.Session
    callback_url: str


class SiteProcess:
    """The demo project served by ``manage.py runserver`` with its own SQLite database file.

    With ``gunicorn_workers`` it is served by gunicorn instead, as ``make serve`` does; pass
    ``DATABASE_URL`` and ``CACHE_URL`` to share a database and a cache between instances, and
    ``migrate=False`` for every instance but the first.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        gunicorn_workers: int = 0,
        asgi: bool = False,
        migrate: bool = True,
        prefix: str = "/accounts",
        **env: str,
    ) -> None:
        #: Serve ``project.asgi`` with gunicorn's uvicorn workers (``ASGI=1 make serve``); needs gunicorn_workers.
        self.asgi = asgi
        #: Where the project mounts the app's URLs.
        self.prefix = prefix
        self.database = workdir / "db.sqlite3"
        self.gunicorn_workers = gunicorn_workers
        self.migrate = migrate
        self.port = free_port()
        #: The interpreter and the directory of ``manage.py``: the demo project's unless a test serves another.
        self.python = sys.executable
        self.cwd = ROOT
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "tests-only-not-a-secret",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_COOKIES": "0",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP": "1",
            "DATABASE_URL": f"sqlite:///{self.database}",
            "CACHE_URL": "locmemcache://",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self._process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def add_provider(self, slug: str, op) -> str:
        """Register the provider double ``op`` under ``slug``, as an admin would with the CLI."""
        return self.manage(
            "oidc_provider", "add", slug, "--issuer", op.issuer,
            "--client-id", op.client_id, "--client-secret", op.client_secret,
        )  # fmt: skip

    def command(self) -> list[str]:
        if self.gunicorn_workers:
            app = ["project.asgi", "--worker-class", "uvicorn_worker.UvicornWorker"] if self.asgi else ["project.wsgi"]
            return [
                self.python, "-m", "gunicorn", *app, "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.gunicorn_workers), "--timeout", "30", "--graceful-timeout", "5",
            ]  # fmt: skip
        return [self.python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]

    def start(self) -> SiteProcess:
        if self.migrate:
            self.manage("migrate", "--noinput", "-v0")
        log = self.log_path.open("w")
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the site exited at start-up:\n{self.log()}")
            try:
                requests.get(f"{self.url}{self.prefix}/login/", timeout=2)
                return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its workers still booting
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the site did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def __enter__(self) -> SiteProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Read the site's database directly (what an admin would see), with a busy wait."""
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(sql, params).fetchall()

    # --- a browser's sign-in, in two halves so the second can run in parallel with others --------

    def start_sign_in(self, op, slug: str) -> Flow:
        """Start a sign-in and let ``op`` authorize it for its ``next_user``; the callback is not called yet."""
        browser = requests.Session()
        response = browser.get(f"{self.url}{self.prefix}/{slug}/login/", allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        params = op.authorize(dict(parse_qsl(urlsplit(response.headers["Location"]).query)))
        callback = requests.Request("GET", f"{self.url}{self.prefix}/{slug}/callback/", params=params).prepare()
        return Flow(browser=browser, callback_url=callback.url or "")

    def finish_sign_in(self, flow: Flow) -> tuple[int, str | None]:
        """Follow the callback; returns its status and the username the browser is then signed in as."""
        response = flow.browser.get(flow.callback_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        session = flow.browser.get(f"{self.url}{self.prefix}/session/", timeout=REQUEST_TIMEOUT).json()
        return response.status_code, (session["user"] or {}).get("username")


#: The PostgreSQL server on this machine (trust auth) that site processes share in the services tests.
POSTGRES = "postgres://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def shared_services(prefix: str, redis_db: int) -> Iterator[dict[str, str]]:
    """A database of their own on the PostgreSQL server and an emptied Redis database, for site processes.

    Yields the ``DATABASE_URL`` and ``CACHE_URL`` to hand to ``SiteProcess``; skips the test when
    either service is unreachable; drops the database and empties the Redis database afterwards.
    """
    psycopg = pytest.importorskip("psycopg")
    redis = pytest.importorskip("redis")
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3)
        cache = redis.Redis(host="127.0.0.1", port=6379, db=redis_db, socket_timeout=3)
        cache.flushdb()
    except (psycopg.OperationalError, redis.ConnectionError) as exc:
        pytest.skip(f"PostgreSQL or Redis is not reachable on 127.0.0.1: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"DATABASE_URL": f"{POSTGRES}/{name}", "CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}"}
    finally:
        cache.flushdb()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
