"""The pure ops the Transformer is built from, each a forward/backward pair.

    y, cache = <op>_forward(...)
    grads    = <op>_backward(dy, cache)     # one gradient per differentiable input, in order

| op                        | module          | paper   |
|---------------------------|-----------------|---------|
| linear y = xW + b         | linear.py       | §3      |
| ReLU                      | relu.py         | §3.3    |
| softmax                   | softmax.py      | §3.2.1  |
| LayerNorm                 | layernorm.py    | §3.1    |
| dropout                   | dropout.py      | §5.4    |
| residual add              | residual.py     | §3.1    |
| token embedding           | embedding.py    | §3.4    |
| positional encoding       | positional.py   | §3.5    |
| scaled dot-product attn.  | attention.py    | §3.2.1  |
| multi-head attention      | multihead.py    | §3.2.2  |
| feed-forward network      | feedforward.py  | §3.3    |
| label-smoothed cross-ent. | cross_entropy.py| §5.4    |

The seam. An op that uses another op calls it through this namespace, read at
call time, as PyTorch code reads ``F.softmax``:

    from npformer import ops
    ...
    dS = ops.softmax_backward(dP, SoftmaxCache(P), out=dP)     in attention.py

never through a name its module bound when it was imported. Attention reads
softmax here, cross-entropy softmax_terms, the feed-forward network linear and
relu, multi-head attention attention and linear, a fused projection the plain
linear map; model/ reads the ops here too, and its own building blocks (a
sublayer, a layer, a stack, the model) from ``npformer.model``, the same way.
Why: the code that runs is the code you read, and there is exactly one place
where an op can be replaced while a program runs, ``swapped`` below:

    with ops.swapped({"softmax_backward": my_softmax_backward}):
        ...   # attention, cross-entropy and the whole model run my_softmax_backward

``npformer exercise check`` runs a learner's backward inside the reference
layers this way (and refuses the reference answer while grading it: its entry
here raises); tests count or break an op this way. The defining modules
(``npformer.ops.softmax``) are never changed: they always hold the reference.
The modules of this package import it (their own package, which Python has
always imported first) and read it only inside functions, at call time;
tests/test_layering.py checks that, and that imports run one way.
"""
from contextlib import contextmanager

from npformer.ops.attention import attention_backward, attention_forward
from npformer.ops.cross_entropy import cross_entropy_backward, cross_entropy_forward
from npformer.ops.dropout import dropout_backward, dropout_forward
from npformer.ops.embedding import embedding_backward, embedding_forward
from npformer.ops.feedforward import feedforward_backward, feedforward_forward
from npformer.ops.layernorm import layernorm_backward, layernorm_forward
from npformer.ops.linear import fused_linear_backward, fused_linear_forward, linear_backward, linear_forward
from npformer.ops.multihead import (cross_attention_backward, cross_attention_forward,
                                    self_attention_backward, self_attention_forward)
from npformer.ops.positional import positional_backward, positional_forward, sinusoidal_table
from npformer.ops.relu import relu_backward, relu_forward
from npformer.ops.residual import residual_backward, residual_forward
from npformer.ops.softmax import softmax_backward, softmax_forward, softmax_terms

# the names ``swapped`` may replace: every op's forward and backward, softmax_terms, sinusoidal_table
FUNCTIONS = tuple(n for n in dir() if n.endswith(("_forward", "_backward"))) + ("softmax_terms", "sinusoidal_table")
__all__ = [*FUNCTIONS, "FUNCTIONS", "swapped", "swapped_in"]


@contextmanager
def swapped_in(namespace: dict, names, functions: dict):
    """``namespace[name] = functions[name]`` while inside, for each name; on exit, an exception
    included, every name is what it was. A name not in ``names`` is refused before anything
    changes. The one mechanism behind ``npformer.ops.swapped`` and ``npformer.model.swapped``."""
    unknown = sorted(set(functions) - set(names))
    if unknown:
        raise ValueError(f"swapped: {', '.join(unknown)} is not a function of {namespace['__name__']}; "
                         f"it swaps only {', '.join(names)}")
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"swapped: {name} must be a function, got {type(fn).__name__}")
    saved = {name: namespace[name] for name in functions}
    namespace.update(functions)
    try:
        yield
    finally:
        namespace.update(saved)


def swapped(functions: dict):
    """While inside, ``npformer.ops.<name>`` is ``functions[name]`` (name -> function, names from
    FUNCTIONS), for every op and block that uses it; nothing else changes, and the ops are the
    reference again on exit, also after an exception."""
    return swapped_in(globals(), FUNCTIONS, functions)
