"""A wheel built with `pip wheel .` from a copy without node_modules (Python alone, no npm)
carries the page, the vendored libraries and the licences, and serves a working dashboard with
no source tree around: installed into a folder of its own and run from outside the repository,
`orderflow serve` answers the page, its scripts and the pinned libraries from the installed
package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from dashboard.assets import VENDOR, VENDOR_LICENCES
from scheduler.chaos.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
# What a build reads: the project as a clone has it (the libraries vendored in static/), and
# no node_modules. The build runs on a copy, so no build/ folder left in the checkout by an
# earlier build can slip files into the wheel.
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "scheduler",
           "dashboard", "templates", "static"]
MARK = "served from the installed wheel"
# What the probe prints: where the installed app finds its code and its page files.
PROBE = """
import json, dashboard, dashboard.assets as assets
from dashboard import create_app
app = create_app()
print(json.dumps({"package": dashboard.__file__, "templates": app.template_folder,
                  "static": app.static_folder, "vendor": str(assets.VENDOR_DIR)}))
"""


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def within(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.mark.slow
def test_a_wheel_built_without_npm_installed_without_the_source_tree_serves_the_dashboard(
        tmp_path, monkeypatch):
    source, wheels, site, run = (tmp_path / name for name in ("source", "wheels", "site", "run"))
    run.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    assert not (source / "node_modules").exists()
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source), cwd=run)
    [wheel] = wheels.glob("orderflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode()
    vendored = {f"dashboard/web/static/vendor/{name}" for name in [*VENDOR, *VENDOR_LICENCES]}
    assert vendored <= names, vendored - names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert "License-Expression: MIT" in headers.splitlines()
    # Only orderflow goes into the folder; its dependencies come from this interpreter's
    # site-packages, which PYTHONPATH's folder comes before.
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=run)
    web = site / "dashboard" / "web"
    # Mark the installed copies, so a response can only have come from them.
    marked = {
        "/": (web / "templates" / "index.html", f"<!-- {MARK} -->"),
        "/static/js/boot.js": (web / "static" / "js" / "boot.js", f"// {MARK}"),
        "/static/js/orders.js": (web / "static" / "js" / "orders.js", f"// {MARK}"),
        **{f"/vendor/{name}": (web / "static" / "vendor" / name, f"/* {MARK} */")
           for name in VENDOR},
    }
    for path, line in marked.values():
        with path.open("a", encoding="utf-8") as f:
            f.write(f"\n{line}\n")

    monkeypatch.chdir(run)
    monkeypatch.setenv("PYTHONPATH", str(site))
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                           timeout=60, check=True)
    where = json.loads(probe.stdout.strip().splitlines()[-1])
    assert all(within(path, site) for path in where.values()), where

    with ServeProcess("--no-persist", "--workers", "1",
                      "--log-file", str(tmp_path / "orderflow.log")) as server:
        for url_path, (_, line) in marked.items():
            response = requests.get(server.url + url_path, timeout=10)
            assert response.status_code == 200, url_path
            assert line in response.text, f"{url_path} was not served from the wheel"
        page = requests.get(server.url + "/", timeout=10).text
        assert '<script type="module" src="/static/js/boot.js">' in page
        assert requests.get(server.url + "/vendor/nope.js", timeout=10).status_code == 404


# The version each vendored library names in its banner comment.
BANNERS = {"socket.io.esm.min.js": ("socket.io-client", "Socket.IO v{}"),
           "uPlot.esm.js": ("uplot", "(v{})")}


def test_the_vendored_libraries_are_the_versions_package_lock_pins():
    # `make vendor` after a bump in package.json; a copy left behind fails here.
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    vendor = ROOT / "static" / "vendor"
    assert set(BANNERS) | {"uPlot.min.css"} == set(VENDOR)
    for name, (package, banner) in BANNERS.items():
        pinned = locked[f"node_modules/{package}"]["version"]
        head = (vendor / name).read_text(encoding="utf-8")[:400]
        assert banner.format(pinned) in head, f"static/vendor/{name} is not {package} {pinned}"
    for name in VENDOR_LICENCES:
        assert "MIT License" in (vendor / name).read_text(encoding="utf-8")
