"""Registry of gradient-manipulation methods, built by name."""

from __future__ import annotations

import difflib
from typing import Any

import torch

from recon.methods.base import Method, MethodSpec, Option
from recon.methods.joint import Joint

__all__ = ["Method", "MethodSpec", "Option", "REGISTRY", "build", "resolve", "UnknownMethodError"]

REGISTRY: dict[str, MethodSpec] = {
    "joint": MethodSpec(
        name="joint",
        cls=Joint,
        paper="Joint training with equal task weights (the gradient of the summed loss)",
        summary="J.sum(0)",
        aliases=("baseline",),
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
