"""Users' files are sacred: what an output path may be, and writes that never destroy."""
import os
import stat
import sys

import pytest

from minitransformer.files import UnsafeOutputError, atomic_write, check_output_path, remove_stale_partials


def _write_bytes(data):
    return lambda f: f.write(data)


def test_new_path_in_a_new_folder_is_written(tmp_path):
    target = tmp_path / "runs" / "model.npz"
    atomic_write(target, _write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["model.npz"]   # no partial file left


def test_trailing_separator_names_a_folder_and_is_refused(tmp_path):
    with pytest.raises(UnsafeOutputError, match=r"--out .*newdir/' ends with a path separator"):
        check_output_path(f"{tmp_path}/newdir/", "--out")
    assert not (tmp_path / "newdir").exists()


def test_existing_folder_is_refused(tmp_path):
    with pytest.raises(UnsafeOutputError, match="is a folder"):
        atomic_write(tmp_path, _write_bytes(b"x"))


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_a_device_is_never_replaced():
    before = os.stat("/dev/null")
    with pytest.raises(UnsafeOutputError, match="not a regular file"):
        atomic_write("/dev/null", _write_bytes(b"x"))
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_fifo_is_never_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeOutputError, match="not a regular file"):
        check_output_path(fifo, "--out")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("mode, replaced", [(0o444, False), (0o600, True)], ids=["read-only", "writable"])
def test_a_read_only_file_is_kept_and_a_replaced_one_keeps_its_mode(tmp_path, mode, replaced):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    target.chmod(mode)
    if replaced:
        atomic_write(target, _write_bytes(b"new"))
    else:   # refused even for root, whom the mode bits do not stop
        with pytest.raises(UnsafeOutputError, match="read-only"):
            atomic_write(target, _write_bytes(b"new"))
    assert target.read_bytes() == (b"new" if replaced else b"old")
    assert stat.S_IMODE(os.stat(target).st_mode) == mode


def test_a_symbolic_link_keeps_pointing_at_its_file(tmp_path):
    real = tmp_path / "real.npz"
    real.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    atomic_write(link, _write_bytes(b"new"))
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_an_input_is_never_the_output(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("rna,protein\nAUG,M\n")
    with pytest.raises(UnsafeOutputError, match="same file as the input"):
        check_output_path(data, "--out", inputs=[data])
    assert data.read_text() == "rna,protein\nAUG,M\n"


def test_no_overwrite_without_permission(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(UnsafeOutputError, match="already exists.*--force"):
        check_output_path(target, "--out", overwrite=False)


@pytest.mark.parametrize("where", ["/proc/model.npz", "/sys/model.npz"])
def test_an_unwritable_place_is_found_before_the_work_and_named(where):
    if not os.path.isdir(os.path.dirname(where)):
        pytest.skip(f"{os.path.dirname(where)} does not exist here")
    with pytest.raises(UnsafeOutputError) as info:
        check_output_path(where, "--out")
    message = str(info.value)
    assert message.startswith(f"--out {where} cannot be written") and ".partial" not in message


def test_a_failing_writer_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")

    def disk_full(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, disk_full)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_partial_file_of_a_dead_process_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.npz"
    dead_pid = 2 ** 22 + 12345   # above Linux's largest pid: never running
    stale = tmp_path / f".model.npz.partial-{dead_pid}"
    stale.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".model.npz.partial-{os.getppid()}"   # a running process's: kept
    alive.write_bytes(b"being written")
    atomic_write(target, _write_bytes(b"new"))
    assert not stale.exists() and alive.exists()
    assert remove_stale_partials(target) == []


def test_the_partial_file_is_named_after_the_target(tmp_path):
    target = tmp_path / "model.npz"
    seen = []
    atomic_write(target, lambda f: seen.append(os.path.basename(f.name)))
    assert seen == [f".model.npz.partial-{os.getpid()}"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):   # root ignores the mode bits of folders
            pytest.skip("running as root: the folder is writable anyway")
        with pytest.raises(UnsafeOutputError, match="cannot be written: permission denied"):
            check_output_path(folder / "model.npz", "--out")
    finally:
        folder.chmod(0o755)


def test_termination_signals_become_interrupts_and_handlers_come_back():
    import signal
    from minitransformer.files import termination_as_interrupt
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with termination_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 1) if hasattr(signal, "sigtimedwait") else None
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_held_wait_for_the_end_of_the_block_and_handlers_come_back():
    """A save in a ``signals_held`` block runs to its end although SIGINT and SIGTERM came;
    the first of them is raised on leaving the block, and the handlers are the old ones."""
    import signal
    from minitransformer.files import signals_held
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("save")
    assert finished == ["save"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_block_without_signals_leaves_nothing_held():
    import signal
    from minitransformer.files import signals_held
    before = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP")}
    with signals_held():
        pass
    # the handlers of before the block, whatever they were (SIGINT is ignored, not Python's
    # KeyboardInterrupt, when the tests run as a shell's background job)
    assert {name: signal.getsignal(getattr(signal, name)) for name in before} == before
