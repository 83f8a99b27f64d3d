"""The page's own folium elements and the JSON data blocks the layers are read from."""

from __future__ import annotations

from typing import Any, cast

import folium
import pandas as pd
from branca.element import Element, Figure, MacroElement
from folium.template import Template

from gisgrid.maps.layers import _SCALE, _Layer, _varints
from gisgrid.maps.text import _script_json


class _Raw(Element):
    """A piece of page text inserted as is (no Jinja pass over it)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        """Return the text unchanged."""
        return self._text


class _GeoLayer(folium.map.Layer):
    """An overlay filled by ``GG.layer`` from a JSON data block (a folium Layer, so LayerControl lists it)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = GG.layer({{ this._parent.get_name() }}, {{ this.spec_js }});
        {% endmacro %}
        """
    )

    def __init__(self, name: str, spec: dict[str, Any], *, show: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "GeoLayer"
        self.spec_js = _script_json(spec)


class _Finish(MacroElement):
    """Title, legend, search, built-in controls and the ready flag (rendered last)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GG.finish({{ this._parent.get_name() }}, {{ this.cfg_js }});
        {% endmacro %}
        """
    )

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self._name = "GGFinish"
        self.cfg_js = _script_json(cfg)


class _Pane(MacroElement):
    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.createPane({{ this.pane|tojson }}).style.zIndex = {{ this.z|tojson }};
        {% endmacro %}
        """
    )

    def __init__(self, pane: str, z: int) -> None:
        super().__init__()
        self._name = "GGPane"
        self.pane = pane
        self.z = z


def _column(values: list[Any]) -> Any:
    """A property column, dictionary-encoded when values repeat.

    ``{"u": uniques, "i": codes}``, the codes as one :func:`~gisgrid.maps.layers._varints` text (a code
    below 32 is one character).
    """
    if len(values) < 8:
        return values
    try:
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    except TypeError:  # unhashable values (label points): keep as they are
        return values
    if len(uniques) > len(values) // 2:
        return values
    return {"u": [None if u is None or u != u else u for u in uniques], "i": _varints(codes)[0]}


def _payload(layer: _Layer) -> dict[str, Any]:
    cols = [list(c) for c in zip(*layer.rows, strict=True)] if layer.rows else [[] for _ in layer.keys]
    return {"k": layer.keys, "c": [_column(c) for c in cols], "t": _column(layer.gtypes.tolist()),
            "g": layer.geoms.tolist(), "s": _SCALE}


def _data_block(m: folium.Map, layer: _Layer, ident: str) -> str:
    block = f'<script type="application/json" id="{ident}">{_script_json(_payload(layer))}</script>'
    cast(Figure, m.get_root()).html.add_child(_Raw(block), name=ident)
    return ident
