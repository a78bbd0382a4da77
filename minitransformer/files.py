"""Writing users' files safely: check before the work, write atomically, never destroy.

A training run can take minutes; finding out at its end that the output cannot be written,
or that writing it replaced something precious, is the worst time. Two functions:

* :func:`check_output_path` is called *before* the work: it refuses a path that is a
  folder, a device or anything but a regular file, a read-only file, or one of the run's own
  inputs, and it really creates (and removes) a file in the target folder, so an unwritable
  place is found at once, in one line that names the user's path;
* :func:`atomic_write` writes through a temporary file in the same folder, flushed to disk,
  then renamed over the target: a reader sees the old file or the new one, never half of one.
  The temporary file is named ``.NAME.partial-PID``; one left by a killed process is removed
  by the next write to the same target.

Only a regular file (or a new path) is ever replaced, its permissions are kept, and a
symbolic link keeps pointing where it pointed: the file it points to is the one replaced.
:func:`termination_as_interrupt` makes SIGTERM and SIGHUP stop a run the way Ctrl-C does,
so what handles an interrupt (saving, cleaning up) handles them too.
"""
from __future__ import annotations

import os
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

__all__ = ["UnsafeOutputError", "check_output_path", "atomic_write", "remove_stale_partials",
           "termination_as_interrupt"]


class UnsafeOutputError(ValueError):
    """An output path that cannot, or must not, be written; the message names it."""


def _partial_name(target: Path, pid: int) -> Path:
    return target.parent / f".{target.name}.partial-{pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Delete the ``.NAME.partial-PID`` files of ``target`` left by processes that no longer
    run (a save killed with SIGKILL, a power cut). Returns what was removed."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}.partial-*"):
        pid_text = candidate.name.rsplit("-", 1)[-1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
    return removed


def _real_target(path: Path) -> Path:
    """The file that writing ``path`` should replace: a symbolic link's target (so the link
    survives), else the path itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output_path(path, option: str = "output", *, inputs=(), overwrite: bool = True) -> Path:
    """Refuse, in one line naming ``option`` and the path, an output that must not be written;
    return the path.

    Refused: a path ending in a separator (a folder was meant: name the file), an existing
    folder, device, pipe or socket (only regular files are ever replaced), a read-only file
    (its permissions say do not replace me), the same file as one of ``inputs`` (the data
    a run reads), an existing file when ``overwrite`` is False, and a folder where no file
    can be created — which is found by really creating one and removing it.
    """
    text = os.fspath(path)
    if not text:
        raise UnsafeOutputError(f"{option}: the path is empty; give a file name")
    if text.endswith((os.sep, "/")):
        raise UnsafeOutputError(f"{option} {text!r} ends with a path separator, so it names a folder; "
                                f"give a file name inside it, e.g. {text.rstrip('/' + os.sep)}/model.npz")
    path = Path(text)
    target = _real_target(path)
    if target.exists() or target.is_symlink():
        mode = os.stat(target).st_mode if target.exists() else 0
        if stat.S_ISDIR(mode):
            raise UnsafeOutputError(f"{option} {text} is a folder; give a file name inside it")
        if not stat.S_ISREG(mode):
            raise UnsafeOutputError(f"{option} {text} exists and is not a regular file (a device, pipe "
                                    f"or socket); only regular files are replaced: choose another path")
        for other in inputs:
            if other is not None and Path(other).exists() and os.path.samefile(target, other):
                raise UnsafeOutputError(f"{option} {text} is the same file as the input {other}; "
                                        f"writing it would destroy the input: choose another path")
        if not overwrite:
            raise UnsafeOutputError(f"{option} {text} already exists; choose another path, or pass "
                                    f"--force to replace it")
        if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(target, os.W_OK):
            # (the mode bits too: for root, os.access says yes to a file of mode 444)
            raise UnsafeOutputError(f"{option} {text} is read-only; it is not replaced (make it "
                                    f"writable with chmod u+w, or choose another path)")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _partial_name(target, os.getpid())
        with open(probe, "xb"):
            pass
        probe.unlink()
    except FileExistsError:
        pass   # this process is writing it right now: the folder is writable
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnsafeOutputError(f"{option} {text} cannot be written: {reason.lower()} "
                                f"(in {folder}); choose another path") from exc
    return path


def atomic_write(path, write) -> Path:
    """Write a file through ``write(file_object)``, atomically; return the path.

    The bytes go to ``.NAME.partial-PID`` in the target's folder, are flushed and synced
    to disk, and the file is renamed over the target (``os.replace``, atomic on one file
    system). If anything fails or the process is interrupted, the target is untouched and
    the partial file is removed. The target, if it exists, must be a writable regular file
    (see :func:`check_output_path`); the new file gets its permissions, or those a plain
    ``open()`` would give.
    """
    path = Path(path)
    check_output_path(path)
    target = _real_target(path)
    remove_stale_partials(target)
    mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else 0o666 & ~_umask()
    tmp = _partial_name(target, os.getpid())
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(target.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); skipped where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Signals: a polite request to stop is handled like Ctrl-C; a save in progress is not cut
# --------------------------------------------------------------------------------------
@contextmanager
def _signal_handlers(names, handler):
    """Within the block, the signals ``names`` (those this system has) go to ``handler``;
    the previous handlers come back on leaving it. Only the main thread can install
    handlers: elsewhere the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in names:
        number = getattr(signal, name, None)
        if number is not None:   # (Windows has no SIGHUP)
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


@contextmanager
def termination_as_interrupt(signals=("SIGTERM", "SIGHUP")):
    """Within the block, SIGTERM and SIGHUP raise :class:`KeyboardInterrupt`, as Ctrl-C does.

    By default Python dies at once on either, without running ``finally`` blocks or
    ``except KeyboardInterrupt`` handlers, so a run stopped by ``kill``, by a batch system
    or by a closed terminal would save nothing and leave a partial file behind. Turned into
    an interrupt, they reach the same code as Ctrl-C: the run saves what it has, a write in
    progress removes its partial file. Only the main thread can install handlers; elsewhere
    the block changes nothing. The previous handlers come back on leaving it.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    with _signal_handlers(signals, interrupt):
        yield


@contextmanager
def signals_held(signals=("SIGINT", "SIGTERM", "SIGHUP")):
    """Within the block, SIGINT, SIGTERM and SIGHUP wait: a second Ctrl-C does not cut the
    save of the run the first one stopped. One that came is raised as KeyboardInterrupt on
    leaving the block. (Only the main thread can set handlers; elsewhere nothing changes.)"""
    arrived = []
    with _signal_handlers(signals, lambda signum, frame: arrived.append(signum)):
        yield
    if arrived:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(arrived[0]).name}")
