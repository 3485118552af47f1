"""Start-up configuration, run in a fresh interpreter as a deployment would start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CACHE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_key_fails_with_one_sentence():
    result = _check({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "DJANGO_SECRET_KEY is not set: set it in the environment or in .env "
        "(or set DJANGO_DEBUG=1 for local development)."
    )
    assert "Traceback" not in result.stderr


def test_production_with_secret_key_starts_without_the_dev_identity_provider():
    code = "import django; django.setup(); from django.conf import settings; print('devidp' in settings.INSTALLED_APPS)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_database_and_cache_come_from_the_environment(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME']); "
        "print(s.CACHES['default']['BACKEND']); print(s.ALLOWED_HOSTS)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        "CACHE_URL": "redis://127.0.0.1:6379/3",
        "DJANGO_ALLOWED_HOSTS": "a.example,b.example",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    db, cache, hosts = result.stdout.strip().splitlines()
    assert db == f"django.db.backends.sqlite3 {tmp_path}/x.sqlite3"
    assert cache == "django.core.cache.backends.redis.RedisCache"
    assert hosts == "['a.example', 'b.example']"


def _production(extra: dict[str, str] | None = None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CACHE_URL"))}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 10 + "a-production-grade-secret-of-fifty-characters-or-more",
        "DJANGO_ALLOWED_HOSTS": "accounts.example",
        **(extra or {}),
    }


def test_production_settings_pass_the_deployment_checklist():
    """``check --deploy`` with nothing but a secret and a host: https redirect, HSTS, secure cookies."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_behind_a_tls_proxy_the_forwarded_scheme_is_trusted_only_when_told():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None), s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
    )
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], cwd=ROOT, env=_production(extra), capture_output=True, text=True, timeout=60
    )
    assert run({}).stdout.strip() == "None True 31536000"
    assert run({"DJANGO_BEHIND_TLS_PROXY": "1"}).stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https') True 31536000"


@pytest.mark.django_db
def test_redirect_uri_is_https_behind_a_tls_proxy(client, provider, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/accounts/test-op/login/", HTTP_X_FORWARDED_PROTO="https")
    assert "redirect_uri=https%3A%2F%2Ftestserver" in response["Location"]
