"""The CLI's sub-commands, one module each. Every module defines ``add_parser(sub)``,
which adds its parser and sets ``func``; what they share is in ``options``."""
import importlib

COMMANDS = ("gradcheck", "train", "translate", "evaluate", "plot", "demo", "info", "average", "compare-torch",
            "gradient-flow", "plot-runs", "exercise", "course", "docs")


def register(sub) -> None:
    for name in COMMANDS:
        importlib.import_module(f"npformer.commands.{name.replace('-', '_')}").add_parser(sub)
