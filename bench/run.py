"""The side-by-side benchmark (``make bench``): this app against django-allauth and mozilla-django-oidc.

One command, everything on 127.0.0.1, a few minutes on a 2-core machine. It measures:

(a) ``verify_id_token`` µs/op in steady state against raw ``cryptography`` RSA and EC verification
    of the same tokens, in one process (``bench/micro.py``);
(b) the callback's p50/p95 through gunicorn (2 workers, SQLite) against a loopback OpenID provider,
    with the outbound calls per sign-in (the provider double's ``hits``) and the SQL queries per
    callback (counted by an off-by-default middleware, ``bench/peers/benchhooks.py``);
(c) sign-ins per second with 8 parallel browsers against each gunicorn;
(d) the same sign-in against the peers, each installed by this script in a throwaway virtual
    environment (cached in ``bench/.venvs/``, or ``$BENCH_VENVS``) with our Django, gunicorn and
    WhiteNoise versions, and served from a generated project (``bench/peers/``) with our SQLite
    options and our middleware. Systems take turns (round-robin, the order rotating every round),
    so the machine's noise hits all of them alike.

Then a key rotation: 10 sign-ins started, the provider's RSA key replaced, the 10 callbacks sent at
once. Every system gets its own provider double (same code, same key sizes), so the counts of
outbound calls are its own. A sign-in counts only if ``/whoami/`` then says the browser is signed in
as the user the provider authenticated; a peer that cannot sign in is reported as failed.

The table goes to stdout and to ``bench/results.md``. Knobs (environment): BENCH_ROUNDS,
BENCH_PER_ROUND, BENCH_SLICES, BENCH_SLICE_SECONDS, BENCH_THREADS, BENCH_VENVS, BENCH_PEERS (which
peers, comma-separated; empty for this app alone), BENCH_RESULTS (where the report goes),
BENCH_MICRO_BATCHES (part a's batches), BENCH_KEEP=1 (keep the temporary projects and server logs).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TEMPLATES = BENCH / "peers"
VENVS = Path(os.environ.get("BENCH_VENVS", BENCH / ".venvs"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", BENCH / "results.md"))
sys.path.insert(0, str(ROOT))

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble, self_signed_tls  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
PER_ROUND = int(os.environ.get("BENCH_PER_ROUND", "18"))
SLICES = int(os.environ.get("BENCH_SLICES", "3"))
SLICE_SECONDS = float(os.environ.get("BENCH_SLICE_SECONDS", "5"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
#: The peers to measure against, comma-separated (empty: this app alone, as the smoke test runs it).
PEER_KEYS = [key for key in os.environ.get("BENCH_PEERS", "allauth,mozilla").split(",") if key]
#: The two worlds every system is measured in, side by side: the provider on loopback (plain HTTP,
#: about a millisecond, one request per connection) and at a realistic distance (TLS with a
#: throwaway certificate the servers trust, BENCH_LATENCY_MS per answer and twice that per new
#: connection for the TCP and TLS handshakes, persistent connections as real providers allow).
WORLDS = [world for world in os.environ.get("BENCH_WORLDS", "loopback,distant").split(",") if world]
LATENCY_MS = float(os.environ.get("BENCH_LATENCY_MS", "20"))
USERS = 16  # returning users per system; each parallel browser signs in as its own
ROTATION_PARALLEL = 10
MAX_FAILURES = 10  # a system failing more timed sign-ins than this is reported as failed and dropped
WORKERS = 2
TIMEOUT = 30.0
START_TIMEOUT = 60.0
PIP_TIMEOUT = 600.0

DISCOVERY = "/.well-known/openid-configuration"
PEERS = {
    "allauth": ("django-allauth", "django-allauth[socialaccount]==65.21.1"),
    "mozilla": ("mozilla-django-oidc", "mozilla-django-oidc==5.0.2"),
    # The API rows' peer (BENCH_API_PEER=0 leaves it out): JWT access tokens checked against the JWKS.
    "drfoidc": ("drf-oidc-auth", "drf-oidc-auth==4.0.0 djangorestframework==3.18.3"),
}
#: What our virtual environment runs, installed in the peers' too.
SHARED_PINS = [f"{name}=={importlib.metadata.version(name)}" for name in ("Django", "gunicorn", "whitenoise")]

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


# --- the peers' throwaway virtual environments --------------------------------------------------


def peer_venv(key: str) -> tuple[Path, dict[str, str]]:
    """A virtual environment with the peer and our Django/gunicorn/WhiteNoise; reused when present."""
    pins = sorted([*PEERS[key][1].split(), *SHARED_PINS])
    digest = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:10]
    venv = VENVS / f"{key}-{digest}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if not marker.exists():
        log(f"creating {venv} ({', '.join(pins)}) -- once; later runs reuse it")
        shutil.rmtree(venv, ignore_errors=True)
        VENVS.mkdir(parents=True, exist_ok=True)
        (VENVS / ".gitignore").write_text("# Throwaway virtual environments of bench/run.py\n*\n")
        run([sys.executable, "-m", "venv", str(venv)], cwd=ROOT, env=dict(os.environ))
        run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
            cwd=ROOT,
            env=dict(os.environ),
            timeout=PIP_TIMEOUT,
        )
        marker.write_text(run([str(python), "-m", "pip", "freeze"], cwd=ROOT, env=dict(os.environ)))
    versions = dict(line.split("==", 1) for line in marker.read_text().splitlines() if "==" in line)
    return python, {name.lower(): version for name, version in versions.items()}


# --- servers -------------------------------------------------------------------------------------


class Server:
    """gunicorn with 2 sync workers on 127.0.0.1, as ``make serve`` runs ours (no access log for anyone)."""

    def __init__(
        self, python: Path, wsgi: str, *, cwd: Path, env: dict[str, str], log_path: Path, worker_class: str = ""
    ) -> None:
        self.python, self.wsgi, self.cwd, self.env, self.log_path = python, wsgi, cwd, env, log_path
        self.worker_class = worker_class
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            str(self.python), "-m", "gunicorn", self.wsgi, "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(WORKERS), "--timeout", "30", "--graceful-timeout", "5",
            "--no-control-socket",  # gunicorn's default socket path is per user: never clobber another server's
            *(["--worker-class", self.worker_class] if self.worker_class else []),
        ]  # fmt: skip
        with self.log_path.open("w") as log_file:
            self.process = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start-up:\n{self.log()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(self.url + "/whoami/", timeout=2).status_code == 200 and len(self.workers()) == WORKERS:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {START_TIMEOUT}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def workers(self) -> list[int]:
        if self.process is None:
            return []
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far."""
        total = 0.0
        for pid in self.workers():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


# --- the systems ---------------------------------------------------------------------------------


class SignInFailed(Exception):
    pass


@dataclass
class Flow:
    browser: requests.Session
    callback_url: str
    user: dict[str, Any]
    started: float


@dataclass
class SignIn:
    callback_s: float
    total_s: float
    queries: int | None
    writes: int | None
    cpu_s: float | None  # the server worker's CPU time for the callback request


@dataclass
class System:
    key: str
    label: str
    login_path: str
    op: OpenIDProviderDouble
    world: str = "loopback"
    server: Server | None = None
    failed: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    users: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[float] = field(default_factory=list)
    callback_cpu: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    latency_failures: list[str] = field(default_factory=list)
    latency_attempts: int = 0
    latency_hits: Counter[str] = field(default_factory=Counter)
    #: New connections the provider double accepted during the timed sign-ins (handshakes paid).
    latency_connections: int = 0
    throughput_done: int = 0
    throughput_failures: list[str] = field(default_factory=list)
    throughput_seconds: float = 0.0
    throughput_hits: Counter[str] = field(default_factory=Counter)
    server_cpu: float = 0.0
    driver_cpu: float = 0.0
    first_queries: tuple[int, int] | None = None
    returning_queries: tuple[int, int] | None = None
    rotation: dict[str, Any] | None = None
    #: Ours only: Django's floor on the same server (``bench/peers/ours_urls.py``), timed like a callback.
    floor: list[float] = field(default_factory=list)
    floor_cpu: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def user(self, n: int, prefix: str = "user") -> dict[str, Any]:
        return {
            **DEFAULT_USER,
            "sub": f"{self.key}-{prefix}-{n}",
            "email": f"{prefix}{n}@example.com",
            "preferred_username": f"{prefix}{n}",
            "name": f"{prefix.title()} {n}",
            "given_name": prefix.title(),
            "family_name": str(n),
        }

    # a browser's sign-in, in two halves (the rotation sends the second halves all at once)

    def start_sign_in(self, user: dict[str, Any]) -> Flow:
        browser = requests.Session()
        started = time.perf_counter()
        response = browser.get(self.url + self.login_path, allow_redirects=False, timeout=TIMEOUT)
        if response.status_code != 302:
            raise SignInFailed(f"login start answered {response.status_code}: {response.text[:300]!r}")
        params = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
        with self.lock:  # next_user is read by authorize(); browsers in parallel take turns
            self.op.next_user = user
            result = self.op.authorize(params)
        return Flow(browser, f"{params['redirect_uri']}?{urlencode(result)}", user, started)

    def finish_sign_in(self, flow: Flow, *, count_queries: bool = False) -> SignIn:
        headers = {"X-Bench-Count-Queries": "1"} if count_queries else {}
        start = time.perf_counter()
        response = flow.browser.get(flow.callback_url, allow_redirects=False, timeout=TIMEOUT, headers=headers)
        end = time.perf_counter()
        if response.status_code != 302:
            raise SignInFailed(f"callback answered {response.status_code}: {response.text[:300]!r}")
        who = flow.browser.get(self.url + "/whoami/", timeout=TIMEOUT).json()
        if not who["authenticated"] or who["email"] != flow.user["email"]:
            location = response.headers.get("Location")
            raise SignInFailed(f"not signed in as {flow.user['email']} after the callback (-> {location}): {who}")
        queries, writes, cpu = (response.headers.get(f"X-Bench-{name}") for name in ("Queries", "Writes", "CPU-us"))
        return SignIn(
            callback_s=end - start,
            total_s=end - flow.started,
            queries=int(queries) if queries else None,
            writes=int(writes) if writes else None,
            cpu_s=int(cpu) / 1e6 if cpu else None,
        )

    def sign_in(self, user: dict[str, Any], *, count_queries: bool = False) -> SignIn:
        return self.finish_sign_in(self.start_sign_in(user), count_queries=count_queries)

    def floor_sign_in(self, user: dict[str, Any]) -> SignIn:
        """A fresh browser's GET of the floor view for a user who signed in before, timed like a callback."""
        browser = requests.Session()
        start = time.perf_counter()
        url = f"{self.url}/floor/{user['preferred_username']}/"
        response = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
        end = time.perf_counter()
        if response.status_code != 302:
            raise SignInFailed(f"floor answered {response.status_code}: {response.text[:300]!r}")
        if not browser.get(self.url + "/whoami/", timeout=TIMEOUT).json()["authenticated"]:
            raise SignInFailed("not signed in after the floor view")
        cpu = response.headers.get("X-Bench-CPU-us")
        return SignIn(end - start, end - start, None, None, int(cpu) / 1e6 if cpu else None)


# --- setting the systems up ----------------------------------------------------------------------


def copy_templates(target: Path, names: list[str]) -> None:
    (target / "static").mkdir(parents=True)  # STATIC_ROOT: empty, as nothing here serves static files
    for name in ["benchhooks.py", *names]:
        shutil.copy(TEMPLATES / name, target / name)


def ours_env(workdir: Path, settings: str) -> dict[str, str]:
    """The environment ``make serve`` reads, for a local http provider (SiteProcess's, in tests)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-not-a-secret",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP": "1",
        # Client secrets are stored encrypted (make serve needs a key too): a fresh Fernet key per run.
        "ACCOUNTS_CLIENT_SECRET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "CACHE_URL": "locmemcache://",
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
        "PYTHONUNBUFFERED": "1",
    }


def our_settings_for_peers(env: dict[str, str]) -> dict[str, str]:
    """Our SQLite OPTIONS and middleware (less the accounts app's), read from project.settings."""
    probe = (
        "import json; from django.conf import settings as s; import django; django.setup(); "
        "print(json.dumps({'options': s.DATABASES['default'].get('OPTIONS', {}), "
        "'middleware': [m for m in s.MIDDLEWARE if not m.startswith(('accounts.', 'benchhooks.'))]}))"
    )
    found = json.loads(run([sys.executable, "-c", probe], cwd=ROOT, env=env).strip().splitlines()[-1])
    return {"BENCH_SQLITE_OPTIONS": json.dumps(found["options"]), "BENCH_MIDDLEWARE": json.dumps(found["middleware"])}


def set_up_ours(system: System, workdir: Path, ca_bundle: str) -> dict[str, str]:
    copy_templates(workdir, ["ours_settings.py", "ours_urls.py"])
    env = ours_env(workdir, "ours_settings") | {"REQUESTS_CA_BUNDLE": ca_bundle}
    run([sys.executable, "-m", "django", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env)
    op = system.op
    run(
        [sys.executable, "-m", "django", "oidc_provider", "add", "bench", "--issuer", op.issuer,
         "--client-id", op.client_id, "--client-secret", op.client_secret],
        cwd=ROOT, env=env,
    )  # fmt: skip
    system.server = Server(Path(sys.executable), "project.wsgi", cwd=ROOT, env=env, log_path=workdir / "server.log")
    system.server.start()
    system.versions = {"django": importlib.metadata.version("Django")}
    return our_settings_for_peers(env)


def set_up_peer(system: System, workdir: Path, shared: dict[str, str], ca_bundle: str) -> None:
    python, versions = peer_venv(system.key)
    system.versions = versions
    copy_templates(workdir, ["wsgi.py", "peer_base.py", f"{system.key}_settings.py", f"{system.key}_urls.py"])
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        shared,
        DJANGO_SETTINGS_MODULE=f"{system.key}_settings",
        PYTHONPATH=str(workdir),
        PYTHONUNBUFFERED="1",
        BENCH_SECRET_KEY="bench-only-not-a-secret",
        BENCH_DB=str(workdir / "db.sqlite3"),
        BENCH_STATIC_ROOT=str(workdir / "static"),
        BENCH_ISSUER=system.op.issuer,
        BENCH_CLIENT_ID=system.op.client_id,
        BENCH_CLIENT_SECRET=system.op.client_secret,
        REQUESTS_CA_BUNDLE=ca_bundle,  # the distant provider's throwaway certificate (requests reads it)
    )
    run([str(python), "-m", "django", "migrate", "--noinput", "-v0"], cwd=workdir, env=env)
    system.server = Server(python, "wsgi", cwd=workdir, env=env, log_path=workdir / "server.log")
    system.server.start()


def warm_up(system: System) -> None:
    """First sign-ins of every user (both workers fill their caches), then the query counts."""
    system.users = [system.user(n) for n in range(USERS)]
    first = system.sign_in(system.users[0], count_queries=True)  # raises SignInFailed: the peer is failed
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(system.sign_in, system.users[1:]))
        list(pool.map(system.sign_in, system.users))
    returning = [system.sign_in(system.users[0], count_queries=True) for _ in range(3)]
    system.first_queries = (first.queries or 0, first.writes or 0)
    system.returning_queries = (
        int(statistics.median(s.queries or 0 for s in returning)),
        int(statistics.median(s.writes or 0 for s in returning)),
    )


# --- the measurements ----------------------------------------------------------------------------


def profiles() -> str:
    """``bench/profiles.py``'s summary: what remains of a callback and of an API call, by part."""
    return run([sys.executable, str(BENCH / "profiles.py")], cwd=ROOT, env=dict(os.environ), timeout=300).strip()


def micro() -> dict[str, Any]:
    output = run([sys.executable, str(BENCH / "micro.py")], cwd=ROOT, env=dict(os.environ), timeout=300)
    return json.loads(output.strip().splitlines()[-1])


def latency_rounds(systems: list[System]) -> None:
    for round_no in range(ROUNDS):
        order = systems[round_no % len(systems) :] + systems[: round_no % len(systems)]
        for system in order:
            if system.failed is not None:
                continue
            before, connections = Counter(system.op.hits), system.op.connections
            for n in range(PER_ROUND):
                system.latency_attempts += 1
                try:
                    result = system.sign_in(system.users[n % len(system.users)])
                except (SignInFailed, requests.RequestException, KeyError, ValueError) as exc:
                    system.latency_failures.append(str(exc)[:300])
                    continue
                system.callbacks.append(result.callback_s)
                if result.cpu_s is not None:
                    system.callback_cpu.append(result.cpu_s)
                system.totals.append(result.total_s)
            system.latency_hits += Counter(system.op.hits) - before
            system.latency_connections += system.op.connections - connections
            if system.key == "ours" and system.world == "loopback":
                floor_round(system)
            if len(system.latency_failures) > MAX_FAILURES and system.failed is None:
                system.failed = f"{len(system.latency_failures)} failed sign-ins, first: {system.latency_failures[0]}"
                log(f"    {system.label} dropped: {system.failed}")
        log(f"latency round {round_no + 1}/{ROUNDS}, callback p50 so far: {', '.join(p50_text(s) for s in systems)}")


def floor_round(system: System) -> None:
    """Django's floor, right after our own sign-ins of the round: same server, same moment."""
    for n in range(PER_ROUND):
        try:
            result = system.floor_sign_in(system.users[n % len(system.users)])
        except (SignInFailed, requests.RequestException, KeyError, ValueError) as exc:
            log(f"    floor request failed: {str(exc)[:300]}")
            continue
        system.floor.append(result.callback_s)
        if result.cpu_s is not None:
            system.floor_cpu.append(result.cpu_s)


def p50_text(system: System) -> str:
    if not system.callbacks:
        return f"{system.key}/{system.world} -"
    cpu = f" (CPU {statistics.median(system.callback_cpu) * 1e3:.1f})" if system.callback_cpu else ""
    return f"{system.key}/{system.world} {statistics.median(system.callbacks) * 1e3:.1f} ms{cpu}"


def throughput_slice(system: System) -> None:
    deadline = time.monotonic() + SLICE_SECONDS
    done = Counter[str]()
    failures: list[str] = []
    tally = threading.Lock()

    def browser(n: int) -> None:
        user = system.users[n % len(system.users)]
        while time.monotonic() < deadline:
            try:
                system.sign_in(user)
            except (SignInFailed, requests.RequestException, KeyError, ValueError) as exc:
                with tally:
                    failures.append(str(exc)[:300])
            else:
                with tally:
                    done["ok"] += 1

    assert system.server is not None
    before_hits, before_cpu, before_driver = Counter(system.op.hits), system.server.cpu_seconds(), process_cpu()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(browser, range(THREADS)))
    system.throughput_seconds += time.monotonic() - start
    system.throughput_done += done["ok"]
    system.throughput_failures += failures
    system.throughput_hits += Counter(system.op.hits) - before_hits
    system.server_cpu += system.server.cpu_seconds() - before_cpu
    system.driver_cpu += process_cpu() - before_driver


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def throughput(systems: list[System]) -> None:
    for slice_no in range(SLICES):
        order = systems[slice_no % len(systems) :] + systems[: slice_no % len(systems)]
        for system in order:
            throughput_slice(system)
        rates = ", ".join(f"{s.key} {s.throughput_done / s.throughput_seconds:.1f}/s" for s in systems)
        log(f"throughput slice {slice_no + 1}/{SLICES} ({THREADS} browsers, {SLICE_SECONDS:g}s each): {rates}")


def rotation(system: System) -> None:
    """10 sign-ins started, the RSA key replaced, then the 10 callbacks at once (new users, SQLite)."""
    flows = [system.start_sign_in(system.user(n, prefix="rotated")) for n in range(ROTATION_PARALLEL)]
    system.op.rotate("RSA")  # the callbacks' ID tokens are signed with a key the site has not seen
    before = Counter(system.op.hits)

    def finish(flow: Flow) -> str | None:
        try:
            system.finish_sign_in(flow)
        except (SignInFailed, requests.RequestException, KeyError, ValueError) as exc:
            return str(exc)[:300]
        return None

    with ThreadPoolExecutor(max_workers=ROTATION_PARALLEL) as pool:
        errors = [e for e in pool.map(finish, flows) if e is not None]
    hits = Counter(system.op.hits) - before
    system.rotation = {"failed": len(errors), "errors": errors[:3], "jwks": hits["/jwks"], "discovery": hits[DISCOVERY]}


# --- the report ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def per_sign_in(hits: Counter[str], attempts: int) -> tuple[float, str]:
    names = {DISCOVERY: "discovery", "/jwks": "JWKS", "/token": "token", "/userinfo": "userinfo"}
    total = sum(hits.values()) / attempts if attempts else 0.0
    parts = [f"{names.get(path, path)} {count / attempts:.2g}" for path, count in sorted(hits.items()) if count]
    return total, ", ".join(parts) or "none"


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def worlds_table(everything: list[System]) -> list[str]:
    """Both worlds side by side, system by system: what a person signing in feels."""
    lines = [
        f"Both worlds: the provider on loopback (plain HTTP, ~1 ms) and distant (TLS, {LATENCY_MS:g} ms per answer, "
        f"{2 * LATENCY_MS:g} ms more per new connection), measured in the same interleaved rounds.",
        "",
        "| system | provider | callback p50 ms | callback p95 ms | whole sign-in p50 ms | sign-ins/s "
        "| outbound calls/sign-in | new provider connections/sign-in |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    order = {"ours": 0, "allauth": 1, "mozilla": 2}
    for s in sorted(everything, key=lambda s: (order.get(s.key, 9), WORLDS.index(s.world))):
        if s.failed is not None or not s.callbacks:
            reason = (s.failed or "no sign-in succeeded").splitlines()[0][:150].replace("|", "\\|")
            lines.append(f"| {s.label} | {s.world} | failed: {reason} | | | | | |")
            continue
        rate = s.throughput_done / s.throughput_seconds if s.throughput_seconds else 0.0
        total, breakdown = per_sign_in(s.latency_hits, s.latency_attempts)
        connections = s.latency_connections / s.latency_attempts if s.latency_attempts else 0.0
        lines.append(
            f"| {s.label} | {s.world} | {p50_ms(s.callbacks):.1f} | {percentile(s.callbacks, 0.95) * 1e3:.1f} "
            f"| {p50_ms(s.totals):.1f} | {rate:.1f} | {total:.2f} ({breakdown}) | {connections:.2f} |"
        )
    return [*lines, ""]


def overhead_table(systems: list[System]) -> list[str]:
    """Each system's callback above Django's floor (loopback): the work its own code adds to a sign-in."""
    ours = systems[0]
    if not ours.floor:
        return []
    floor = p50_ms(ours.floor)
    lines = [
        f"Overhead above Django's floor (loopback; the floor, `login()` alone on our server, is {floor:.1f} ms p50, "
        f"CPU {p50_ms(ours.floor_cpu) if ours.floor_cpu else 0:.1f} ms):",
        "",
        "| system | callback p50 minus floor, ms | callback CPU p50 minus floor CPU, ms |",
        "| --- | ---: | ---: |",
    ]
    for s in systems:
        if s.failed is None and s.callbacks:
            cpu = f"{p50_ms(s.callback_cpu) - p50_ms(ours.floor_cpu):.1f}" if s.callback_cpu and ours.floor_cpu else "?"
            lines.append(f"| {s.label} | {p50_ms(s.callbacks) - floor:.1f} | {cpu} |")
    return [*lines, ""]


def world_goals(everything: list[System], systems: list[System]) -> list[str]:
    """Issue 24's sign-in goals: distance costs one round trip, no handshake per sign-in, less overhead."""

    def verdict(ok: bool | None, text: str) -> str:
        return f"{'NOT MEASURED' if ok is None else 'PASS' if ok else 'FAIL'}: {text}"

    out = []
    mine = {s.world: s for s in everything if s.key == "ours" and s.failed is None and s.callbacks}
    goal = f"callback p50 with a distant provider at most the loopback p50 + one round trip ({LATENCY_MS:g} ms) + 3 ms"
    if "loopback" in mine and "distant" in mine:
        near, far = p50_ms(mine["loopback"].callbacks), p50_ms(mine["distant"].callbacks)
        figures = f"{far:.1f} ms vs {near:.1f} + {LATENCY_MS:g} + 3 = {near + LATENCY_MS + 3:.1f} ms"
        out.append(verdict(far <= near + LATENCY_MS + 3, f"{goal} ({figures})"))
    else:
        out.append(verdict(None, goal))
    goal = "no TLS handshake per sign-in (persistent connections to the provider)"
    if "distant" in mine:
        s = mine["distant"]
        per = s.latency_connections / s.latency_attempts if s.latency_attempts else 0.0
        figures = f"{s.latency_connections} new connections in {s.latency_attempts} timed sign-ins: {per:.2f} each"
        out.append(verdict(per <= 0.05, f"{goal} ({figures})"))
    else:
        out.append(verdict(None, goal))
    goal = "overhead above Django's floor at most half the faster peer's"
    ours = systems[0]
    peers = [s for s in systems[1:] if s.failed is None and s.callbacks]
    if ours.floor and ours.callbacks and peers:
        floor = p50_ms(ours.floor)
        faster = min(peers, key=lambda s: p50_ms(s.callbacks))
        mine_over, theirs = p50_ms(ours.callbacks) - floor, p50_ms(faster.callbacks) - floor
        figures = f"{mine_over:.1f} ms vs {faster.label} {theirs:.1f} ms: {mine_over / theirs:.2f}x"
        out.append(verdict(mine_over <= theirs / 2, f"{goal} ({figures})"))
    else:
        out.append(verdict(None, f"{goal} (no peer, or no floor, measured)"))
    return out


def render(
    systems: list[System],
    micro_result: dict[str, Any] | None,
    machine: dict[str, str],
    everything: list[System],
    api_result: dict[str, Any] | None = None,
    profile_text: str = "",
) -> str:
    ours = systems[0]
    peers = [s for s in systems[1:] if s.failed is None and s.callbacks]
    faster = min(peers, key=lambda s: statistics.median(s.callbacks)) if peers else None
    best_rate = max((s.throughput_done / s.throughput_seconds for s in peers if s.throughput_seconds), default=0.0)
    lines = [
        "# Sign-in benchmark: this app, django-allauth, mozilla-django-oidc",
        "",
        f"- date: {machine['date']}",
        f"- machine: `{machine['uname']}`, {machine['cpu']}, {machine['cores']} cores; load average at start "
        f"{machine['load_start']}, at end {machine['load_end']}",
        f"- Python {platform.python_version()}, Django {ours.versions.get('django', '?')}, gunicorn "
        f"{importlib.metadata.version('gunicorn')} ({WORKERS} sync workers each), SQLite {machine['sqlite']}",
        f"- the same for all: SQLite with our `OPTIONS` `{machine['sqlite_options']}`, a local-memory cache, "
        "database sessions, our Django/WhiteNoise middleware, DEBUG off, one provider double each",
        f"- command: `make bench` ({ROUNDS} interleaved rounds of {PER_ROUND} sign-ins per system; "
        f"{SLICES} x {SLICE_SECONDS:g} s of {THREADS} parallel browsers per system)",
        *busy_note(machine),
        "",
        *worlds_table(everything),
        *overhead_table(systems),
        f"Details, {WORLDS[0]} provider:",
        "",
        "| system | callback p50 ms | callback p95 ms | p50 ÷ faster peer | callback CPU p50 ms | sign-ins/s "
        "| ÷ best peer | outbound calls/sign-in | SQL queries/callback (writes) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for s in systems:
        if s.failed is not None or not s.callbacks:
            reason = (s.failed or "no sign-in succeeded").splitlines()[0][:150].replace("|", "\\|")
            lines.append(f"| {s.label} | failed: {reason} | | | | | | | |")
            continue
        p50, p95 = statistics.median(s.callbacks) * 1e3, percentile(s.callbacks, 0.95) * 1e3
        rate = s.throughput_done / s.throughput_seconds if s.throughput_seconds else 0.0
        ratio = f"{p50 / (statistics.median(faster.callbacks) * 1e3):.2f}" if faster else "n/a"
        rate_ratio = f"{rate / best_rate:.2f}" if best_rate else "n/a"
        total, breakdown = per_sign_in(s.latency_hits, s.latency_attempts)
        queries = f"{s.returning_queries[0]} ({s.returning_queries[1]})" if s.returning_queries else "?"
        cpu = f"{statistics.median(s.callback_cpu) * 1e3:.1f}" if s.callback_cpu else "?"
        lines.append(
            f"| {s.label} | {p50:.1f} | {p95:.1f} | {ratio} | {cpu} | {rate:.1f} | {rate_ratio} "
            f"| {total:.2f} ({breakdown}) | {queries} |"
        )
    if ours.floor:
        p50, p95 = statistics.median(ours.floor) * 1e3, percentile(ours.floor, 0.95) * 1e3
        ratio = f"{p50 / (statistics.median(faster.callbacks) * 1e3):.2f}" if faster else "n/a"
        cpu = f"{statistics.median(ours.floor_cpu) * 1e3:.1f}" if ours.floor_cpu else "?"
        lines.append(
            f"| Django's floor: `login()` alone, no provider (ours' server) | {p50:.1f} | {p95:.1f} | {ratio} "
            f"| {cpu} | | | none | |"
        )
    lines += ["", "## Goals (this app)", ""]
    lines += [f"- {verdict}" for verdict in [*world_goals(everything, systems), *goals(ours, faster, micro_result)]]
    lines += ["", *api_section(micro_result, api_result)]
    if profile_text:
        lines += ["## What remains: a profile", "", profile_text, ""]
    lines += ["## Details", ""]
    if micro_result:
        rsa, ec = micro_result["raw_rsa_verify"], micro_result["raw_ec_verify"]
        lines += [
            f"ID token verification, µs/op (median of interleaved batches, {micro_result['ops_each']} ops each, "
            f"JWKS fetches while timing: {micro_result['jwks_fetches_while_timing']}):",
            "",
            "| operation | µs/op | ÷ raw verify |",
            "| --- | ---: | ---: |",
            f"| `verify_id_token` RS256 (steady state) | {micro_result['verify_id_token_rs256']:.1f} "
            f"| {micro_result['verify_id_token_rs256'] / rsa:.2f} |",
            f"| raw `cryptography` RSA-2048 PKCS1v15 SHA-256 verify | {rsa:.1f} | 1.00 |",
            f"| `verify_id_token` ES256 (steady state) | {micro_result['verify_id_token_es256']:.1f} "
            f"| {micro_result['verify_id_token_es256'] / ec:.2f} |",
            f"| raw `cryptography` ECDSA P-256 SHA-256 verify | {ec:.1f} | 1.00 |",
            "",
        ]
    lines += [
        "| system | versions | whole sign-in p50 ms | failed sign-ins | outbound calls in the throughput run "
        "| first sign-in SQL (writes) | server CPU per sign-in ms | driver CPU share | after key rotation |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for s in systems:
        if s.failed is not None or not s.callbacks:
            lines.append(f"| {s.label} | {versions_text(s)} | | | | | | | |")
            continue
        total, breakdown = per_sign_in(s.throughput_hits, s.throughput_done + len(s.throughput_failures))
        cpu_ms = s.server_cpu / s.throughput_done * 1e3 if s.throughput_done else 0.0
        driver = s.driver_cpu / s.throughput_seconds / (os.cpu_count() or 1) if s.throughput_seconds else 0.0
        rot = s.rotation or {}
        rotated = "not run"
        if rot:
            signed_in = f"{ROTATION_PARALLEL - rot['failed']}/{ROTATION_PARALLEL} signed in"
            rotated = f"{signed_in}; JWKS fetches {rot['jwks']}, discovery {rot['discovery']}"
        first = f"{s.first_queries[0]} ({s.first_queries[1]})" if s.first_queries else "?"
        failures = f"{len(s.latency_failures)}/{s.latency_attempts} timed, {len(s.throughput_failures)} parallel"
        lines.append(
            f"| {s.label} | {versions_text(s)} | {statistics.median(s.totals) * 1e3:.1f} | {failures} "
            f"| {total:.2f} ({breakdown}) | {first} | {cpu_ms:.1f} | {driver:.0%} | {rotated} |"
        )
    lines += [
        "",
        "Callback: the GET of the redirect URI with the provider's code, as a browser sends it, to its 302 "
        "(token request, ID token checks, user lookup, login, session save). Callback CPU: the server worker's "
        "CPU time for that request (Django's middleware and view; waiting for the provider or for a CPU does not "
        "count), which a busy machine inflates less than wall time. Whole sign-in: from the GET of the "
        "login URL to the callback's answer. Every sign-in is a fresh browser signing in as a returning user and "
        "is checked on `/whoami/`. Outbound calls: requests the system sent to its provider per sign-in, from the "
        "provider double's counters (the authorization step is the browser's, not counted). Driver CPU share: the "
        "benchmark process (browsers and provider doubles) as a share of the machine during the parallel run. "
        "Django's floor: a bench-only view on our server (`bench/peers/ours_urls.py`) that finds a user, calls "
        "Django's `login()` and lets the session middleware save the database session, for a fresh browser, "
        "timed like a callback in the same rounds: what any Django sign-in on this stack costs before a provider "
        "is asked anything.",
        "",
        "Not the same, and not fixable here: django-allauth does not check the ID token's signature in the code "
        "flow (it trusts the channel to the token endpoint), so it fetches no JWKS and verifies nothing; "
        "mozilla-django-oidc checks neither `aud` nor `iss`; this app applies every rule of OpenID Connect Core "
        "3.1.3.7. The loopback provider is plain HTTP and answers in about a millisecond, one request per "
        "connection; the distant one is the same double over TLS (a throwaway certificate the servers trust "
        "through `REQUESTS_CA_BUNDLE`), with persistent connections and a fixed delay per answer and per new "
        "connection: a stand-in for distance, with no jitter or packet loss. "
        "The provider doubles and the browsers share the machine's cores with the servers.",
    ]
    for s in systems:
        if s.failed:
            lines += ["", f"{s.label} failed:", "", "```", s.failed[-1500:], "```"]
        elif s.latency_failures or s.throughput_failures or (s.rotation and s.rotation["errors"]):
            sample = (s.latency_failures + s.throughput_failures + (s.rotation or {}).get("errors", []))[:3]
            lines += ["", f"{s.label}, first failures:", "", *[f"- `{e}`" for e in sample]]
    return "\n".join(lines) + "\n"


def busy_note(machine: dict[str, str]) -> list[str]:
    """A warning when other processes kept the machine busy: the absolute numbers are then inflated."""
    try:
        load = max(float(machine["load_start"].split()[0]), float(machine["load_end"].split()[0]))
    except (ValueError, IndexError):
        return []
    cores = int(machine["cores"]) if machine["cores"].isdigit() else 1
    if load <= cores:
        return []
    return [
        f"- **the machine was busy** (load average up to {load:.1f} on {cores} cores, other processes included): "
        "absolute times are inflated and vary between runs; compare the systems within this run"
    ]


def versions_text(system: System) -> str:
    if system.key == "ours":
        return "this checkout"
    name = PEERS[system.key][0]
    return f"{name} {system.versions.get(name, '?')}"


def goals(ours: System, faster: System | None, micro_result: dict[str, Any] | None) -> list[str]:
    """The issue's goals for this app, each PASS, FAIL or NOT MEASURED, with the figures behind it."""

    def verdict(ok: bool | None, text: str) -> str:
        return f"{'NOT MEASURED' if ok is None else 'PASS' if ok else 'FAIL'}: {text}"

    out = []
    goal = "callback p50 at most half the faster peer's"
    if ours.callbacks and faster is not None:
        mine, theirs = statistics.median(ours.callbacks) * 1e3, statistics.median(faster.callbacks) * 1e3
        figures = f"{mine:.1f} ms vs {faster.label} {theirs:.1f} ms: {mine / theirs:.2f}x"
        if ours.floor:
            floor = statistics.median(ours.floor) * 1e3
            figures += (
                f"; Django's floor on the same server, `login()` alone with no provider, is {floor:.1f} ms "
                f"({floor / theirs:.2f}x): the goal leaves {theirs / 2 - floor:.1f} ms for the token call, "
                "the ID token checks and the sign-in's writes"
            )
        out.append(verdict(mine <= theirs / 2, f"{goal} ({figures})"))
    else:
        out.append(verdict(None, f"{goal} (no peer, or no sign-in of ours, measured)"))

    goal = "verification at most 2x raw RSA verify"
    if micro_result:
        ratio = micro_result["verify_id_token_rs256"] / micro_result["raw_rsa_verify"]
        out.append(verdict(ratio <= 2, f"{goal} ({ratio:.2f}x)"))
    else:
        out.append(verdict(None, goal))

    steady = ours.latency_hits + ours.throughput_hits
    attempts = ours.latency_attempts + ours.throughput_done + len(ours.throughput_failures)
    measured = bool(attempts and ours.callbacks)
    goal = "0 discovery and 0 JWKS fetches per steady-state sign-in"
    figures = f"{steady[DISCOVERY]} discovery and {steady['/jwks']} JWKS fetches in {attempts} sign-ins"
    no_fetches = steady[DISCOVERY] == 0 and steady["/jwks"] == 0
    out.append(verdict(no_fetches if measured else None, f"{goal} ({figures})"))

    goal = "one outbound call per sign-in, the token endpoint only"
    calls, breakdown = per_sign_in(steady, attempts)
    only_token = set(+steady) == {"/token"} and steady["/token"] == attempts
    out.append(verdict(only_token if measured else None, f"{goal} ({calls:.2f}: {breakdown})"))

    goal = f"no failed sign-in among {ROTATION_PARALLEL} parallel ones on SQLite after a key rotation"
    rot = ours.rotation
    if rot:
        out.append(verdict(rot["failed"] == 0, f"{goal} ({rot['failed']} failed, {rot['jwks']} JWKS fetches)"))
    else:
        out.append(verdict(None, goal))
    return out


# --- the API side: one bearer token checked per request --------------------------------------------

API_AUDIENCE = "https://api.bench.example"  # bench/peers/ours_urls.py's
API_ENDPOINTS = ["decorator", "mw", "drf", "async"]


def api_token(op: OpenIDProviderDouble, sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": op.issuer, "sub": sub, "aud": API_AUDIENCE, "exp": now + 3600, "iat": now,
        "jti": os.urandom(8).hex(), "client_id": op.client_id, "scope": "openid",
    }  # fmt: skip
    return op.sign(claims, alg="RS256", header={"typ": "at+jwt", "kid": op.signing_key_for("RS256").kid})


def api_ready(system: System, path: str, token: str) -> None:
    """Sign in until every worker has the discovery document (bearer requests never fetch it)."""
    ok = 0
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(80):  # a new connection each time: uvicorn keeps one on the worker that accepted it
        status = requests.get(system.url + path, headers=headers, timeout=TIMEOUT).status_code
        if status == 200:
            ok += 1
            if ok >= 20:
                return
            continue
        ok = 0
        system.sign_in(system.users[0])
    raise SignInFailed(f"{path} never answered 200 on every worker (last {status})")


def api_peer(ours: System, workroot: Path, shared: dict[str, str], ca_bundle: str) -> System | None:
    """drf-oidc-auth on gunicorn against ``ours``'s provider, its users made as it resolves them (username = sub)."""
    peer = System("drfoidc", "drf-oidc-auth", "/", ours.op, ours.world)
    try:
        set_up_peer(peer, workroot / "drfoidc", shared, ca_bundle)
        assert peer.server is not None
        subs = json.dumps([user["sub"] for user in ours.users])
        make = f"from django.contrib.auth.models import User; [User.objects.create(username=s) for s in {subs}]"
        run([str(peer.server.python), "-m", "django", "shell", "-c", make], cwd=peer.server.cwd, env=peer.server.env)
    except Exception as exc:  # reported as not measured, the rest goes on
        log(f"    drf-oidc-auth not measured: {str(exc)[:500]}")
        if peer.server is not None:
            peer.server.stop()
        return None
    return peer


def api_throughput(ours: System, workroot: Path, peer: System | None = None) -> dict[str, Any]:
    """Requests per second through gunicorn (2 workers) for each way of protecting a view, interleaved.

    Each of THREADS clients sends its own user's token again and again (as an app does for the
    token's lifetime), keep-alive where the server allows it. ``async`` is the same decorator on an
    ``async def`` view, served by gunicorn's uvicorn workers from the same project and database.
    """
    import dataclasses

    assert ours.server is not None
    asgi_server = Server(
        ours.server.python, "project.asgi", cwd=ours.server.cwd, env=ours.server.env,
        log_path=workroot / "asgi.log", worker_class="uvicorn_worker.UvicornWorker",
    )  # fmt: skip
    asgi_server.start()
    try:
        asgi = dataclasses.replace(ours, server=asgi_server)
        token = api_token(ours.op, ours.users[0]["sub"])
        endpoints = [*API_ENDPOINTS]
        for endpoint in API_ENDPOINTS:
            api_ready(asgi if endpoint == "async" else ours, f"/bench-api/{endpoint}/", token)
        if peer is not None:
            status = requests.get(
                peer.url + "/bench-api/drf/", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
            ).status_code
            if status == 200:
                endpoints.append("drfoidc")
            else:
                tail = peer.server.log()[-1500:] if peer.server else ""
                log(f"    drf-oidc-auth answered {status}: not measured\n{tail}")
        done: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        for slice_no in range(SLICES):
            order = endpoints[slice_no % len(endpoints) :] + endpoints[: slice_no % len(endpoints)]
            for endpoint in order:
                system = {"async": asgi, "drfoidc": peer}.get(endpoint) or ours
                url = f"{system.url}/bench-api/{'drf' if endpoint == 'drfoidc' else endpoint}/"
                deadline = time.monotonic() + SLICE_SECONDS
                tally = threading.Lock()

                def client(
                    n: int, url: str = url, endpoint: str = endpoint, deadline: float = deadline, tally=tally
                ) -> None:
                    session = requests.Session()
                    headers = {"Authorization": f"Bearer {api_token(ours.op, ours.users[n % len(ours.users)]['sub'])}"}
                    while time.monotonic() < deadline:
                        try:
                            ok = session.get(url, headers=headers, timeout=TIMEOUT).status_code == 200
                        except requests.RequestException:
                            ok = False
                        with tally:
                            (done if ok else failed)[endpoint] += 1

                start = time.monotonic()
                with ThreadPoolExecutor(max_workers=THREADS) as pool:
                    list(pool.map(client, range(THREADS)))
                seconds[endpoint] += time.monotonic() - start
            rates = ", ".join(f"{e} {done[e] / seconds[e]:.0f}/s" for e in endpoints if seconds[e])
            log(f"API slice {slice_no + 1}/{SLICES}: {rates}")
        return {e: {"rps": done[e] / seconds[e], "failed": failed[e], "done": done[e]} for e in endpoints}
    finally:
        asgi_server.stop()
        if peer is not None and peer.server is not None:
            peer.server.stop()


def api_section(micro_result: dict[str, Any] | None, api: dict[str, Any] | None) -> list[str]:
    """The API rows and goals: µs per protected request in-process, requests per second through gunicorn."""
    lines = ["## The API side: one bearer token per request", ""]
    goals_out = []

    def verdict(ok: bool | None, text: str) -> str:
        return f"{'NOT MEASURED' if ok is None else 'PASS' if ok else 'FAIL'}: {text}"

    if micro_result and "api_machine_new_token" in micro_result:
        m = micro_result
        raw = m["raw_rsa_verify"]
        lines += [
            "In-process, µs per `api.authenticate` call (what the decorator, the middleware and DRF call), median "
            "of interleaved batches, SQLite in memory, local-memory cache:",
            "",
            "| case | µs/request | ÷ raw verify |",
            "| --- | ---: | ---: |",
        ]
        for key, text in (
            ("api_machine_new_token", "machine client's token, new (full verification, provider row kept)"),
            ("api_machine_repeated_token", "machine client's token, repeated (verified-token cache)"),
            ("api_user_new_token", "user's token, new (+ identity and user read, admission)"),
            ("api_user_repeated_token", "user's token, repeated (identity and user still read, admission asked)"),
        ):
            lines.append(f"| {text} | {m[key]:.1f} | {m[key] / raw:.2f} |")
        lines += [f"| raw `cryptography` RSA-2048 PKCS1v15 SHA-256 verify (same key size) | {raw:.1f} | 1.00 |", ""]
        repeated, new = m["api_machine_repeated_token"], m["api_machine_new_token"]
        goals_out.append(
            verdict(repeated <= 20, f"a repeated token costs at most 20 µs of our code ({repeated:.1f} µs)")
        )
        goals_out.append(
            verdict(new <= 3 * raw, f"a new token at most 3x a raw verification ({new:.1f} µs: {new / raw:.2f}x)")
        )
    else:
        goals_out += [verdict(None, "a repeated token costs at most 20 µs"), verdict(None, "a new token at most 3x")]
    if api:
        lines += [
            f"Through gunicorn ({WORKERS} workers; async: uvicorn workers), {THREADS} clients each repeating its "
            "user's token, requests per second:",
            "",
            "| system | requests/s | failed |",
            "| --- | ---: | ---: |",
        ]
        names = {
            "decorator": "this app, `bearer_token_required`",
            "mw": "this app, `BearerTokenMiddleware`",
            "drf": "this app, DRF `BearerTokenAuthentication`",
            "async": "this app, `bearer_token_required` on an `async def` view (ASGI)",
            "drfoidc": "drf-oidc-auth 4.0.0, `JSONWebTokenAuthentication` (JWKS)",
        }
        for key, row in api.items():
            lines.append(f"| {names.get(key, key)} | {row['rps']:.0f} | {row['failed']} |")
        lines.append("")
    goal = "requests per second at least 1.5x drf-oidc-auth's"
    if api and "drfoidc" in api and api["drfoidc"]["rps"]:
        theirs = api["drfoidc"]["rps"]
        mine = min(api[e]["rps"] for e in API_ENDPOINTS if e in api and e != "async")
        figures = f"slowest of ours (decorator, middleware, DRF) {mine:.0f}/s vs {theirs:.0f}/s: {mine / theirs:.2f}x"
        goals_out.append(verdict(mine >= 1.5 * theirs, f"{goal} ({figures})"))
    else:
        goals_out.append(verdict(None, f"{goal} (drf-oidc-auth not in this run)"))
    goals_out.append(verdict(None, "mozilla-django-oidc's DRF authentication (userinfo per request): not in this run"))
    return [*lines, "Goals (API):", "", *[f"- {g}" for g in goals_out], ""]


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    """Measure in a temporary folder (the generated projects, databases and server logs), then remove it."""
    workroot = Path(tempfile.mkdtemp(prefix="accounts-bench-"))
    try:
        return bench(workroot)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept the projects and server logs in {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)


def bench(workroot: Path) -> int:
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    log(f"bench: {ROUNDS}x{PER_ROUND} timed sign-ins and {SLICES}x{SLICE_SECONDS:g}s parallel per system")
    micro_result: dict[str, Any] | None = None
    api_result: dict[str, Any] | None = None
    machine: dict[str, str] = {"sqlite_options": "?"}
    systems: list[System] = []
    tls, ca_bundle = self_signed_tls(workroot)
    with contextlib.ExitStack() as stack:

        def double(world: str) -> OpenIDProviderDouble:
            if world == "distant":
                distant = OpenIDProviderDouble(tls=tls, latency=LATENCY_MS / 1000, keep_alive=True)
                return stack.enter_context(distant)
            return stack.enter_context(OpenIDProviderDouble())

        everything = []
        for world in WORLDS:
            everything += [
                System("ours", "**this app (accounts)**", "/accounts/bench/login/", double(world), world),
                System("allauth", "django-allauth", "/accounts/oidc/op/login/", double(world), world),
                System("mozilla", "mozilla-django-oidc", "/oidc/authenticate/", double(world), world),
            ]
        everything = [s for s in everything if s.key == "ours" or s.key in PEER_KEYS]
        # The details below are the loopback world's (or the only world's); the first table has both.
        systems = [s for s in everything if s.world == WORLDS[0]]
        try:
            log("(a) verify_id_token vs raw cryptography, same process")
            try:
                micro_result = m = micro()
                log(f"    RS256 {m['verify_id_token_rs256']:.1f} µs vs raw RSA {m['raw_rsa_verify']:.1f} µs")
                log(f"    ES256 {m['verify_id_token_es256']:.1f} µs vs raw EC {m['raw_ec_verify']:.1f} µs")
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                log(f"    not measured: {str(exc)[:1000]}")
            shared: dict[str, str] = {}
            for system in [s for s in everything if s.key == "ours"]:
                log(f"starting this app on gunicorn ({system.world} provider)")
                shared = set_up_ours(system, workroot / f"ours-{system.world}", ca_bundle)
            machine["sqlite_options"] = shared["BENCH_SQLITE_OPTIONS"]
            log(f"    the peers get our SQLite options {shared['BENCH_SQLITE_OPTIONS']} and middleware")
            for system in [s for s in everything if s.key != "ours"]:
                log(f"starting {system.label} on gunicorn ({system.world} provider)")
                try:
                    set_up_peer(system, workroot / f"{system.key}-{system.world}", shared, ca_bundle)
                except Exception as exc:  # reported as a failed peer, the others go on
                    system.failed = f"set-up failed: {exc}"
                    log(f"    {system.label} failed: {str(exc)[:500]}")
            for system in everything:
                if system.failed is None:
                    try:
                        warm_up(system)
                        queries = f"first {system.first_queries}, returning {system.returning_queries}"
                        log(f"{system.key}: signs in; SQL (queries, writes) per callback: {queries}")
                    except (SignInFailed, requests.RequestException, KeyError, ValueError) as exc:
                        log_tail = system.server.log()[-1500:] if system.server else ""
                        system.failed = f"does not sign in: {exc}\n{log_tail}"
                        log(f"    {system.label} does not sign in: {str(exc)[:500]}")
            running = [s for s in everything if s.failed is None]
            latency_rounds(running)
            running = [s for s in running if s.failed is None]
            throughput(running)
            api_system = next((s for s in running if s.key == "ours" and s.world == WORLDS[-1]), None)
            if api_system is not None and os.environ.get("BENCH_API", "1") == "1":
                log("API: requests per second through gunicorn")
                try:
                    peer = None
                    if PEER_KEYS and os.environ.get("BENCH_API_PEER", "1") == "1":
                        peer = api_peer(api_system, workroot, shared, ca_bundle)
                    api_result = api_throughput(api_system, workroot, peer)
                except (SignInFailed, requests.RequestException, RuntimeError) as exc:
                    log(f"    API not measured: {str(exc)[:500]}")
            for system in [s for s in running if s.world == WORLDS[0]]:
                rotation(system)
                log(f"{system.key}: after a key rotation {system.rotation}")
        finally:
            for system in everything:
                if system.server is not None:
                    system.server.stop()
    machine |= {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "load_start": load_start,
        "load_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?",
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    profile_text = ""
    if os.environ.get("BENCH_PROFILE", "1") == "1":
        log("profile of a callback and an API call (bench/profiles.py)")
        try:
            profile_text = profiles()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"    not profiled: {str(exc)[:500]}")
    report = render(systems, micro_result, machine, everything, api_result, profile_text)
    RESULTS.write_text(report)
    print("\n" + report, flush=True)
    log(f"written to {RESULTS}")
    ours = systems[0]
    return 1 if ours.failed is not None or not ours.callbacks else 0  # a benchmark of nothing is a failure


if __name__ == "__main__":
    sys.exit(main())
