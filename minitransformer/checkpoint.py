"""Checkpoints: model, optimiser, random state, config and vocabularies in one ``.npz`` file.

A checkpoint is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` arrays), readable with
``np.load(path, allow_pickle=False)`` and nothing else — no pickle anywhere, so loading a
checkpoint cannot run code. Its entries::

    format_version        0-d int64: the layout version (this library writes FORMAT_VERSION)
    header                0-d unicode string: JSON with everything that is not a big array
    param/<name>          one array per model parameter, e.g. param/encoder.layers.0.feed_forward.linear1.weight
    optim/<key>           one array per optimiser state buffer, e.g. optim/0.exp_avg

The JSON header holds the step, the model config, the vocabularies, free-form metadata,
the optimiser's type, hyper-parameters and schedule, the random generator's state and the
name, shape and dtype of every parameter. To look inside one by hand::

    with np.load("model.npz", allow_pickle=False) as f:
        print(json.loads(str(f["header"]))["config"])

Arrays are always saved from host memory, so a checkpoint written on a GPU (CuPy) loads
on a machine without one. Writing is atomic: the file is written next to the target under
a temporary name, flushed to disk, then renamed over the target, so an interrupted save
never leaves a half-written checkpoint where a good one used to be.

Typical use::

    save_checkpoint("runs/codon.npz", model, optimizer=opt, step=step, rng=data_rng,
                    vocabularies={"source": src_vocab.to_dict(), "target": tgt_vocab.to_dict()})
    ckpt = load_checkpoint("runs/codon.npz")
    model = Transformer(TransformerConfig.from_dict(ckpt.config))   # a model of the saved shape
    restore_model(ckpt, model)
    restore_optimizer(ckpt, opt)
    data_rng = restore_rng(ckpt)
"""
from __future__ import annotations

import datetime
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, backend
from .checkpoint_format import (CheckpointError, _check_array_sizes, _check_header_fields, _finite,
                                _from_json, _one_line, _to_json)
from .files import UnsafeOutputError, atomic_write
from .module import NonFiniteStateError

__all__ = [
    "FORMAT_VERSION", "CheckpointError", "Checkpoint",
    "save_checkpoint", "load_checkpoint", "restore_model", "restore_optimizer", "restore_rng",
]

#: The layout version written by this library. Bump it when the layout changes, and teach
#: :func:`load_checkpoint` to read the older versions.
FORMAT_VERSION = 1

PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"

#: Bit generators whose state :func:`restore_rng` may rebuild (looked up by name, never by import).
_BIT_GENERATORS = {name: getattr(np.random, name) for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read from a file (all arrays are NumPy, in host memory).

    Attributes:
        format_version: layout version of the file.
        config: the model's config dict (e.g. ``TransformerConfig.to_dict()``), or None.
        vocabularies: name → vocabulary dict, or None.
        metadata: free-form JSON-able dict given at save time, or None.
        step: the training step at save time.
        params: parameter name → array, in the model's ``named_parameters()`` order.
        optimizer_state: an :meth:`Optimizer.state_dict`, or None when no optimiser was saved.
        rng_state: ``rng.bit_generator.state`` of the saved generator, or None.
        dropout_rng_state: the state of the model's dropout generator (NumPy backend), or None.
        library_version: the minitransformer version that wrote the file.
        saved_at: when it was written (ISO 8601, UTC).
        path: where it was read from.
    """

    format_version: int
    config: dict | None
    vocabularies: dict | None
    metadata: dict | None
    step: int
    params: dict = field(repr=False)
    optimizer_state: dict | None = field(default=None, repr=False)
    rng_state: dict | None = field(default=None, repr=False)
    dropout_rng_state: dict | None = field(default=None, repr=False)
    library_version: str | None = None
    saved_at: str | None = None
    path: Path | None = None

    @property
    def num_parameters(self) -> int:
        """Total number of scalars in the saved parameters."""
        return int(sum(a.size for a in self.params.values()))

    @property
    def dtype(self) -> np.dtype | None:
        """The dtype the parameters were saved in (that of the first one), None if there are none;
        handy for building a model of the same dtype before :func:`restore_model`."""
        return next(iter(self.params.values())).dtype if self.params else None

    @property
    def optimizer_type(self) -> str | None:
        return None if self.optimizer_state is None else self.optimizer_state["type"]


# ======================================================================================
# Saving
# ======================================================================================

def _rng_state(rng):
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    if isinstance(rng, np.random.BitGenerator):
        return rng.state
    raise CheckpointError(f"rng must be a numpy.random.Generator, got {type(rng).__module__}.{type(rng).__name__} "
                          f"(keep the data-order generator on the host to checkpoint it)")


def _model_dropout_rng_state(model):
    """State of the model's own dropout generator, when it has a NumPy one (exact resume)."""
    rng = getattr(model, "dropout_rng", None)
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def save_checkpoint(path, model, *, optimizer=None, step: int = 0, rng=None, config: dict | None = None,
                    vocabularies: dict | None = None, metadata: dict | None = None) -> Path:
    """Write ``model`` (and optionally its optimiser, rng, config, vocabularies) to ``path``.

    Args:
        path: the ``.npz`` file to write (used exactly as given; parent folders are created).
        model: a :class:`~minitransformer.module.Module`; its ``state_dict()`` is saved.
        optimizer: an :class:`~minitransformer.optim.Optimizer` whose state to save.
        step: the training step, returned as ``Checkpoint.step``.
        rng: a ``numpy.random.Generator`` (e.g. the one that shuffles the data); its state
            is saved so training resumes with the same batches.
        config: the model's configuration; by default ``model.config.to_dict()`` when the
            model has such a config.
        vocabularies: name → vocabulary dict (objects with ``to_dict()`` are converted).
        metadata: any JSON-able dict (losses, data file, command line, ...).

    Returns the path written. Nothing is left behind if writing fails: a previous
    checkpoint at ``path`` stays untouched.
    """
    path = Path(path)
    if config is None and hasattr(getattr(model, "config", None), "to_dict"):
        config = model.config.to_dict()

    params = model.state_dict()  # name -> host NumPy copy
    arrays = {PARAM_PREFIX + name: np.asarray(a) for name, a in params.items()}

    optimizer_header = None
    if optimizer is not None:
        optim_state = optimizer.state_dict()
        optimizer_header = {k: v for k, v in optim_state.items() if k != "state"}
        optimizer_header["state_keys"] = list(optim_state["state"])
        for key, a in optim_state["state"].items():
            arrays[OPTIM_PREFIX + key] = backend.to_numpy(a)

    header = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "step": int(step),
        "config": _to_json(config, "config"),
        "vocabularies": _to_json(vocabularies, "vocabularies"),
        "metadata": _to_json(metadata, "metadata"),
        "params": [{"name": name, "shape": list(a.shape), "dtype": a.dtype.name} for name, a in params.items()],
        "optimizer": _to_json(optimizer_header, "optimizer state"),
        "rng_state": _to_json(_rng_state(rng), "rng state"),
        "dropout_rng_state": _to_json(_model_dropout_rng_state(model), "dropout rng state"),
    }
    arrays["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
    arrays["header"] = np.array(json.dumps(header))  # 0-d unicode array: loads without pickle

    _atomic_savez(path, arrays)
    return path


def _atomic_savez(path: Path, arrays: dict) -> None:
    """``np.savez`` through :func:`~minitransformer.files.atomic_write`: a temporary file
    beside ``path``, synced, then renamed over it, so readers see the old checkpoint or the
    new one, never a mixture; only a regular, writable file is ever replaced."""
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))   # a file object: no ".npz" added
    except UnsafeOutputError as exc:
        raise CheckpointError(str(exc)) from exc


# ======================================================================================
# Loading
# ======================================================================================

def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle; arrays on the host).

    Raises :class:`CheckpointError` with a one-line message for a missing file, a file that
    is not a checkpoint (truncated, corrupt, or some other ``.npz``), missing entries, or a
    format version newer than this library understands.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    corrupt = f"{path} is not a valid minitransformer checkpoint (truncated or corrupt file)"
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path}: permission denied (check the file's permissions)") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {_one_line(exc)}") from exc
    try:
        if not is_zip:
            raise CheckpointError(f"{corrupt}: it is not an .npz (zip) archive")
        _check_array_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            for key in ("format_version", "header"):
                if key not in names:
                    raise CheckpointError(f"{path} is not a minitransformer checkpoint: it has no {key!r} entry")
            version = npz["format_version"]
            if version.shape != () or version.dtype.kind not in "iu":
                raise CheckpointError(f"{path} has an invalid format_version entry")
            version = int(version)
            if version > FORMAT_VERSION:
                raise CheckpointError(f"{path} has format_version {version}, newer than this minitransformer "
                                      f"({__version__}) reads (up to {FORMAT_VERSION}): upgrade minitransformer")
            if version < 1:
                raise CheckpointError(f"{path} has an invalid format_version {version}")
            header_array = npz["header"]
            if header_array.shape != () or header_array.dtype.kind != "U":
                raise CheckpointError(f"{path} has an invalid header entry (expected a JSON string)")
            try:
                header = json.loads(str(header_array))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{path} has a header that is not valid JSON ({exc})") from exc
            if not isinstance(header, dict) or not isinstance(header.get("params"), list):
                raise CheckpointError(f"{path} has a header without the parameter list")
            _check_header_fields(path, header)
            params = {}
            for entry in header["params"]:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise CheckpointError(f"{path} has an invalid entry in its parameter list: {entry!r}")
                key = PARAM_PREFIX + entry["name"]
                if key not in names:
                    raise CheckpointError(f"{path} is missing the array for parameter {entry['name']!r}")
                params[entry["name"]] = _finite(path, f"parameter {entry['name']!r}", npz[key])
            optimizer_state = None
            if header.get("optimizer") is not None:
                optimizer_state = _from_json(header["optimizer"])
                state = {}
                for key in optimizer_state.pop("state_keys"):
                    if OPTIM_PREFIX + key not in names:
                        raise CheckpointError(f"{path} is missing the optimizer array {key!r}")
                    state[key] = _finite(path, f"optimizer array {key!r}", npz[OPTIM_PREFIX + key])
                optimizer_state["state"] = state
    except CheckpointError:
        raise
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path}: permission denied (check the file's permissions)") from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # zipfile/np.load errors for truncated or damaged archives, and malformed headers
        raise CheckpointError(f"{corrupt}: {_one_line(exc)}") from exc

    return Checkpoint(
        format_version=version,
        config=_from_json(header.get("config")),
        vocabularies=_from_json(header.get("vocabularies")),
        metadata=_from_json(header.get("metadata")),
        step=int(header.get("step", 0)),
        params=params,
        optimizer_state=optimizer_state,
        rng_state=_from_json(header.get("rng_state")),
        dropout_rng_state=_from_json(header.get("dropout_rng_state")),
        library_version=header.get("library_version"),
        saved_at=header.get("saved_at"),
        path=path,
    )


def _as_checkpoint(checkpoint) -> Checkpoint:
    """Accept a loaded :class:`Checkpoint` or a path to one."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    return load_checkpoint(checkpoint)


# ======================================================================================
# Restoring
# ======================================================================================

def _config_differences(saved: dict | None, current: dict | None) -> str:
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return ""
    keys = sorted(set(saved) | set(current))
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, model {current.get(k)!r}"
             for k in keys if saved.get(k) != current.get(k)]
    return "; config differs in " + ", ".join(diffs) if diffs else ""


def restore_model(checkpoint, model):
    """Copy the saved parameters into ``model`` (onto its backend and dtype) and return it.

    ``checkpoint`` is a :class:`Checkpoint` or a path. If the parameter names or shapes do
    not match, the checkpoint was made for a model of another configuration; the error
    says which names/shapes and, when both configs are known, which settings differ.
    """
    checkpoint = _as_checkpoint(checkpoint)
    try:
        model.load_state_dict(checkpoint.params)
    except NonFiniteStateError as exc:   # the arrays fit; only a Checkpoint edited in memory gets here
        raise CheckpointError(f"the checkpoint holds NaN or infinite values in {', '.join(exc.names)}") from exc
    except ValueError as exc:
        current = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else None
        raise CheckpointError(
            f"the checkpoint does not fit this model, it was made for a different config"
            f"{_config_differences(checkpoint.config, current)} ({exc})") from exc
    return model


def restore_optimizer(checkpoint, optimizer):
    """Load the saved optimiser state (step count, state arrays, hyper-parameters, schedule)
    into ``optimizer``, built on the restored model's parameters; returns it."""
    checkpoint = _as_checkpoint(checkpoint)
    if checkpoint.optimizer_state is None:
        where = f" {checkpoint.path}" if checkpoint.path is not None else ""
        raise CheckpointError(f"the checkpoint{where} holds no optimizer state (save it with optimizer=...)")
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except ValueError as exc:
        raise CheckpointError(f"cannot restore the optimizer: {exc}") from exc
    return optimizer


def restore_rng(checkpoint, rng: np.random.Generator | None = None) -> np.random.Generator:
    """The saved random generator: its state put into ``rng`` if given, else into a new
    ``numpy.random.Generator`` of the saved bit-generator type. Drawing from it continues
    the saved sequence exactly."""
    checkpoint = _as_checkpoint(checkpoint)
    if checkpoint.rng_state is None:
        raise CheckpointError("the checkpoint holds no random generator state (save it with rng=...)")
    return _set_rng_state(checkpoint, "rng_state", rng)


def _set_rng_state(checkpoint: Checkpoint, field_name: str, rng=None) -> np.random.Generator:
    """Put the generator state saved in ``field_name`` into ``rng`` (a new generator of the
    saved kind if None); a state that does not fit names the file and the field."""
    state = getattr(checkpoint, field_name)
    where = f"{checkpoint.path}: header field {field_name!r}" if checkpoint.path else f"field {field_name!r}"
    if rng is None:
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise CheckpointError(f"{where}: the random generator {name!r} is not one of "
                                  f"{', '.join(_BIT_GENERATORS)}")
        rng = np.random.Generator(_BIT_GENERATORS[name]())
    try:
        rng.bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"{where} is not a valid random generator state ({_one_line(exc)})") from exc
    return rng


def load_model(path, backend: str | None = None):
    """Rebuild the :class:`~minitransformer.transformer.Transformer` saved at ``path``.

    Returns ``(model, checkpoint)``: the model built from the saved config, on ``backend``
    (NumPy by default, whatever backend saved it), with the saved parameters and, on
    NumPy, the saved dropout generator state, so training can resume exactly.
    """
    from .transformer import Transformer, TransformerConfig  # the model lives above this module

    checkpoint = _as_checkpoint(path)
    if not isinstance(checkpoint.config, dict):
        raise CheckpointError(f"{checkpoint.path} holds no model config, so the model cannot be rebuilt")
    try:
        config = TransformerConfig.from_dict(checkpoint.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint.path} holds an invalid model config: {_one_line(exc)}") from exc
    model = restore_model(checkpoint, Transformer(config, backend=backend))
    if checkpoint.dropout_rng_state is not None and isinstance(model.dropout_rng, np.random.Generator):
        _set_rng_state(checkpoint, "dropout_rng_state", model.dropout_rng)
    return model, checkpoint
