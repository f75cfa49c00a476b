"""npformer: the Transformer of "Attention Is All You Need" in explicit array math.

Every component is a forward/backward pair of pure functions over NumPy (CPU)
or CuPy (GPU) arrays; see README.md for a map of the package. Importing the
package loads nothing and changes nothing in the process: ``get_backend`` and
friends load NumPy on first use.

    backend.py         the one place NumPy and CuPy differ
    cupysim.py         CuPy's rules simulated on the CPU, to test GPU code without a GPU
    special_tokens.py  <pad>, <s>, </s>, <unk> and their ids
    errors.py          UserError: what the user can fix
    ops/               the ops, each a forward/backward pair
    model/             the Transformer of Figure 1, assembled from the ops
    checkpoint.py      a model, its config and its vocabulary in one file
    decode/            greedy and beam search with a key/value cache
    train/             Adam, the schedule, the recipe, the training loop
    verify/            gradient checks, gradient flow, the PyTorch comparison
    data/              corpora, BPE, batches
    runtime/           threads, ranks, GPUs: where and how fast, never what
    translation.py     sentences in, sentences out; BLEU and chrF
    exercise/          graded backward-pass exercises
    course/            assignments built for learners, Gradescope, PrairieLearn and JUnit
    run.py             a training run: settings, data, start
    plot.py            curves and attention maps
    site/              the code beside its notes and mathematics, as a static site
    commands/, cli.py  the command line (__main__.py: ``python -m npformer``)
"""
__version__ = "0.1.0"
__all__ = ["Backend", "get_backend", "backend_of", "__version__"]


def __getattr__(name):
    if name in ("Backend", "get_backend", "backend_of"):
        from npformer import backend
        return getattr(backend, name)
    raise AttributeError(f"module 'npformer' has no attribute {name!r}")
