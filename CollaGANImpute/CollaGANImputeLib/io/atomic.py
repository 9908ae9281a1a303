"""Write files so that a reader never sees half of one: write a temporary sibling, then rename. And before any
work, check where the outputs will land (`check_outputs`), and keep two runs out of one folder (`folder_lock`)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..core.errors import InputError


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once, at import: setting the umask to read it later would race files other threads create meanwhile.
_UMASK = _read_umask()


# A temporary file is named .NAME.<host>-<pid>.<random>.partial<suffixes>: the writer's machine and process, so
# that the next write of NAME can tell the leftovers of a killed writer (kill -9, power loss) from a live one's.
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32] or "host"
STALE_AFTER_S = 24 * 3600  # a leftover of another machine (a shared folder) is removed once this old


def _remove_stale_partials(destination: Path) -> None:
    """Delete what writers of `destination` that died mid-write left beside it: partial files of this tool whose
    process is gone (same machine) or that are a day old (another machine, or a name from before the tags)."""
    prefix = f".{destination.name}."
    try:
        candidates = [p for p in destination.parent.iterdir() if p.name.startswith(prefix) and ".partial" in p.name[len(prefix):]]
    except OSError:
        return
    for path in candidates:
        tag = re.match(r"([A-Za-z0-9-]+)-(\d+)\.", path.name[len(prefix):])
        try:
            if tag and tag.group(1) == _HOST:
                stale = not _process_alive(int(tag.group(2)))
            else:
                stale = time.time() - path.stat().st_mtime > STALE_AFTER_S
            if stale:
                path.unlink()
        except OSError:
            pass  # another run removed it first, or it cannot be removed: it is only a leftover


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; without a safe probe, keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_paths(*destinations: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path beside each destination, with its suffixes. When the block succeeds they are
    renamed over their destinations one after another, only once every one is written (weights and their
    card, a volume and its reliability map); when the block raises (Cancel included) they are deleted and
    the destinations keep what they held. A rename itself can fail only on a destination that is a folder
    or on another file system; the ones renamed before it then stay renamed. Temporary files that a killed
    writer of the same destination left are removed first."""
    temps: list[Path] = []
    try:
        for destination in map(Path, destinations):
            destination.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_partials(destination)
            suffix = "".join(destination.suffixes) or ".tmp"
            handle, name = tempfile.mkstemp(prefix=f".{destination.name}.{_HOST}-{os.getpid()}.", suffix=".partial" + suffix,
                                            dir=destination.parent)
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


def _where(path: Path) -> Path | None:
    """The path with its links followed, for comparing two paths; None for a loop of links."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python before 3.13 on a loop of symbolic links
        return None


def check_outputs(outputs: Iterable[str | Path], protected: Mapping[str | Path, str] | None = None, *, overwrite: bool = False) -> None:
    """Refuse, before any work, outputs that would destroy something or cannot be written: one that is, or lies
    inside, a protected path (inputs, an answer key, answers: path -> what it is), an existing file without
    `overwrite`, a folder, two outputs on one file, or a folder that cannot be written (tried with a file)."""
    guarded = {where: (Path(p), role) for p, role in (protected or {}).items() if (where := _where(Path(p))) is not None}
    seen: dict[Path, Path] = {}
    for output in map(Path, outputs):
        where = _where(output)
        if where is None:
            raise InputError(f"output '{output}' is a loop of symbolic links")
        if where in seen:
            raise InputError(f"outputs '{seen[where]}' and '{output}' are the same file")
        seen[where] = output
        for place, (given, role) in guarded.items():
            if where == place:
                raise InputError(f"output '{output}' is {role}; it is never overwritten")
            if place in where.parents:
                raise InputError(f"output '{output}' lies inside {role} '{given}'; nothing is written there")
        if output.is_dir():
            raise InputError(f"output '{output}' is a folder; give a file name")
        if output.exists() and not overwrite:
            raise InputError(f"output '{output}' already exists; give --overwrite to replace it")
        _require_writable_folder(output.parent)


def _require_writable_folder(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output folder '{folder}' cannot be made: '{existing}' is a file")
    try:
        handle, name = tempfile.mkstemp(prefix=".collagan-write-test.", dir=existing)
    except OSError as error:
        raise InputError(f"output folder '{existing}' is not writable ({error.strerror})") from None
    os.close(handle)
    os.unlink(name)


@contextlib.contextmanager
def folder_lock(folder: str | Path, name: str) -> Iterator[None]:
    """Hold `folder`/.NAME.lock for the block, or refuse at once if another process holds it. The operating system
    releases the lock when its process ends, killed or not, so a crash never leaves the folder locked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.lock"
    handle = open(path, "a+b")
    try:
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"'{folder}' is in use by another run (it holds the lock '{path.name}'); wait for that run "
                             "to finish") from None
        yield
    finally:
        handle.close()  # closing releases the lock
