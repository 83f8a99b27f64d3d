/* gisgrid command-center map runtime (no dependencies besides Leaflet).
 *
 * Contract with gisgrid/maps.py: every string in the layer data and in the specs
 * was HTML-escaped in Python (gisgrid.maps.esc), so it is inserted with innerHTML
 * and shows as text. Layer data sits in JSON script blocks (type application/json)
 * and is parsed with JSON.parse; nothing from the data is ever evaluated.
 */
(function () {
  'use strict';
  var GG = window.GG = window.GG || {};
  GG.layers = [];
  GG.index = [];
  GG.front = [];
  GG.version = 1;

  var NAMED = {amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0'};
  var decoder = null;
  // Decode the HTML entities of an escaped string (for matching only). gisgrid.maps.esc writes only the named
  // and numeric references decoded here (no DOM: a county has tens of thousands of search entries); anything
  // else goes through a textarea, whose content is plain text, so no markup or script is interpreted.
  GG.plain = function (s) {
    if (s === null || s === undefined) { return ''; }
    s = String(s);
    if (s.indexOf('&') < 0) { return s; }
    var odd = false;
    var out = s.replace(/&(#[0-9]+|#x[0-9a-fA-F]+|[a-z]+);/g, function (m, name) {
      if (name.charAt(0) === '#') {
        return String.fromCodePoint(name.charAt(1) === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10));
      }
      if (NAMED.hasOwnProperty(name)) { return NAMED[name]; }
      odd = true;
      return m;
    });
    if (!odd) { return out; }
    if (!decoder) { decoder = document.createElement('textarea'); }
    decoder.innerHTML = s;
    return decoder.value;
  };

  GG.detail = function (fields, title) {
    return function (layer) {
      var p = (layer && layer.feature && layer.feature.properties) || {};
      var rows = [];
      for (var i = 0; i < fields.length; i++) {
        var v = p[fields[i][0]];
        if (v === null || v === undefined || v === '') { continue; }
        rows.push('<tr><th>' + fields[i][1] + '</th><td>' + v + '</td></tr>');
      }
      var div = document.createElement('div');
      div.className = 'gg-detail';
      div.innerHTML = (title ? '<div class="gg-detail-title">' + title + '</div>' : '') +
        '<table>' + rows.join('') + '</table>';
      return div;
    };
  };

  // Popups: a readable width (the CSS gives the table its width and a scrolling height), panned into view
  // with room to spare, and never left hanging off the screen.
  GG.POPUP = {maxWidth: 360, minWidth: 220, className: 'gg-pop', autoPan: true, keepInView: true,
              autoPanPaddingTopLeft: [20, 60], autoPanPaddingBottomRight: [20, 20]};

  GG.style = function (spec) {
    spec = spec || {};
    return function (feature) {
      var s = {};
      var k;
      for (k in spec.base) { s[k] = spec.base[k]; }
      if (spec.by && feature && feature.properties) {
        var o = spec.styles[String(feature.properties[spec.by])];
        if (o) { for (k in o) { s[k] = o[k]; } }
      }
      return s;
    };
  };

  // Compact integers (gisgrid.maps.layers._varints): 5 bits per character, low bits first, 32 = more follows.
  var ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  var DIGIT = new Int32Array(128);
  for (var d = 0; d < 64; d++) { DIGIT[ALPHABET.charCodeAt(d)] = d; }
  GG.varints = function (text) {
    var out = [];
    var v = 0;
    var shift = 0;
    for (var i = 0; i < text.length; i++) {
      var c = DIGIT[text.charCodeAt(i)];
      v |= (c & 31) << shift;
      if (c & 32) { shift += 5; } else { out.push(v); v = 0; shift = 0; }
    }
    return out;
  };

  function column(c, n) {
    if (Array.isArray(c)) { return c; }
    var codes = GG.varints(c.i);
    var out = new Array(n);
    for (var i = 0; i < n; i++) { out[i] = c.u[codes[i]]; }
    return out;
  }

  // A line or ring: zigzag-encoded deltas of integer coordinates -> [[lon, lat], ...].
  function line(text, s) {
    var a = GG.varints(text);
    var out = new Array(a.length / 2);
    var x = 0;
    var y = 0;
    for (var i = 0; i < a.length; i += 2) {
      x += (a[i] >>> 1) ^ -(a[i] & 1);
      y += (a[i + 1] >>> 1) ^ -(a[i + 1] & 1);
      out[i / 2] = [x / s, y / s];
    }
    return out;
  }

  function geometry(type, c, s) {
    switch (type) {
      case 'Point': return {type: type, coordinates: line(c, s)[0]};
      case 'MultiPoint':
      case 'LineString': return {type: type, coordinates: line(c, s)};
      case 'Polygon':
      case 'MultiLineString': return {type: type, coordinates: c.map(function (r) { return line(r, s); })};
      default: return {type: type, coordinates: c.map(function (p) {
        return p.map(function (r) { return line(r, s); });
      })};
    }
  }

  // A layer's data block: property columns (dictionary-encoded when values repeat) and integer
  // coordinates (1e-6 degree, each ring as a start point and deltas, as compact text) -> GeoJSON.
  GG.data = function (id) {
    var d = JSON.parse(document.getElementById(id).textContent);
    var n = d.g.length;
    var cols = d.c.map(function (c) { return column(c, n); });
    var types = column(d.t, n);
    var feats = new Array(n);
    for (var i = 0; i < n; i++) {
      var props = {};
      for (var j = 0; j < d.k.length; j++) { props[d.k[j]] = cols[j][i]; }
      feats[i] = {type: 'Feature', properties: props, geometry: geometry(types[i], d.g[i], d.s)};
    }
    return {type: 'FeatureCollection', features: feats};
  };

  function pointLayer(spec, renderer) {
    var pt = spec.point;
    return function (feature, latlng) {
      var p = feature.properties;
      if (pt.kind === 'icon') {
        var icon = pt.icons[String(p[pt.by])] || pt.icons['*'];
        return L.marker(latlng, {
          icon: L.divIcon({
            className: 'gg-poi-icon',
            html: '<span class="gg-poi" style="background:' + icon.color + '">' + icon.glyph + '</span>',
            iconSize: [22, 22], iconAnchor: [11, 11]
          }),
          pane: 'markerPane'
        });
      }
      if (pt.kind === 'alarm') {
        // A veto point: a large pulsing red ring with a badge, above every icon, at every zoom.
        return L.marker(latlng, {
          icon: L.divIcon({className: 'gg-alarm-icon', html: '<span class="gg-alarm"><b>!</b></span>',
                           iconSize: [36, 36], iconAnchor: [18, 18]}),
          pane: 'markerPane', zIndexOffset: 1000, riseOnHover: true
        });
      }
      var o = {radius: pt.radius || 6};
      if (spec.pane) { o.pane = spec.pane; }
      if (renderer) { o.renderer = renderer; }
      if (spec.interactive === false) { o.interactive = false; }
      return L.circleMarker(latlng, o);
    };
  }

  function addLabels(group, spec) {
    var items = [];
    group.eachLayer(function (l) { items.push(l); });
    for (var i = 0; i < items.length; i++) {
      var f = items[i].feature;
      var lp = f && f.properties && f.properties._lp;
      if (!lp) { continue; }
      var m = L.marker([lp[1], lp[0]], {
        icon: L.divIcon({className: 'gg-label', html: '<span>' + (f.properties[spec.labels] || '') + '</span>',
                         iconSize: null}),
        keyboard: false
      });
      m.feature = f;
      m.ggLabel = true;
      m.ggArea = items[i];
      items[i].ggLabelMarker = m;
      group.addLayer(m);
    }
  }

  function indexLayer(group, spec) {
    group.eachLayer(function (l) {
      if (!l.feature) { return; }
      if (spec.labels && !l.ggLabel) { return; }
      var parts = [];
      for (var i = 0; i < spec.search.length; i++) {
        var v = l.feature.properties[spec.search[i]];
        if (v !== null && v !== undefined && v !== '') { parts.push(v); }
      }
      if (!parts.length) { return; }
      // the text to match is decoded on the first search, not while the page opens
      GG.index.push({html: parts.join(' · '), raw: parts.join(' '), text: null, kind: spec.title || '', layer: l,
                     group: group});
    });
  }

  // One overlay: an L.geoJson filled from a JSON data block (lazily for layers
  // that start hidden), with per-feature style, tooltip, popup, labels, search.
  GG.layer = function (map, spec) {
    var opts = {style: GG.style(spec.style)};
    if (spec.interactive === false) { opts.interactive = false; }
    if (spec.pane) { opts.pane = spec.pane; }
    if (spec.svg) { opts.renderer = L.svg({pane: spec.pane || 'overlayPane', padding: 0.3}); }
    if (spec.point) { opts.pointToLayer = pointLayer(spec, opts.renderer); }
    var group = L.geoJson(null, opts);
    group.ggSpec = spec;
    group.ggCount = spec.n || 0;
    if (spec.tip) { group.bindTooltip(GG.detail(spec.tip, spec.title), {sticky: true, className: 'gg-tip'}); }
    if (spec.pop) { group.bindPopup(GG.detail(spec.pop, spec.title), GG.POPUP); }
    var loaded = false;
    group.ggLoad = function () {
      if (loaded) { return; }
      loaded = true;
      if (spec.data) { group.addData(GG.data(spec.data)); }
      if (spec.labels) { addLabels(group, spec); }
      if (spec.search) { indexLayer(group, spec); }
    };
    if (spec.lazy) { group.once('add', group.ggLoad); } else { group.ggLoad(); }
    if (spec.front) { GG.front.push(group); }
    GG.layers.push(group);
    return group;
  };

  function keepFront(map) {
    for (var i = 0; i < GG.front.length; i++) {
      if (map.hasLayer(GG.front[i])) { GG.front[i].bringToFront(); }
    }
  }

  function control(position, build) {
    var C = L.Control.extend({
      options: {position: position},
      onAdd: function (map) {
        var div = build(map);
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        return div;
      }
    });
    return new C();
  }

  GG.focus = function (map, entry) {
    var l = entry.layer;
    if (!map.hasLayer(entry.group)) { map.addLayer(entry.group); }
    var target = l.ggArea || l;
    var latlng;
    if (target && target.getBounds) {
      map.fitBounds(target.getBounds(), {maxZoom: 17, animate: false});
      latlng = l.getLatLng ? l.getLatLng() : target.getBounds().getCenter();
    } else {
      latlng = l.getLatLng();
      map.setView(latlng, Math.max(map.getZoom(), 15), {animate: false});
    }
    l.fire('click', {latlng: latlng}, true);
  };

  function searchControl(map, placeholder) {
    return control('topleft', function () {
      var div = L.DomUtil.create('div', 'leaflet-bar gg-search');
      var input = L.DomUtil.create('input', '', div);
      input.type = 'search';
      input.placeholder = GG.plain(placeholder);
      input.setAttribute('aria-label', input.placeholder);
      var list = L.DomUtil.create('ul', '', div);
      var found = [];
      function show() {
        var q = input.value.trim().toLowerCase();
        list.innerHTML = '';
        found = [];
        if (!q) { return; }
        for (var i = 0; i < GG.index.length && found.length < 15; i++) {
          var e = GG.index[i];
          if (e.text === null) { e.text = GG.plain(e.raw).toLowerCase(); }
          if (e.text.indexOf(q) >= 0) { found.push(e); }
        }
        if (!found.length) {
          var none = L.DomUtil.create('li', 'gg-none', list);
          none.textContent = '—';
          return;
        }
        found.forEach(function (e) {
          var li = L.DomUtil.create('li', '', list);
          li.innerHTML = e.html + ' <small>' + e.kind + '</small>';
          L.DomEvent.on(li, 'click', function () { GG.focus(map, e); });
        });
      }
      L.DomEvent.on(input, 'input', show);
      L.DomEvent.on(input, 'keydown', function (ev) {
        if (ev.key === 'Enter' && found.length) { GG.focus(map, found[0]); }
      });
      GG.search = function (q) { input.value = q; show(); return found.length; };
      return div;
    });
  }

  var ICONS = {
    full: '<svg viewBox="0 0 16 16" width="16" height="16"><path d="M1 6V1h5M10 1h5v5M15 10v5h-5M6 15H1v-5" ' +
          'fill="none" stroke="#333" stroke-width="2"/></svg>',
    ruler: '<svg viewBox="0 0 16 16" width="16" height="16"><path d="M1 11 11 1l4 4L5 15z" fill="none" ' +
           'stroke="#333" stroke-width="1.5"/><path d="M4 8l2 2M6 6l1 1M8 4l2 2M10 2l1 1" stroke="#333"/></svg>'
  };

  function button(div, html, title, fn) {
    var a = L.DomUtil.create('a', 'gg-btn', div);
    a.href = '#';
    a.title = title;
    a.setAttribute('role', 'button');
    a.innerHTML = html;
    L.DomEvent.on(a, 'click', function (ev) { L.DomEvent.preventDefault(ev); fn(a); });
    return a;
  }

  // Built-in fullscreen, measure and minimap, used by the self-contained (inline) map.
  GG.fullscreen = function (map) {
    return control('topleft', function () {
      var div = L.DomUtil.create('div', 'leaflet-bar gg-fullscreen');
      button(div, ICONS.full, 'Fullscreen 全屏', function () {
        var c = map.getContainer();
        if (document.fullscreenElement) { document.exitFullscreen(); } else if (c.requestFullscreen) {
          c.requestFullscreen();
        }
      });
      document.addEventListener('fullscreenchange', function () { map.invalidateSize(); });
      return div;
    });
  };

  function fmtLength(m) {
    return m >= 1000 ? (m / 1000).toFixed(2) + ' km' : Math.round(m) + ' m';
  }

  GG.measure = function (map) {
    var state = {on: false, pts: [], line: null, marks: null, tip: null};
    function reset() {
      if (state.marks) { map.removeLayer(state.marks); }
      state.pts = [];
      state.marks = L.layerGroup().addTo(map);
      state.line = L.polyline([], {color: '#111', weight: 3, dashArray: '6 4', interactive: false})
        .addTo(state.marks);
    }
    function onClick(e) {
      state.pts.push(e.latlng);
      state.line.setLatLngs(state.pts);
      L.circleMarker(e.latlng, {radius: 4, color: '#111', fillOpacity: 1, interactive: false})
        .addTo(state.marks);
      var total = 0;
      for (var i = 1; i < state.pts.length; i++) { total += map.distance(state.pts[i - 1], state.pts[i]); }
      state.total = total;
      if (state.tip) { state.marks.removeLayer(state.tip); }
      state.tip = L.tooltip({permanent: true, direction: 'right', className: 'gg-measure-tip'})
        .setLatLng(e.latlng).setContent(fmtLength(total));
      state.marks.addLayer(state.tip);
    }
    GG.measureState = state;
    return control('topleft', function () {
      var div = L.DomUtil.create('div', 'leaflet-bar gg-measure');
      button(div, ICONS.ruler, 'Measure distance 测距 (click again to stop)', function (a) {
        state.on = !state.on;
        L.DomUtil[state.on ? 'addClass' : 'removeClass'](map.getContainer(), 'gg-measuring');
        L.DomUtil[state.on ? 'addClass' : 'removeClass'](a, 'gg-active');
        if (state.on) {
          reset();
          map.doubleClickZoom.disable();
          map.on('preclick', onClick);
        } else {
          map.doubleClickZoom.enable();
          map.off('preclick', onClick);
        }
      });
      return div;
    });
  };

  GG.minimap = function (map, cfg) {
    return control('bottomright', function () {
      var div = L.DomUtil.create('div', 'gg-minimap');
      setTimeout(function () {
        var mini = L.map(div, {attributionControl: false, zoomControl: false, dragging: false,
                               scrollWheelZoom: false, doubleClickZoom: false, boxZoom: false,
                               keyboard: false, touchZoom: false});
        mini.setView(map.getCenter(), Math.max(map.getZoom() - 4, 0), {animate: false});
        if (cfg.tiles) { L.tileLayer(cfg.tiles.url, cfg.tiles.options || {}).addTo(mini); }
        if (cfg.outline) {
          L.geoJson(GG.data(cfg.outline), {interactive: false,
                    style: {color: '#333', weight: 1, fill: false}}).addTo(mini);
        }
        var rect = L.rectangle(map.getBounds(), {color: '#d00', weight: 1, fillOpacity: 0.1,
                                                 interactive: false}).addTo(mini);
        function sync() {
          mini.setView(map.getCenter(), Math.max(map.getZoom() - 4, 0), {animate: false});
          rect.setBounds(map.getBounds());
        }
        map.on('moveend', sync);
        mini.on('click', function (e) { map.panTo(e.latlng); });
        sync();
        GG.mini = mini;
      }, 0);
      return div;
    });
  };

  // Called once, after every layer and control folium wrote: title, legend, search, ordering, ready flag.
  GG.finish = function (map, cfg) {
    GG.map = map;
    if (cfg.title) {
      var t = L.DomUtil.create('div', 'gg-title', map.getContainer());
      t.innerHTML = cfg.title;
      L.DomEvent.disableClickPropagation(t);
      L.DomEvent.disableScrollPropagation(t);
    }
    if (cfg.scale) { L.control.scale({imperial: false}).addTo(map); }
    if (cfg.search) { searchControl(map, cfg.search).addTo(map); }
    if (cfg.fullscreen) { GG.fullscreen(map).addTo(map); }
    if (cfg.measure) { GG.measure(map).addTo(map); }
    if (cfg.minimap) { GG.minimap(map, cfg.minimap).addTo(map); }
    if (cfg.legend) {
      control('bottomleft', function () {
        var div = L.DomUtil.create('div', 'gg-legend');
        div.innerHTML = cfg.legend;
        return div;
      }).addTo(map);
    }
    if (cfg.detailZoom) {
      // Village labels and point icons only where they can be read (not at county overview zooms).
      var far = function () {
        L.DomUtil[map.getZoom() < cfg.detailZoom ? 'addClass' : 'removeClass'](map.getContainer(), 'gg-far');
      };
      map.on('zoomend', far);
      far();
    }
    map.on('overlayadd', function () { keepFront(map); });
    keepFront(map);
    var done = function () {
      window.__gisgrid_ready = true;
      GG.readyMs = (window.performance && performance.now) ? performance.now() : null;
      document.documentElement.setAttribute('data-gg-ready', '1');
    };
    if (window.requestAnimationFrame) {
      requestAnimationFrame(function () { requestAnimationFrame(done); });
    } else {
      setTimeout(done, 0);
    }
  };

  // What is on the map, for tests and benchmarks.
  GG.stats = function () {
    var out = {};
    GG.layers.forEach(function (g) {
      var n = 0;
      var drawn = 0;
      g.eachLayer(function (l) {
        if (l.ggLabel) { return; }
        n += 1;
        if (l._map && (l._pxBounds || l._icon || l._point || l._path)) { drawn += 1; }
      });
      out[g.ggSpec.key] = {features: n, drawn: drawn, onMap: !!(GG.map && GG.map.hasLayer(g))};
    });
    return out;
  };
}());
