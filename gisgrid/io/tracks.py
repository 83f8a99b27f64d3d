"""GPS patrol tracks from files: GPX (a file or a folder of them), CSV or GeoJSON points.

Tracks come from the river chiefs' and grid members' phone apps, exported as
GPX (one file per patrol or per person, several ``<trkseg>``, often without
elevation, times in UTC or with an offset) or as a table of fixes in the common
export shape ``person_id, timestamp, lon, lat[, accuracy]``. :func:`iter_track_batches`
streams them in batches of whole files (a CSV in chunks of rows, a person never
cut in two when the export is grouped by person), so memory stays bounded
however long the month.

Bad rows never stop the reading: a fix without a time, with a time that cannot
be read, with a zero, missing or impossible position, or with a time before
the previous fix of the same person in the same file is refused, named by file
and line (:class:`TrackIssue`), and the rest of the file is read.

Times are returned as seconds since 1970-01-01 UTC; times without a zone are
read in ``timezone`` (default Asia/Shanghai). Positions are WGS84 lon/lat:
``crs = "GCJ-02"`` (or ``"BD-09"``) tracks from Chinese map apps are converted.
"""

from __future__ import annotations

import logging
import os
import xml.parsers.expat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gisgrid._errors import ConfigError, InputError
from gisgrid.crs import OFFSET_DATUMS, bd09_to_wgs84, gcj02_to_bd09, gcj02_to_wgs84, parse_crs, wgs84_to_gcj02
from gisgrid.io.files import detect_encoding

__all__ = ["TRACK_COLUMNS", "TrackBatch", "TrackIssue", "iter_track_batches", "read_gpx", "read_track_table",
           "to_datum"]

logger = logging.getLogger(__name__)

#: The canonical columns of a table of fixes (``fields`` in ``[sources.patrols]`` maps yours onto them).
TRACK_COLUMNS: tuple[str, ...] = ("person_id", "timestamp", "lon", "lat", "accuracy")
_REQUIRED = ("person_id", "timestamp", "lon", "lat")
_CHUNK_ROWS = 500_000


@dataclass
class TrackIssue:
    """A fix refused on reading: where it is and what is wrong."""

    file: str
    line: int
    problem: str
    value: str = ""

    def __str__(self) -> str:
        shown = f" ({self.value})" if self.value else ""
        return f"{self.file} line {self.line}: {self.problem}{shown}"


@dataclass
class TrackBatch:
    """Fixes of one or more whole files (or of whole persons of a long CSV).

    Attributes
    ----------
    fixes : pandas.DataFrame
        ``person_id`` (text), ``t`` (int64 seconds UTC), ``lon``, ``lat`` (WGS84), ``accuracy`` (m or NaN),
        ``file`` (the file's name), ``line``.
    issues : list of TrackIssue
        The refused rows of these files.
    """

    fixes: pd.DataFrame
    issues: list[TrackIssue] = field(default_factory=list)


# --------------------------------------------------------------------------- GPX
def read_gpx(path: str | os.PathLike[str], *, person_from: str = "file") -> tuple[pd.DataFrame, list[TrackIssue]]:
    """Read the track points of a GPX file (every ``<trk>``/``<trkseg>``; ``<rte>`` points too).

    Parameters
    ----------
    path
        A ``.gpx`` file (GPX 1.0 or 1.1; elevation and extensions ignored).
    person_from
        ``"file"``: the person is the file name up to its first ``_`` (``C001_2026-11-03.gpx``);
        ``"name"``: the ``<name>`` of each ``<trk>`` (the file name where it has none).

    Returns
    -------
    fixes, issues
        Raw fixes (``person_id``, ``timestamp`` text, ``lon``, ``lat``, ``accuracy``, ``line``) and
        the points with no position.

    Raises
    ------
    InputError
        The file is not XML (named with the line of the fault).
    """
    p = Path(path)
    stem = p.stem.split("_")[0] or p.stem
    rows: list[tuple[str, str | None, str | None, str | None, str | None, int]] = []
    issues: list[TrackIssue] = []
    state: dict[str, Any] = {"trk_name": None, "pt": None, "text": [], "path": []}
    parser = xml.parsers.expat.ParserCreate()

    def local(tag: str) -> str:
        return tag.rsplit(":", 1)[-1].rsplit("}", 1)[-1]

    def start(tag: str, attrs: dict[str, str]) -> None:
        name = local(tag)
        state["path"].append(name)
        state["text"] = []
        if name == "trk":
            state["trk_name"] = None
        elif name in ("trkpt", "rtept"):
            state["pt"] = {"lat": attrs.get("lat"), "lon": attrs.get("lon"), "time": None, "hdop": None,
                           "line": parser.CurrentLineNumber}

    def end(tag: str) -> None:
        name = local(tag)
        text = "".join(state["text"]).strip()
        stack = state["path"]
        parent = stack[-2] if len(stack) >= 2 else ""
        pt = state["pt"]
        if name == "name" and parent == "trk":
            state["trk_name"] = text or None
        elif pt is not None and name in ("time", "hdop") and parent in ("trkpt", "rtept"):
            pt[name] = text or None
        elif name in ("trkpt", "rtept") and pt is not None:
            person = state["trk_name"] if person_from == "name" and state["trk_name"] else stem
            rows.append((person, pt["time"], pt["lon"], pt["lat"], pt["hdop"], pt["line"]))
            state["pt"] = None
        stack.pop()
        state["text"] = []

    def chars(data: str) -> None:
        state["text"].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with p.open("rb") as fh:
            parser.ParseFile(fh)
    except xml.parsers.expat.ExpatError as exc:
        msg = f"is not a readable GPX file ({xml.parsers.expat.ErrorString(exc.code)} at line {exc.lineno})."
        raise InputError(msg, path=p, row=exc.lineno, fix="export the track again from the app") from None
    except OSError as exc:
        msg = f"cannot be read ({exc.strerror or exc})."
        raise InputError(msg, path=p, fix="check the path and its permissions") from None
    frame = pd.DataFrame(rows, columns=["person_id", "timestamp", "lon", "lat", "accuracy", "line"])
    # a GPX <hdop> is a dilution, not metres: about 5 m per unit on a phone
    frame["accuracy"] = pd.to_numeric(frame["accuracy"], errors="coerce") * 5.0
    return frame, issues


# --------------------------------------------------------------------------- tables of fixes
def _map_columns(frame: pd.DataFrame, fields: Mapping[str, str], path: Path) -> pd.DataFrame:
    rename = {str(col): canon for canon, col in fields.items()}
    out = frame.rename(columns=rename)
    missing = [c for c in _REQUIRED if c not in out.columns]
    if missing:
        have = [str(c) for c in frame.columns if c != "geometry"]
        msg = f"the patrol fixes lack the column(s) {missing}; the file has {have}."
        raise InputError(msg, path=path, column=missing[0],
                         fix=f'map your columns: [sources.patrols] fields = {{ {missing[0]} = "your column" }}')
    if "accuracy" not in out.columns:
        out["accuracy"] = np.nan
    return out


def read_track_table(path: str | os.PathLike[str], *, fields: Mapping[str, str] | None = None,
                     encoding: str | None = None, chunk_rows: int = _CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Read a CSV (in chunks of rows) or GeoJSON of fixes; each chunk with ``line`` (the file's line number).

    Parameters
    ----------
    path
        ``.csv``/``.txt`` (UTF-8 or GBK) or ``.geojson``/``.json`` (points; ``lon``/``lat`` from the geometry).
    fields
        Canonical name -> your column (``person_id``, ``timestamp``, ``lon``, ``lat``, ``accuracy``).
    encoding
        Text encoding (default: detected).
    chunk_rows
        Rows per chunk of a CSV.

    Yields
    ------
    pandas.DataFrame
        ``person_id``, ``timestamp``, ``lon``, ``lat``, ``accuracy``, ``line`` (raw values).
    """
    p = Path(path)
    fields = dict(fields or {})
    if p.suffix.lower() in (".geojson", ".json"):
        import geopandas as gpd

        gdf = gpd.read_file(p)
        pts = gdf.geometry
        frame = pd.DataFrame(gdf.drop(columns="geometry"))
        if "lon" not in fields and "lon" not in frame.columns:
            frame["lon"] = pts.x.to_numpy()
            frame["lat"] = pts.y.to_numpy()
        frame = _map_columns(frame, fields, p)
        frame["line"] = np.arange(1, len(frame) + 1)  # the feature's number
        yield frame[[*TRACK_COLUMNS, "line"]]
        return
    enc = encoding or detect_encoding(p)
    offset = 2  # the header is line 1
    try:
        with pd.read_csv(p, dtype=str, encoding=enc, chunksize=chunk_rows, keep_default_na=False,
                         na_values=[""], skipinitialspace=True) as reader:  # closed even when the reading stops
            for chunk in reader:
                frame = _map_columns(chunk, fields, p)
                frame["line"] = np.arange(offset, offset + len(frame))
                offset += len(frame)
                yield frame[[*TRACK_COLUMNS, "line"]]
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = f"cannot be read as CSV ({exc})."
        raise InputError(msg, path=p, fix="save it again as CSV (comma separated, UTF-8 or GBK)") from None


# --------------------------------------------------------------------------- checking rows
def _parse_times(text: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Seconds UTC of each time text (ISO 8601 with or without a zone, or epoch seconds); ok mask."""
    s = text.astype(object).where(text.notna(), None)
    out = np.zeros(len(s), dtype=np.int64)
    ok = np.zeros(len(s), dtype=bool)
    if not len(s):
        return out, ok
    raw = s.astype(str).str.strip()
    numeric = raw.str.fullmatch(r"\d{9,13}(\.\d+)?") & s.notna()
    if numeric.any():  # epoch seconds (or milliseconds)
        v = raw[numeric].astype(float).to_numpy()
        v = np.where(v > 1e11, v / 1000.0, v)
        out[numeric.to_numpy()] = v.astype(np.int64)
        ok[numeric.to_numpy()] = True
    rest = (~numeric & s.notna()).to_numpy()
    if rest.any():
        txt = raw[rest]
        has_zone = txt.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).to_numpy()
        vals = np.zeros(len(txt), dtype=np.int64)
        good = np.zeros(len(txt), dtype=bool)
        for zone, mask in ((True, has_zone), (False, ~has_zone)):
            if not mask.any():
                continue
            # ISO 8601 is parsed vectorised; only what it cannot read is tried one by one ("mixed")
            parsed = pd.to_datetime(txt[mask], errors="coerce", utc=zone, format="ISO8601")
            retry = parsed.isna().to_numpy()
            if retry.any():
                again = pd.to_datetime(txt[mask][retry], errors="coerce", utc=zone, format="mixed")
                parsed = parsed.astype(again.dtype) if len(again) else parsed
                parsed[retry] = again.to_numpy()
            if not zone:
                parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            valid = parsed.notna().to_numpy()
            secs = parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
            vals[np.flatnonzero(mask)[valid]] = secs[valid].astype(np.int64)
            good[np.flatnonzero(mask)[valid]] = True
        out[rest] = vals
        ok[rest] = good
    return out, ok


def _check_rows(raw: pd.DataFrame, name: str, *, timezone: str, datum: str | None
                ) -> tuple[pd.DataFrame, list[TrackIssue]]:
    """Refuse bad fixes (named by line), convert the rest: seconds UTC, WGS84 lon/lat."""
    issues: list[TrackIssue] = []
    line = raw["line"].to_numpy()

    def refuse(mask: np.ndarray, problem: str, *columns: str) -> None:
        for i in np.flatnonzero(mask):  # only the refused rows are turned into text
            shown = [raw[c].iloc[i] for c in columns]
            issues.append(TrackIssue(name, int(line[i]), problem,
                                     ", ".join("" if pd.isna(v) else str(v) for v in shown)))

    text = raw["person_id"].astype("string").str.strip()
    person = text.astype(object).where(text.notna() & text.ne("").fillna(False), None)
    keep = person.notna().to_numpy(dtype=bool).copy()
    refuse(~keep, "no person_id", "person_id")
    ts = raw["timestamp"]
    no_time = ts.isna().to_numpy(dtype=bool) | ts.astype(str).str.strip().eq("").to_numpy(dtype=bool)
    refuse(keep & no_time, "no time", "timestamp")
    keep &= ~no_time
    t, t_ok = _parse_times(ts.where(~no_time, None), timezone)
    refuse(keep & ~t_ok, "time cannot be read (write e.g. 2026-11-03T08:15:00+08:00)", "timestamp")
    keep &= t_ok
    lon = pd.to_numeric(raw["lon"], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(raw["lat"], errors="coerce").to_numpy(dtype=float)
    bad_pos = (~np.isfinite(lon) | ~np.isfinite(lat) | ((lon == 0) & (lat == 0)) | (lon == 0) | (lat == 0)
               | (np.abs(lon) > 180) | (np.abs(lat) > 90))
    refuse(keep & bad_pos, "zero, missing or impossible position", "lon", "lat")
    keep &= ~bad_pos
    # time going backwards: before the latest earlier fix of the same person, in file order
    idx = np.flatnonzero(keep)
    if len(idx) > 1:
        codes = pd.factorize(person.to_numpy(dtype=object)[idx])[0]
        tt = t[idx]
        latest = pd.Series(tt).groupby(codes).cummax().to_numpy()
        prev = pd.Series(latest).groupby(codes).shift(1).to_numpy()
        back = ~np.isnan(prev) & (tt < np.nan_to_num(prev, nan=0))
        if back.any():
            mask = np.zeros(len(keep), dtype=bool)
            mask[idx[back]] = True
            refuse(mask, "time goes backwards (before the previous fix of this person)", "timestamp")
            keep &= ~mask
    lon, lat = lon[keep], lat[keep]
    if datum in OFFSET_DATUMS and len(lon):
        lon, lat = (gcj02_to_wgs84 if datum == "GCJ-02" else bd09_to_wgs84)(lon, lat)
    acc = pd.to_numeric(raw["accuracy"], errors="coerce").to_numpy(dtype=float)[keep]
    fixes = pd.DataFrame({"person_id": person.to_numpy(dtype=object)[keep], "t": t[keep], "lon": lon, "lat": lat,
                          "accuracy": acc, "file": name, "line": line[keep]})
    return fixes, issues


def to_datum(lon: np.ndarray, lat: np.ndarray, datum: str) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat shifted to ``datum`` (``"GCJ-02"`` or ``"BD-09"``): tracks as a Chinese map app records them."""
    if datum == "GCJ-02":
        return wgs84_to_gcj02(lon, lat)
    if datum == "BD-09":
        return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))
    msg = f"unknown offset datum {datum!r}."
    raise ConfigError(msg, fix=f"use one of {list(OFFSET_DATUMS)}")


def _datum(spec: Mapping[str, Any]) -> str | None:
    declared = spec.get("crs")
    if declared is None:
        return None
    parsed = parse_crs(declared, where={"path": spec.get("path"), "layer": "patrols"})
    if isinstance(parsed, str):
        return parsed
    if not parsed.is_geographic:
        msg = f"patrol tracks must be longitude/latitude (WGS84, CGCS2000, GCJ-02 or BD-09), not {declared!r}."
        raise ConfigError(msg, path=spec.get("path"), layer="patrols",
                          fix='remove crs (WGS84 is the default) or write crs = "GCJ-02"')
    return None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(q for q in path.iterdir() if q.suffix.lower() in (".gpx", ".csv", ".geojson", ".json"))
        if not found:
            msg = "the patrols folder holds no .gpx, .csv or .geojson file."
            raise InputError(msg, path=path, layer="patrols", fix="point [sources.patrols] path at the tracks")
        return found
    if not path.exists():
        msg = "the patrol tracks do not exist."
        raise InputError(msg, path=path, layer="patrols", fix="check [sources.patrols] path")
    return [path]


def iter_track_batches(spec: Mapping[str, Any], *, batch_rows: int = _CHUNK_ROWS) -> Iterator[TrackBatch]:
    """Stream the fixes of ``[sources.patrols]`` in batches of whole files or whole persons.

    Parameters
    ----------
    spec
        The source table: ``path`` (a file or a folder), optional ``crs`` (WGS84 default; ``"GCJ-02"``,
        ``"BD-09"``), ``encoding``, ``fields`` (canonical -> yours), ``timezone`` for times without a zone
        (default ``"Asia/Shanghai"``), ``person_from`` (GPX: ``"file"`` or ``"name"``).
    batch_rows
        About this many fixes per batch (a CSV is read in chunks this long; GPX files are gathered
        up to it).

    Yields
    ------
    TrackBatch
        A CSV chunk ends at a change of person: the last person's rows move on to the next chunk, so a
        person's fixes stay together when the export is grouped by person.
    """
    path = Path(str(spec["path"]))
    datum = _datum(spec)
    timezone = str(spec.get("timezone") or "Asia/Shanghai")
    person_from = str(spec.get("person_from") or "file")
    if person_from not in ("file", "name"):
        msg = f"[sources.patrols] person_from must be \"file\" or \"name\", not {person_from!r}."
        raise ConfigError(msg, fix='write person_from = "name" to take the person from each <trk><name>')
    pending: list[pd.DataFrame] = []
    pending_issues: list[TrackIssue] = []
    size = 0
    for f in _files(path):
        if f.suffix.lower() == ".gpx":
            raw, issues = read_gpx(f, person_from=person_from)
            fixes, more = _check_rows(raw, f.name, timezone=timezone, datum=datum)
            pending.append(fixes)
            pending_issues += issues + more
            size += len(fixes)
            if size >= batch_rows:
                yield TrackBatch(pd.concat(pending, ignore_index=True), pending_issues)
                pending, pending_issues, size = [], [], 0
            continue
        carry: pd.DataFrame | None = None
        for raw in read_track_table(f, fields=spec.get("fields"), encoding=spec.get("encoding"),
                                    chunk_rows=batch_rows):
            fixes, issues = _check_rows(raw, f.name, timezone=timezone, datum=datum)
            if carry is not None:
                fixes = pd.concat([carry, fixes], ignore_index=True)
            last = fixes["person_id"].iloc[-1] if len(fixes) else None
            tail = (fixes["person_id"] == last).to_numpy() if last is not None else np.zeros(0, dtype=bool)
            # the last person may go on in the next chunk: keep their rows (unless it is all one person)
            if tail.all():
                carry = fixes
                pending_issues += issues
                continue
            carry = fixes[tail].reset_index(drop=True)
            yield TrackBatch(pd.concat([*pending, fixes[~tail]], ignore_index=True), pending_issues + issues)
            pending, pending_issues, size = [], [], 0
        if carry is not None and len(carry):
            pending.append(carry)
            size += len(carry)
    if pending or pending_issues:
        yield TrackBatch(pd.concat(pending, ignore_index=True) if pending else _empty_fixes(), pending_issues)


def _empty_fixes() -> pd.DataFrame:
    return pd.DataFrame({"person_id": pd.Series([], dtype=object), "t": pd.Series([], dtype=np.int64),
                         "lon": pd.Series([], dtype=float), "lat": pd.Series([], dtype=float),
                         "accuracy": pd.Series([], dtype=float), "file": pd.Series([], dtype=object),
                         "line": pd.Series([], dtype=np.int64)})
