"""The ``recon`` command: one subcommand per module in ``recon.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from recon.config import ConfigError

#: Subcommand -> module in recon.commands providing ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS = {
    "train": "train",
    "methods": "methods",
    "conflict": "conflict",
    "inspect": "inspect",
    "eval": "evaluate",
    "report": "report",
}


def _available_commands() -> dict:
    modules = {}
    for command, module_name in COMMANDS.items():
        try:
            modules[command] = importlib.import_module(f"recon.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"recon.commands.{module_name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon", description="Multi-task learning with Recon.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command, module in _available_commands().items():
        sub = subparsers.add_parser(command, help=module.__doc__.strip().splitlines()[0].replace("%", "%%"),
                                    description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        # Bad input: show the message, not a traceback.
        print(f"recon {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
