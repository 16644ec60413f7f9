"""Where the page's files are: its templates, its static files and the pinned browser libraries.

A source checkout (`make run`, `make test`, an editable install) serves them from where they
are kept: `templates/` and `static/` at the repository's top level, the libraries from
`node_modules/` (installed by `npm ci`, versions pinned in package-lock.json). A wheel cannot
reach the repository, so building one (setup.py) copies the same files into the package, to
`dashboard/web/`; when that folder exists, it is used.

Only the standard library here: setup.py loads this file on its own, before anything is
installed, to learn what to copy.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE.parent
# Inside an installed wheel: web/templates, web/static, web/vendor/<VENDOR paths>.
BUNDLED = PACKAGE / "web"

# URL name under /vendor/ -> file under node_modules. Plain ES modules and a stylesheet,
# loaded by static/js/ as they are; nothing else from node_modules is ever served.
VENDOR = {
    "socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
# Shipped beside the library files a wheel carries (both are MIT licensed).
VENDOR_LICENCES = ("socket.io-client/LICENSE", "uplot/LICENSE")


def _root() -> tuple[Path, Path]:
    if BUNDLED.is_dir():
        return BUNDLED, BUNDLED / "vendor"
    return SOURCE_ROOT, SOURCE_ROOT / "node_modules"


WEB_ROOT, VENDOR_DIR = _root()
TEMPLATES = WEB_ROOT / "templates"
STATIC = WEB_ROOT / "static"
