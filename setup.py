"""Build hook: a wheel carries the dashboard's page files (everything else is in pyproject.toml).

templates/, static/ and the pinned browser libraries stay where the repository keeps them (at
its top level and in node_modules); `build_py` copies them into the built package as
dashboard/web/, which dashboard/assets.py prefers when it exists. A hook, not package-data:
package-data only takes files from inside a package's folder, and the libraries are three
files picked out of node_modules. An editable install copies nothing and keeps reading the
checkout, so `make run` shows edits at once. Build from a checkout after `npm ci` (make's
set-up); a missing file stops the build instead of making a wheel with a blank dashboard.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# The file, not the package: importing `dashboard` would need Flask in the build environment.
ASSETS = runpy.run_path(str(ROOT / "dashboard" / "assets.py"))


def _copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise SystemExit(f"cannot build orderflow: {source} is missing (run `npm ci` first)")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, target)


class BuildWithPageFiles(build_py):
    """build_py, then the page's files into <build>/dashboard/web/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        web = Path(self.build_lib) / "dashboard" / "web"
        shutil.rmtree(web, ignore_errors=True)  # nothing stale from an earlier build
        for folder in ("templates", "static"):
            _copy(ROOT / folder, web / folder)
        node_modules = ROOT / "node_modules"
        for relative in [*ASSETS["VENDOR"].values(), *ASSETS["VENDOR_LICENCES"]]:
            _copy(node_modules / relative, web / "vendor" / relative)


setup(cmdclass={"build_py": BuildWithPageFiles})
