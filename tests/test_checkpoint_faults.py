"""Faults around checkpoints: loads that refuse bad files in one line, and saves that survive
kill -9, signals, a full disk and two writers — the old file intact or the new one whole."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minitransformer.checkpoint import (CheckpointError, load_checkpoint, load_model, restore_model, restore_rng,
                                        save_checkpoint)
from minitransformer.transformer import Transformer, TransformerConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny_model(seed=0):
    return Transformer(TransformerConfig(src_vocab_size=7, tgt_vocab_size=6, d_model=8, n_heads=2, d_ff=16,
                                         n_encoder_layers=1, n_decoder_layers=1, max_len=16, seed=seed))


def rewrite_entry(path, name, array):
    """Replace one array of an .npz in place (the way a damaged or hand-edited file looks)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[name] = array
    np.savez(path, **arrays)


def rewrite_header(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(str(f["header"]))
    header.update(changes)
    rewrite_entry(path, "header", np.array(json.dumps(header)))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, tiny_model(), step=5, rng=np.random.default_rng(1), metadata={"seed": 0})
    return path


# --------------------------------------------------------------------------------------
# Loads
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_with_nan_or_inf_are_refused_naming_the_parameter(saved, bad):
    name = "param/decoder.norm.gamma" if "param/decoder.norm.gamma" in np.load(saved).files else None
    with np.load(saved) as f:
        name = name or next(k for k in f.files if k.startswith("param/"))
        weights = f[name].copy()
    weights.flat[0] = bad
    rewrite_entry(saved, name, weights)
    with pytest.raises(CheckpointError, match=rf"{saved}: parameter '{name[6:]}' holds 1 NaN or infinite"):
        load_checkpoint(saved)


def test_load_state_dict_refuses_nan_weights():
    model = tiny_model()
    state = model.state_dict()
    name = next(iter(state))
    state[name] = state[name].copy()
    state[name].flat[3] = np.nan
    with pytest.raises(ValueError, match=f"NaN or infinite values in {name}"):
        model.load_state_dict(state)


def test_a_checkpoint_in_memory_with_nan_weights_is_refused_as_such(saved):
    """A Checkpoint edited in memory (not read from a file, which refuses NaN itself) that
    holds NaN says so, not that it was made for another config."""
    checkpoint = load_checkpoint(saved)
    name = next(iter(checkpoint.params))
    checkpoint.params[name] = checkpoint.params[name].copy()
    checkpoint.params[name].flat[0] = np.nan
    model = Transformer(TransformerConfig.from_dict(checkpoint.config))
    with pytest.raises(CheckpointError, match=f"holds NaN or infinite values in {name}") as caught:
        restore_model(checkpoint, model)
    assert "different config" not in str(caught.value)


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(saved):
    with zipfile.ZipFile(saved) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in members if n.startswith("param/"))
    data = members[name]
    header_end = data.index(b"}") + 1
    header = data[:header_end].decode("latin1")
    start = header.index("'shape': (") + len("'shape': (")
    end = header.index(")", start)
    huge = header[:start] + "100000, 100000, 10000" + header[end:]   # 373 GiB of float32
    members[name] = huge.encode("latin1") + data[header_end:]
    with zipfile.ZipFile(saved, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    with pytest.raises(CheckpointError, match=r"damaged array .*claims shape \(100000, 100000, 10000\)"):
        load_checkpoint(saved)


def test_an_unreadable_file_says_permission_denied(saved, monkeypatch):
    real_open = open

    def deny(path, *args, **kwargs):
        if Path(path) == saved:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(CheckpointError, match=rf"cannot read {saved}: permission denied"):
        load_checkpoint(saved)


def test_an_unreadable_file_for_real(saved):
    saved.chmod(0)
    try:
        if os.access(saved, os.R_OK):
            pytest.skip("running as root: the file is readable anyway")
        with pytest.raises(CheckpointError, match="permission denied"):
            load_checkpoint(saved)
    finally:
        saved.chmod(0o644)


@pytest.mark.parametrize("field, value, message", [
    ("step", "abc", "header field 'step' must be a non-negative integer, got 'abc'"),
    ("step", -3, "header field 'step' must be a non-negative integer"),
    ("metadata", [1, 2], "header field 'metadata' must be a JSON object or null, got list"),
    ("config", "x", "header field 'config' must be a JSON object or null"),
    ("rng_state", 5, "header field 'rng_state' must be a JSON object or null"),
])
def test_invalid_header_fields_name_the_file_and_the_field(saved, field, value, message):
    rewrite_header(saved, **{field: value})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value) and message in str(info.value)


def test_a_bad_generator_state_names_the_file_and_the_field(saved):
    with np.load(saved) as f:
        header = json.loads(str(f["header"]))
    state = header["rng_state"]
    state["state"]["state"] = "not a number"
    rewrite_header(saved, rng_state=state)
    with pytest.raises(CheckpointError, match=rf"{saved}: header field 'rng_state' is not a valid random"):
        restore_rng(load_checkpoint(saved))


def test_a_bad_dropout_generator_state_names_the_field(saved):
    rewrite_header(saved, dropout_rng_state={"bit_generator": "PCG64", "state": {"state": 1}})
    with pytest.raises(CheckpointError, match="header field 'dropout_rng_state' is not a valid random"):
        load_model(saved)


# --------------------------------------------------------------------------------------
# Saves under faults: the old file intact or the new one complete, never neither
# --------------------------------------------------------------------------------------
SLOW_SAVER = textwrap.dedent("""
    import signal, sys, time
    import numpy as np
    from minitransformer import files
    target = sys.argv[1]
    # Ctrl-C as in a terminal, even when the tests run as a shell's background job, which
    # starts its children with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def slow(f):
        for _ in range(400):
            f.write(np.ones(2 ** 18).tobytes())   # 2 MB at a time
            f.flush()
            print("writing", flush=True)
            time.sleep(0.01)

    with files.termination_as_interrupt():
        files.atomic_write(target, slow)
    print("done", flush=True)
""")


def _start_slow_save(target):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVER, str(target)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"   # the save is under way
    return proc


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_save_killed_midway_leaves_the_old_checkpoint(saved, how):
    before = saved.read_bytes()
    proc = _start_slow_save(saved)
    proc.send_signal(how)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert saved.read_bytes() == before
    load_checkpoint(saved)   # still a whole checkpoint
    partials = list(saved.parent.glob(".model.npz.partial-*"))
    if how == signal.SIGKILL:   # nobody could clean up: the next save does
        assert len(partials) == 1
        save_checkpoint(saved, tiny_model(seed=1), step=6)
        assert load_checkpoint(saved).step == 6
        assert not list(saved.parent.glob(".model.npz.partial-*"))
    else:   # an interrupt (SIGTERM and SIGHUP made into one) runs the cleanup on its way out
        assert partials == []


def test_a_full_disk_keeps_the_old_checkpoint(saved, monkeypatch):
    before = saved.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(saved, tiny_model(seed=1), step=99)
    assert saved.read_bytes() == before
    assert not list(saved.parent.glob(".model.npz.partial-*"))


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounts a tmpfs: root on Linux")
def test_a_really_full_disk_keeps_the_old_checkpoint(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        target = mount / "model.npz"
        save_checkpoint(target, tiny_model(), step=1)
        before = target.read_bytes()
        big = Transformer(TransformerConfig(src_vocab_size=7, tgt_vocab_size=6, d_model=64, n_heads=2, d_ff=256,
                                            n_encoder_layers=2, n_decoder_layers=2, max_len=16))
        with pytest.raises(Exception):
            save_checkpoint(target, big, step=2)
        assert target.read_bytes() == before
        assert not list(mount.glob(".model.npz.partial-*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_two_writers_of_one_path_leave_one_whole_checkpoint(tmp_path):
    target = tmp_path / "model.npz"
    script = textwrap.dedent("""
        import sys
        from minitransformer.checkpoint import save_checkpoint
        from minitransformer.transformer import Transformer, TransformerConfig
        seed = int(sys.argv[2])
        model = Transformer(TransformerConfig(src_vocab_size=7, tgt_vocab_size=6, d_model=32, n_heads=2,
                                              d_ff=64, n_encoder_layers=2, n_decoder_layers=2, seed=seed))
        for step in range(20):
            save_checkpoint(sys.argv[1], model, step=1000 * seed + step)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), str(seed)], env=env) for seed in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    step = load_checkpoint(target).step   # whole: the last save of one writer or the other
    assert step in (1019, 2019)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
