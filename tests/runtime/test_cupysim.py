"""npformer/cupysim.py: CuPy's rules on the CPU, and the faults it exists to catch.

Three faults are planted in real code paths and must be caught on cupysim:
  1. a call that CuPy 13 lacks (``xp.put_along_axis`` in the cross-entropy backward): AttributeError;
  2. a host (NumPy) array mixed into device math (in LayerNorm's forward): TypeError;
  3. an extra read back to the host in every training step (``float(loss)``): the step's read
     count, pinned at 1, goes up.
"""
import json
from importlib import resources

import numpy as np
import pytest

from npformer import ops
from npformer import cupysim
from npformer.backend import backend_of, get_backend
from npformer.cupysim import SimArray, host_reads
from npformer.model.config import preset
from npformer.train import parallel, trainer
from npformer.train.state import init_state
from npformer.train.tasks import SequenceTask

SIM = get_backend("cupysim")


def sim(a):
    return SIM.asarray(np.asarray(a))


# --- the rules -----------------------------------------------------------------
def test_sim_arrays_are_their_own_type_and_the_backend_knows_them():
    a = sim([[1.0, 2.0]])
    assert type(a) is SimArray and not isinstance(a, np.ndarray)
    assert backend_of(a) is SIM and SIM.on_device
    with pytest.raises(TypeError, match="different devices"):
        backend_of(a, np.zeros(2))


@pytest.mark.parametrize("mix", [lambda a, h: a + h, lambda a, h: h * a, lambda a, h: SIM.xp.maximum(a, h),
                                 lambda a, h: SIM.xp.concatenate([a, h]), lambda a, h: a.__iadd__(h),
                                 lambda a, h: a @ h, lambda a, h: np.add(a, h)])
def test_mixing_a_host_array_into_device_math_raises(mix):
    with pytest.raises(TypeError, match="Unsupported type"):
        mix(sim([1.0, 2.0]), np.array([3.0, 4.0]))


def test_python_and_numpy_scalars_mix_freely():
    a = sim([1.0, 2.0])
    assert type(a * 2.0 + np.float64(1.0)) is SimArray


def test_no_implicit_conversion_to_numpy():
    a = sim([1.0, 2.0])
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array([a, a])
    np.testing.assert_array_equal(SIM.to_host(a), [1.0, 2.0])  # the explicit way


def test_numpy_functions_on_sim_arrays_run_as_cupy_would():
    a = sim([[0.0, 1.0]])
    assert type(np.exp(a)) is SimArray and type(np.concatenate([a, a])) is SimArray
    with pytest.raises(TypeError):  # NumPy has it, CuPy does not: no implementation found
        np.put_along_axis(a, sim([[0]]), 1.0, axis=1)


def test_reductions_return_device_arrays_not_host_numbers():
    a = sim([1.0, 2.0])
    assert type(a.sum()) is SimArray and a.sum().shape == ()
    assert type(a[0]) is SimArray


def test_indexing_with_host_indices_is_allowed_as_in_cupy():
    a = sim(np.arange(6.0))
    np.testing.assert_array_equal(SIM.to_host(a[np.array([4, 1])]), [4.0, 1.0])
    a[np.array([0, 1])] = np.array([7.0, 8.0])  # CuPy copies a host value to the device
    np.testing.assert_array_equal(SIM.to_host(a)[:3], [7.0, 8.0, 2.0])


@pytest.mark.parametrize("read, kind", [(float, "float"), (int, "int"), (bool, "bool"),
                                        (lambda a: a.item(), "item"), (lambda a: a.tolist(), "tolist"),
                                        (lambda a: a.get(), "get"), (SIM.to_host, "asnumpy"),
                                        (repr, "repr")])
def test_every_read_back_to_the_host_is_counted_with_its_place(read, kind):
    a = sim(3.0)
    with host_reads() as reads:
        read(a)
        a + 1.0, a.shape, a.dtype, len(sim([1, 2]))  # device work and metadata: no read
    assert [r.kind for r in reads.reads] == [kind]
    assert reads.reads[0].where.startswith(__file__), reads  # the caller's line, not the plumbing


def test_reads_from_worker_threads_are_counted():
    from npformer.runtime.workers import Workers, blas_threads_controllable
    with host_reads() as reads:
        if blas_threads_controllable():
            Workers(2).map(lambda i: float(sim(i)), range(4))
        else:
            [float(sim(i)) for i in range(4)]
    assert len(reads) == 4


def test_only_the_api_every_supported_cupy_has():
    api = json.loads(resources.files("npformer").joinpath("cupy_api.json").read_text())
    assert api["versions"][0] == "13.0.0" and api["versions"][-1].startswith("14.")
    assert "put_along_axis" in api["not_in_every_version"]["cupy"]["13.0.0"]
    with pytest.raises(AttributeError, match="put_along_axis.*every supported CuPy version"):
        getattr(SIM.xp, "put_along_axis")  # noqa: B009 (the attribute access is the test)
    with pytest.raises(AttributeError, match="'cupy.ndarray' object has no attribute 'byteswap'"):
        sim([1.0]).byteswap()  # an ndarray method CuPy 13 lacks
    assert SIM.xp.take_along_axis and SIM.xp.add.at and SIM.xp.fuse


def test_cuda_c_kernels_are_refused_and_fuse_runs_its_python_body():
    with pytest.raises(NotImplementedError, match="cupy.fuse"):
        SIM.xp.ElementwiseKernel("T x", "T y", "y = x", "copy")

    def axpy(y, a, x):
        y += a * x
    y = sim([1.0, 2.0])
    SIM.fuse(axpy)(y, 2.0, sim([1.0, 1.0]))
    np.testing.assert_array_equal(SIM.to_host(y), [3.0, 4.0])


def test_generators_draw_device_arrays_reproducibly():
    g1, g2 = SIM.rng(5), SIM.rng(5)
    a, b = g1.random((3,), dtype="float32"), g2.random((3,), dtype="float32")
    assert type(a) is SimArray and a.dtype == np.float32
    np.testing.assert_array_equal(SIM.to_host(a), SIM.to_host(b))


# --- the planted faults ----------------------------------------------------------
CFG = preset("tiny", vocab_size=12, d_model=16, h=2, d_ff=32, n_layers=1, max_len=32)
TASK = SequenceTask("reverse", vocab_size=12, min_len=2, max_len=6)


def one_step(be=SIM, steps=1):
    state = init_state(CFG, seed=0, backend=be)
    batches = TASK.batches(0, batch_size=8)
    with host_reads() as reads:
        for t in range(1, steps + 1):
            trainer.train_step(state, CFG, batches(t), 1e-3, clip=1.0)
    return reads


def test_planted_put_along_axis_is_caught(monkeypatch):
    import npformer.ops.cross_entropy as ce

    def backward_with_put_along_axis(dloss, cache):
        p, targets, valid, n_tokens, eps_ls = cache
        xp = backend_of(p).xp
        w = (valid * (dloss / n_tokens)).astype(p.dtype)[..., None]
        dz = p * w - w * (eps_ls / p.shape[-1])
        at_target = xp.take_along_axis(dz, targets[..., None], axis=-1) - (1.0 - eps_ls) * w
        xp.put_along_axis(dz, targets[..., None], at_target, axis=-1)  # PLANTED: not in CuPy 13
        return dz
    monkeypatch.setattr("npformer.ops.cross_entropy_backward", backward_with_put_along_axis)
    one_step(be=get_backend("numpy"))  # NumPy has it: the fault is invisible on the CPU
    with pytest.raises(AttributeError, match="put_along_axis"):
        one_step()
    assert ce.cross_entropy_backward is not backward_with_put_along_axis


def test_planted_host_array_mix_is_caught(monkeypatch):
    real = ops.layernorm.layernorm_forward

    def layernorm_with_host_epsilon(x, gamma, beta, eps=1e-6):
        y, cache = real(x, gamma, beta, eps)
        return y + np.zeros(y.shape[-1], dtype=y.dtype), cache  # PLANTED: a host array in device math
    monkeypatch.setattr("npformer.ops.layernorm_forward", layernorm_with_host_epsilon)
    one_step(be=get_backend("numpy"))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        one_step()


def test_a_training_step_reads_the_host_once():
    reads = one_step(steps=3)
    assert len(reads) == 3, reads  # the loss and the gradient norm, fetched together


def test_planted_per_step_read_is_caught(monkeypatch):
    real = parallel.loss_and_grads

    def loss_and_grads_reading_the_loss(*args, **kwargs):
        loss, grads, n = real(*args, **kwargs)
        if float(loss) > 1e6:  # PLANTED: a host read in every step
            raise RuntimeError
        return loss, grads, n
    monkeypatch.setattr(parallel, "loss_and_grads", loss_and_grads_reading_the_loss)
    reads = one_step(steps=3)
    assert len(reads) == 6 and sum(r.kind == "float" and "test_cupysim" in r.where for r in reads.reads) == 3


def test_cupysim_is_a_backend_choice(monkeypatch):
    monkeypatch.setenv("NPFORMER_BACKEND", "cupysim")
    assert get_backend() is SIM and cupysim.SUPPORTED_CUPY[0] == "13.0.0"


def test_array_copies_as_cupy_does_and_asarray_shares():
    a = cupysim.xp.zeros(3)
    b, c = cupysim.xp.array(a), cupysim.xp.asarray(a)
    b[0], c[1] = 1.0, 2.0
    assert cupysim.xp.asnumpy(a).tolist() == [0.0, 2.0, 0.0]


# --- kernel launches -------------------------------------------------------------

def test_kernel_launches_count_what_would_run_on_the_gpu_and_not_views():
    from npformer.cupysim import kernel_launches
    xp = SIM.xp
    a, idx = sim(np.arange(12.0).reshape(3, 4)), sim(np.array([2, 0]))
    with kernel_launches() as none:
        a.reshape(4, 3), a.T, a.swapaxes(0, 1), a[1:, ::2], a[0], a.shape  # views and metadata
    with kernel_launches() as launches:
        b = a + 1.0          # 1: an operator
        b *= 2.0             # 2: in place
        xp.exp(b, out=b)     # 3: a ufunc
        b.sum(axis=-1)       # 4: a reduction
        a @ a.T              # 5: a matrix product
        a[idx]               # 6: fancy indexing gathers
        a[0] = 0.0           # 7: a fill
        _ = -a               # 8: a unary operator
        SIM.asarray(np.ones(3))  # 9: a copy to the device
    assert len(none) == 0, none
    assert len(launches) == 9, launches
    assert all(w.startswith(__file__) for w in launches.where), launches  # the caller's lines


def test_a_fused_function_is_one_kernel_however_long_its_body():
    from npformer.cupysim import kernel_launches
    a = sim(np.ones(5))

    @SIM.xp.fuse
    def axpy_relu(x, y):
        return SIM.xp.maximum(2.0 * x + y - 1.0, 0.0)

    with kernel_launches() as launches:
        out = axpy_relu(a, a)
    assert len(launches) == 1 and np.allclose(SIM.to_host(out), 2.0)


# Kernel launches of one training step (forward, loss, backward, norm, fused Adam), float32,
# dropout 0.1, one worker, counted after one step; benchmarks/kernel_launches.py lists the
# busiest lines. A GPU step of small kernels is bound by their launches, so a change that
# adds kernels to the step must say why and raise its budget here; one that fuses kernels
# away lowers it.
LAUNCH_BUDGET = {"tiny": 662, "small": 941}


@pytest.mark.parametrize("name", sorted(LAUNCH_BUDGET))
def test_a_training_step_keeps_within_its_kernel_launch_budget(name):
    from npformer.cupysim import kernel_launches
    from npformer.data.batching import Batch
    rng = np.random.default_rng(0)
    cfg = preset(name, vocab_size=96, p_drop=0.1, max_len=64)
    src, tgt = rng.integers(3, 96, size=(4, 9)), rng.integers(3, 96, size=(4, 8))
    src[0, 6:] = tgt[1, 5:] = cfg.pad_id
    tgt_in = np.concatenate([np.full((4, 1), cfg.bos_id), tgt[:, :-1]], axis=1)
    batch = Batch(src, tgt_in, tgt, int((tgt != cfg.pad_id).sum()), np.arange(4))
    state = init_state(cfg, seed=0, backend="cupysim", dtype="float32", workers=1)
    trainer.train_step(state, cfg, batch, 1e-3)
    with kernel_launches() as launches:
        trainer.train_step(state, cfg, batch, 1e-3)
    assert len(launches) <= LAUNCH_BUDGET[name], \
        f"{name}: {len(launches)} kernel launches per step, over the budget of {LAUNCH_BUDGET[name]}: {launches}"
