"""The page's code and style: our runtime and CSS (``assets/``) and Leaflet, linked from its CDN or inlined."""

from __future__ import annotations

import base64
import functools
import re
from importlib import resources
from pathlib import Path

from gisgrid._errors import ConfigError

#: Asset modes: link from CDNs, or embed everything in the page.
ASSETS = ("cdn", "inline")

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
        msg = "assets='inline' needs the xstatic-leaflet package, which is not installed."
        raise ConfigError(msg, fix="pip install xstatic-leaflet (or gisgrid[inline]), or use assets='cdn'") from None
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


def _inline_script(code: str) -> str:
    # Our own and Leaflet's code never contain "</script"; make sure of it anyway.
    return "<script>" + re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE) + "</script>"
