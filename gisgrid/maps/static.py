"""The page's code and style: our runtime and CSS (``assets/``) and Leaflet, from a shared folder, a CDN or inlined.

Three modes (:data:`ASSETS`):

``assets`` (the default)
    Leaflet (from the ``xstatic-leaflet`` package, its images inlined into its CSS), our runtime and our
    CSS are written once into an ``assets/`` folder beside the map files, and every map links them with a
    relative URL: the maps work with no network (an intranet, a laptop on a train) and the many map files
    of a set share one copy.
``cdn``
    Leaflet from its CDN; our runtime and CSS inlined.
``inline``
    Everything inlined: one self-contained file.

Only ``assets`` and ``inline`` work offline; neither uses a Leaflet plugin (the fullscreen, minimap and
measure controls are our own, in the runtime).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources
from pathlib import Path

from gisgrid._errors import ConfigError

#: Asset modes: a shared ``assets/`` folder beside the maps (offline), links to CDNs, or everything embedded.
ASSETS = ("assets", "cdn", "inline")
#: The folder, beside the map files, that ``assets="assets"`` writes and links.
ASSETS_DIR = "assets"

LEAFLET_VERSION = "1.9.3"
_LEAFLET_JS = f"https://cdn.jsdelivr.net/npm/leaflet@{LEAFLET_VERSION}/dist/leaflet.js"
_LEAFLET_CSS = f"https://cdn.jsdelivr.net/npm/leaflet@{LEAFLET_VERSION}/dist/leaflet.css"


@functools.lru_cache(maxsize=8)
def _static(name: str) -> str:
    return resources.files("gisgrid.maps").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _leaflet_files() -> tuple[str, str]:
    """Leaflet's JS and CSS (images inlined) from the xstatic-leaflet package."""
    try:
        from xstatic.pkg import leaflet as xleaflet
    except ImportError:
        msg = "the offline maps (assets='assets' or 'inline') need the xstatic-leaflet package, which is missing."
        raise ConfigError(msg, fix="pip install xstatic-leaflet (a dependency of gisgrid), or use assets='cdn'") \
            from None
    base = Path(xleaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def data_uri(match: re.Match[str]) -> str:
        img = base / match.group(1)
        if not img.exists():
            return match.group(0)
        return "url(data:image/png;base64," + base64.b64encode(img.read_bytes()).decode("ascii") + ")"

    css = re.sub(r"url\((images/[\w.-]+\.png)\)", data_uri, css)
    return js, css


@functools.lru_cache(maxsize=1)
def _asset_files() -> dict[str, str]:
    """The shared folder's files: name -> text (Leaflet first, then our CSS and runtime)."""
    js, css = _leaflet_files()
    return {"leaflet.css": css, "leaflet.js": js, "gisgrid.css": _static("map.css"),
            "gisgrid.js": _static("map_runtime.js")}


def _asset_links() -> str:
    """The page's head in ``assets`` mode: relative links, each with a content hash so no stale copy is used."""
    out = []
    for name, text in _asset_files().items():
        href = f"{ASSETS_DIR}/{name}?v={hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"
        out.append(f'<link rel="stylesheet" href="{href}"/>' if name.endswith(".css")
                   else f'<script src="{href}"></script>')
    return "".join(out)


def _inline_script(code: str) -> str:
    # Our own and Leaflet's code never contain "</script"; make sure of it anyway.
    return "<script>" + re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE) + "</script>"
