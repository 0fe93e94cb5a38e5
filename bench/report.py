"""A bench's JSON report and its docs page's table, always rendered from the report: measured now and written to
--out, or read back from a report written before (--from-result, nothing measured: how `make docs` rewrites a page
without measuring again). The table is drawn from the report as the file holds it either way, so the two give the
same page.

    ap = argparse.ArgumentParser(...)
    add_report_arguments(ap, "docs/results/speed/lm_speed.json")
    report = report_of(ap.parse_args(argv), lambda: {...})   # then: write_block(args.doc, ...) from `report`
"""
from __future__ import annotations

import argparse
from typing import Callable

from shared.atomic import atomic_write_json, read_json_object


def add_report_arguments(ap: argparse.ArgumentParser, out: str | None) -> None:
    """--out (default `out`; None: required unless --from-result), --from-result, --doc, --force."""
    ap.add_argument("--out", default=out, help="the JSON report" + (f" (default {out})" if out else ""))
    ap.add_argument("--from-result", default=None,
                    help="a JSON report written before: its table goes to --doc, nothing is measured")
    ap.add_argument("--doc", default=None, help="a Markdown page with the markers: the table goes there")
    ap.add_argument("--force", action="store_true", help="replace a table measured at scale paper with another scale's")


def report_of(args: argparse.Namespace, measure: Callable[[], dict]) -> dict:
    """The report of --from-result, or measure() written to --out; either way as its JSON file holds it."""
    if args.from_result:
        if not args.doc:
            raise SystemExit("--from-result renders the table of --doc: give --doc")
        return read_json_object(args.from_result, "bench report")
    if not args.out:
        raise SystemExit("give --out (where the report goes) or --from-result (a report written before)")
    atomic_write_json(args.out, measure())
    return read_json_object(args.out, "bench report")
