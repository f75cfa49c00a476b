"""npformer's own wheel, made from the package that is running, for a course bundle to install.

An autograder's machine has no checkout and reaches no index that holds npformer, so the bundle
carries a wheel. It is written here, from the files of the imported package (``npformer``'s
folder: a checkout's, or site-packages' after ``pip install .``) and the metadata of the
installed distribution, rather than by ``pip wheel`` of a source tree: an installed package has
no setup.cfg to build from, and this needs neither setuptools nor a network. The format is the
wheel's own (PEP 427, "Binary distribution format"): the package's files, then
``npformer-VERSION.dist-info/`` with METADATA (or a checkout's egg-info PKG-INFO, the same core
metadata) and entry_points.txt as installed, a WHEEL file
(pure Python, ``py3-none-any``) and a RECORD of every file's SHA-256 and size. Entries carry a
fixed date, so the same files make the same bytes.

Left out: ``__pycache__`` and compiled files, and hidden files (an editor's, a checkout's).
Without installed metadata (the package run from a checkout that was never installed) there is
nothing to describe the wheel with: a ``UserError`` says to install it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import zipfile

from npformer.errors import UserError

NAME = "npformer"
TAG = "py3-none-any"
FIXED_DATE = (1980, 1, 1, 0, 0, 0)   # the earliest a zip entry holds
COPIED_METADATA = ("METADATA", "entry_points.txt", "top_level.txt")


def _distribution():
    import importlib.metadata
    import npformer
    try:
        dist = importlib.metadata.distribution(NAME)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("npformer's wheel is made from its installed metadata, and npformer is not installed "
                        "in this environment: from a clone, `pip install .` first") from None
    if dist.version != npformer.__version__:
        raise UserError(f"the installed npformer is {dist.version} and the running one {npformer.__version__}: "
                        "reinstall (`pip install .` from the clone) so that the wheel describes this code")
    return dist


def package_files() -> list:
    """(path inside the wheel, path on disk) of every file of the running package, sorted."""
    import npformer
    root = os.path.dirname(os.path.abspath(npformer.__file__))
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in names:
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            disk = os.path.join(folder, name)
            out.append((NAME + "/" + os.path.relpath(disk, root).replace(os.sep, "/"), disk))
    return sorted(out)


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def filename(version: str) -> str:
    return f"{NAME}-{version}-{TAG}.whl"


def build(out_dir: str) -> str:
    """Write npformer's wheel into ``out_dir``; its path."""
    dist = _distribution()
    info = f"{NAME}-{dist.version}.dist-info"
    entries = []
    for arcname, disk in package_files():
        with open(disk, "rb") as f:
            entries.append((arcname, f.read()))
    # an installed wheel's METADATA, or the PKG-INFO of a checkout's egg-info (the same core metadata)
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not metadata:
        raise UserError(f"npformer {dist.version}'s installed metadata has no METADATA: reinstall it (`pip install .`)")
    entries.append((f"{info}/METADATA", metadata.encode("utf-8")))
    for name in COPIED_METADATA[1:]:
        text = dist.read_text(name)
        if text is not None:
            entries.append((f"{info}/{name}", text.encode("utf-8")))
    for path in dist.files or []:   # the license files the METADATA names (License-File)
        if path.parts[:2] == (info, "licenses"):
            entries.append((path.as_posix(), path.read_binary()))
    wheel = f"Wheel-Version: 1.0\nGenerator: npformer.course.wheel\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    entries.append((f"{info}/WHEEL", wheel.encode()))
    record = "\n".join([_record_line(a, d) for a, d in entries] + [f"{info}/RECORD,,"]) + "\n"
    entries.append((f"{info}/RECORD", record.encode()))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, filename(dist.version))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for arcname, data in entries:
            entry = zipfile.ZipInfo(arcname, date_time=FIXED_DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return path
