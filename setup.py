"""Build hook: a wheel carries the dashboard's page files (everything else is in pyproject.toml).

templates/ and static/ (the two browser libraries vendored in static/vendor/ with their
licences) stay where the repository keeps them, at its top level; `build_py` copies them into
the built package as dashboard/web/, which dashboard/assets.py prefers when it exists. A hook,
not package-data: package-data only takes files from inside a package's folder. An editable
install copies nothing and keeps reading the checkout, so `make run` shows edits at once. No
npm is needed: a missing file stops the build instead of making a wheel with a blank dashboard.
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


class BuildWithPageFiles(build_py):
    """build_py, then the page's files into <build>/dashboard/web/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        vendored = [ROOT / "static" / "vendor" / name
                    for name in [*ASSETS["VENDOR"], *ASSETS["VENDOR_LICENCES"]]]
        absent = [str(path.relative_to(ROOT)) for path in vendored if not path.is_file()]
        if absent:
            raise SystemExit(f"cannot build orderflow: {', '.join(absent)} missing "
                             "(they are committed; `make vendor` copies them again from npm)")
        web = Path(self.build_lib) / "dashboard" / "web"
        shutil.rmtree(web, ignore_errors=True)  # nothing stale from an earlier build
        for folder in ("templates", "static"):
            shutil.copytree(ROOT / folder, web / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithPageFiles})
