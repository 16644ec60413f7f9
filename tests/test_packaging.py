"""A wheel built with `pip wheel .` serves a working dashboard with no source tree around:
installed into a folder of its own and run from outside the repository, `orderflow serve`
answers the page, its scripts and the pinned libraries from the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from dashboard.assets import VENDOR, VENDOR_DIR
from scheduler.chaos.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
# What a build reads: the project, and the two libraries `npm ci` put in node_modules. The
# build runs on a copy, so no build/ folder left in the checkout by an earlier build can
# slip files into the wheel.
SOURCES = ["pyproject.toml", "setup.py", "README.md", "scheduler", "dashboard", "templates",
           "static", "node_modules/socket.io-client", "node_modules/uplot"]
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
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                   cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


def within(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.mark.slow
def test_a_wheel_installed_without_the_source_tree_serves_the_dashboard(tmp_path, monkeypatch):
    absent = [name for name, path in VENDOR.items() if not (VENDOR_DIR / path).is_file()]
    if absent:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot build a wheel without the page's libraries: {absent}")
        pytest.skip(f"the page's libraries are not installed (npm ci): {', '.join(absent)}")
    source, wheels, site, run = (tmp_path / name for name in ("source", "wheels", "site", "run"))
    run.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source), cwd=run)
    [wheel] = wheels.glob("orderflow-*.whl")
    # Only orderflow goes into the folder; its dependencies come from this interpreter's
    # site-packages, which PYTHONPATH's folder comes before.
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=run)
    web = site / "dashboard" / "web"
    assert (web / "vendor" / "socket.io-client" / "LICENSE").is_file()
    assert (web / "vendor" / "uplot" / "LICENSE").is_file()
    # Mark the installed copies, so a response can only have come from them.
    marked = {
        "/": (web / "templates" / "index.html", f"<!-- {MARK} -->"),
        "/static/js/boot.js": (web / "static" / "js" / "boot.js", f"// {MARK}"),
        "/static/js/orders.js": (web / "static" / "js" / "orders.js", f"// {MARK}"),
        **{f"/vendor/{name}": (web / "vendor" / path, f"/* {MARK} */")
           for name, path in VENDOR.items()},
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
