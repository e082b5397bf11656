"""Atomic writes for every result file actplug writes: the old file stays whole until the new one is.

Each write goes to a unique temporary file in the target's own folder (so the rename never crosses
file systems), is flushed and fsync'ed, then ``os.replace``'d over the target. On any error, an
exception or Ctrl-C alike, the temporary file is removed and the target is left as it was. The
content is produced in full (JSON serialised, a figure rendered) before any file is opened, so a
value that cannot be serialised never touches the disk. The new file gets the old one's permission
bits, or the usual ``0o666 & ~umask`` for a new file (not the ``0o600`` of a bare temporary file).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_record", "write_bytes", "write_figure", "write_json", "write_text"]


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits the written file gets: the old file's, else what ``open()`` would give."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 unless told), creating parent folders."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike[str], payload: Any, *, indent: int | None = 2, allow_nan: bool = True) -> Path:
    """Write ``payload`` as JSON (and a final newline) atomically; serialised first, so a bad value writes nothing."""
    return write_text(path, json.dumps(payload, indent=indent, allow_nan=allow_nan) + "\n")


def write_figure(path: str | os.PathLike[str], fig: Any, **savefig_kwargs: Any) -> Path:
    """Render a matplotlib figure in memory (format from the suffix, PNG without one), then write it atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=savefig_kwargs.pop("format", path.suffix.lstrip(".").lower() or "png"), **savefig_kwargs)
    return write_bytes(path, buffer.getvalue())


def read_record(path: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object that actplug wrote at ``path`` (it holds ``key``), or (None, why it is not one)."""
    try:
        saved = json.loads(Path(path).read_text())
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    except ValueError as exc:
        return None, f"is not JSON: {exc}"
    if not isinstance(saved, dict) or key not in saved:
        return None, f"has no {key!r}"
    return saved, None
