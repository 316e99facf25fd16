"""Turn finished runs into the tables of the Recon paper: mean ± std over seeds, Δm in percent, model size.

Each RUN_DIR is a run directory or a folder searched recursively for them
(folders holding config.yaml). Runs are grouped by dataset, method and Recon
setting; the values are the mean ± sample standard deviation (ddof=1) over
seeds of summary.json's test metrics. Δm% is computed against the single-task
runs given (one task each) or else against eval.reference of the runs' config.
Runs without summary.json are listed apart and not averaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon.report import FORMATS, build_report, find_run_dirs, load_runs, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding them")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="output format: an aligned text table, Markdown or CSV (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE instead of printing it")


def run(args: argparse.Namespace) -> int:
    report = build_report(load_runs(find_run_dirs(args.runs)))
    text = render(report, args.format)

    # CSV has no place for the runs left out, so they go to stderr where they are seen.
    if args.format == "csv" and report.excluded:
        print("runs left out (not averaged):", file=sys.stderr)
        for excluded in report.excluded:
            print(f"  {excluded.path}: {excluded.problem}", file=sys.stderr)

    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"report written to {args.output}")
    return 0
