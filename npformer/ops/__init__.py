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
"""
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

__all__ = [n for n in dir() if n.endswith(("_forward", "_backward"))] + ["softmax_terms", "sinusoidal_table"]
