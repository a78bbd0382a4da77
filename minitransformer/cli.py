"""The ``minitransformer`` command line.

Every command prints a one-line error and exits with a non-zero status on bad input;
no traceback reaches the user (set MINITRANSFORMER_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .errors import CommandError, number_type
from .files import termination_as_interrupt


def _add_toy(subparsers):
    p = subparsers.add_parser("toy", help="train a small model to copy or reverse random sequences",
                              description="Train a small Transformer on the copy or reverse task and "
                                          "report exact-match accuracy on fresh sequences: the quickest "
                                          "end-to-end check that everything works.")
    p.add_argument("--task", choices=["copy", "reverse"], default="copy")
    p.add_argument("--steps", type=number_type("positive integer"), default=1500,
                   help="maximum optimizer steps (default 1500)")
    p.add_argument("--seed", type=number_type("non-negative integer"), default=0)
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $MINITRANSFORMER_BACKEND or numpy)")
    p.set_defaults(func=_run_toy)


def _run_toy(args):
    from .toy import train_toy
    model, trainer, metrics = train_toy(args.task, steps=args.steps, seed=args.seed, backend=args.backend)
    print(f"{args.task} task: {metrics['exact_match']:.1%} exact match, "
          f"{metrics['token_accuracy']:.2%} token accuracy on {metrics['n']} fresh sequences "
          f"after {trainer.step} steps ({trainer.train_seconds:.0f} s of training)")
    return 0


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: the same name as ``cpu.THREADS_ENV_VAR`` (spelled out: importing cpu loads NumPy)
THREADS_ENV_VAR = "MINITRANSFORMER_THREADS"


def _threads_from_argv(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


def limit_blas_threads(argv) -> None:
    """Set the thread counts before NumPy loads (OpenBLAS reads its own only then).

    The library's own threads (attention slices, shards of a batch, decoding) get
    ``--threads`` or every CPU the process may use; they run their products on a
    one-thread BLAS (``cpu.run_in_parallel``). Products outside them run on one
    BLAS thread too: the codon model's matrices are small, a second BLAS thread saves
    little, and when anything else runs on the machine, OpenBLAS threads that wait for a
    busy core made training steps 4 to 10 times slower in our measurements. Variables
    already set in the environment win.
    """
    if "numpy" in sys.modules:
        return
    # OpenBLAS's threads would otherwise spin for about a tenth of a second after each
    # product, holding the cores that the library's threads need.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")
    threads = _threads_from_argv(argv)
    if threads is not None:
        os.environ[THREADS_ENV_VAR] = threads
    if not any(v in os.environ for v in THREAD_VARIABLES):
        for variable in THREAD_VARIABLES:
            os.environ[variable] = "1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitransformer",
                                     description="A Transformer written by hand on NumPy: train, "
                                                 "evaluate and inspect it from the command line.")
    parser.add_argument("--version", action="version", version=f"minitransformer {__version__}")
    parser.add_argument("--threads", type=number_type("positive integer"), default=None, metavar="N",
                        help="threads for the library's parallel work: attention in slices, shards of "
                             "large batches, decoding (default: every CPU this process may use; "
                             f"{THREADS_ENV_VAR} sets the same). NumPy's own BLAS uses one thread "
                             "unless OPENBLAS_NUM_THREADS says otherwise")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_toy(subparsers)
    try:
        from .codon.cli import add_codon_commands
    except ImportError:  # pragma: no cover - the codon package ships with the library
        add_codon_commands = None
    if add_codon_commands is not None:
        add_codon_commands(subparsers)
    from .protein.cli import add_protein_commands
    add_protein_commands(subparsers)
    return parser


def main(argv=None) -> int:
    limit_blas_threads(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        # SIGTERM (kill, a batch system's time limit) and SIGHUP (a closed terminal) stop a
        # command the way Ctrl-C does: a training run saves what it learned, a write in
        # progress removes its partial file; the exit status is 130 for all three
        with termination_as_interrupt():
            from . import cpu   # the library's threads and allocator, as --threads asks (cpu.py)
            cpu.tune_for_training(args.threads)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, the traceback only on request
        if os.environ.get("MINITRANSFORMER_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"minitransformer: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, (CommandError, ValueError, FileNotFoundError)) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
