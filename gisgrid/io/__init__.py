"""Everything that touches files: reading layers, tables and config; writing atomically.

``files`` reads (encodings, layers, tables, the config file), ``atomic`` writes
without ever leaving half a file or folder and holds the run lock, ``tables``
writes CSV, XLSX, GeoJSON and GeoPackage through one formula-safe rule, and
``config`` parses the config once into typed options. ``history`` and
``pipeline`` are the only other modules that touch files.
"""

from __future__ import annotations

from gisgrid.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    file_digest,
    file_lock,
    remove_stale_staging,
    safe_filename,
    staged_folder,
    write_with,
)
from gisgrid.io.files import Rows, detect_encoding, list_layers, read_config, read_layer, read_table, read_values
from gisgrid.io.postgis import display_url, read_postgis, read_postgis_table
from gisgrid.io.tables import (
    FORMULA_STARTS,
    PendingFile,
    defuse,
    jsonable,
    start_xlsx,
    write_csv,
    write_geojson,
    write_layers,
    write_xlsx,
)

__all__ = [
    "FORMULA_STARTS",
    "PendingFile",
    "Rows",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "defuse",
    "detect_encoding",
    "display_url",
    "file_digest",
    "file_lock",
    "jsonable",
    "list_layers",
    "read_config",
    "read_layer",
    "read_postgis",
    "read_postgis_table",
    "read_table",
    "read_values",
    "remove_stale_staging",
    "safe_filename",
    "staged_folder",
    "start_xlsx",
    "write_csv",
    "write_geojson",
    "write_layers",
    "write_with",
    "write_xlsx",
]
