"""`recon report`: means, sample standard deviations, Δm% and sizes from run directories with known values."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import yaml

from recon.cli import main
from recon.report import Stat, build_report, find_run_dirs, format_stat, load_runs, render


def write_run(root: Path, name: str, *, seed: int, test: dict | None, dataset: str = "multi_fashion",
              method: dict | None = None, tasks: list | None = None, branched: int = 0, size_mb: float = 42.0,
              reference: dict | None = None, epochs: int = 120) -> Path:
    """Write a run directory: a resolved-looking config.yaml and, unless ``test`` is None, summary.json."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {
        "name": None, "seed": seed, "output_dir": str(root), "tasks": tasks,
        "data": {"name": dataset, "root": f"/data/{seed}"},
        "model": {"name": "resnet18", "branch": {"file": None, "top_k": branched or None}},
        "method": method or {"name": "joint"},
        "train": {"epochs": epochs, "lr": 0.1, "device": "cpu"},
        "eval": {"reference": reference},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if test is not None:
        summary = {"test": test, "epochs": epochs, "size_mb": size_mb, "params": round(size_mb * 2**20 / 4),
                   "branched": [f"layer{i}" for i in range(branched)]}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def accuracies(t1: float, t2: float) -> dict:
    # The loss is a diagnostic metric: reported runs carry it, the tables leave it out.
    return {"T1": {"acc": t1, "loss": 0.3}, "T2": {"acc": t2, "loss": 0.5}}


@pytest.fixture
def runs_root(tmp_path) -> Path:
    """Multi-Fashion runs: single-task, joint, joint +R (one named by its alias), CAGrad, and an unfinished run."""
    root = tmp_path / "runs"
    for seed, (t1, t2) in enumerate([(98.0, 89.0), (98.5, 90.0), (99.0, 91.0)]):
        write_run(root, f"single-T1-{seed}", seed=seed, tasks=["T1"], test={"T1": {"acc": t1, "loss": 0.1}})
        write_run(root, f"single-T2-{seed}", seed=seed, tasks=["T2"], test={"T2": {"acc": t2, "loss": 0.1}})
    for seed, (t1, t2) in enumerate([(97.0, 88.0), (97.5, 89.0), (98.0, 90.0)]):
        write_run(root / "joint", f"seed{seed}", seed=seed, test=accuracies(t1, t2))
    for seed, (t1, t2) in enumerate([(98.1, 89.5), (98.3, 89.3), (98.2, 89.4)]):
        name = "Baseline" if seed == 1 else "joint"
        write_run(root / "recon", f"seed{seed}", seed=seed, method={"name": name}, branched=25, size_mb=43.5,
                  test=accuracies(t1, t2))
    for seed, (t1, t2) in enumerate([(97.4, 88.8), (97.6, 88.6)]):
        write_run(root, f"cagrad-{seed}", seed=seed, method={"name": "cagrad", "alpha": 0.2},
                  test=accuracies(t1, t2))
    unfinished = write_run(root / "joint", "seed3", seed=3, test=None)
    (unfinished / "metrics.jsonl").write_text('{"step": 10, "epoch": 4}\n{"step": 20, "epoch": 5}\n')
    return root


def rows_by_label(table) -> dict:
    return {row.label: row for row in table.rows}


def test_single_task_row_is_reference(runs_root):
    report = build_report(load_runs(find_run_dirs([runs_root])))
    (table,) = report.tables
    row = rows_by_label(table)["single-task"]

    assert table.columns == [("T1", "acc"), ("T2", "acc")]
    assert row.metrics[("T1", "acc")] == Stat(98.5, pytest.approx(0.5), 3)
    assert row.metrics[("T2", "acc")] == Stat(90.0, pytest.approx(1.0), 3)
    # Two single-task models of 42 MB. The Recon paper's single-task size is the sum of the T models.
    assert row.size_mb == pytest.approx(84.0)
    assert row.delta is None
    assert row.seeds == [0, 1, 2]
    assert len(row.runs) == 6


def test_method_row_mean_std_and_delta(runs_root):
    (table,) = build_report(load_runs(find_run_dirs([runs_root]))).tables
    row = rows_by_label(table)["joint"]

    t1, t2 = [97.0, 97.5, 98.0], [88.0, 89.0, 90.0]
    assert row.metrics[("T1", "acc")].mean == pytest.approx(statistics.mean(t1))
    assert row.metrics[("T1", "acc")].std == pytest.approx(statistics.stdev(t1))
    assert row.metrics[("T2", "acc")].std == pytest.approx(statistics.stdev(t2))

    # Δm% of each seed against the single-task means 98.5 and 90.0, then mean and sample std.
    deltas = [((a - 98.5) / 98.5 + (b - 90.0) / 90.0) / 2 * 100 for a, b in zip(t1, t2)]
    assert row.delta.mean == pytest.approx(statistics.mean(deltas))
    assert row.delta.std == pytest.approx(statistics.stdev(deltas))
    assert row.delta.count == 3
    assert row.delta.mean == pytest.approx(-1.0631698, abs=1e-6)
    assert row.reference == "the single-task runs of this report"
    assert row.seeds == [0, 1, 2]


def test_recon_rows_grouped_by_k_and_alias(runs_root):
    (table,) = build_report(load_runs(find_run_dirs([runs_root]))).tables
    rows = rows_by_label(table)

    assert list(rows) == ["single-task", "joint", "joint +R", "cagrad (alpha=0.2)"]
    recon_row = rows["joint +R"]
    assert recon_row.recon_k == 25
    assert len(recon_row.runs) == 3
    assert recon_row.size_mb == pytest.approx(43.5)
    assert recon_row.metrics[("T1", "acc")].mean == pytest.approx(98.2)
    assert recon_row.metrics[("T1", "acc")].std == pytest.approx(0.1)
    assert not [note for note in table.notes if note.startswith("joint +R")]

    cagrad = rows["cagrad (alpha=0.2)"]
    assert cagrad.metrics[("T1", "acc")] == Stat(pytest.approx(97.5), pytest.approx(statistics.stdev([97.4, 97.6])), 2)


def test_unfinished_run_left_out(runs_root):
    report = build_report(load_runs(find_run_dirs([runs_root])))
    (excluded,) = report.excluded
    assert excluded.path == runs_root / "joint" / "seed3"
    assert excluded.problem == "unfinished: no summary.json, last logged epoch 5 of 120"
    assert len(rows_by_label(report.tables[0])["joint"].runs) == 3

    text = render(report, "table")
    assert f"{runs_root / 'joint' / 'seed3'}: unfinished: no summary.json" in text


def test_markdown_rows(runs_root):
    text = render(build_report(load_runs(find_run_dirs([runs_root]))), "markdown")
    lines = text.splitlines()
    assert "| method | K | T1 acc | T2 acc | Δm% | size MB | params | seeds |" in lines
    # Single-task sizes add up over tasks: 2 × 42 MB = 2 × 11,010,048 float32 parameters.
    assert "| single-task | – | 98.50 ± 0.50 | 90.00 ± 1.00 | – | 84.00 | 22,020,096 | 3 |" in lines
    assert "| joint | – | 97.50 ± 0.50 | 89.00 ± 1.00 | -1.06 ± 0.81 | 42.00 | 11,010,048 | 3 |" in lines
    assert "- values: mean ± sample standard deviation (ddof=1) over seeds; one seed shows the value alone" in lines
    assert "### Runs left out (not averaged)" in lines


def test_csv_values(runs_root):
    text = render(build_report(load_runs(find_run_dirs([runs_root]))), "csv")
    rows = {(row["method"], row["K"]): row for row in csv.DictReader(io.StringIO(text))}
    joint = rows[("joint", "0")]
    assert float(joint["T1/acc mean"]) == pytest.approx(97.5)
    assert float(joint["T2/acc std"]) == pytest.approx(1.0)
    assert float(joint["delta_m std"]) == pytest.approx(0.8093626, abs=1e-6)
    assert joint["seed values"] == "0 1 2"
    assert rows[("joint", "25")]["recon"] == "yes"
    assert rows[("cagrad", "0")]["options"] == '{"alpha": 0.2}'


def test_configured_reference_used(tmp_path):
    reference = {"segmentation": {"miou": 80.0, "pix_acc": 100.0}, "depth": {"abs_err": 0.01, "rel_err": 50.0}}
    values = [(70.0, 90.0, 0.02, 40.0), (72.0, 92.0, 0.018, 44.0)]
    for seed, (miou, pix_acc, abs_err, rel_err) in enumerate(values):
        write_run(tmp_path, f"city{seed}", seed=seed, dataset="cityscapes", reference=reference, size_mb=95.0,
                  test={"segmentation": {"miou": miou, "pix_acc": pix_acc},
                        "depth": {"abs_err": abs_err, "rel_err": rel_err}})

    (table,) = build_report(load_runs(find_run_dirs([tmp_path]))).tables
    (row,) = table.rows
    # Segmentation metrics: higher is better; depth errors: lower is better.
    deltas = [(((m - 80) / 80 + (p - 100) / 100) / 2 - ((a - 0.01) / 0.01 + (r - 50) / 50) / 2) / 2 * 100
              for m, p, a, r in values]
    assert row.delta.mean == pytest.approx(statistics.mean(deltas))
    assert row.delta.std == pytest.approx(statistics.stdev(deltas))
    assert row.reference == "eval.reference of the runs' config"
    assert table.columns == [("segmentation", "miou"), ("segmentation", "pix_acc"), ("depth", "abs_err"),
                             ("depth", "rel_err")]
    assert format_stat(row.metrics[("depth", "abs_err")]) == "0.01900 ± 0.00141"


def test_no_reference_shows_dash(tmp_path):
    write_run(tmp_path, "a", seed=0, dataset="multi_mnist", test=accuracies(97.0, 95.0))
    report = build_report(load_runs(find_run_dirs([tmp_path])))
    (row,) = report.tables[0].rows
    assert row.delta is None
    assert "| joint | – | 97.00 | 95.00 | – | 42.00 | 11,010,048 | 1 |" in render(report, "markdown").splitlines()


def test_search_runs_get_their_own_row(tmp_path):
    write_run(tmp_path, "final", seed=0, test=accuracies(97.0, 88.0))
    search = write_run(tmp_path, "search", seed=0, test=accuracies(90.0, 80.0))
    config = yaml.safe_load((search / "config.yaml").read_text())
    config["recon"] = {"record": True}
    (search / "config.yaml").write_text(yaml.safe_dump(config))
    (table,) = build_report(load_runs(find_run_dirs([tmp_path]))).tables
    labels = [row.label for row in table.rows]
    assert labels == ["joint", "joint [search run]"]
    assert table.rows[0].metrics[("T1", "acc")].mean == 97.0
    assert table.rows[1].metrics[("T1", "acc")].mean == 90.0


def test_mixed_settings_noted(tmp_path):
    write_run(tmp_path, "a", seed=0, test=accuracies(97.0, 88.0))
    write_run(tmp_path, "b", seed=0, test=accuracies(97.5, 89.0), epochs=2)
    (table,) = build_report(load_runs(find_run_dirs([tmp_path]))).tables
    assert "joint: seed 0 appears in more than one run; each run counts once" in table.notes
    assert "joint: runs differ in train.epochs (120, 2); check that they belong in one row" in table.notes


def test_command_writes_file(runs_root, tmp_path, capsys):
    output = tmp_path / "table.csv"
    assert main(["report", str(runs_root / "joint"), str(runs_root / "recon"), "--format", "csv",
                 "--output", str(output)]) == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 3
    captured = capsys.readouterr()
    assert f"report written to {output}" in captured.out
    assert f"{runs_root / 'joint' / 'seed3'}: unfinished: no summary.json" in captured.err


def test_command_missing_path(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert f"run directory or folder not found: {tmp_path / 'absent'}" in capsys.readouterr().err


def test_command_folder_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert f"no run directory (a folder with config.yaml) found in {tmp_path}" in capsys.readouterr().err


def test_help_lists_commands():
    from recon.cli import build_parser

    text = build_parser().format_help()
    assert "report" in text
    assert "eval" in text


def test_missing_single_task_run_named(tmp_path):
    write_run(tmp_path, "single", seed=0, tasks=["T1"], test={"T1": {"acc": 98.0}})
    write_run(tmp_path, "joint", seed=0, test=accuracies(97.0, 88.0))
    (table,) = build_report(load_runs(find_run_dirs([tmp_path]))).tables
    assert "Δm% of joint against nothing (no single-task run of T2 and no eval.reference)" in table.notes


def test_repeated_seed_shows_run_count(tmp_path):
    write_run(tmp_path, "a", seed=0, test=accuracies(97.0, 88.0))
    write_run(tmp_path, "b", seed=0, test=accuracies(98.0, 89.0))
    lines = render(build_report(load_runs(find_run_dirs([tmp_path]))), "markdown").splitlines()
    assert "| joint | – | 97.50 ± 0.71 | 88.50 ± 0.71 | – | 42.00 | 11,010,048 | 1 (2 runs) |" in lines
