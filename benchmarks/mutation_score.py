"""Print the mutation score of the last `mutmut run` (`make mutation`), per mutated file.

Reads mutmut's per-file results (`mutants/<file>.meta`). A mutant counts as killed when a test
failed or timed out under it; one that survived, or that no test ran, counts against the score.
Survivors are listed by name: `mutmut show NAME` prints the change.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py): 1 and 3 a test failed, 36/24/152/255/-24 timeouts,
# 0 survived, 5/33 no test covers the function, 34 skipped, 37 caught by a type check.
KILLED = {1, 3, 36, 24, 152, 255, -24, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    rows, survivors, totals = [], [], Counter()
    for source in config["only_mutate"]:
        meta = root / "mutants" / f"{source}.meta"
        if not meta.exists():
            print(f"no results for {source}: run `make mutation` first", file=sys.stderr)
            return 1
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter()
        for name, code in codes.items():
            if code in KILLED:
                count["killed"] += 1
            elif code in SURVIVED:
                count["survived"] += 1
                survivors.append(name)
            elif code in NO_TESTS:
                count["no tests"] += 1
                survivors.append(f"{name} (no test runs it)")
            else:
                count["other"] += 1
                survivors.append(f"{name} (exit code {code})")
        count["total"] = len(codes)
        totals.update(count)
        rows.append((source, count))
    print(f"{'file':34} {'killed':>7} {'total':>6} {'score':>7}")
    for source, count in [*rows, ("all", totals)]:
        score = 100 * count["killed"] / count["total"] if count["total"] else 100.0
        print(f"{source:34} {count['killed']:>7} {count['total']:>6} {score:>6.1f}%")
    if survivors:
        print(f"\n{len(survivors)} not killed (`.venv/bin/mutmut show NAME` prints the change):")
        for name in sorted(survivors):
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
