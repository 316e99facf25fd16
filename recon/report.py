"""The paper's result tables from run directories: mean ± std over seeds, Δm%, model size.

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning" (ICLR 2023, arXiv 2302.11289) give one table per dataset, with one row
per method with and without Recon. A row shows the mean over 3 seeds of the
final test metrics, Δm% against single-task models, and the model size in MB
(float32 parameters). Here the rows come from the ``summary.json`` of finished
runs:

- runs are grouped by dataset, task set, method (its registry name, so that
  ``Baseline`` and ``joint`` meet), method options and Recon setting (the
  number K of branched layers, 0 without Recon); the seeds of a group are
  averaged, and the spread is the sample standard deviation (ddof=1);
- runs with a single task form the single-task row: each task's metrics are
  the mean over its single-task runs, and the row's size is the sum of the
  per-task model sizes, as the paper counts it;
- Δm% of a run is computed against the single-task row of the same report
  when it covers the run's tasks, else against ``eval.reference`` of the runs'
  config, else it is shown as "–". Δm is linear in the metrics, so the mean of
  the runs' Δm equals the Δm of their mean metrics.

Runs without ``summary.json`` (unfinished), or whose files cannot be read, are
listed apart and never averaged.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from recon.delta_m import delta_m

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "Report", "Row", "Run", "Stat", "Table", "build_report", "find_run_dirs", "load_runs",
           "render"]

#: Output formats of ``render``.
FORMATS = ("table", "markdown", "csv")
#: Metrics logged for diagnosis only: the paper's tables and Δm use the evaluation metrics
#: (accuracy for the digit benchmarks), not the mean test loss.
DIAGNOSTIC_METRICS = frozenset({"loss"})
#: Config keys that may differ between the seeds of one row: the seed itself, paths, logging,
#: the device, and the permutation file (each seed may have its own search run).
PER_RUN_KEYS = ("seed", "name", "output_dir", "data.root", "data.cache_dir", "data.num_workers", "train.device",
                "train.log_every", "train.eval_every", "train.eval_batch_size", "train.checkpoint_every", "wandb",
                "eval", "model.branch.file")
SINGLE_TASK = "single-task"


@dataclass
class Run:
    """One run directory: its resolved config and, once it finished, its summary."""

    path: Path
    config: dict | None
    summary: dict | None
    problem: str | None = None

    @property
    def dataset(self) -> str:
        return self.config["data"]["name"]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.summary["test"])

    @property
    def recon_k(self) -> int:
        """Number of branched layers (0 without Recon), as the run recorded it."""
        return len(self.summary.get("branched") or [])

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def search(self) -> bool:
        """Whether this is a search run (``recon.record``), shown apart from the final runs."""
        return bool(self.config.get("recon", {}).get("record"))


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None for a single value) of ``count`` values."""

    mean: float
    std: float | None
    count: int


@dataclass
class Row:
    """One line of a table: a method with or without Recon, averaged over its runs.

    ``seeds`` lists the distinct seeds and ``runs`` every run averaged. There are
    more runs than seeds when a seed was run twice, which the table's notes point out.
    """

    method: str
    options: dict
    recon_k: int
    metrics: dict[tuple[str, str], Stat]
    delta: Stat | None
    reference: str | None
    size_mb: float | None
    seeds: list[int]
    runs: list[Path]
    search: bool = False
    params: int | None = None

    @property
    def label(self) -> str:
        text = self.method
        if self.options:
            text += " (" + ", ".join(f"{key}={value}" for key, value in sorted(self.options.items())) + ")"
        text += " +R" if self.recon_k else ""
        return text + (" [search run]" if self.search else "")


@dataclass
class Table:
    """The rows of one dataset, with its metric columns in task order and notes on how to read them."""

    dataset: str
    columns: list[tuple[str, str]]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The tables of every dataset found, and the runs left out of them."""

    tables: list[Table]
    excluded: list[Run]


# ---------------------------------------------------------------- finding and reading runs


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Return every run directory (a folder holding ``config.yaml``) at or below ``paths``, sorted.

    Raises ``FileNotFoundError`` for a path that does not exist and
    ``ValueError`` when no run directory is found at all.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"run directory or folder not found: {path}")
        if (path / "config.yaml").is_file():
            found.add(path)
        elif path.is_dir():
            found.update(config.parent for config in path.rglob("config.yaml"))
    if not found:
        raise ValueError(f"no run directory (a folder with config.yaml) found in {', '.join(map(str, paths))}")
    return sorted(found)


def load_runs(run_dirs: Iterable[Path]) -> list[Run]:
    return [load_run(path) for path in run_dirs]


def load_run(path: Path) -> Run:
    """Read a run's config and summary; a run that cannot be used gets ``problem`` set instead."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        return Run(path, None, None, f"config.yaml unreadable ({type(error).__name__}: {error})")
    missing = _missing_keys(config)
    if missing:
        return Run(path, None, None, f"config.yaml lacks {', '.join(missing)}; it is not a resolved run config")

    summary_file = path / "summary.json"
    if not summary_file.exists():
        return Run(path, config, None, f"unfinished: no summary.json{_progress(path, config)}")
    try:
        summary = json.loads(summary_file.read_text())
        if not isinstance(summary.get("test"), dict) or not summary["test"]:
            raise ValueError("no 'test' metrics")
    except (OSError, ValueError, AttributeError) as error:
        return Run(path, config, None, f"summary.json unreadable ({type(error).__name__}: {error})")
    return Run(path, config, summary)


def _missing_keys(config: object) -> list[str]:
    """Return the keys a report needs that ``config`` lacks: data.name, method.name and seed."""
    if not isinstance(config, dict):
        return ["data.name", "method.name", "seed"]
    missing = [f"{section}.name" for section in ("data", "method")
               if not isinstance(config.get(section), dict) or "name" not in config[section]]
    return missing + ([] if "seed" in config else ["seed"])


def _progress(path: Path, config: dict) -> str:
    """Return ', last logged epoch E of N' from ``metrics.jsonl``, or nothing if it has no records."""
    epoch = None
    try:
        for line in (path / "metrics.jsonl").read_text().splitlines():
            try:
                epoch = json.loads(line).get("epoch", epoch)
            except (json.JSONDecodeError, AttributeError):
                continue
    except OSError:
        return ""
    if epoch is None:
        return ""
    return f", last logged epoch {epoch} of {config.get('train', {}).get('epochs', '?')}"


# ---------------------------------------------------------------- building the tables


def build_report(runs: Sequence[Run]) -> Report:
    """Group the finished runs into one table per dataset; list the others apart."""
    finished = [run for run in runs if run.problem is None]
    excluded = [run for run in runs if run.problem is not None]
    tables = [_build_table(dataset, [run for run in finished if run.dataset == dataset])
              for dataset in sorted({run.dataset for run in finished})]
    return Report(tables, excluded)


def _build_table(dataset: str, runs: list[Run]) -> Table:
    higher_is_better = _higher_is_better(dataset)
    single = [run for run in runs if len(run.tasks) == 1]
    multi = [run for run in runs if len(run.tasks) > 1]
    table = Table(dataset, _columns(runs, higher_is_better), [])

    reference = None
    if single:
        row, reference = _single_task_row(single, table.notes)
        table.rows.append(row)
    groups: dict[tuple, list[Run]] = {}
    for run in multi:
        groups.setdefault(_group_key(run), []).append(run)
    for key in sorted(groups, key=_row_order):
        table.rows.append(_method_row(groups[key], reference, higher_is_better, table.notes))

    table.notes[:0] = _reference_notes(table.rows)
    return table


def _higher_is_better(dataset: str) -> dict[str, dict[str, bool]]:
    """Return, per task of ``dataset``, whether a higher value of each metric is better."""
    from recon.data import dataset_tasks

    try:
        tasks, _ = dataset_tasks(dataset)
    except (ValueError, KeyError) as error:
        logger.warning("tasks of dataset '%s' unknown (%s); Δm cannot be computed", dataset, error)
        return {}
    return {name: dict(task.new_metric().higher_is_better) for name, task in tasks.items()}


def _columns(runs: list[Run], higher_is_better: dict) -> list[tuple[str, str]]:
    """Return the (task, metric) columns: the dataset's task order first, diagnostic metrics left out."""
    order = {task: index for index, task in enumerate(higher_is_better)}
    columns: dict[tuple[str, str], None] = {}
    for run in runs:
        for task, values in run.summary["test"].items():
            for metric in values:
                if metric not in DIAGNOSTIC_METRICS:
                    columns[(task, metric)] = None
    return sorted(columns, key=lambda column: (order.get(column[0], len(order)), column[0]))


def _method_spec(name: str) -> tuple[str, int]:
    """Return the method's registry name and its position in the registry (unknown names go last)."""
    from recon import methods

    try:
        spec = methods.resolve(name)
    except ValueError:
        return name.lower(), len(methods.REGISTRY)
    return spec.name, list(methods.REGISTRY).index(spec.name)


def _options(run: Run) -> dict:
    return {key: value for key, value in run.config["method"].items() if key != "name"}


def _group_key(run: Run) -> tuple:
    method, _ = _method_spec(run.config["method"]["name"])
    return (run.tasks, method, json.dumps(_options(run), sort_keys=True), run.recon_k, run.search)


def _row_order(key: tuple) -> tuple:
    tasks, method, options, recon_k, search = key
    return (search, _method_spec(method)[1], method, options, recon_k, tasks)


def summarize(values: Sequence[float]) -> Stat:
    """Return the mean and the sample standard deviation (ddof=1) of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else None
    return Stat(float(array.mean()), std, int(array.size))


def _metric_stats(runs: list[Run]) -> dict[tuple[str, str], Stat]:
    stats = {}
    for task, metric in _common_metrics(runs):
        stats[(task, metric)] = summarize([run.summary["test"][task][metric] for run in runs])
    return stats


def _common_metrics(runs: list[Run]) -> list[tuple[str, str]]:
    """Return the (task, metric) pairs that every run of ``runs`` reports."""
    first = runs[0].summary["test"]
    return [(task, metric) for task, values in first.items() for metric in values
            if metric not in DIAGNOSTIC_METRICS
            and all(metric in run.summary["test"].get(task, {}) for run in runs)]


def _single_task_row(runs: list[Run], notes: list[str]) -> tuple[Row, dict[str, dict[str, float]]]:
    """Return the single-task row and the reference it gives: each task's metrics averaged over seeds."""
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.tasks[0], []).append(run)

    metrics, reference, size, params = {}, {}, 0.0, 0.0
    for task, task_runs in by_task.items():
        stats = _metric_stats(task_runs)
        metrics.update(stats)
        reference[task] = {metric: stat.mean for (_, metric), stat in stats.items()}
        size += summarize([run.summary.get("size_mb", math.nan) for run in task_runs]).mean
        params += summarize([run.summary.get("params", math.nan) for run in task_runs]).mean
        notes.extend(_consistency_notes(f"{SINGLE_TASK} {task}", task_runs))

    row = Row(SINGLE_TASK, {}, 0, metrics, None, None, size if math.isfinite(size) else None,
              sorted({run.seed for run in runs}), [run.path for run in runs],
              params=round(params) if math.isfinite(params) else None)
    return row, reference


def _method_row(runs: list[Run], single_reference: dict | None, higher_is_better: dict,
                notes: list[str]) -> Row:
    """Return the row of one group of runs: the same method, options, tasks and Recon setting."""
    first = runs[0]
    method, _ = _method_spec(first.config["method"]["name"])
    row = Row(method, _options(first), first.recon_k, _metric_stats(runs), None, None, None,
              sorted({run.seed for run in runs}), [run.path for run in runs], first.search)
    params = [run.summary.get("params") for run in runs]
    if all(isinstance(count, int) for count in params):
        row.params = round(summarize(params).mean)
    sizes = [run.summary.get("size_mb") for run in runs]
    if all(isinstance(size, (int, float)) for size in sizes):
        row.size_mb = summarize(sizes).mean

    reference, source = _reference_for(runs, single_reference)
    if reference is not None:
        try:
            row.delta = summarize([delta_m(run.summary["test"], reference, higher_is_better) for run in runs])
            row.reference = source
        except ValueError as error:
            notes.append(f"{row.label}: Δm% not computed against {source}: {error}")
    notes.extend(_consistency_notes(row.label, runs))
    return row


def _reference_for(runs: list[Run], single_reference: dict | None) -> tuple[dict | None, str | None]:
    """Return the Δm reference of a group: the report's single-task row if it covers the tasks, else config."""
    tasks = runs[0].tasks
    if single_reference is not None and all(task in single_reference for task in tasks):
        return {task: single_reference[task] for task in tasks}, "the single-task runs of this report"
    configured = [run.config.get("eval", {}).get("reference") for run in runs]
    if configured[0] is not None and all(value == configured[0] for value in configured):
        return configured[0], "eval.reference of the runs' config"
    return None, None


def _consistency_notes(label: str, runs: list[Run]) -> list[str]:
    """Warn about runs of one row that differ in a config key other than ``PER_RUN_KEYS``, or repeat a seed."""
    notes = []
    seeds = [run.seed for run in runs]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        notes.append(f"{label}: seed {', '.join(map(str, repeated))} appears in more than one run; "
                     "each run counts once")
    # The method section is part of the group key already, with the name resolved through aliases.
    flat = [_flatten(run.config) for run in runs]
    keys = sorted(set().union(*flat))
    for key in keys:
        if any(key == skip or key.startswith(skip + ".") for skip in (*PER_RUN_KEYS, "method")):
            continue
        values = {json.dumps(config.get(key), sort_keys=True) for config in flat}
        if len(values) > 1:
            notes.append(f"{label}: runs differ in {key} ({', '.join(sorted(values))}); check that they "
                         "belong in one row")
    return notes


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _reference_notes(rows: list[Row]) -> list[str]:
    notes = ["values: mean ± sample standard deviation (ddof=1) over seeds; one seed shows the value alone"]
    single = next((row for row in rows if row.method == SINGLE_TASK), None)
    single_tasks = {task for task, _ in single.metrics} if single is not None else set()
    sources: dict[str, list[str]] = {}
    for row in rows:
        if row.method == SINGLE_TASK:
            continue
        missing = sorted({task for task, _ in row.metrics} - single_tasks)
        if row.reference is not None:
            source = row.reference
        elif single is not None and missing:
            source = f"nothing (no single-task run of {', '.join(missing)} and no eval.reference)"
        else:
            source = "nothing (no single-task runs and no eval.reference)"
        sources.setdefault(source, []).append(row.label)
    for source, labels in sources.items():
        notes.append(f"Δm% of {', '.join(labels)} against {source}")
    return notes


# ---------------------------------------------------------------- rendering


def render(report: Report, fmt: str = "table") -> str:
    """Return the report as a terminal table, Markdown or CSV."""
    if fmt not in FORMATS:
        raise ValueError(f"report format '{fmt}' is not supported; use one of: {', '.join(FORMATS)}")
    if fmt == "csv":
        return _render_csv(report)
    markdown = fmt == "markdown"
    parts = [_render_table(table, markdown) for table in report.tables]
    if report.excluded:
        parts.append(_render_excluded(report.excluded, markdown))
    return "\n\n".join(parts) + "\n"


def format_stat(stat: Stat | None, decimals: int | None = None) -> str:
    """Return ``mean ± std`` with 2 decimals (4 significant digits below 1), or "–" for no value."""
    if stat is None:
        return "–"
    if decimals is None:
        decimals = 2 if abs(stat.mean) >= 1 or stat.mean == 0 else max(2, 3 - math.floor(math.log10(abs(stat.mean))))
    text = f"{stat.mean:.{decimals}f}"
    return text if stat.std is None else f"{text} ± {stat.std:.{decimals}f}"


def _cells(table: Table, row: Row) -> list[str]:
    cells = [row.label, str(row.recon_k) if row.recon_k else "–"]
    cells += [format_stat(row.metrics.get(column)) for column in table.columns]
    cells.append(format_stat(row.delta, decimals=2))
    cells.append("–" if row.size_mb is None else f"{row.size_mb:.2f}")
    cells.append("–" if row.params is None else f"{row.params:,}")
    # More runs than seeds (a seed run twice) is noted under the table; show both counts then.
    # The single-task row has one run per task and seed.
    runs_per_seed = len({task for task, _ in row.metrics}) if row.method == SINGLE_TASK else 1
    expected = len(row.seeds) * runs_per_seed
    cells.append(str(len(row.seeds)) if len(row.runs) == expected else f"{len(row.seeds)} ({len(row.runs)} runs)")
    return cells


def _header(table: Table) -> list[str]:
    return ["method", "K", *(f"{task} {metric}" for task, metric in table.columns), "Δm%", "size MB", "params", "seeds"]


def _render_table(table: Table, markdown: bool) -> str:
    header = _header(table)
    rows = [_cells(table, row) for row in table.rows]
    if markdown:
        lines = [f"### {table.dataset}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        lines += [""] + [f"- {note}" for note in table.notes]
        return "\n".join(lines)

    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    text_rows = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                           for i, (cell, width) in enumerate(zip(line, widths))).rstrip()
                 for line in [header, *rows]]
    rule = "-" * len(text_rows[0])
    lines = [table.dataset, rule, text_rows[0], rule, *text_rows[1:], rule]
    lines += [f"  {note}" for note in table.notes]
    return "\n".join(lines)


def _render_excluded(runs: list[Run], markdown: bool) -> str:
    title = "Runs left out (not averaged)"
    if markdown:
        return "\n".join([f"### {title}", ""] + [f"- `{run.path}`: {run.problem}" for run in runs])
    return "\n".join([f"{title}:"] + [f"  {run.path}: {run.problem}" for run in runs])


def _render_csv(report: Report) -> str:
    """Write one CSV line per row of every table, with a mean and a std (ddof=1) column per metric."""
    columns = list(dict.fromkeys(column for table in report.tables for column in table.columns))
    header = ["dataset", "method", "options", "recon", "K", "search run"]
    header += [f"{task}/{metric} {part}" for task, metric in columns for part in ("mean", "std")]
    header += ["delta_m mean", "delta_m std", "delta_m reference", "size_mb", "params", "runs", "seed values"]

    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    for table in report.tables:
        for row in table.rows:
            line = [table.dataset, row.method, json.dumps(row.options, sort_keys=True) if row.options else "",
                    "yes" if row.recon_k else "no", row.recon_k, "yes" if row.search else "no"]
            for column in columns:
                stat = row.metrics.get(column)
                line += ["", ""] if stat is None else [stat.mean, "" if stat.std is None else stat.std]
            line += ["", ""] if row.delta is None else [row.delta.mean, "" if row.delta.std is None else row.delta.std]
            line += [row.reference or "", "" if row.size_mb is None else row.size_mb,
                     "" if row.params is None else row.params, len(row.runs),
                     " ".join(map(str, row.seeds))]
            writer.writerow(line)
    return stream.getvalue()
