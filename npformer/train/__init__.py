"""Training: Adam and the §5.3 learning-rate schedule, synthetic tasks, the loop.

    optim.py     Adam (beta1 0.9, beta2 0.98, eps 1e-9), global gradient norm, clipping
    schedule.py  lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), or linear decay over a budget
    recipe.py    the settings derived from the corpus and the time budget, each with its reason
    parallel.py  the loss and gradients of a batch split over CPU workers (data parallelism)
    ranks.py     the split of each batch between ranks and threads, and the step built on it
    tasks.py     copy / reverse random sequences, held-out exact match
    state.py     TrainState, its checkpoints (save_state / load_state, last, best, step-<t>) and RNG states
    trainer.py   train(): the loop, its budget, evaluations and progress
    average.py   one model from the mean of a run's checkpoints (§6.1)
    progress.py  tqdm bar or plain log lines on stderr

The worker pool itself is npformer/runtime/workers.py.
"""
from npformer.train.optim import Adam, clip_grad_norm, global_norm
from npformer.train.schedule import Schedule, linear_lr, noam_lr
from npformer.train.state import TrainState, init_state, load_state, save_state
from npformer.train.trainer import TrainingDiverged, train

__all__ = ["Adam", "clip_grad_norm", "global_norm", "noam_lr", "linear_lr", "Schedule", "TrainState",
           "TrainingDiverged", "init_state", "load_state", "save_state", "train"]
