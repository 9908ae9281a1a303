"""Write files so that a reader never sees half of one: write a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `destination` with the same suffixes; rename it over
    `destination` when the block succeeds, delete it when the block raises (Cancel included)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(destination.suffixes) or ".tmp"
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial" + suffix, dir=destination.parent)
    os.close(handle)
    temp = Path(temp_name)
    os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        yield temp
        os.replace(temp, destination)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(destination: str | Path, text: str) -> None:
    with atomic_path(destination) as temp:
        temp.write_text(text, encoding="utf-8")
