"""What the training loop asks of the processes it runs on, and the one-process case.

A ``Communicator`` joins the P processes ("ranks") of one run. Training needs
only this of it:

    rank, size                this process's place, 0 <= rank < size
    allreduce_sum(buffers)    b <- sum over ranks of b, in place, for a few large
                              contiguous arrays (the gradient buckets, buckets.py)
    sum_floats(values)        the same for a handful of Python floats (the loss)
    any(flag)                 True on every rank when it is True on one (a time budget)
    allgather(obj), bcast(obj) small host objects: the start-up consistency check
    barrier(what)             wait for every rank (rank 0's evaluation and checkpoint)
    finish()                  the last collective: afterwards a rank may leave

Every collective is watched: a rank that waits past its deadline, or whose
peers have died, stops the whole run (mpi.py). ``what`` names the collective
in that message.

``SingleProcess`` is the communicator of a run without an MPI launcher: size 1,
and every collective returns its input.
"""
from __future__ import annotations

import hashlib
import json

from npformer.errors import UserError


class AgreedError(UserError):
    """An error that every rank raises at the same point, having seen the same
    information: it is reported once, by rank 0, and no rank is aborted. A
    ``UserError`` (npformer/errors.py: one line, exit 2), since what the ranks
    agree on is the same ``UserError`` on each of them, or ranks the user started
    unalike (``RanksDisagree``), not a crash of one rank."""


class RanksDisagree(AgreedError):
    """The ranks were started with different settings, data or state."""


class Communicator:
    """The interface; see the module docstring. ``name`` is "single", "mpi" or "nccl"."""

    name = "?"
    rank = 0
    size = 1
    local_size = 1     # ranks on this machine (shares of its cores and GPUs)
    timeout = None     # seconds a step's collective may wait for the other ranks
    wait_timeout = None  # seconds any rank may wait while rank 0 evaluates, saves or starts
    buckets = None     # the gradient buckets, made at the first step (train/ranks.py)

    def allreduce_sum(self, buffers: list, what: str = "the gradient all-reduce") -> None:
        raise NotImplementedError

    def sum_floats(self, values, what: str = "a sum over ranks") -> list[float]:
        raise NotImplementedError

    def any(self, flag: bool, what: str = "an agreement between ranks") -> bool:
        return self.sum_floats([1.0 if flag else 0.0], what)[0] > 0

    def allgather(self, obj, what: str = "an exchange between ranks") -> list:
        raise NotImplementedError

    def bcast(self, obj, root: int = 0, what: str = "a broadcast from rank 0"):
        raise NotImplementedError

    def barrier(self, what: str = "a barrier") -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """The run's last collective; after it a rank may exit without alarming the others."""

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)

    def describe(self) -> str:
        return f"{self.size} rank(s) ({self.name})"

    def require_same(self, fingerprint, what: str = "the start-up check") -> None:
        """The start-up check. ``fingerprint`` is this rank's JSON-serialisable dict,
        or the exception its set-up raised. Raises on every rank when any rank
        failed (an ``AgreedError`` naming the ranks and their errors) or when a
        fingerprint differs from rank 0's (``RanksDisagree`` naming the ranks and
        keys). On one rank it only re-raises the exception."""
        if self.size == 1:
            if isinstance(fingerprint, BaseException):
                raise fingerprint
            return
        if isinstance(fingerprint, BaseException):
            fingerprint = {"error": str(fingerprint) or type(fingerprint).__name__}
        prints = self.allgather(fingerprint, what)
        errors = {r: p["error"] for r, p in enumerate(prints) if "error" in p}
        if errors:
            if len(errors) == self.size and len(set(errors.values())) == 1:
                raise AgreedError(errors[0])  # the same mistake on every rank: say it as one process would
            raise AgreedError("; ".join(f"rank {r}: {e}" for r, e in errors.items()))
        problems = compare_fingerprints(prints)
        if problems:
            raise RanksDisagree(f"the {self.size} ranks were not started alike, refused: "
                                + "; ".join(problems)
                                + ". Every rank must run the same command on the same data and files")


class SingleProcess(Communicator):
    """One process: rank 0 of 1; every collective is the identity."""

    name = "single"

    def allreduce_sum(self, buffers: list, what: str = "") -> None:
        pass

    def sum_floats(self, values, what: str = "") -> list[float]:
        return [float(v) for v in values]

    def any(self, flag: bool, what: str = "") -> bool:
        return bool(flag)

    def allgather(self, obj, what: str = "") -> list:
        return [obj]

    def bcast(self, obj, root: int = 0, what: str = ""):
        return obj

    def barrier(self, what: str = "") -> None:
        pass


def digest(obj) -> str:
    """A short hex digest of bytes, an array (its dtype, shape and bytes) or a
    JSON-serialisable object (sorted keys): equal inputs, equal digests on every rank."""
    h = hashlib.blake2b(digest_size=12)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        h.update(obj)
    elif hasattr(obj, "dtype") and hasattr(obj, "shape"):
        h.update(f"{obj.dtype.str}{tuple(obj.shape)}".encode())
        h.update(memoryview(obj).cast("B") if obj.flags.c_contiguous else obj.tobytes())
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())
    return h.hexdigest()


def compare_fingerprints(prints: list[dict]) -> list[str]:
    """One line per (rank, key) where a rank's fingerprint differs from rank 0's;
    nested dicts (the run settings) are compared key by key."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and v and not prefix:
                out.update(flat(v, f"{k}."))
            else:
                out[prefix + k] = v
        return out
    first = flat(prints[0])
    problems = []
    for rank, other in enumerate(prints[1:], start=1):
        theirs = flat(other)
        for key in sorted(set(first) | set(theirs)):
            if first.get(key) != theirs.get(key):
                problems.append(f"rank {rank} has {key} = {theirs.get(key)!r}, rank 0 has {first.get(key)!r}")
    return problems
