"""`make vendor`: copy the dashboard's two browser libraries from node_modules into static/vendor/.

Run after `npm ci` (make does both): package-lock.json pins the versions, and
dashboard/assets.py names the files and their licences. The copies are committed, so running,
testing and building orderflow need no npm; only bumping a library does.
"""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The file, not the package: importing `dashboard` would need Flask.
ASSETS = runpy.run_path(str(ROOT / "dashboard" / "assets.py"))


def main() -> int:
    node_modules = ROOT / "node_modules"
    target = ROOT / "static" / "vendor"
    wanted = {**ASSETS["VENDOR"], **ASSETS["VENDOR_LICENCES"]}
    absent = [source for source in wanted.values() if not (node_modules / source).is_file()]
    if absent:
        print(f"cannot vendor: {', '.join(absent)} missing in {node_modules} (run `npm ci`)",
              file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        shutil.copyfile(node_modules / source, target / name)
        print(f"static/vendor/{name} <- node_modules/{source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
