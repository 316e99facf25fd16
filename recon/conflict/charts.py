"""Charts of a search run: S-conflict scores per layer and the distribution of cosines per layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _figure_width(num_layers: int) -> float:
    """Width in inches that leaves room for one rotated tick label per layer."""
    return max(8.0, 0.22 * num_layers)


def plot_scores(scores: dict[str, int], layers: list[str], S: float, path: str | Path) -> None:
    """Draw a bar per layer, in the model's layer order, of its S-conflict score and save a PNG."""
    values = [scores[name] for name in layers]

    figure, axes = plt.subplots(figsize=(_figure_width(len(layers)), 5))
    axes.bar(range(len(layers)), values, color="tab:red")
    axes.set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
    axes.set_ylabel(f"S-conflict score (count of cos < {S:g})")
    axes.set_title("Conflicting task-gradient pairs per shared layer")
    axes.margins(x=0.01)

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_cosine_distribution(cos: torch.Tensor, layers: list[str], S: float, path: str | Path) -> None:
    """Draw per layer a box of the cosines (steps × pairs) and the threshold S, and save a PNG.

    Boxes span the 25th to 75th percentile with the median marked; whiskers reach the
    5th and 95th percentiles. ``cos`` has shape steps × layers × pairs.
    """
    values = cos.transpose(0, 1).reshape(len(layers), -1).double().numpy()  # layers × (steps · pairs)
    low, q1, median, q3, high = np.percentile(values, [5, 25, 50, 75, 95], axis=1)
    stats = [
        {"whislo": low[i], "q1": q1[i], "med": median[i], "q3": q3[i], "whishi": high[i], "label": name}
        for i, name in enumerate(layers)
    ]

    figure, axes = plt.subplots(figsize=(_figure_width(len(layers)), 5))
    axes.bxp(stats, showfliers=False)
    axes.axhline(S, color="tab:red", linestyle="--", linewidth=1, label=f"S = {S:g}")
    axes.axhline(0.0, color="gray", linewidth=0.5)
    axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    axes.set_ylabel("cosine of task-gradient pair")
    axes.set_ylim(-1.05, 1.05)
    axes.set_title("Cosine similarity of task gradients per shared layer (whiskers: 5th-95th percentile)")
    axes.legend(loc="upper right")

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
