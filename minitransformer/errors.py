"""What the command line says when its input is wrong.

:class:`CommandError` is the error a command raises for bad input: ``minitransformer.cli.main``
prints it as one line and exits with status 2. It lives here, below every command module,
so that ``minitransformer.cli`` and ``minitransformer.codon.cli`` both import it and neither
imports the other for it.

:func:`read_option_number` reads a number option's text and is its one check (``--steps 0``,
``--seed -1``, ``--dropout 1.5``); :func:`number_type` hands the same check to ``argparse``::

    parser.add_argument("--seed", type=number_type("non-negative integer"), default=0)

Either way the message names the option: ``--seed: expected a non-negative integer, got -1``.
(A number given in Python, not typed on a command line, is checked by
``validation.check_number`` instead, which raises ValueError.)
"""
from __future__ import annotations

import argparse
import math

__all__ = ["CommandError", "NUMBER_KINDS", "read_option_number", "number_type"]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


#: kind -> (how the text is read, which values are allowed, what the message calls them)
NUMBER_KINDS = {
    "positive integer": (int, lambda v: v >= 1, "a positive integer"),
    "non-negative integer": (int, lambda v: v >= 0, "a non-negative integer"),
    "positive number": (float, lambda v: 0 < v < math.inf, "a positive number"),
    "probability": (float, lambda v: 0 <= v <= 1, "a probability (a number from 0 to 1)"),
    "probability below 1": (float, lambda v: 0 <= v < 1, "a number from 0 up to, but not including, 1"),
    "positive probability": (float, lambda v: 0 < v <= 1, "a number above 0 and at most 1"),
}


def read_option_number(text, kind: str, option: str) -> int | float:
    """``text`` read as a number of ``kind`` (a key of :data:`NUMBER_KINDS`).

    Raises :class:`CommandError` naming ``option`` when ``text`` is not such a number:
    ``read_option_number("-1", "non-negative integer", "--seed")`` ->
    ``--seed: expected a non-negative integer, got -1``.
    """
    try:
        return _read_number(text, kind)
    except ValueError as err:
        raise CommandError(f"{option}: {err}") from None


def number_type(kind: str):
    """:func:`read_option_number` as an ``argparse`` ``type``: argparse names the option itself
    (``argument --seed: expected a non-negative integer, got -1``)."""
    _kind(kind)  # an unknown kind fails when the parser is built, not when it is used

    def read(text: str):
        try:
            return _read_number(text, kind)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    read.__name__ = kind  # argparse's fallback message says "invalid <name> value"
    return read


def _kind(kind: str):
    if kind not in NUMBER_KINDS:
        raise ValueError(f"unknown number kind {kind!r}; one of {', '.join(NUMBER_KINDS)}")
    return NUMBER_KINDS[kind]


def _read_number(text, kind: str) -> int | float:
    read, allowed, words = _kind(kind)
    try:
        value = read(str(text).strip())
    except ValueError:
        raise ValueError(f"expected {words}, got {str(text)!r}") from None
    if not allowed(value):  # NaN fails every comparison, so it is refused too
        raise ValueError(f"expected {words}, got {text}")
    return value
