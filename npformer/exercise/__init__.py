"""Practice: write the Transformer's backward passes yourself, and have them graded.

    npformer exercise list                      every exercise, its section, prerequisites, your status
    npformer exercise start layernorm           writes exercises/layernorm.py to fill in
    npformer exercise check layernorm [--json]  grades it: which gradient is wrong, where, and how
    npformer exercise hint layernorm --level 1  the concept; 2: the structure; 3: the section to read

From Python (a notebook):

    from npformer.exercise import check
    report = check("layernorm", layernorm_backward)   # prints the findings, returns them
    report.passed, report.findings

The grader is ``grader.check``; the cases it draws are in ``cases``, the
detectors that name a mistake in ``diagnose``, the known mistakes in
``mistakes``, the swap-in and the guard on the reference in ``guard``.
"""
from npformer.exercise.catalog import EXERCISES, ORDER, VARIANT_IDS, Exercise
from npformer.exercise.grader import ExerciseError, Report, check
from npformer.exercise.training import check_train

__all__ = ["EXERCISES", "ORDER", "VARIANT_IDS", "Exercise", "ExerciseError", "Report", "check", "check_train"]
