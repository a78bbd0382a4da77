"""Vocabularies: from symbols to integer ids and back.

A Transformer does not read letters; it reads integers, each one a row of an embedding
matrix. A :class:`Vocabulary` fixes which integer stands for which symbol. Four *special
tokens* come first, always with the same ids:

====  =========  =====================================================================
 id   token      what it is for
====  =========  =====================================================================
 0    ``<pad>``  fills the end of short sequences so a batch is a rectangle; ignored by
                 the loss and masked out of attention
 1    ``<bos>``  "beginning of sequence": the first input of the decoder
 2    ``<eos>``  "end of sequence": the decoder outputs it when it is done
 3    ``<unk>``  a symbol the vocabulary does not know (only with ``strict=False``)
====  =========  =====================================================================

and then the symbols, in the order given:

>>> rna = Vocabulary("ACGU")
>>> rna.tokens
('<pad>', '<bos>', '<eos>', '<unk>', 'A', 'C', 'G', 'U')
>>> rna.encode("GAUC", add_bos=True, add_eos=True)
[1, 6, 4, 7, 5, 2]
>>> rna.decode([1, 6, 4, 7, 5, 2, 0, 0])
'GAUC'
>>> rna.pad_batch([[1, 6, 2], [1, 2]])
array([[1, 6, 2],
       [1, 2, 0]])

Padding with id 0 means that a batch allocated with ``np.zeros`` is already all padding,
and that ``ids == vocab.pad_id`` (see :meth:`Vocabulary.is_padding`) is the padding mask.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .validation import check_token_ids

PAD = "<pad>"
BOS = "<bos>"
EOS = "<eos>"
UNK = "<unk>"
#: The special tokens, in the order of their ids (0, 1, 2, 3).
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


class Vocabulary:
    """A fixed list of tokens: the four special tokens, then ``symbols``.

    Args:
        symbols: the symbols of the alphabet, e.g. ``"ACGU"`` or ``["AUG", "UUU"]``. Each
            must be a non-empty string, none repeated, none a special token.

    Attributes:
        pad_id, bos_id, eos_id, unk_id: 0, 1, 2, 3.
        symbols: the symbols, without the special tokens (a tuple).
        tokens: all tokens, special tokens first: ``tokens[i]`` is the token of id ``i``.
    """

    PAD, BOS, EOS, UNK = PAD, BOS, EOS, UNK
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, symbols: Sequence[str]):
        symbols = tuple(symbols)
        seen = set()
        for i, symbol in enumerate(symbols):
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"symbol {i} is {symbol!r}: symbols must be non-empty strings")
            if symbol in SPECIAL_TOKENS:
                raise ValueError(f"symbol {symbol!r} is a special token; special tokens are "
                                 "added by the vocabulary itself")
            if symbol in seen:
                raise ValueError(f"symbol {symbol!r} appears more than once")
            seen.add(symbol)
        self.symbols: tuple[str, ...] = symbols
        self.tokens: tuple[str, ...] = SPECIAL_TOKENS + symbols
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    # ------------------------------------------------------------------ basic questions
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({list(self.symbols)!r})"

    def token_to_id(self, token: str) -> int:
        """The id of ``token`` (a symbol or a special token); ``KeyError`` if unknown."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"{token!r} is not in this vocabulary") from None

    def id_to_token(self, index: int) -> str:
        """The token of id ``index``; ``IndexError`` if out of range."""
        if not 0 <= index < len(self.tokens):
            raise IndexError(f"token id {index} is out of range: this vocabulary has ids "
                             f"0 to {len(self.tokens) - 1}")
        return self.tokens[index]

    # ------------------------------------------------------------------ encoding
    def encode(self, seq: str | Sequence[str], add_bos: bool = False, add_eos: bool = False,
               strict: bool = True) -> list[int]:
        """Turn a sequence of symbols into a list of ids.

        Args:
            seq: a string (each character is one symbol) or a sequence of symbols (needed
                when symbols are longer than one character).
            add_bos, add_eos: put ``bos_id`` in front, ``eos_id`` at the end.
            strict: raise ``ValueError`` for an unknown symbol (the default), or, if
                False, encode it as ``unk_id``.
        """
        ids = [self.bos_id] if add_bos else []
        get = self._ids.get
        for position, symbol in enumerate(seq):
            index = get(symbol)
            if index is None or index < len(SPECIAL_TOKENS):
                # Special tokens are not symbols: "<pad>" in the input is a mistake.
                if strict:
                    raise ValueError(
                        f"unknown symbol {symbol!r} at position {position} (counted from 0) "
                        f"of the sequence; this vocabulary knows {', '.join(self.symbols)} "
                        "(pass strict=False to encode unknown symbols as <unk>)")
                index = self.unk_id
            ids.append(index)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def encode_batch(self, seqs: Iterable[str | Sequence[str]], add_bos: bool = False,
                     add_eos: bool = False, strict: bool = True,
                     length: int | None = None) -> np.ndarray:
        """Encode several sequences and pad them into one ``(batch, length)`` array."""
        return self.pad_batch([self.encode(s, add_bos=add_bos, add_eos=add_eos, strict=strict)
                               for s in seqs], length=length)

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Iterable[int], strip_special: bool = True, sep: str = "") -> str:
        """Turn ids back into a string.

        Args:
            ids: a list of ints or a 1-D integer array (NumPy; for CuPy, move it to the host
                first).
            strip_special: read the ids as a model's output: stop at the first
                ``eos_id``, skip ``pad_id`` and ``bos_id``. ``unk_id`` is kept, as
                ``"<unk>"``. If False, write every token, special ones included.
            sep: put between tokens (``""`` for one-letter symbols).
        """
        array = np.asarray(ids)
        if array.ndim != 1:
            raise ValueError(f"decode expects one sequence of ids (1-D), got shape "
                             f"{array.shape}; use decode_batch for a batch")
        if array.size:
            check_token_ids("Vocabulary.decode", array, len(self.tokens))
        out = []
        for index in array.tolist():
            if strip_special:
                if index == self.eos_id:
                    break
                if index in (self.pad_id, self.bos_id):
                    continue
            out.append(self.tokens[index])
        return sep.join(out)

    def decode_batch(self, batch, strip_special: bool = True, sep: str = "") -> list[str]:
        """Decode each row of a ``(batch, length)`` array (or list of lists)."""
        return [self.decode(row, strip_special=strip_special, sep=sep) for row in batch]

    # ------------------------------------------------------------------ padding
    def pad_batch(self, sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
        """Stack id sequences into an ``int64`` array of shape ``(batch, length)``.

        Shorter sequences are filled on the right with ``pad_id``. ``length`` defaults to the
        longest sequence; a sequence longer than ``length`` is an error (nothing is cut off
        silently).
        """
        lengths = [len(s) for s in sequences]
        longest = max(lengths, default=0)
        if length is None:
            length = longest
        elif length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        elif longest > length:
            i = lengths.index(longest)
            raise ValueError(f"sequence {i} (counted from 0) has {longest} tokens, more than "
                             f"length={length}; pass a larger length, or length=None")
        batch = np.full((len(sequences), length), self.pad_id, dtype=np.int64)
        for row, seq in enumerate(sequences):
            batch[row, :len(seq)] = seq
        return batch

    def is_padding(self, batch) -> np.ndarray:
        """Boolean array, True where ``batch`` holds ``pad_id`` (works on NumPy and CuPy)."""
        return batch == self.pad_id

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict:
        """A JSON-able description, for checkpoints: ``Vocabulary.from_dict(v.to_dict()) == v``."""
        return {"special_tokens": list(SPECIAL_TOKENS), "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        """Rebuild a vocabulary saved with :meth:`to_dict`."""
        if not isinstance(data, dict) or "symbols" not in data:
            raise ValueError("a saved vocabulary is a dict with a 'symbols' list")
        specials = tuple(data.get("special_tokens", SPECIAL_TOKENS))
        if specials != SPECIAL_TOKENS:
            raise ValueError(f"saved vocabulary has special tokens {list(specials)}, "
                             f"expected {list(SPECIAL_TOKENS)}")
        return cls(data["symbols"])
