"""The configuration of a Transformer: every setting needed to rebuild a model.

Saved as JSON inside checkpoints (:mod:`minitransformer.checkpoint`), so a model can be
rebuilt from its file alone. Every field is checked when the config is made: types as well
as values, so that ``norm_first="no"`` or ``d_model=True`` is an error here and not a
surprise deep inside the model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from .nn import ACTIVATIONS
from .validation import check_int, check_number


#: Where a model's positions come from: added to the embeddings (the paper's sinusoids, or a
#: learned table), or inside every self-attention (RoPE, ALiBi; see
#: :mod:`~minitransformer.positions`); "rope+diagonal" is RoPE in self-attention and a learned
#: diagonal bias in cross-attention (encoder-decoder models only).
POSITIONS = ("sinusoidal", "learned", "rope", "alibi", "rope+diagonal")
#: The schemes that act inside self-attention (cross-attention gets no positions from them).
ATTENTION_POSITIONS = ("rope", "alibi")
#: The schemes that act inside cross-attention, written after a "+".
CROSS_ATTENTION_POSITIONS = ("diagonal",)


def resolve_positions(config) -> list[str]:
    """Read the older ``config.learned_positions`` into ``config.positions``, then set it to
    None: ``positions`` alone says where the positions come from.

    ``learned_positions=True`` is the older spelling of ``positions="learned"`` (and False of
    the default): a config or checkpoint written before ``positions`` existed has only it,
    and means what it meant. Returns the problems (empty when there are none)."""
    positions, learned = config.positions, config.learned_positions
    if learned is not None and not isinstance(learned, (bool, np.bool_)):
        return [f"learned_positions must be True or False, got {learned!r}"]
    if positions not in POSITIONS:
        return [f"positions must be one of {list(POSITIONS)}, got {positions!r}"]
    if learned is not None:
        if learned and positions == "sinusoidal":
            positions = "learned"
        if bool(learned) != (positions == "learned"):
            return [f"learned_positions={learned} contradicts positions={positions!r}; give positions alone "
                    f"(learned_positions=True is the older spelling of positions='learned')"]
        config.positions, config.learned_positions = positions, None
    if self_attention_positions(positions) == "rope" and isinstance(config.d_model, int) and isinstance(config.n_heads, int) \
            and config.n_heads > 0 and (config.d_model // config.n_heads) % 2:
        return [f"positions={positions!r} turns pairs of features, so d_model / n_heads must be even, got "
                f"{config.d_model} / {config.n_heads}"]
    return []


class JSONConfig:
    """What every model config shares: a dict and JSON round trip, refusing unknown fields
    (a misspelt setting in a file must not be dropped silently). Mixed into dataclasses."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@dataclass
class TransformerConfig(JSONConfig):
    """Everything needed to rebuild a model (saved as JSON inside checkpoints)."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    n_heads: int = 8
    d_ff: int = 512
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    dropout: float = 0.1            #: on embeddings, sub-layer outputs and inside the FFN
    attention_dropout: float = 0.0  #: on attention weights (costly; the paper has none)
    max_len: int = 512              #: longest source or target the positional encoding covers
    activation: str = "relu"
    norm_first: bool = False        #: False: the paper's post-LN; True: pre-LN
    tie_embeddings: bool = False    #: target embedding shared with the output projection
    learned_positions: bool | None = None  #: the older spelling of positions="learned"; read, then None
    scale_embeddings: bool = True   #: multiply embeddings by sqrt(d_model), as the paper does
    pad_id: int = 0
    dtype: str = "float32"
    seed: int = 0                   #: initial weights and dropout masks
    positions: str = "sinusoidal"   #: one of :data:`POSITIONS`; "rope" and "alibi" act in self-attention

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """ValueError listing every field of the wrong type or value (a bool is not a number,
        ``norm_first='no'`` is not a bool: types are checked, not only values)."""
        problems = field_problems(
            self, positive=("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"),
            non_negative=("n_encoder_layers", "n_decoder_layers", "pad_id", "seed"),
            flags=("norm_first", "tie_embeddings", "scale_embeddings"))
        problems += resolve_positions(self)
        if not problems and not (0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size)):
            problems.append(f"pad_id={self.pad_id} must be a valid id of both vocabularies")
        if problems:
            raise ValueError("invalid TransformerConfig: " + "; ".join(problems))


def field_problems(config, *, positive=(), non_negative=(), flags=()) -> list[str]:
    """What is wrong with a model config's fields, one sentence each (empty when nothing is).

    Types are checked as well as values: ``positive`` and ``non_negative`` fields must be
    integers (not bools) of at least 1 and 0, ``flags`` True or False; every model config
    also has ``dropout`` and ``attention_dropout`` (numbers in [0, 1)), ``activation``,
    ``dtype`` and ``d_model``/``n_heads`` (the heads must divide the width). Shared by
    :class:`TransformerConfig` and :class:`~minitransformer.heads.StackConfig`, so that a
    bad setting reads the same in both."""
    problems = []

    def check(rule, *args, **kwargs):
        try:
            rule(*args, **kwargs)
        except ValueError as exc:
            problems.append(str(exc))

    for name in positive:
        check(check_int, name, getattr(config, name), minimum=1)
    for name in non_negative:
        check(check_int, name, getattr(config, name), minimum=0)
    for name in ("dropout", "attention_dropout"):
        value = getattr(config, name)
        check(check_number, name, value)
        if isinstance(value, (int, float, np.integer, np.floating)) and not 0.0 <= value < 1.0:
            problems.append(f"{name} must be in [0, 1), got {value}")
    for name in flags:
        if not isinstance(getattr(config, name), (bool, np.bool_)):
            problems.append(f"{name} must be True or False, got {getattr(config, name)!r}")
    if not problems and config.d_model % config.n_heads:
        problems.append(f"d_model={config.d_model} must be divisible by n_heads={config.n_heads}")
    if config.activation not in ACTIVATIONS:
        problems.append(f"activation must be one of {sorted(ACTIVATIONS)}, got {config.activation!r}")
    if config.dtype not in ("float32", "float64"):
        problems.append(f"dtype must be 'float32' or 'float64', got {config.dtype!r}")
    return problems


def self_attention_positions(positions: str) -> str | None:
    """What a model's self-attention layers add for its ``positions``: "rope", "alibi", or
    None (the positions were added to the embeddings). "rope+diagonal" gives "rope"."""
    first = positions.split("+")[0]
    return first if first in ATTENTION_POSITIONS else None


def cross_attention_positions(positions: str) -> str | None:
    """What a model's cross-attention layers add for its ``positions``: "diagonal" for
    "rope+diagonal", otherwise None (cross-attention sees no positions)."""
    last = positions.split("+")[-1]
    return last if "+" in positions and last in CROSS_ATTENTION_POSITIONS else None
