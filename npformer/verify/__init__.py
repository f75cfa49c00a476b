"""Everything that checks the math, in one place.

    gradcheck.py       the engine: float64 central differences against a backward,
                       contracted with a random upstream gradient, plus the contract checks
    diagnose.py        the shape of a wrong gradient's error (a factor, a transpose, a region,
                       ...), named in a sentence: check_gradients' findings and the exercises'
    verdict.py         from errors and findings to passed, failed or borderline (the exercises')
    op_cases.py        one small case per op (what ``npformer gradcheck`` runs)
    model_cases.py     the encoder and decoder layers and the whole model, post- and pre-LN
    gradient_flow.py   per-layer gradient norms of one backward (``npformer gradient-flow``)
    torch_compare.py   the same model in PyTorch's stock layers, same weights, float64
                       (``npformer compare-torch``)
Input validation is not here: it sits beside the code it guards, as ``validate_*``.
"""
