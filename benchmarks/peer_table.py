"""The README's comparison table, from the JSON lines of benchmarks/peers.py.

Prints the table (Markdown); with `--write README.md`, replaces the table between the
README's `<!-- peers table -->` and `<!-- /peers table -->` marks instead, so the table is
only ever what a run measured.

    python benchmarks/peer_table.py benchmarks/peers.jsonl [--write README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START, END = "<!-- peers table -->", "<!-- /peers table -->"
LABELS = {
    "orderflow": "orderflow, in memory",
    "orderflow-journal": "orderflow, SQLite journal",
    "dask": "Dask distributed (in memory)",
    "dbos": "DBOS Transact (SQLite)",
    "celery": "Celery + Redis (no persistence)",
}


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _cell(result: dict | None, ours: dict | None, workload: str) -> str:
    if result is None:
        return "not run"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    figure = (f"{result['seconds']:,.2f} s" if workload == "io"
              else f"{_number(result['tasks_per_s'])} steps/s")
    if result["peer"].startswith("orderflow") or ours is None or "skipped" in ours:
        return figure
    return f"{figure} (orderflow {ours['tasks_per_s'] / result['tasks_per_s']:.1f} × faster)"


def table(lines: list[dict]) -> str:
    """Rows: the systems; columns: each workload's figure and orderflow's ratio to it."""
    summary = next((line for line in lines if line.get("benchmark") == "peers"), None)
    results = {(line["peer"], line["workload"]): line for line in lines if "peer" in line}
    sizes = {w: next((r for (p, wl), r in results.items() if wl == w and p == "orderflow"), {})
             for w in ("io", "noop")}
    io, noop = sizes["io"], sizes["noop"]
    header = (f"| system | I/O orders: {io.get('orders', '?'):,} orders, 3 steps of 50–250 ms,"
              f" {io.get('in_flight', '?')} in flight: makespan |"
              f" no-op 3-step chains, {noop.get('in_flight', '?')} in flight: steps/s |")
    rows = [header, "|---|---|---|"]
    for system, label in LABELS.items():
        if not any(p == system for p, _ in results):
            continue
        ours = "orderflow-journal" if system in ("dbos", "orderflow-journal") else "orderflow"
        cells = [_cell(results.get((system, w)), results.get((ours, w)), w)
                 for w in ("io", "noop")]
        dbos_orders = results.get((system, "noop"), {}).get("orders")
        if dbos_orders and noop and dbos_orders != noop.get("orders"):
            cells[1] += f" ({dbos_orders:,} chains)"
        rows.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if summary:
        load = summary["load_average"]
        versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
        rows.append("")
        rows.append(f"Measured {summary['date']} by `python benchmarks/peers.py` on "
                    f"{summary['cores']} shared cores (load average {min(load):g}–{max(load):g}),"
                    f" each figure one run, every ratio from the same run; {versions}. "
                    "Dask and Celery are compared with orderflow in memory, DBOS with "
                    "orderflow's SQLite journal. Regenerate with "
                    "`python benchmarks/peer_table.py benchmarks/peers.jsonl --write README.md`.")
    return "\n".join(rows)


def replace_between_marks(text: str, body: str) -> str:
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"the marks {START} and {END} are not both in the file")
    return f"{head}{START}\n{body}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON lines of benchmarks/peers.py")
    parser.add_argument("--write", type=Path, help="a file with the marks (README.md)")
    args = parser.parse_args()
    lines = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    body = table(lines)
    if args.write:
        args.write.write_text(replace_between_marks(args.write.read_text(), body))
        print(f"{args.write}: the comparison table rewritten", file=sys.stderr)
        return
    print(body)


if __name__ == "__main__":
    main()
