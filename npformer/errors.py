"""The one exception type that means "the user can fix this".

``UserError`` is a mistake or a missing piece on the user's side: a bad option
or file, data that cannot be used, a run to resume with other settings, an
optional dependency or a GPU that is not there, a run that diverged. It is
raised at the boundaries where the user's input enters: the commands' options,
the readers of corpora, tokenizers and checkpoints, ``run.start_run``, the
translator's checkpoint. Internal checks (ops, model, decoders, optimiser)
raise ``ValueError`` or ``TypeError``; a boundary that passes a user's value to
one of them turns its ``ValueError`` into a ``UserError``.

The ``npformer`` command prints a ``UserError`` as one line and exits 2 (so
does an ``OSError`` on a path the user gave; npformer/cli.py); any other
exception, a ``ValueError`` included, is a bug and exits 1 with its
traceback. It is a ``RuntimeError``, so code that catches those keeps working.
"""


class UserError(RuntimeError):
    """A problem the user can fix; its message says what was wrong and what was expected."""
