"""Checkpoints: one ``.npz`` file holding a model and everything needed to resume.

Layout of the archive (all entries are plain arrays, so no pickle is needed):

    param/<name>     every parameter, e.g. ``param/encoder.0.ffn.W_1``
    adam_m/<name>    Adam's first moment for that parameter   (optional)
    adam_v/<name>    Adam's second moment                     (optional)
    meta             uint8 array: UTF-8 JSON with
                       format, version, config (TransformerConfig.to_dict()),
                       step, optimizer (t, beta1, beta2, eps) or null,
                       rng_state (JSON-serialisable) or null, history (list of dicts),
                       tokenizer (e.g. BPETokenizer.to_dict()) or null, extra (dict)

Safety. Loading always uses ``np.load(..., allow_pickle=False)``: an archive
whose entries need pickle (object arrays) is refused, because unpickling runs
arbitrary code. A missing, truncated or corrupted file, or one that does not
match its own config (or the expected one), raises ``npformer.errors.UserError``
naming the path and the problem: a checkpoint is the user's file, and the
``npformer`` command reports it in one line. A failed write raises ``OSError``
whose ``filename`` is the checkpoint's path, not its temporary file's.

Atomic writes. The archive is written to a temporary file in the target
directory, flushed and fsync'ed, and then renamed over the target with
``os.replace``, which is atomic on POSIX and Windows. A crash at any point
leaves either the old checkpoint or the new one, never half of one. A save
killed before its rename leaves its temporary file behind; the next save to the
same path deletes such files once their process is gone.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import zipfile
from typing import NamedTuple

import numpy as np

from npformer.backend import backend_of, validate_dtype, get_backend
from npformer.errors import UserError
from npformer.model.config import TransformerConfig
from npformer.model.params import param_shapes

FORMAT = "npformer-checkpoint"
VERSION = 1


class Checkpoint(NamedTuple):
    params: dict                 # name -> array on the requested backend
    config: TransformerConfig
    optimizer: dict | None       # Adam.state_dict() form: t, beta1, beta2, eps, m, v
    step: int
    rng_state: dict | None
    history: list
    tokenizer: dict | None
    extra: dict
    path: str


def save(path, params: dict, config: TransformerConfig, *, optimizer: dict | None = None,
         step: int = 0, rng_state: dict | None = None, history=(), tokenizer: dict | None = None,
         extra: dict | None = None) -> str:
    """Write a checkpoint atomically to ``path`` and return the path.

    ``optimizer`` is ``Adam.state_dict()``; arrays may live on any backend.
    """
    be = backend_of(*params.values())
    arrays = {f"param/{k}": be.to_host(a) for k, a in params.items()}
    opt_meta = None
    if optimizer is not None:
        opt_meta = {k: optimizer[k] for k in ("t", "beta1", "beta2", "eps")}
        for moment in ("m", "v"):
            arrays.update({f"adam_{moment}/{k}": be.to_host(a) for k, a in optimizer[moment].items()})
    meta = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "step": int(step),
            "optimizer": opt_meta, "rng_state": rng_state, "history": list(history),
            "tokenizer": tokenizer, "extra": dict(extra or {})}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path = os.fspath(path)
    try:
        _atomic_savez(path, arrays)
    except OSError as e:  # a full disk, a directory not writable: name the checkpoint, not its temporary file
        raise _naming(e, path, "cannot write the checkpoint") from e
    return path


def _naming(e: OSError, path: str, what: str) -> OSError:
    """``e`` again (the same errno, so the same subclass), with ``path`` as its file
    name and ``what`` before its reason."""
    return OSError(e.errno, f"{what} ({e.strerror or e})", path)


def _atomic_savez(path: str, arrays: dict) -> None:
    """np.savez into a temporary file beside ``path``, fsync, then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temporaries(directory, os.path.basename(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    f = open(tmp, "xb")  # unlike mkstemp, honours the umask (0644, not 0600)
    try:
        with f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a crash (even Ctrl-C) before the rename: the old file is untouched
        os.remove(tmp)
        raise
    try:  # make the rename itself durable; not possible on every OS
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def link_or_copy(source: str, target: str) -> str:
    """Make ``target`` a second name of the checkpoint ``source``, atomically: a hard
    link (no second write) where the file system has them, else a copy. Either
    way ``target`` is replaced in one rename, and it survives ``source``'s removal.
    A failure raises ``OSError`` naming ``target``."""
    try:
        return _link_or_copy(source, target)
    except OSError as e:
        raise _naming(e, target, f"cannot write {os.path.basename(target)} from {source}") from e


def _link_or_copy(source: str, target: str) -> str:
    directory = os.path.dirname(os.path.abspath(target))
    _remove_stale_temporaries(directory, os.path.basename(target))
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (or across devices): copy, flushed as in a save
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Delete ``.<name>.<pid>.<hex>.tmp`` files left by saves that were killed (SIGKILL,
    power loss) before their rename; a checkpoint-sized file each. A temporary file
    whose process still runs is left alone. POSIX only: there ``os.kill(pid, 0)``
    asks whether a process exists (on Windows it would end it)."""
    if os.name != "posix":
        return
    prefix = f".{name}."
    for entry in os.listdir(directory):
        pid = entry[len(prefix):].split(".")[0]
        if not (entry.startswith(prefix) and entry.endswith(".tmp") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (maybe saving right now)
        except ProcessLookupError:
            pass
        except (OSError, OverflowError):  # e.g. PermissionError: it runs, as another user
            continue
        try:
            os.remove(os.path.join(directory, entry))
        except OSError:
            pass


def read_arrays(path, names=None) -> dict:
    """Every entry of the archive at ``path`` (or only those in ``names``) as a NumPy
    array, without pickle."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path}: is a directory, expected an .npz file")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:  # NumPy falls back to pickle for anything it does not recognise
        raise UserError(f"checkpoint {path}: not an .npz archive; reading it would need pickle, "
                        "which is refused (allow_pickle=False)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"checkpoint {path}: unreadable, truncated or corrupted ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"checkpoint {path}: a single .npy array, expected an .npz archive")
    arrays = {}
    with archive:
        for name in archive.files:
            if names is not None and name not in names:
                continue
            try:
                arrays[name] = archive[name]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise UserError(f"checkpoint {path}: entry {name!r} holds Python objects, which "
                                    "need pickle; refused (allow_pickle=False)") from None
                raise UserError(f"checkpoint {path}: entry {name!r} is corrupted ({e})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise UserError(f"checkpoint {path}: entry {name!r} is truncated or corrupted "
                                f"({e})") from None
    return arrays


def load(path, backend=None, expected_config: TransformerConfig | None = None,
         expected_tokenizer: dict | None = None, dtype: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint, moving its arrays to ``backend`` (default numpy).

    ``expected_config`` / ``expected_tokenizer``: raise ``UserError`` naming the
    differing fields when the checkpoint was made for another model or vocabulary.
    ``dtype``: cast parameters and moments (default: keep the stored dtype).
    """
    path = os.fspath(path)
    if dtype is not None:
        validate_dtype(dtype)
    arrays = read_arrays(path)
    meta = _read_meta(path, arrays)
    try:
        config = TransformerConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint {path}: invalid config ({e})") from None
    if expected_config is not None:
        validate_same_config(expected_config, config, path)
    if expected_tokenizer is not None and meta["tokenizer"] != expected_tokenizer:
        theirs = meta["tokenizer"] or {}
        differ = sorted(k for k in set(expected_tokenizer) | set(theirs)
                        if expected_tokenizer.get(k) != theirs.get(k))
        raise UserError(f"checkpoint {path}: tokenizer differs from the expected one in {differ}")

    be = get_backend(backend)
    shapes = param_shapes(config)
    params = _group(path, arrays, "param/", shapes, be, dtype)
    optimizer = None
    if meta["optimizer"] is not None:
        optimizer = dict(meta["optimizer"])
        optimizer["m"] = _group(path, arrays, "adam_m/", shapes, be, dtype)
        optimizer["v"] = _group(path, arrays, "adam_v/", shapes, be, dtype)
    return Checkpoint(params, config, optimizer, int(meta["step"]), meta["rng_state"],
                      list(meta["history"]), meta["tokenizer"], dict(meta["extra"]), path)


def read_meta(path) -> dict:
    """The checkpoint's JSON entry alone (config, step, history, ...), checked as
    ``load`` checks it, without reading the arrays."""
    path = os.fspath(path)
    return _read_meta(path, read_arrays(path, names={"meta"}))


def _read_meta(path: str, arrays: dict) -> dict:
    if "meta" not in arrays:
        raise UserError(f"checkpoint {path}: no 'meta' entry; not an npformer checkpoint")
    raw = arrays["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise UserError(f"checkpoint {path}: 'meta' must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"checkpoint {path}: 'meta' is not valid UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"checkpoint {path}: not an npformer checkpoint (format "
                        f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise UserError(f"checkpoint {path}: format version {meta.get('version')!r}, "
                        f"this npformer reads version {VERSION}")
    keys = ("config", "step", "optimizer", "rng_state", "history", "tokenizer", "extra")
    missing = [k for k in keys if k not in meta]
    if missing:
        raise UserError(f"checkpoint {path}: 'meta' lacks {missing}")
    return meta


def _group(path, arrays, prefix, shapes, be, dtype) -> dict:
    """The entries under ``prefix``, checked against the config's parameter shapes."""
    found = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
    missing, unexpected = sorted(set(shapes) - set(found)), sorted(set(found) - set(shapes))
    if missing or unexpected:
        raise UserError(f"checkpoint {path}: entries {prefix}* do not match the config: "
                        f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    out = {}
    for name, shape in shapes.items():
        a = found[name]
        if a.shape != tuple(shape):
            raise UserError(f"checkpoint {path}: {prefix}{name} has shape {a.shape}, "
                            f"the config needs {tuple(shape)}")
        if a.dtype.kind != "f":
            raise UserError(f"checkpoint {path}: {prefix}{name} has dtype {a.dtype}, expected floats")
        out[name] = be.asarray(a, dtype=dtype or a.dtype)
    return out


def validate_same_config(expected: TransformerConfig, found: TransformerConfig, path: str = "") -> None:
    """Raise ``UserError`` naming every field where the two configs differ."""
    a, b = expected.to_dict(), found.to_dict()
    differ = [f"{k}: expected {a[k]!r}, checkpoint has {b[k]!r}" for k in a if a[k] != b[k]]
    if differ:
        raise UserError(f"checkpoint {path}: config differs: " + "; ".join(differ))
