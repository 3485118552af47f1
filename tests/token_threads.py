"""Run by ``tests/test_provider_tokens_concurrency.py`` in a process of its own: N threads, one identity.

``python -m tests.token_threads <identity pk> <threads>`` with the environment of a site process
(``tests.sites.SiteProcess.env``): its settings and its SQLite file. Every thread calls
``access_token(identity=...)`` at the same moment (a barrier) and the SHA-256 of what each got is
printed as JSON, so the test can compare it with what the provider double issued without any
token crossing a pipe.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading


def main(identity_pk: int, threads: int) -> None:
    import django

    django.setup()
    from django.db import connections

    from accounts import provider_tokens
    from accounts.models import Identity

    barrier = threading.Barrier(threads, timeout=30)
    results: list[str] = [""] * threads

    def worker(n: int) -> None:
        try:
            identity = Identity.objects.select_related("provider").get(pk=identity_pk)
            barrier.wait()
            token = provider_tokens.access_token(identity=identity)
            results[n] = hashlib.sha256(token.encode()).hexdigest()
        except Exception as exc:  # reported, not raised: the test reads every thread's outcome
            results[n] = f"error: {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    print(json.dumps(results))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
