"""The benchmarks keep working: each runs end to end at a tiny size and writes its JSON.

Speed is not asserted here (the machine is noisy; the benchmarks compare against a baseline measured
in the same run) — only that the benchmark runs, prints its table and reports its ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_sync_pods_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "sync_pods.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "sync_pods.py"),
            "--pods",
            "5",
            "--paced-pods",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "throughput ratio syncer/direct at 5 pods" in proc.stdout
    report = json.loads(out.read_text())
    modes = {run["mode"] for run in report["runs"]}
    assert modes == {"direct-to-host", "syncer", "syncer-paced", "ceiling-both-writes", "syncer-catch-up"}
    ratios = report["throughput_ratio"]["5"]
    assert set(ratios) == {"syncer", "catch_up", "ceiling"} and all(r > 0 for r in ratios.values())
    syncer_run = next(run for run in report["runs"] if run["mode"] == "syncer")
    assert syncer_run["extra"]["cpu_s:syncer-bench-0"] >= 0  # the CPU breakdown is there
    assert "CPU seconds per process" in proc.stdout


def test_proxy_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "proxy.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "proxy.py"),
            "--requests",
            "80",
            "--mb",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists(), proc.stdout[-2000:]
    assert json.loads(out.read_text())
