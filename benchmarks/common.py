"""Shared pieces of the benchmarks: the workload, timing, percentiles and RSS."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ORDER = {"customer": "bench", "items": [{"sku": "SKU-1", "qty": 1, "price": 1.0}]}
STEPS = ("payment", "packing", "shipping")
HERE = Path(__file__).resolve().parent


def noop(ctx):
    return None


NOOP_HANDLERS = {step: noop for step in STEPS}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(script: str, *args: str, timeout: float = 900) -> dict:
    """Run one measurement in a fresh interpreter (clean heap, own peak RSS); its last
    stdout line is a JSON object."""
    out = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    print(json.dumps(result, sort_keys=False), flush=True)
