"""The one exception type that means "the user can fix this".

``UserError`` is a mistake or a missing piece on the user's side: a bad option
or file, data that cannot be used, an optional dependency or a GPU that is not
there, a run that diverged. The ``npformer`` command prints it as one line and
exits 2 (so do ``ValueError`` and ``OSError``); any other exception is a bug
and keeps its traceback (exit 1). It is a ``RuntimeError``, so code that
catches those keeps working.
"""


class UserError(RuntimeError):
    """A problem the user can fix; its message says what was wrong and what was expected."""
