"""PostGIS as a source: read a table or a read-only query into the same frames a file gives.

A ``[sources.NAME]`` with ``url = "postgresql:///gis"`` and ``table =`` (or ``sql =``) is read here and
then goes through the one post-read path of every layer (:func:`gisgrid.io.files.finish_layer`): the
declared CRS, GCJ-02/BD-09 conversion, the coordinate checks; field and value mapping, validation and
repair records follow exactly as for a file.

Safety rules, each held by a test:

* credentials come from libpq only (``PGPASSWORD``, ``~/.pgpass``, a service file): a URL holding a
  password is refused, and no error or log line shows one;
* a table name from the config is looked up as a parameter and quoted as an identifier
  (:class:`psycopg.sql.Identifier`), never spliced into SQL;
* every read, ``sql =`` included, runs in a READ ONLY transaction, one statement only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid._errors import ConfigError, CRSError, InputError, SchemaError
from gisgrid.io.files import _text_frame, finish_layer, show_controls
from gisgrid.vocab import nearest

__all__ = ["DB_KEYS", "check_source", "check_url", "connect", "display_url", "is_database_url", "read_postgis",
           "read_postgis_table", "safe_reason"]

logger = logging.getLogger(__name__)

#: The keys a database source adds to ``[sources.NAME]``.
DB_KEYS: tuple[str, ...] = ("url", "table", "sql", "geometry")
_SCHEMES = ("postgresql", "postgres")
_TABLE_KINDS = ("r", "v", "m", "f", "p")  # tables, views, materialized views, foreign and partitioned tables


def is_database_url(value: Any) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in _SCHEMES and "://" in value


def display_url(url: str) -> str:
    """The URL as it may be shown: scheme, user, host, port and database, never a password or other options."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username) if parts.username else ""
    host = parts.hostname or ""
    with contextlib.suppress(ValueError):
        host += f":{parts.port}" if parts.port else ""
    query = urllib.parse.parse_qs(parts.query)
    service = f"?service={query['service'][0]}" if query.get("service") else ""
    return f"{parts.scheme}://{user + '@' if user else ''}{host}{parts.path}{service}"


def check_url(url: Any, *, where: str) -> str:
    """Refuse a URL that is not PostgreSQL's or that holds a password; return it unchanged.

    Raises
    ------
    ConfigError
        Naming ``where`` (e.g. ``[sources.grids] url``), never echoing a password.
    """
    if not is_database_url(url):
        # never echoed whole: a wrong URL may still carry a password
        shown = f"a {url.split('://', 1)[0]}:// URL" if isinstance(url, str) and "://" in url else \
            "text that is not a URL" if isinstance(url, str) else repr(url)
        msg = f"{where} must be a postgresql:// URL, not {shown}."
        raise ConfigError(msg, fix='write url = "postgresql://host/dbname" (or "postgresql:///dbname" for the local '
                                   "server)")
    parts = urllib.parse.urlsplit(url)
    query = {k.lower() for k in urllib.parse.parse_qs(parts.query, keep_blank_values=True)}
    try:
        has_password = parts.password is not None or "password" in query
        parts.port  # noqa: B018 - a port that is not a number raises here, not in libpq
    except ValueError:
        msg = f"{where} is not a valid URL (its port is not a number)."
        raise ConfigError(msg, fix='write url = "postgresql://host:5432/dbname"') from None
    if has_password:
        msg = f"{where} holds a password; a config file is no place for one (it is copied, mailed and versioned)."
        raise ConfigError(msg, fix="remove it from the URL and give it as libpq does: a line in ~/.pgpass "
                                   "(host:port:db:user:password, mode 0600), a service file, or PGPASSWORD")
    return url


_PASSWORD_RE = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def safe_reason(exc: BaseException) -> str:
    """The server's or libpq's complaint in one line, with anything that looks like a password removed."""
    text = " ".join(str(exc).split())
    text = _PASSWORD_RE.sub(r"\1***", text)
    text = re.sub(r"://([^:/@\s]+):[^@\s]+@", r"://\1:***@", text)
    secret = os.environ.get("PGPASSWORD")
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= 300 else text[:299] + "…"


def _fix_for(reason: str) -> str:
    low = reason.lower()
    if "password" in low or "authentication" in low or ("role" in low and "does not exist" in low):
        return ("check the user (PGUSER, or user@ in the URL) and give the password as libpq does: ~/.pgpass, "
                "a service file or PGPASSWORD, never in the config")
    if "database" in low and "does not exist" in low:
        return "check the database name at the end of the URL"
    return "check the server is running and reachable: host and port in the URL, or PGHOST/PGPORT"


@contextlib.contextmanager
def connect(url: str, *, where: str, read_only: bool = True, application_name: str = "gisgrid") -> Iterator[Any]:
    """A psycopg connection to ``url`` (libpq settings and credentials from the environment).

    ``read_only`` connections run every transaction READ ONLY. The connection is closed at the end of
    the block (rolled back unless the block committed).

    Raises
    ------
    InputError
        The server refused or could not be reached: naming ``where`` and the fix, never a password.
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        msg = f"{where} reads PostgreSQL, but psycopg is not installed."
        raise InputError(msg, fix="pip install 'psycopg[binary]'") from None
    check_url(url, where=f"{where} url")
    try:
        conn = psycopg.connect(url, application_name=application_name, connect_timeout=15)
    except psycopg.Error as exc:
        reason = safe_reason(exc)
        msg = f"{where}: cannot connect to {display_url(url)} ({reason})."
        raise InputError(msg, fix=_fix_for(reason)) from None
    try:
        conn.read_only = read_only
        yield conn
    except psycopg.Error as exc:  # a dropped connection, a timeout, a right missing: said, not a crash
        reason = safe_reason(exc)
        msg = f"{where}: the database {display_url(url)} refused or failed ({reason})."
        raise InputError(msg, fix="check the user's rights on the tables and that the server is up") from None
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


# --------------------------------------------------------------------------- reading
def _resolve_table(conn: Any, table: str, where: str) -> tuple[str, str]:
    """``schema.table`` (or a table on the search path) as (schema, name), looked up with parameters."""
    query = ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
             "ON n.oid = c.relnamespace WHERE c.relname = %(t)s AND c.relkind = ANY(%(k)s) "
             "AND (n.nspname = %(s)s OR (%(s)s::text IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))")
    candidates: list[tuple[str | None, str]] = [(None, table)]
    if "." in table:
        first, rest = table.split(".", 1)
        candidates.insert(0, (first.strip('"'), rest.strip('"')))
    for schema, name in candidates:
        row = conn.execute(query, {"t": name, "s": schema, "k": list(_TABLE_KINDS)}).fetchone()
        if row is not None:
            return str(row[0]), str(row[1])
    spatial = [f"{s}.{t}" for s, t in conn.execute(
        "SELECT DISTINCT f_table_schema, f_table_name FROM public.geometry_columns ORDER BY 1, 2 LIMIT 2000"
    ).fetchall()] if _has_postgis(conn) else []
    close = nearest(table, spatial)
    schema = table.split(".", 1)[0] + "." if "." in table else ""
    # the tables of the schema named first (a town's layers sit together), then the rest
    have = sorted(spatial, key=lambda t: (not t.startswith(schema), t))[:12]
    msg = f"{where}: the database has no table {table!r} (or this user may not see it)."
    hint = f"did you mean {close!r}? " if close else ""
    fix = f"{hint}set table to one of {have}" if have else "check the table name (schema.table) and the user's rights"
    raise InputError(msg, layer=table, fix=fix)


def _has_postgis(conn: Any) -> bool:
    return conn.execute("SELECT to_regtype('public.geometry') IS NOT NULL").fetchone()[0]


def _geometry_oid(conn: Any) -> int | None:
    row = conn.execute("SELECT oid FROM pg_catalog.pg_type WHERE typname = 'geometry'").fetchone()
    return None if row is None else int(row[0])


def _srid_crs(conn: Any, srid: int, where: str) -> pyproj.CRS:
    row = conn.execute("SELECT auth_name, auth_srid, srtext FROM public.spatial_ref_sys WHERE srid = %s",
                       (srid,)).fetchone()
    if row is not None and str(row[0]).upper() == "EPSG" and row[1]:
        return pyproj.CRS.from_epsg(int(row[1]))
    if row is not None and row[2]:
        return pyproj.CRS.from_wkt(row[2])
    msg = f"{where}: SRID {srid} is not in the database's spatial_ref_sys."
    raise CRSError(msg, fix=f'declare the CRS under {where}: crs = "EPSG:4490" (or the CRS the data is in)')


def _fetch(conn: Any, query: Any, where: str, params: Any = None) -> tuple[list[str], list[int], list[tuple[Any, ...]]]:
    """Run one statement with a binary cursor (geometry arrives as EWKB bytes); names, type oids, rows."""
    import psycopg

    try:
        with conn.cursor(binary=True) as cur:
            cur.execute(query, params)
            if cur.description is None:
                msg = f"{where}: the sql returns no rows (it is not a SELECT)."
                raise InputError(msg, fix="write sql = \"select ... from ...\"")
            names = [d.name for d in cur.description]
            oids = [d.type_code for d in cur.description]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        reason = safe_reason(exc)
        msg = f"{where}: the database refused the query ({reason})."
        fix = ("a sql source is read-only and one statement: write a single select" if "read-only" in reason
               or "multiple commands" in reason else "check the sql, the table and the user's rights")
        raise InputError(msg, fix=fix) from None
    return names, oids, rows


_NUMERIC_OID = 1700  # numeric: psycopg gives Decimal; a file reader gives floats


def _frame(names: list[str], oids: list[int], columns: list[tuple[Any, ...]], skip: set[int]) -> pd.DataFrame:
    """The attribute columns (``columns``: the rows transposed) as a DataFrame, numeric as float."""
    cols: dict[str, Any] = {}
    for i, name in enumerate(names):
        if i in skip:
            continue
        values: Any = columns[i] if columns else ()
        if oids[i] == _NUMERIC_OID:
            values = [None if v is None else float(v) for v in values]
        cols[name] = pd.Series(list(values), dtype=object) if not len(values) else pd.Series(list(values))
    return pd.DataFrame(cols, columns=[n for i, n in enumerate(names) if i not in skip])


def _query_for(conn: Any, *, table: str | None, sql_text: str | None, where: str) -> tuple[Any, str]:
    from psycopg import sql

    if (table is None) == (sql_text is None):
        msg = f"{where} needs either table = or sql = with its url."
        raise ConfigError(msg, fix=f'write table = "schema.table" under {where}')
    if table is not None:
        schema, name = _resolve_table(conn, table, where)
        # a table has no row order of its own: its primary key's (ogr2ogr's ogc_fid), so that row numbers in
        # repairs and issues follow the features as they were loaded; else the order the server keeps them
        pk = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass "
            "AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)", (schema, name)).fetchall()]
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        if pk:
            query = sql.SQL("{} ORDER BY {}").format(query, sql.SQL(", ").join(sql.Identifier(c) for c in pk))
        return query, f"{schema}.{name}"
    return sql.SQL(sql_text.strip().rstrip(";")), "sql"  # type: ignore[union-attr]


def read_postgis(
    url: str,
    *,
    table: str | None = None,
    sql: str | None = None,
    geometry: str | None = None,
    crs: Any = None,
    name: str = "layer",
) -> gpd.GeoDataFrame:
    """Read a PostGIS table or a read-only query as a layer.

    Parameters
    ----------
    url
        ``postgresql://`` URL without a password (libpq finds it in ``~/.pgpass``, a service file or
        ``PGPASSWORD``).
    table
        ``schema.table`` or a table on the search path; looked up with parameters, quoted as an identifier.
    sql
        A single SELECT, run in a READ ONLY transaction (instead of ``table``).
    geometry
        The geometry column (needed only when there are several).
    crs
        Declared CRS (the config's ``crs =``): needed when the SRID is 0; overrides the SRID otherwise,
        and ``"GCJ-02"``/``"BD-09"`` are converted to WGS84, exactly as for a file.
    name
        The source's name, for messages (``[sources.NAME]``).

    Returns
    -------
    GeoDataFrame
        In the CRS of the SRID (or the declared one), index 0..n-1, ``attrs["source"]`` describing the
        database table (rows, SRID, geometry types) for ``gisgrid check``.

    Raises
    ------
    InputError, SchemaError, CRSError, ConfigError
        A refused connection, a missing table or column, SRID 0 without ``crs =``: each naming the source.
    """
    where = f"[sources.{name}]"
    with connect(url, where=where) as conn:
        query, label = _query_for(conn, table=table, sql_text=sql, where=where)
        geom_oid = _geometry_oid(conn)
        if geom_oid is None:
            msg = f"{where}: the database {display_url(url)} has no PostGIS (no geometry type)."
            raise InputError(msg, fix="CREATE EXTENSION postgis in that database, or point url at the right one")
        names, oids, rows = _fetch(conn, query, where)
        geo_cols = [i for i, oid in enumerate(oids) if oid == geom_oid]
        if geometry is not None:
            if geometry not in names:
                have = list(names)
                msg = f"{where}: {label} has no column {geometry!r}; it has {have}."
                raise SchemaError(msg, layer=label, column=geometry, fix=f"correct geometry = under {where}")
            gi = names.index(geometry)
            if gi not in geo_cols:
                msg = f"{where}: column {geometry!r} of {label} is not a PostGIS geometry."
                raise SchemaError(msg, layer=label, column=geometry,
                                  fix="name a geometry column (a geography or text column: cast it with ::geometry)")
        elif len(geo_cols) == 1:
            gi = geo_cols[0]
        else:
            have = [names[i] for i in geo_cols]
            msg = (f"{where}: {label} has no geometry column." if not have
                   else f"{where}: {label} has several geometry columns {have}.")
            fix = f"set geometry = one of {have} under {where}" if have else "point table or sql at a spatial table"
            raise SchemaError(msg, layer=label, fix=fix)
        columns = list(zip(*rows, strict=True))  # transposed once, in C
        wkb = np.array(columns[gi] if rows else [], dtype=object)
        geoms = shapely.from_wkb(wkb) if len(wkb) else np.array([], dtype=object)
        present = ~shapely.is_missing(geoms)
        srids = sorted({int(s) for s in shapely.get_srid(geoms[present])}) if present.any() else []
        if len(srids) > 1:
            msg = f"{where}: {label} mixes geometries of SRIDs {srids}."
            raise CRSError(msg, layer=label, column=names[gi],
                           fix="transform them to one SRID in the database (ST_Transform), or select one")
        srid = srids[0] if srids else _declared_srid(conn, label, names[gi])
        layer_crs = None
        if srid:
            layer_crs = _srid_crs(conn, srid, where) if crs is None else None
        elif crs is None and present.any():
            msg = f"{where}: the geometry column {names[gi]!r} of {label} has SRID 0: its CRS is unknown."
            raise CRSError(msg, layer=label, column=names[gi],
                           fix=f'declare it under {where}: crs = "EPSG:4490" (or the CRS it is in), or set the '
                               "SRID in the database (UpdateGeometrySRID)")
    attrs = _frame(names, oids, columns, set(geo_cols))
    gdf = gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(shapely.set_srid(geoms, 0) if len(geoms) else geoms),
                           crs=layer_crs)
    types = sorted({str(t) for t in gdf.geometry.geom_type.dropna().unique()})
    source = {"path": display_url(url), "layer": label,
              "database": {"table": None if label == "sql" else label, "sql": label == "sql", "rows": len(gdf),
                           "srid": srid, "geometry": names[gi], "geometry_types": types}}
    logger.info("%s: read %d rows from %s %s (SRID %s)", where, len(gdf), display_url(url), label, srid)
    return finish_layer(gdf, crs=crs, where={"path": display_url(url), "layer": label}, source=source)


def _declared_srid(conn: Any, label: str, column: str) -> int:
    """The SRID a table declares for its column (0 for a query, or an empty or unconstrained column)."""
    if label == "sql" or "." not in label:
        return 0
    schema, table = label.split(".", 1)
    row = conn.execute("SELECT srid FROM public.geometry_columns WHERE f_table_schema = %s AND f_table_name = %s "
                       "AND f_geometry_column = %s", (schema, table, column)).fetchone()
    return int(row[0]) if row and row[0] else 0


def read_postgis_table(url: str, *, table: str | None = None, sql: str | None = None,
                       name: str = "table") -> pd.DataFrame:
    """Read a roster (no geometry) from PostgreSQL: every cell as text or None, as a CSV roster reads.

    Geometry columns, when the table has any, are left out. See :func:`read_postgis` for the rules.
    """
    where = f"[sources.{name}]"
    with connect(url, where=where) as conn:
        query, label = _query_for(conn, table=table, sql_text=sql, where=where)
        geom_oid = _geometry_oid(conn)
        names, oids, rows = _fetch(conn, query, where)
    # as read_table does: every cell text or None, control characters shown, not obeyed
    skip = {i for i, oid in enumerate(oids) if oid == geom_oid}
    df = show_controls(_text_frame(_frame(names, oids, list(zip(*rows, strict=True)), skip)))
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["source"] = {"path": display_url(url), "layer": label,
                          "database": {"table": None if label == "sql" else label, "sql": label == "sql",
                                       "rows": len(df), "srid": None, "geometry": None, "geometry_types": []}}
    return df.reset_index(drop=True)


def check_source(spec: Mapping[str, Any], *, where: str, path: Any = None) -> None:
    """Check the database keys of a ``[sources.NAME]`` table (no connection is made).

    Raises
    ------
    ConfigError
        A password in the URL, both or neither of ``table``/``sql``, file keys beside ``url``, or database
        keys without ``url``.
    """
    db_only = [k for k in ("table", "sql", "geometry") if k in spec]
    if "url" not in spec:
        if db_only:
            msg = f"{where} has {db_only} but no url."
            raise ConfigError(msg, path=path, fix=f'add url = "postgresql:///dbname" under {where}, or remove them')
        return
    try:
        check_url(spec["url"], where=f"{where} url")
    except ConfigError as exc:
        raise ConfigError(exc.what, path=path, fix=exc.fix) from None
    file_keys = [k for k in ("path", "layer", "encoding", "sheet") if k in spec]
    if file_keys:
        msg = f"{where} has both url and {file_keys}: a source is a database table or a file, not both."
        raise ConfigError(msg, path=path, fix="keep url with table (or sql), or keep path")
    if ("table" in spec) == ("sql" in spec):
        msg = f"{where} needs one of table = or sql = with its url{', not both' if 'table' in spec else ''}."
        raise ConfigError(msg, path=path, fix=f'write table = "schema.table" under {where}')
    for key in ("table", "sql", "geometry"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key].strip()):
            msg = f"{where} {key} must be text, not {spec[key]!r}."
            raise ConfigError(msg, path=path, fix=f'write {key} = "..."')
