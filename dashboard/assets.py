"""Where the page's files are: its templates, its static files and the pinned browser libraries.

A source checkout (`make run`, `make test`, an editable install) serves them from where they
are kept: `templates/` and `static/` at the repository's top level. The two browser libraries
are vendored in `static/vendor/` with their licences (versions pinned in package-lock.json;
`make vendor` copies them again from npm), so neither running nor building orderflow needs
npm. A wheel cannot reach the repository, so building one (setup.py) copies `templates/` and
`static/` into the package, to `dashboard/web/`; when that folder exists, it is used.

Only the standard library here: setup.py and tools/vendor.py load this file on its own, before
anything is installed, to learn what to copy.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE.parent
# Inside an installed wheel: web/templates and web/static (web/static/vendor included).
BUNDLED = PACKAGE / "web"

# The vendored libraries: file name in static/vendor/ (and URL name under /vendor/) -> the
# file under node_modules it is copied from. Plain ES modules and a stylesheet, loaded by
# static/js/ as they are; nothing else is ever served under /vendor/.
VENDOR = {
    "socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
# Their licences (both MIT), kept beside them: file name in static/vendor/ -> npm's copy.
VENDOR_LICENCES = {
    "socket.io-client.LICENSE": "socket.io-client/LICENSE",
    "uplot.LICENSE": "uplot/LICENSE",
}

WEB_ROOT = BUNDLED if BUNDLED.is_dir() else SOURCE_ROOT
TEMPLATES = WEB_ROOT / "templates"
STATIC = WEB_ROOT / "static"
VENDOR_DIR = STATIC / "vendor"
