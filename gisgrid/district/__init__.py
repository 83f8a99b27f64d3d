"""District and city runs: every town as its own Dask task, district checks, a town ranking.

:func:`run_district` is the entry point (``gisgrid run district.toml``); :mod:`~gisgrid.district.config`
reads the district config, :mod:`~gisgrid.district.tasks` is one town's task, :mod:`~gisgrid.district.checks`
the district findings, :mod:`~gisgrid.district.outputs` the report and tables, :mod:`~gisgrid.district.history`
the district history, :mod:`~gisgrid.district.partition` shared layers split by a town column
(``partition_by``). See docs/district.md.
"""

from gisgrid.district.config import DistrictConfig, is_district, load_district
from gisgrid.district.run import EXIT_CODES, DistrictProgress, DistrictResult, check_district, connect, run_district

__all__ = ["EXIT_CODES", "DistrictConfig", "DistrictProgress", "DistrictResult", "check_district", "connect",
           "is_district", "load_district", "run_district"]
