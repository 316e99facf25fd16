"""Registry of gradient-manipulation methods, built by name."""

from __future__ import annotations

import difflib
from typing import Any

import torch

from recon.methods.base import Method, MethodSpec, NonFiniteGradientError, Option, raise_if_nonfinite
from recon.methods.cagrad import CAGrad
from recon.methods.graddrop import GradDrop
from recon.methods.joint import Joint
from recon.methods.mgda import MGDA
from recon.methods.pcgrad import PCGrad

__all__ = [
    "Method", "MethodSpec", "NonFiniteGradientError", "Option", "REGISTRY", "UnknownMethodError", "build",
    "raise_if_nonfinite", "resolve",
]

REGISTRY: dict[str, MethodSpec] = {
    "joint": MethodSpec(
        name="joint",
        cls=Joint,
        paper="Joint training with equal task weights (the gradient of the summed loss)",
        summary="J.sum(0)",
        aliases=("baseline",),
    ),
    "pcgrad": MethodSpec(
        name="pcgrad",
        cls=PCGrad,
        paper='Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, arXiv 2001.06782',
        summary="project each task gradient off the others it conflicts with, in random order, and sum",
        random=True,
    ),
    "cagrad": MethodSpec(
        name="cagrad",
        cls=CAGrad,
        paper='Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021, '
              "arXiv 2110.14048",
        summary="maximise the worst task's improvement within a ball of radius alpha·|g0| around the mean g0",
        options={
            "alpha": Option(0.5, float, "radius of the ball around the mean gradient, relative to its norm "
                                        "(the paper's c)"),
            "rescale": Option(1, int, "divide the update by 1 (0), by 1 + alpha² (1) or by 1 + alpha (2)"),
        },
    ),
    "graddrop": MethodSpec(
        name="graddrop",
        cls=GradDrop,
        paper='Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", '
              "NeurIPS 2020, arXiv 2010.06808",
        summary="per coordinate, keep the entries of one sign, picked at random by sign purity",
        random=True,
    ),
    "mgda": MethodSpec(
        name="mgda",
        cls=MGDA,
        paper='Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, '
              "arXiv 1810.04650",
        summary="minimum-norm point of the convex hull of the task gradients (min-norm solver)",
        aliases=("mgd",),
    ),
}


class UnknownMethodError(ValueError):
    """A method name or option that the registry does not hold."""


def resolve(name: str) -> MethodSpec:
    """Return the registry entry for ``name``, matched without regard to case or aliases."""
    key = name.lower()
    for spec in REGISTRY.values():
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    known = sorted(REGISTRY)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise UnknownMethodError(f"unknown method '{name}'; registered methods: {', '.join(known)}{hint}")


def build(name: str, generator: torch.Generator | None = None, **options: Any) -> Method:
    """Build the method ``name`` with ``options``; random methods also take ``generator``."""
    spec = resolve(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(sorted(spec.options)) or "none"
        raise UnknownMethodError(
            f"method '{spec.name}' has no option {', '.join(repr(u) for u in unknown)}; its options: {allowed}"
        )
    kwargs = {key: options.get(key, option.default) for key, option in spec.options.items()}
    if spec.random:
        kwargs["generator"] = generator
    return spec.cls(**kwargs)
