"""Tests for minitransformer.checkpoint: round trips, atomic writes, damaged files, exact resume."""
import json
import os
import zipfile
from dataclasses import asdict, dataclass

import numpy as np
import pytest

from minitransformer import backend, checkpoint
from minitransformer.checkpoint import (FORMAT_VERSION, Checkpoint, CheckpointError, load_checkpoint,
                                        restore_model, restore_optimizer, restore_rng, save_checkpoint)
from minitransformer.module import Module, Parameter
from minitransformer.optim import SGD, Adam, AdamW, NoamSchedule, clip_grad_norm

# --------------------------------------------------------------------------------------
# A tiny model: y = tanh(x W1 + b1) W2 + b2, loss = mean((y - t)^2) / 2
# --------------------------------------------------------------------------------------


@dataclass
class TinyConfig:
    n_in: int = 3
    n_hidden: int = 5
    n_out: int = 2

    def to_dict(self):
        return asdict(self)


class TinyLinear(Module):
    def __init__(self, n_in, n_out, rng, dtype):
        self.weight = Parameter((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype))
        self.bias = Parameter(np.zeros(n_out, dtype=dtype))

    def forward(self, x):
        self.x = x
        return x @ self.weight.data + self.bias.data

    def backward(self, dy):
        self.weight.grad += self.x.T @ dy
        self.bias.grad += dy.sum(axis=0)
        return dy @ self.weight.data.T


class TinyModel(Module):
    def __init__(self, config=TinyConfig(), seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.config = config
        self.hidden = TinyLinear(config.n_in, config.n_hidden, rng, dtype)
        self.out = TinyLinear(config.n_hidden, config.n_out, rng, dtype)

    def loss_and_backward(self, x, t):
        h = np.tanh(self.hidden.forward(x))
        y = self.out.forward(h)
        loss = 0.5 * np.mean((y - t) ** 2)
        dy = (y - t) / y.size
        dh = self.out.backward(dy)
        self.hidden.backward(dh * (1 - h ** 2))
        return float(loss)


def train_steps(model, optimizer, rng, n_steps):
    """n optimiser steps on batches drawn from ``rng`` (so the data order is part of the state)."""
    dtype = model.dtype
    for _ in range(n_steps):
        x = rng.standard_normal((8, model.config.n_in)).astype(dtype)
        t = np.sin(x[:, :model.config.n_out]).astype(dtype)
        model.zero_grad()
        model.loss_and_backward(x, t)
        clip_grad_norm(model.parameters(), 0.5)
        optimizer.step()


def make_optimizer(model):
    return Adam(model.parameters(), lr=NoamSchedule(d_model=8, warmup_steps=5, factor=5.0), betas=(0.9, 0.98))


def params_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


VOCABS = {"source": {"tokens": ["<pad>", "<s>", "</s>", "<unk>", "A", "C", "G", "U"]},
          "target": {"tokens": ["<pad>", "<s>", "</s>", "<unk>", "M", "*"], "pad_id": 0}}


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------

def test_round_trip_everything(tmp_path):
    model = TinyModel()
    opt = make_optimizer(model)
    rng = np.random.default_rng(123)
    train_steps(model, opt, rng, 3)
    metadata = {"loss": np.float32(0.25), "history": np.array([1.0, 0.5]), "note": "héllo", "pair": (1, 2)}

    path = save_checkpoint(tmp_path / "ckpt.npz", model, optimizer=opt, step=3, rng=rng,
                           vocabularies=VOCABS, metadata=metadata)
    assert path == tmp_path / "ckpt.npz" and path.exists()
    ckpt = load_checkpoint(path)

    assert isinstance(ckpt, Checkpoint)
    assert ckpt.format_version == FORMAT_VERSION
    assert ckpt.step == 3
    assert ckpt.config == {"n_in": 3, "n_hidden": 5, "n_out": 2}  # taken from model.config.to_dict()
    assert ckpt.vocabularies == VOCABS
    assert ckpt.metadata["loss"] == 0.25 and ckpt.metadata["note"] == "héllo"
    assert ckpt.metadata["pair"] == [1, 2]
    np.testing.assert_array_equal(ckpt.metadata["history"], [1.0, 0.5])
    assert list(ckpt.params) == [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert ckpt.params[name].dtype == p.data.dtype
        np.testing.assert_array_equal(ckpt.params[name], p.data)
    assert ckpt.num_parameters == model.num_parameters()
    assert ckpt.optimizer_type == "Adam"
    assert ckpt.optimizer_state["step_count"] == 3
    assert ckpt.optimizer_state["schedule"] == opt.schedule.to_dict()
    assert ckpt.rng_state == rng.bit_generator.state
    assert ckpt.library_version and ckpt.saved_at
    assert "params" not in repr(ckpt)  # the repr stays short
    assert ckpt.dtype == np.float64

    fresh = TinyModel(seed=7)
    assert not params_equal(fresh, model)
    assert restore_model(ckpt, fresh) is fresh
    assert params_equal(fresh, model)

    opt2 = restore_optimizer(ckpt, Adam(fresh.parameters()))
    assert opt2.step_count == 3 and opt2.betas == (0.9, 0.98) and opt2.current_lr == opt.current_lr
    for s1, s2 in zip(opt.state, opt2.state):
        for k in s1:
            np.testing.assert_array_equal(s1[k], s2[k])

    rng2 = restore_rng(ckpt)
    np.testing.assert_array_equal(rng2.random(5), rng.random(5))
    into = np.random.default_rng(0)
    assert restore_rng(ckpt, into) is into


def test_file_is_plain_npz_without_pickle(tmp_path):
    model = TinyModel()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(tmp_path / "c.npz", model, optimizer=opt, config={"custom": True})
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        names = set(z.namelist())
    assert {"format_version.npy", "header.npy", "param/hidden.weight.npy", "optim/0.momentum_buffer.npy"} <= names
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
        header = json.loads(str(f["header"]))
        assert int(f["format_version"]) == FORMAT_VERSION
    assert header["config"] == {"custom": True}  # an explicit config wins over model.config
    assert header["params"][0] == {"name": "hidden.weight", "shape": [3, 5], "dtype": "float64"}
    assert header["optimizer"]["type"] == "SGD" and header["optimizer"]["hyperparameters"]["momentum"] == 0.9
    assert header["rng_state"] is None


def test_minimal_checkpoint_and_missing_parts(tmp_path):
    model = TinyModel()
    path = save_checkpoint(tmp_path / "model.npz", model)
    ckpt = load_checkpoint(str(path))  # str paths work too
    assert ckpt.step == 0 and ckpt.vocabularies is None and ckpt.metadata is None
    assert ckpt.optimizer_state is None and ckpt.rng_state is None
    restore_model(path, TinyModel(seed=3))  # a path is accepted in place of a Checkpoint
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        restore_optimizer(ckpt, Adam(model.parameters()))
    with pytest.raises(CheckpointError, match="no random generator state"):
        restore_rng(ckpt)


def test_model_without_config_and_float32_into_float64(tmp_path):
    model = TinyModel(dtype=np.float32)
    model.config = None  # a Module with no config of its own
    save_checkpoint(tmp_path / "m.npz", model)
    ckpt = load_checkpoint(tmp_path / "m.npz")
    assert ckpt.config is None
    assert all(a.dtype == np.float32 for a in ckpt.params.values())
    model64 = restore_model(ckpt, TinyModel(dtype=np.float64))
    assert model64.dtype == np.float64
    for (_, p32), (_, p64) in zip(model.named_parameters(), model64.named_parameters()):
        np.testing.assert_array_equal(p64.data, p32.data.astype(np.float64))


def test_restore_into_a_model_of_another_config(tmp_path):
    save_checkpoint(tmp_path / "m.npz", TinyModel(TinyConfig(n_hidden=5)))
    with pytest.raises(CheckpointError, match="different config") as info:
        restore_model(tmp_path / "m.npz", TinyModel(TinyConfig(n_hidden=4)))
    message = str(info.value)
    assert "n_hidden: checkpoint 5, model 4" in message and "hidden.weight" in message
    assert "\n" not in message


def test_restore_optimizer_of_another_kind(tmp_path):
    model = TinyModel()
    save_checkpoint(tmp_path / "m.npz", model, optimizer=Adam(model.parameters()))
    with pytest.raises(CheckpointError, match="cannot restore the optimizer: .*for Adam, cannot load it into AdamW"):
        restore_optimizer(load_checkpoint(tmp_path / "m.npz"), AdamW(model.parameters()))


def test_save_creates_parent_folders_and_overwrites(tmp_path):
    path = tmp_path / "runs" / "deep" / "ckpt.npz"
    model = TinyModel()
    save_checkpoint(path, model, step=1)
    save_checkpoint(path, model, step=2)
    assert load_checkpoint(path).step == 2
    assert sorted(os.listdir(path.parent)) == ["ckpt.npz"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_checkpoint_gets_the_usual_file_mode(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", TinyModel())
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_values_that_json_cannot_hold_are_refused_before_writing(tmp_path):
    model = TinyModel()
    with pytest.raises(CheckpointError, match=r"metadata\['tags'\] holds a set"):
        save_checkpoint(tmp_path / "m.npz", model, metadata={"tags": {"a", "b"}})
    with pytest.raises(CheckpointError, match="non-string key"):
        save_checkpoint(tmp_path / "m.npz", model, config={1: "one"})
    with pytest.raises(CheckpointError, match="numpy.random.Generator"):
        save_checkpoint(tmp_path / "m.npz", model, rng=np.random.RandomState(0))
    assert os.listdir(tmp_path) == []


def test_objects_with_to_dict_are_saved_as_their_dict(tmp_path):
    save_checkpoint(tmp_path / "m.npz", TinyModel(), vocabularies={"source": TinyConfig(n_in=9)})
    assert load_checkpoint(tmp_path / "m.npz").vocabularies == {"source": {"n_in": 9, "n_hidden": 5, "n_out": 2}}


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox", "SFC64"])
def test_rng_state_of_other_bit_generators(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(42))
    rng.random(3)
    save_checkpoint(tmp_path / "m.npz", TinyModel(), rng=rng)
    restored = restore_rng(tmp_path / "m.npz")
    assert type(restored.bit_generator).__name__ == bit_generator
    np.testing.assert_array_equal(restored.integers(0, 2 ** 62, 10), rng.integers(0, 2 ** 62, 10))


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------

def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    model = TinyModel()
    save_checkpoint(path, model, step=1)
    good_bytes = path.read_bytes()

    def crash_mid_write(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", crash_mid_write)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, TinyModel(seed=5), step=2)
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "new.npz", model)

    assert path.read_bytes() == good_bytes
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temp file, no half-written new.npz
    monkeypatch.undo()
    assert load_checkpoint(path).step == 1


def test_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def no_replace(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", no_replace)   # the rename of the atomic write
    with pytest.raises(OSError, match="rename refused"):
        save_checkpoint(tmp_path / "c.npz", TinyModel())
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------
# Damaged, foreign and missing files
# --------------------------------------------------------------------------------------

CORRUPT = "is not a valid minitransformer checkpoint \\(truncated or corrupt file\\)"


def assert_one_line_error(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.01])
def test_truncated_file(tmp_path, fraction):
    path = save_checkpoint(tmp_path / "c.npz", TinyModel(), optimizer=Adam(TinyModel().parameters()))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    assert_one_line_error(path, CORRUPT)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint at all\n" * 10, os.urandom(1000),
                                     b"PK\x03\x04" + os.urandom(500)],
                         ids=["empty", "text", "random", "zip-magic-then-garbage"])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    assert_one_line_error(path, CORRUPT)


def test_corrupted_member(tmp_path):
    """A byte flipped inside an array: the zip CRC check catches it."""
    path = save_checkpoint(tmp_path / "c.npz", TinyModel())
    data = bytearray(path.read_bytes())
    start = data.index(b"param/hidden.weight.npy") + len("param/hidden.weight.npy") + 200
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_one_line_error(path, CORRUPT)


def test_missing_file_and_directory(tmp_path):
    message = assert_one_line_error(tmp_path / "nope.npz", "no checkpoint at")
    assert message == f"no checkpoint at {tmp_path / 'nope.npz'}"
    assert_one_line_error(tmp_path, "is a directory")


def test_plain_npy_and_foreign_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert_one_line_error(tmp_path / "a.npy", CORRUPT)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    assert_one_line_error(tmp_path / "other.npz", "is not a minitransformer checkpoint: it has no 'format_version'")


def rewrite(path, change):
    """Load every entry, let ``change`` edit the dict, write it back (bypassing save_checkpoint)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("version, match", [
    (FORMAT_VERSION + 1, f"format_version {FORMAT_VERSION + 1}, newer than this minitransformer"),
    (99, "upgrade minitransformer"),
    (0, "invalid format_version 0"),
])
def test_unsupported_format_version(tmp_path, version, match):
    path = save_checkpoint(tmp_path / "c.npz", TinyModel())
    rewrite(path, lambda a: a.update(format_version=np.array(version)))
    assert_one_line_error(path, match)


def test_missing_entries_and_bad_header(tmp_path):
    model = TinyModel()
    path = save_checkpoint(tmp_path / "c.npz", model, optimizer=Adam(model.parameters()))
    good = path.read_bytes()

    rewrite(path, lambda a: a.pop("header"))
    assert_one_line_error(path, "it has no 'header' entry")

    path.write_bytes(good)
    rewrite(path, lambda a: a.pop("param/out.bias"))
    assert_one_line_error(path, "missing the array for parameter 'out.bias'")

    path.write_bytes(good)
    rewrite(path, lambda a: a.pop("optim/1.exp_avg"))
    assert_one_line_error(path, "missing the optimizer array '1.exp_avg'")

    path.write_bytes(good)
    rewrite(path, lambda a: a.update(header=np.array("{not json")))
    assert_one_line_error(path, "header that is not valid JSON")

    path.write_bytes(good)
    rewrite(path, lambda a: a.update(header=np.array(json.dumps({"step": 1}))))
    assert_one_line_error(path, "without the parameter list")

    path.write_bytes(good)
    rewrite(path, lambda a: a.update(format_version=np.array([1, 2])))
    assert_one_line_error(path, "invalid format_version entry")


# --------------------------------------------------------------------------------------
# Exact resume
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt", [
    make_optimizer,
    lambda m: AdamW(m.parameters(), lr=1e-2, weight_decay=0.1),
    lambda m: SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
], ids=["adam-noam", "adamw", "sgd-nesterov"])
def test_resume_is_bit_identical(tmp_path, dtype, make_opt):
    # 20 steps in one go
    model = TinyModel(seed=0, dtype=dtype)
    opt = make_opt(model)
    rng = np.random.default_rng(2024)
    train_steps(model, opt, rng, 20)

    # 10 steps, save, then 10 more in fresh objects built from the file
    model_a = TinyModel(seed=0, dtype=dtype)
    opt_a = make_opt(model_a)
    rng_a = np.random.default_rng(2024)
    train_steps(model_a, opt_a, rng_a, 10)
    save_checkpoint(tmp_path / "half.npz", model_a, optimizer=opt_a, step=10, rng=rng_a)
    del model_a, opt_a, rng_a

    ckpt = load_checkpoint(tmp_path / "half.npz")
    model_b = restore_model(ckpt, TinyModel(TinyConfig(**ckpt.config), seed=1, dtype=dtype))
    opt_b = restore_optimizer(ckpt, make_opt(model_b))
    rng_b = restore_rng(ckpt)
    assert ckpt.step == 10 and opt_b.step_count == 10
    train_steps(model_b, opt_b, rng_b, 10)

    assert params_equal(model, model_b)
    assert model_b.dtype == dtype
    for s1, s2 in zip(opt.state, opt_b.state):
        for k in s1:
            np.testing.assert_array_equal(s1[k], s2[k])


# --------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_checkpoint_written_on_cupy_loads_on_numpy(tmp_path):
    if not backend.cupy_available():
        pytest.skip(backend.cupy_unavailable_reason())
    model = TinyModel().to("cupy")
    opt = Adam(model.parameters(), lr=0.01)
    for p in model.parameters():
        p.grad[...] = 0.5
    opt.step()
    save_checkpoint(tmp_path / "gpu.npz", model, optimizer=opt)
    ckpt = load_checkpoint(tmp_path / "gpu.npz")
    assert all(type(a) is np.ndarray for a in ckpt.params.values())
    assert all(type(a) is np.ndarray for a in ckpt.optimizer_state["state"].values())

    cpu_model = restore_model(ckpt, TinyModel(seed=4))
    cpu_opt = restore_optimizer(ckpt, Adam(cpu_model.parameters()))
    for (_, a), (_, b) in zip(model.named_parameters(), cpu_model.named_parameters()):
        np.testing.assert_array_equal(backend.to_numpy(a.data), b.data)
    assert backend.get_array_module_name(cpu_opt.state[0]["exp_avg"]) == "numpy"

    gpu_model = restore_model(ckpt, TinyModel(seed=4).to("cupy"))  # and back onto the GPU
    gpu_opt = restore_optimizer(ckpt, Adam(gpu_model.parameters()))
    assert backend.get_array_module_name(gpu_opt.state[0]["exp_avg"]) == "cupy"
