"""Write files so that a reader never sees half of one: write a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once, at import: setting the umask to read it later would race files other threads create meanwhile.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_paths(*destinations: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path beside each destination, with its suffixes. When the block succeeds they are
    renamed over their destinations one after another, only once every one is written (weights and their
    card, a volume and its reliability map); when the block raises (Cancel included) they are deleted and
    the destinations keep what they held. A rename itself can fail only on a destination that is a folder
    or on another file system; the ones renamed before it then stay renamed."""
    temps: list[Path] = []
    try:
        for destination in map(Path, destinations):
            destination.parent.mkdir(parents=True, exist_ok=True)
            suffix = "".join(destination.suffixes) or ".tmp"
            handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial" + suffix, dir=destination.parent)
            os.close(handle)
            temps.append(Path(name))
        yield temps
        for temp, destination in zip(temps, destinations):
            os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600, and so do writers that replace the file (safetensors)
            os.replace(temp, destination)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """`atomic_paths` for one file."""
    with atomic_paths(destination) as (temp,):
        yield temp


def write_text_atomic(destination: str | Path, text: str) -> None:
    """Write UTF-8 text to `destination` atomically."""
    with atomic_path(destination) as temp:
        temp.write_text(text, encoding="utf-8")
