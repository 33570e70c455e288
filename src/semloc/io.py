"""Atomic file writes: a reader never sees a half-written checkpoint, manifest or report.

Everything is written to a temporary file in the destination directory, flushed to disk, then
renamed over the destination (an atomic operation on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from semloc.errors import SemlocError

_UMASK = os.umask(0)
os.umask(_UMASK)


def output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create (if needed) and return the directory `path`, or raise SemlocError saying why it
    cannot be one (a file is in the way, no permission). Every writer of a directory calls it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SemlocError(f"{what} {path} is an existing file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SemlocError(f"{what} {path}: a file is in the way of the directory path") from None
    except OSError as e:
        raise SemlocError(f"cannot create {what} {path}: {e.strerror or e}") from None
    return path


def output_file(path: str | Path, what: str = "output file") -> Path:
    """Check that `path` can be written as a file (not a directory; its parent a directory or
    creatable), creating the parent. Every writer of a file calls it (atomic_path does)."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise SemlocError(f"{what} {path} is a directory; give a file name")
    output_dir(path.parent, what=f"directory of {what}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, else removed."""
    path = output_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes owner-only files; give the result the permissions a plain open() would
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(directory: str | Path, names: list[str]) -> int:
    """Delete temporaries `atomic_path` left for `names` in `directory` when a process was killed
    mid-write (`.NAME.*.tmp`); returns how many. Call it only where one writer owns the files."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for name in names:
        for p in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
    return removed


def atomic_write(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer(f)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """A stable hash of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
