"""Sub-commands beyond gradcheck (train, translate, evaluate, plot, demo, info)."""


def register(sub, add_backend_args) -> None:
    """Add the sub-commands to the CLI parser."""
