"""The CLI's sub-commands, one module each. Every module defines
``add_parser(sub, add_backend_args)`` which adds its parser and sets ``func``."""
import importlib

COMMANDS = ("train", "translate", "evaluate", "plot", "demo", "info", "average", "compare-torch", "gradient-flow",
            "plot-runs")


def register(sub, add_backend_args) -> None:
    for name in COMMANDS:
        importlib.import_module(f"npformer.commands.{name.replace('-', '_')}").add_parser(sub, add_backend_args)
