"""``make bench`` keeps working: the benchmark once over, this app alone, in seconds.

The benchmark is no test (its figures vary with the machine), but its command is in the README,
and a change of the app once broke it silently. This runs it with the smallest knobs and no peers
(installing them needs a package index) and checks the report it writes, not its figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_and_reports_every_goal(tmp_path):
    results = tmp_path / "results.md"
    env = {
        **os.environ,
        "BENCH_PEERS": "",
        "BENCH_ROUNDS": "1",
        "BENCH_PER_ROUND": "3",
        "BENCH_SLICES": "1",
        "BENCH_SLICE_SECONDS": "1",
        "BENCH_THREADS": "2",
        "BENCH_MICRO_BATCHES": "2",
        "BENCH_RESULTS": str(results),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = results.read_text()
    assert "| **this app (accounts)** |" in report
    assert "| Django's floor: `login()` alone, no provider" in report
    for goal in (
        "NOT MEASURED: callback p50 at most half the faster peer's",  # no peer in this run
        "verification at most 2x raw RSA verify (",
        "PASS: 0 discovery and 0 JWKS fetches per steady-state sign-in",
        "PASS: one outbound call per sign-in, the token endpoint only",
        "PASS: no failed sign-in among 10 parallel ones on SQLite after a key rotation",
    ):
        assert goal in report, goal
