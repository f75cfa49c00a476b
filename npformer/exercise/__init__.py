"""Practice: write the Transformer's backward passes yourself, and have them graded.

    npformer exercise list                      every exercise, its section, prerequisites, your status
    npformer exercise start layernorm           writes exercises/layernorm.py to fill in
    npformer exercise check layernorm [--json]  grades it: which gradient is wrong, where, and how
    npformer exercise hint layernorm --level 1  the concept; 2: the structure; 3: the section to read

From Python (a notebook):

    from npformer.exercise import check
    report = check("layernorm", layernorm_backward)   # prints the findings, returns them
    report.passed, report.findings

    catalog.py     the exercises in order: ids, functions, sections, hints
    cases.py       the inputs each exercise is graded on, drawn fresh from a seed
    grader.py      check(): the contract, central differences, the blocks that contain the op;
                   the findings and the verdict come from npformer.verify (diagnose, verdict)
    mistakes.py    the known mistakes of each exercise, recognised by name
    guard.py       the learner's functions swapped in; the reference refused while checking
    staged.py      staged mode: the forward as steps, one gradient to write per step
    positional.py  the one forward exercise (the sinusoidal table)
    variants.py    layers npformer does not contain (RMSNorm, GELU, ...), graded numerically
    training.py    the train exercise: a run with every op the learner passed
    files.py       the learner's folder: start writes a file, load reads it back
"""
from npformer.exercise.catalog import EXERCISES, ORDER, VARIANT_IDS, Exercise
from npformer.exercise.grader import ExerciseError, Report, check
from npformer.exercise.training import check_train

__all__ = ["EXERCISES", "ORDER", "VARIANT_IDS", "Exercise", "ExerciseError", "Report", "check", "check_train"]
