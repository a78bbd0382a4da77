"""A mutation gallery: classic bugs put into a copy of the package, one at a time, each of
which the test suite must catch. See docs/mutations.md.

Run the whole gallery from the repository root::

    python -m tests.mutations              # every mutant, after a clean run of their tests
    python -m tests.mutations ID [ID ...]  # some of them
    python -m tests.mutations --list       # the table, without running anything

The rows are in :mod:`.gallery`; :mod:`.harness` applies and runs them.
"""
from .gallery import MUTATIONS, QUICK, Mutation
from .harness import MutationDoesNotApply, apply_mutation, by_id, run_mutant

__all__ = ["MUTATIONS", "QUICK", "Mutation", "MutationDoesNotApply", "apply_mutation", "by_id", "run_mutant"]
