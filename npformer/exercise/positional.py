"""The one forward exercise: the sinusoidal table PE (paper §3.5).

PE has no parameters and its op, x + PE, passes dy through unchanged, so there is
no backward to write: the learner writes ``sinusoidal_table`` and check compares
it with the reference table entry by entry (float64), checks that the dtype asked
for is the dtype returned, names the known mistakes (sin and cos swapped, the
exponent i/d instead of 2i/d, positions from 1), and runs the model's forward with
the learner's table swapped in: its logits must equal the reference's.
"""
from __future__ import annotations

import numpy as np

from npformer.exercise import guard
from npformer.verify.diagnose import Finding, diagnose, rel_error


def check_table(ex, fns, refs, be, seed, report) -> None:
    from npformer.exercise.mistakes import MISTAKES
    name = ex.functions[0]
    fn = fns[name]
    rng = np.random.default_rng(seed)
    ref = refs[name]  # from its defining module: ops.sinusoidal_table refuses while this runs
    with guard.refused(refs):
        for max_len, d in ex.cases(rng, be):
            case = f"max_len = {max_len}, d_model = {d}"
            want = be.to_host(ref(max_len, d, be.xp, "float64"))
            try:
                got = fn(max_len, d, be.xp, "float64")
                got32 = fn(max_len, d, be.xp, "float32")
            except NotImplementedError:
                report.verdict = "not started"
                report.findings.append(Finding(name, case, "the function body", "raises NotImplementedError: "
                                               "write the table", "not started"))
                return
            except Exception as e:  # noqa: BLE001 -- the learner's error is a finding
                report.findings.append(Finding(name, case, "a call", f"raised {type(e).__name__}: {e}",
                                               "exception"))
                return
            bad_dtype = getattr(got32, "dtype", None) != np.dtype("float32")
            if bad_dtype:
                report.findings.append(Finding("PE", case, "its dtype", f"is {getattr(got32, 'dtype', None)} when "
                                               "float32 was asked for: compute in float64, then cast once "
                                               "(a float64 table would upcast float32 activations)", "dtype"))
            got = be.to_host(got)
            f = diagnose("PE", case, got, want, {}, ("position", "column"))
            report.rows.append(("alone", case, "PE", rel_error(got, want) if got.shape == want.shape else None))
            if f is not None:
                report.findings.append(f)
            if f is not None or bad_dtype:
                for m in MISTAKES.get(ex.id, []):
                    theirs = be.to_host(m.functions[name](max_len, d, be.xp, "float64"))
                    same_dtype = m.functions[name](1, 2, be.xp, "float32").dtype == got32.dtype
                    if theirs.shape == got.shape and rel_error(got, theirs) <= 1e-12 and same_dtype:
                        report.findings.append(Finding("PE", case, "the whole table",
                                                       f"this is a known mistake: {m.description}",
                                                       f"known:{m.name}"))
                        break
    if not report.findings:
        _in_model(fns, be, seed, report)


def _in_model(fns, be, seed, report) -> None:
    from npformer.model.transformer import transformer_forward
    from npformer.verify.model_cases import TINY, perturbed_params, tiny_batch
    params = perturbed_params(TINY, be, seed % (1 << 30))
    src, tgt_in, _ = tiny_batch(TINY, be, seed % (1 << 30))
    want = be.to_host(transformer_forward(params, TINY, src, tgt_in)[0])
    with guard.swapped(fns):
        got = be.to_host(transformer_forward(params, TINY, src, tgt_in)[0])
    err = rel_error(got, want)
    report.rows.append(("in model", "the model's logits with your table", "logits", err))
    if err > 1e-12:
        report.findings.append(Finding("logits", "in model", "the model's output", f"differs from the "
                                       f"reference's by {err:.1e} with your table swapped in, though the table "
                                       "matched alone: is it cached, or shaped for one max_len only?", "composed"))
