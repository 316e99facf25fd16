"""List the gradient-manipulation methods with their options and papers.

Each method is shown with its aliases, what it computes and the paper it
implements. A random method draws from the generator it is built with, and the
list says so. Each option is shown as ``name (type, default): help``. Set an option
in a config as ``method.<option>``, e.g. ``method.alpha=0.4``. With --json,
print one JSON object mapping each method name to the same information.
"""

from __future__ import annotations

import argparse
import json

from recon.methods import REGISTRY, MethodSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({name: describe(spec) for name, spec in REGISTRY.items()}, indent=2))
    else:
        print("\n\n".join(format_spec(spec) for spec in REGISTRY.values()))
    return 0


def describe(spec: MethodSpec) -> dict:
    """Return a method's registry entry as plain JSON-ready values."""
    return {
        "aliases": list(spec.aliases),
        "summary": spec.summary,
        "paper": spec.paper,
        "random": spec.random,
        "options": {
            name: {"type": option.type.__name__, "default": option.default, "help": option.help}
            for name, option in spec.options.items()
        },
    }


def format_spec(spec: MethodSpec) -> str:
    """Return the text block that ``recon methods`` prints for one method."""
    title = spec.name + (f" (aliases: {', '.join(spec.aliases)})" if spec.aliases else "")
    lines = [title, f"  {spec.summary}", f"  paper: {spec.paper}"]
    if spec.random:
        lines.append("  random: yes, draws from the generator it is built with (saved in checkpoints)")
    if spec.options:
        lines.append("  options:")
        for name, option in spec.options.items():
            lines.append(f"    {name} ({option.type.__name__}, default {option.default!r}): {option.help}")
    else:
        lines.append("  options: none")
    return "\n".join(lines)
