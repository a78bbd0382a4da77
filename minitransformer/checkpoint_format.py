"""The checkpoint file format's details: JSON with NumPy values, and what a load refuses.

:mod:`minitransformer.checkpoint` writes and reads checkpoints; this module holds the two
things it needs that a reader of that file can skip at first: how values that JSON cannot
hold (NumPy scalars and arrays) go into the header and come back, and the checks a file
must pass before anything in it is trusted — array sizes against the file (a damaged header
must not make the loader allocate hundreds of GiB), weights without NaN or inf, header
fields of the right kind. Every refusal is one line that names the file and the field.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read or applied; the message says why in one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ") or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _to_json(value, where: str):
    """A JSON-able copy of ``value``: NumPy scalars become Python numbers, NumPy arrays become
    ``{"__ndarray__": [...], "dtype": "..."}`` (turned back into arrays by :func:`_from_json`),
    tuples become lists. Anything else that JSON cannot hold raises :class:`CheckpointError`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where} has a non-string key {k!r}: JSON keys must be strings")
            out[k] = _to_json(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "to_dict"):
        return _to_json(value.to_dict(), where)
    raise CheckpointError(f"{where} holds a {type(value).__name__}, which cannot be saved as JSON")


def _from_json(value):
    """Undo :func:`_to_json`'s array encoding."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _check_array_sizes(path: Path) -> None:
    """Refuse an archive whose ``.npy`` headers promise more data than the file holds.

    Every array's header states its shape and dtype; NumPy allocates that much memory before
    reading. A damaged or hostile header can claim hundreds of GiB, so the claimed size is
    compared with the member's real (uncompressed) size first.
    """
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                except ValueError as exc:
                    raise CheckpointError(f"{path} has a damaged array {info.filename[:-4]!r}: "
                                          f"{_one_line(exc)}") from exc
                data_bytes = info.file_size - member.tell()
            claimed = math.prod(shape) * dtype.itemsize
            if dtype.hasobject or claimed != data_bytes:
                raise CheckpointError(f"{path} has a damaged array {info.filename[:-4]!r}: its header "
                                      f"claims shape {shape} of {dtype} ({claimed:,} bytes) but the file "
                                      f"holds {data_bytes:,} bytes for it")


def _finite(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    """``array``, unless it is floating point and holds NaN or inf: a model that diverged
    would load and then translate everything to nothing, silently."""
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise CheckpointError(f"{path}: {what} holds {bad} NaN or infinite value(s); the run that "
                              f"saved it diverged: use an earlier checkpoint")
    return array


def _check_header_fields(path: Path, header: dict) -> None:
    """One line naming the file and the field for a header value of the wrong kind."""
    step = header.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: header field 'step' must be a non-negative integer, got {step!r}")
    for name in ("config", "vocabularies", "metadata", "optimizer", "rng_state", "dropout_rng_state"):
        value = header.get(name)
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"{path}: header field {name!r} must be a JSON object or null, "
                                  f"got {type(value).__name__} {value!r:.60}")
    optimizer = header.get("optimizer")
    if optimizer is not None and not isinstance(optimizer.get("state_keys"), list):
        raise CheckpointError(f"{path}: header field 'optimizer' has no list of state arrays ('state_keys')")
