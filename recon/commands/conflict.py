"""Compute the S-conflict scores of a search run and write its layer permutation.

Reads RUN_DIR/conflict/cosines.pt. A layer's score is the number of (step, task
pair) entries whose gradient cosine on that layer is below S, over the recorded
steps i with A <= i/n < B for --window A:B (n recorded steps). Writes under
RUN_DIR/conflict/: permutation_S<S>[_window<A>-<B>].json (layer -> score, most
conflicting first, ties in model layer order), scores_<...>.png and cosines_<...>.png,
and prints the top layers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon.conflict.charts import plot_cosine_distribution, plot_scores
from recon.conflict.recorder import COSINES_FILE
from recon.conflict.scores import (
    check_threshold,
    conflict_scores,
    load_cosines,
    parse_window,
    permutation_file_name,
    settings_suffix,
    window_indices,
    write_permutation,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory of a search run (recon.record=true)")
    parser.add_argument("--S", type=float, required=True, dest="S",
                        help="cosine threshold, -1 < S <= 0: a pair below S counts as a conflict")
    parser.add_argument("--window", default="0:1",
                        help="fractions A:B of the recorded steps to count, e.g. 0:0.25 for the first "
                             "quarter (default: 0:1, all steps)")
    parser.add_argument("--top", type=int, default=10, help="number of layers to print (default: 10)")


def run(args: argparse.Namespace) -> int:
    S = check_threshold(args.S)
    window = parse_window(args.window)
    if args.top < 1:
        raise ValueError(f"--top must be a positive number of layers; found {args.top}")
    record = load_cosines(args.run_dir)

    # Scores and the permutation file.
    scores = conflict_scores(record.cos, record.layers, S, window)
    out_dir = args.run_dir / COSINES_FILE.parent
    permutation_path = out_dir / permutation_file_name(S, window)
    write_permutation(scores, permutation_path)

    # Charts of the same window.
    steps = window_indices(record.cos.shape[0], window)
    suffix = settings_suffix(S, window)
    scores_chart = out_dir / f"scores{suffix}.png"
    cosines_chart = out_dir / f"cosines{suffix}.png"
    plot_scores(scores, record.layers, S, scores_chart)
    plot_cosine_distribution(record.cos[steps.start:steps.stop], record.layers, S, cosines_chart)

    # Report.
    params = dict(zip(record.layers, record.params))
    print(f"S-conflict scores of {args.run_dir}: S = {S!r}, window {window[0]:g}:{window[1]:g} = "
          f"recorded steps {steps.start} to {steps.stop - 1} of {record.cos.shape[0]} "
          f"(training steps {record.steps[steps.start]} to {record.steps[steps.stop - 1]}), "
          f"task pairs: {len(record.pairs)}")
    print(f"{'rank':>4}  {'score':>8}  {'params':>10}  layer")
    for rank, (name, score) in enumerate(list(scores.items())[: args.top], start=1):
        print(f"{rank:>4}  {score:>8}  {params[name]:>10,}  {name}")
    print(f"permutation: {permutation_path}")
    print(f"charts: {scores_chart}, {cosines_chart}")
    return 0
