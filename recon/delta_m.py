"""Δm%: the average relative change of a multi-task model's metrics against single-task models.

Maninis, Radosavovic and Kokkinos, "Attentive Single-Tasking of Multiple Tasks"
(CVPR 2019, arXiv 1904.08918), as the Recon paper (Shi et al., ICLR 2023, arXiv
2302.11289) applies it::

    Δm% = 1/T Σ_t 1/K_t Σ_k (−1)^l_tk (M_tk − S_tk) / S_tk × 100

over the T tasks and each task's K_t metrics, where M is the evaluated model,
S the single-task reference and l_tk = 1 when a lower value of metric k is
better. The metrics are averaged within each task first, so a task with five
metrics (NYUv2 normals) weighs as much as one with two.
"""

from __future__ import annotations

import math

__all__ = ["delta_m", "task_delta"]


def task_delta(results: dict[str, float], reference: dict[str, float], higher_is_better: dict[str, bool],
               task: str = "task") -> float:
    """Return one task's relative change in percent, averaged over the metrics of ``reference``."""
    if not reference:
        raise ValueError(f"the reference of task '{task}' has no metrics")
    changes = []
    for metric, single in reference.items():
        if metric not in results:
            raise ValueError(f"the results of task '{task}' have no metric '{metric}'; "
                             f"they have: {', '.join(results) or 'none'}")
        if metric not in higher_is_better:
            raise ValueError(f"higher_is_better of task '{task}' has no metric '{metric}'; "
                             f"it has: {', '.join(higher_is_better) or 'none'}")
        if single == 0 or not math.isfinite(single):
            raise ValueError(f"the reference value of task '{task}', metric '{metric}' is {single}; "
                             f"a relative change needs a finite, non-zero reference")
        sign = 1.0 if higher_is_better[metric] else -1.0
        changes.append(sign * (results[metric] - single) / single * 100.0)
    return sum(changes) / len(changes)


def delta_m(results: dict[str, dict[str, float]], reference: dict[str, dict[str, float]],
            higher_is_better: dict[str, dict[str, bool]]) -> float:
    """Return Δm% of ``results`` against the single-task ``reference``, both {task: {metric: value}}.

    The tasks are those of ``results``, and each must be in ``reference``. Each
    task's metrics are those of its reference entry, and each must be in
    ``results`` and ``higher_is_better``. Other metrics of ``results`` are
    ignored. Raises ``ValueError`` naming what is missing.
    """
    if not results:
        raise ValueError("no task results to compare")
    deltas = []
    for task, values in results.items():
        if task not in reference:
            raise ValueError(f"the reference has no task '{task}'; it has: {', '.join(reference) or 'none'}")
        if task not in higher_is_better:
            raise ValueError(f"higher_is_better has no task '{task}'; it has: {', '.join(higher_is_better) or 'none'}")
        deltas.append(task_delta(values, reference[task], higher_is_better[task], task))
    return sum(deltas) / len(deltas)
