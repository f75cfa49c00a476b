"""Training progress on stderr: a tqdm bar, or plain log lines when tqdm is absent.

tqdm is the optional extra ``train`` (``pip install npformer[train]``). Either
way the display shows the step, the recent loss, the learning rate, target
tokens per second and the time left when a step or time budget is known.
stdout stays free for results (``--json``).
"""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(step, loss, lr, tok_per_s)`` after each step; ``write(line)`` for
    messages (evaluations) that must not garble the bar; ``close()`` at the end."""

    def __init__(self, total: int | None = None, initial: int = 0, seconds: float | None = None,
                 enabled: bool = True, stream=None, every_s: float = 10.0):
        self.total, self.initial, self.seconds = total, initial, seconds
        self.enabled, self.every_s = enabled, every_s
        self.stream = stream or sys.stderr
        self.start = self.last_line = time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, file=self.stream, unit="step",
                                dynamic_ncols=True, leave=True)

    def update(self, step: int, loss: float, lr: float, tok_per_s: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        fields = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "tok/s": f"{tok_per_s:,.0f}"}
        if self.seconds is not None:
            fields["time left"] = _clock(self.seconds - (now - self.start))
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(fields, refresh=False)
            return
        if now - self.last_line < self.every_s and step != self.total:
            return
        self.last_line = now
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and step > self.initial:
            eta = f" | eta {_clock((now - self.start) / (step - self.initial) * (self.total - step))}"
        body = " | ".join(f"{k} {v}" for k, v in fields.items())
        self.write(f"step {step}{of} | {body}{eta}")

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
