"""Apply one mutation to a copy of the package and run the tests that should catch it.

For each mutant: copy ``minitransformer/``, ``tests/`` and ``setup.cfg`` into a fresh
temporary directory, replace the row's ``old`` text by its ``new`` text in the copy, and
run ``python -m pytest`` on the row's tests there, with the working directory and
``PYTHONPATH`` at the copy (so the copy, not the checkout or an installed package, is
imported, in subprocesses too). The mutant is *caught* when pytest reports failed tests
(exit status 1). Exit status 0 means it survived; any other status (collection error, no
tests matched, usage error) is reported as a broken run, never as caught.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .gallery import MUTATIONS, Mutation

REPO = Path(__file__).resolve().parents[2]
COPIED = ("minitransformer", "tests", "setup.cfg")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


class MutationDoesNotApply(ValueError):
    """The row's ``old`` text is not in its file exactly once: re-target the row."""


@dataclass
class Outcome:
    mutation: Mutation
    status: str        # "caught", "survived" or "broken"
    seconds: float
    output: str

    @property
    def caught(self) -> bool:
        return self.status == "caught"


def by_id(mutation_id: str) -> Mutation:
    for m in MUTATIONS:
        if m.id == mutation_id:
            return m
    raise KeyError(f"no mutation {mutation_id!r}; known: {', '.join(m.id for m in MUTATIONS)}")


def apply_mutation(mutation: Mutation, root: Path) -> None:
    """Replace ``mutation.old`` by ``mutation.new`` in ``root / mutation.file``, in place."""
    path = Path(root) / mutation.file
    if not path.is_file():
        raise MutationDoesNotApply(f"mutation {mutation.id} no longer applies: file {mutation.file} not found")
    text = path.read_text()
    count = text.count(mutation.old)
    if count == 0:
        raise MutationDoesNotApply(f"mutation {mutation.id} no longer applies: text not found in {mutation.file}")
    if count > 1:
        raise MutationDoesNotApply(f"mutation {mutation.id} no longer applies: text found {count} times in "
                                   f"{mutation.file}, it must be exactly once")
    path.write_text(text.replace(mutation.old, mutation.new))


def copy_of_the_package(destination: Path, source: Path = REPO) -> Path:
    for name in COPIED:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, destination / name, ignore=_IGNORE)
        else:
            shutil.copy2(src, destination / name)
    return destination


def run_tests(copy: Path, tests, timeout: float = 600) -> tuple[int, str]:
    """``python -m pytest -q -x <tests>`` in ``copy``; returns (exit status, output)."""
    env = dict(os.environ, PYTHONPATH=str(copy) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def imported_package(copy: Path) -> Path:
    """Where ``import minitransformer`` finds the package when the tests run in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", "import minitransformer; print(minitransformer.__file__)"],
                         cwd=copy, env=env, capture_output=True, text=True, check=True).stdout
    return Path(out.strip()).resolve().parent


def run_mutant(mutation: Mutation, workdir: Path | None = None) -> Outcome:
    """Apply ``mutation`` to a fresh copy and run its tests (in ``workdir`` or a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.id}-", dir=workdir) as tmp:
        copy = copy_of_the_package(Path(tmp))
        apply_mutation(mutation, copy)
        start = time.perf_counter()
        status, output = run_tests(copy, mutation.tests)
        seconds = time.perf_counter() - start
    verdict = {0: "survived", 1: "caught"}.get(status, "broken")
    return Outcome(mutation, verdict, seconds, output)


def run_baseline(mutations) -> tuple[int, str, float]:
    """The catching tests of ``mutations`` on an unmutated copy: they must all pass, or a
    'caught' mutant would prove nothing."""
    tests = sorted({t for m in mutations for t in m.tests})
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        copy = copy_of_the_package(Path(tmp))
        found = imported_package(copy)
        if found != (copy / "minitransformer").resolve():
            raise RuntimeError(f"the tests would import minitransformer from {found}, not from the copy in {copy}")
        start = time.perf_counter()
        status, output = run_tests(copy, tests)
        return status, output, time.perf_counter() - start
