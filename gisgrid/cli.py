"""Command line: ``gisgrid demo | check | run | map | history | dispatch``.

Exit codes: 0 done and within thresholds; 1 done but a veto item or a
configured threshold was hit; 2 bad input or configuration (the message says
what and where; ``--debug`` adds the traceback); 3 an unexpected failure (one
line, the traceback in a log file); 4 done, but a dispatch channel failed
(``gisgrid dispatch``; ``run --dispatch`` adds 4 to its 0 or 1, so 5 is a
threshold hit and a failed channel; the rest of the messages went out);
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

from gisgrid import __version__
from gisgrid._errors import GisgridError

__all__ = ["EXIT_CRASH", "main"]

#: Exit code of an unexpected failure (0 done, 1 veto or threshold hit, 2 bad input, 130 interrupted).
EXIT_CRASH = 3

logger = logging.getLogger("gisgrid.cli")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _safe(text: object) -> str:
    """Text for a terminal or a cron mail: control characters (escape sequences from data) shown, not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _say(text: object, *, file: Any = None, flush: bool = False) -> None:
    print(_safe(text), file=file or sys.stdout, flush=flush)


class _SafeFormatter(logging.Formatter):
    """Log lines with control characters shown, not obeyed (names in the data may carry escape sequences)."""

    def format(self, record: logging.LogRecord) -> str:
        return _safe(super().format(record))


class _Progress:
    """Step progress on an interactive terminal (tqdm); silent in cron logs and pipes."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            import shutil

            from tqdm import tqdm

            # a terminal that reports no size (some emulators, `script`, a fresh pty) would hide the bar
            size = shutil.get_terminal_size((100, 24))
            self.bar = tqdm(total=total, unit="step", leave=False, file=sys.stderr, ncols=min(size.columns, 120),
                            nrows=size.lines or 24)
        self.bar.set_description_str(step)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _configure_logging(verbose: int, quiet: bool, debug: bool) -> None:
    level = logging.WARNING
    if debug or verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    if quiet:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("gisgrid")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"not a date: {text!r} (use YYYY-MM-DD)"
        raise argparse.ArgumentTypeError(msg) from None


_CONFIG_HELP = "gisgrid.toml, a folder with one, or a GeoPackage (default: ./gisgrid.toml, else the demo town)"
_OUT_HELP = "folder for {} (default: the config's folder; for the demo town, the current folder)"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="print one summary line only (for cron mail)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    p = argparse.ArgumentParser(
        prog="gisgrid",
        description="Full-area grid coverage checks for a township command center (全域网格化覆盖检查).",
    )
    p.add_argument("--version", action="version", version=f"gisgrid {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", parents=[common], help="(re)make the synthetic demo data set")
    d.add_argument("--scale", choices=["town", "county", "district"], default="town")
    d.add_argument("--towns", type=int, default=24, help="district: how many towns (default 24)")
    d.add_argument("--town-grids", type=int, default=60, help="district: grids per town (default 60)")
    d.add_argument("--shared", action="store_true",
                   help="district: every layer and roster once for all towns, with a town column (a district.toml "
                        "with partition_by), instead of a folder and config per town")
    d.add_argument("--out", default="data/geo", help="folder to write (default data/geo)")
    d.add_argument("--clean", action="store_true",
                   help="exact borders: neighbours share them to the centimetre (default: hand-drawn, each grid "
                        "drawn on its own)")

    c = sub.add_parser("check", parents=[common], help="validate the input data only")
    c.add_argument("config", nargs="?", help=_CONFIG_HELP)

    r = sub.add_parser("run", parents=[common], help="analyse, map, report and record history")
    r.add_argument("config", nargs="?", help=_CONFIG_HELP)
    r.add_argument("--out", default=None, help=_OUT_HELP.format("maps/ and reports/"))
    r.add_argument("--as-of", type=_date, default=None, help="date of the run, YYYY-MM-DD (default: today)")
    r.add_argument("--force", action="store_true", help="allow a run dated before the last recorded run")
    r.add_argument("--no-maps", action="store_true", help="skip the HTML maps")
    r.add_argument("--dispatch", action="store_true",
                   help="then send each owner's news over the [dispatch] channels (see gisgrid dispatch)")
    r.add_argument("--scheduler", default=None, help="district runs: local, threads, sync or tcp://host:8786 "
                   "(default: [compute] scheduler)")
    r.add_argument("--workers", type=int, default=None, help="district runs: local worker processes")

    s = sub.add_parser("dispatch", parents=[common],
                       help="send each owner's new and overdue items (WeCom, DingTalk, e-mail, webhook), once")
    s.add_argument("config", nargs="?", help=_CONFIG_HELP)
    s.add_argument("--out", default=None, help=_OUT_HELP.format("the run's reports/history.sqlite (the outbox)"))
    s.add_argument("--as-of", type=_date, default=None, help="the run date, YYYY-MM-DD (default: the latest run)")
    s.add_argument("--dry-run", action="store_true", help="print exactly what would be sent, per channel; send "
                   "nothing")

    h = sub.add_parser("history", parents=[common], help="the run history: list the runs, or undo one")
    h.add_argument("action", choices=["list", "undo"], help="list the recorded runs, or undo one")
    h.add_argument("date", nargs="?", default=None, help="undo: the date of the run to remove (YYYY-MM-DD)")
    h.add_argument("config", nargs="?", help=_CONFIG_HELP)
    h.add_argument("--out", default=None, help=_OUT_HELP.format("the run's reports/history.sqlite"))

    s = sub.add_parser("score", parents=[common], help="rank villages and departments over a period (测评)")
    s.add_argument("config", nargs="?", help=_CONFIG_HELP)
    s.add_argument("--period", default=None,
                   help="2026Q4, 2026-11 or 2026 (default: the [scoring] period of the latest run)")
    s.add_argument("--out", default=None, help=_OUT_HELP.format("the run's reports/"))

    m = sub.add_parser("map", parents=[common], help="write the command-center maps only")
    m.add_argument("config", nargs="?", help=_CONFIG_HELP)
    m.add_argument("--out", default=None, help=_OUT_HELP.format("maps/"))
    m.add_argument("--village", default=None, help="only this village's map (village id)")
    m.add_argument("--owner", default=None, help="only this owner's map (name)")
    m.add_argument("--basemap", default=None, help="osm, tianditu, gaode or none")
    return p


def _print_table(rows: Any) -> None:
    _say(rows.to_string(index=False))


def _cmd_demo(args: argparse.Namespace) -> int:
    from gisgrid import pipeline

    if args.shared and args.scale != "district":
        _say("gisgrid demo: error: --shared is for --scale district. Fix: gisgrid demo --scale district --shared",
             file=sys.stderr)
        return 2
    if args.scale == "district":
        from gisgrid.district.files import write_district_demo

        written = write_district_demo(args.out, towns=args.towns, grids=args.town_grids, hand_drawn=not args.clean,
                                      shared=args.shared)
    else:
        written = pipeline.write_demo(args.out, scale=args.scale, hand_drawn=not args.clean)
    if not args.quiet:
        for path in written:
            _say(f"wrote {path}")
    return 0


def _cmd_check_district(args: argparse.Namespace) -> int:
    from gisgrid.district import check_district

    if not args.quiet:
        _say(f"district config: {args.config}", flush=True)
    usable, lines = check_district(args.config)
    for line in lines[:1] if args.quiet else lines:
        _say(line)
    _say(f"usable: {'yes' if usable else 'no: the bad towns above would be reported bad_input by the run'}")
    return 0 if usable else 2


def _cmd_check(args: argparse.Namespace) -> int:
    from gisgrid import pipeline
    from gisgrid.district import is_district

    if is_district(args.config):
        return _cmd_check_district(args)
    if not args.quiet:
        _say(pipeline.describe_config(args.config))
    town, table = pipeline.check(args.config)
    target = pipeline.publish_target(args.config)  # [publish]: reachable and writable, or exit 2
    history = pipeline.history_target(args.config)  # [history] url: reachable, or exit 2
    if args.quiet:
        _say(f"OK {town.name}: {len(town.grids)} grids, {len(town.repairs)} repairs, {len(town.issues)} issues")
        return 0
    _say(f"{town.name} — analysis CRS {town.crs.to_string()} ({town.crs.name}), area {town.area_m2 / 1e6:,.2f} km²")
    _print_table(table)
    for lname, src in town.sources.items():  # PostGIS sources: what was found in the database
        db = (src or {}).get("database")
        if db:
            types = ", ".join(db["geometry_types"]) or "no geometry"
            srid = f"SRID {db['srid']}, " if db["srid"] is not None else ""
            _say(f"postgis {lname}: {db['table'] or 'sql query'} in {src['path']}: {db['rows']:,} rows, {srid}{types}")
    for line in (target, history):
        if line:
            _say(line)
    for line in town.derivation_notes():
        _say(line)
    for _, rep in town.repairs.iterrows():
        _say(f"repaired {rep['layer']} {rep['feature_id']}: {rep['detail']}")
    for _, iss in town.issues.iterrows():
        path = str((town.sources.get(iss["source"]) or {}).get("path") or "")
        # Same numbering as the errors: file lines for tables (header is line 1), feature numbers for layers.
        where = (f"line {int(iss['row']) + 2}" if path.lower().endswith((".csv", ".txt", ".xlsx", ".xlsm"))
                 else f"feature {iss['row']}")
        _say(f"issue {iss['source']} {where}: {iss['column']}={iss['value']!r}: {iss['problem']}")
    fit = pipeline.border_mismatch(args.config, town=town)
    _say(f"border mismatch: {fit['verdict']}")
    _say(f"  widths of {fit['measured']:,} of {fit['pieces']:,} slivers: median {fit['median_m']:.2f} m, "
          f"95% {fit['p95_m']:.2f} m, 99% {fit['p99_m']:.2f} m")
    for row in fit["widest"]:
        _say(f"  widest: {row['kind']} {row['width_m']:.2f} m wide, {row['area_m2']:,.1f} m², grids {row['grid_ids']}")
    _say("usable: yes")
    return 0


def _district_progress(enabled: bool) -> Any:
    """One line per town on a terminal: towns done/total, failures, the ETA (and the Dask dashboard once)."""
    shown: list[str] = []

    def show(p: Any) -> None:
        if not enabled:
            return
        if p.dashboard and not shown:
            shown.append(p.dashboard)
            _say(f"Dask dashboard: {p.dashboard}", file=sys.stderr, flush=True)
        if p.town is None:
            return
        eta = f", ETA {p.eta_s:,.0f} s" if p.eta_s is not None and p.done < p.total else ""
        said = "ok" if p.town.status == "ok" else f"{p.town.status}: {p.town.error}"
        _say(f"[{p.done}/{p.total}] {p.town.id} {p.town.name} {said} ({p.town.seconds:,.1f} s); "
             f"{p.failed} failed{eta}", file=sys.stderr, flush=True)

    return show


def _cmd_run_district(args: argparse.Namespace) -> int:
    from gisgrid.district import run_district

    if not args.quiet:
        _say(f"district config: {args.config}", flush=True)
    result = run_district(args.config, out=args.out, as_of=args.as_of, force=args.force, scheduler=args.scheduler,
                          workers=args.workers, maps=False if args.no_maps else None,
                          progress=_district_progress(sys.stderr.isatty() and not args.quiet))
    _say(result.one_line() if args.quiet else result.describe())
    return result.exit_code


def _cmd_run(args: argparse.Namespace) -> int:
    from gisgrid import pipeline
    from gisgrid.district import is_district

    if is_district(args.config):
        return _cmd_run_district(args)
    if not args.quiet:
        _say(pipeline.describe_config(args.config), flush=True)
    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    try:
        result = pipeline.run(args.config, out=args.out, as_of=args.as_of, force=args.force,
                              maps=not args.no_maps, progress=progress, dispatch=args.dispatch)
    finally:
        progress.close()
    if args.quiet:
        _say(result.one_line())
    else:
        _say(result.describe())
    return result.exit_code


def _cmd_history(args: argparse.Namespace) -> int:
    from gisgrid import pipeline

    if args.action == "undo":
        try:
            day = _date(args.date or "")
        except argparse.ArgumentTypeError:
            _say("gisgrid history: error: undo needs the DATE of the run to remove. Fix: gisgrid history undo "
                 "YYYY-MM-DD [CONFIG] [--out DIR]", file=sys.stderr)
            return 2
        _say(pipeline.undo_run(args.config, out=args.out, as_of=day))
        return 0
    for line in pipeline.list_runs(args.config or args.date, out=args.out):  # list takes no date
        _say(line)
    return 0


def _cmd_dispatch(args: argparse.Namespace) -> int:
    from gisgrid import pipeline
    from gisgrid.dispatch import describe_message

    if not args.quiet:
        _say(pipeline.describe_config(args.config))
    result = pipeline.send_dispatch(args.config, out=args.out, as_of=args.as_of, dry_run=args.dry_run)
    if args.dry_run and not args.quiet:
        for message in result.preview:
            _say(describe_message(message))
    for line in [result.one_line()] if args.quiet else result.describe():
        _say(line)
    return result.exit_code


def _cmd_score(args: argparse.Namespace) -> int:
    from gisgrid import pipeline

    if not args.quiet:
        _say(pipeline.describe_config(args.config))
    scores = pipeline.score(args.config, out=args.out, period=args.period)
    if args.quiet:
        _say(scores.lines(top=0)[0] + "; " + "; ".join(line.strip() for line in scores.lines(top=0)[1:]))
        return 0
    for level, table in scores.levels.items():
        _say(f"{level} — {scores.period.label}")
        if len(table):
            _print_table(table[["rank", "party", "name", "score", "lost", "credit", "veto", "overdue", "reopened",
                                "fixed_on_time", "flag"]])
    _say("\n".join(scores.lines()))
    _say(f"wrote {scores.folder}")
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    from gisgrid import pipeline

    if not args.quiet:
        _say(pipeline.describe_config(args.config))
    written = pipeline.make_maps(args.config, out=args.out, village=args.village, owner=args.owner,
                                 basemap=args.basemap)
    if not args.quiet:
        for path in written:
            _say(f"wrote {path}")
    return 0


def _crash_folder(args: argparse.Namespace) -> str:
    """Where the crash log goes: where the operator looks for the report.

    The output folder as the command would have used it: ``--out``, else the config's folder, else here.
    """
    from pathlib import Path

    out = getattr(args, "out", None)
    if out is not None:
        return str(out)
    config = getattr(args, "config", None)
    if config:
        p = Path(config)
        return str(p if p.is_dir() else p.parent)
    return "."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet, args.debug)
    handler = {"demo": _cmd_demo, "check": _cmd_check, "run": _cmd_run, "map": _cmd_map,
               "history": _cmd_history, "score": _cmd_score, "dispatch": _cmd_dispatch}[args.command]
    try:
        return handler(args)
    except GisgridError as exc:
        if args.debug:
            raise
        _say(f"gisgrid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _say(f"gisgrid {args.command}: interrupted; earlier reports are unchanged", file=sys.stderr)
        return 130
    except Exception as exc:  # a crash must not look like "report written, veto hit" (exit 1)
        if args.debug:
            raise
        from gisgrid import pipeline

        where = "no log could be written"
        with contextlib.suppress(OSError):
            where = f"the traceback is in {pipeline.write_crash_log(args.command, exc, _crash_folder(args))}"
        done = ("A run that did not finish is not recorded: the history and the reports agree" if args.command == "run"
                else "Nothing new was published")
        _say(f"gisgrid {args.command}: unexpected error: {type(exc).__name__}: {exc}; {where}. {done}; please report "
             f"it (exit {EXIT_CRASH}).", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
