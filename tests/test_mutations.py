"""The mutation gallery guards the suite: each row's bug, put into a copy of the package,
must make its tests fail. Here: every row still applies to the current code, a row that
no longer applies fails with a precise message, and a few fast mutants are run. The whole
gallery is ``python -m tests.mutations`` (docs/mutations.md)."""
from pathlib import Path

import pytest

from mutations import MUTATIONS, QUICK, Mutation, MutationDoesNotApply, apply_mutation, by_id, run_mutant
from mutations.harness import REPO, copy_of_the_package


def test_the_gallery_is_well_formed():
    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids)), "two mutations share an id"
    assert len(MUTATIONS) >= 15
    for m in MUTATIONS:
        assert m.tests and m.why and m.old != m.new, m.id
        for test in m.tests:
            assert (REPO / test.split("::")[0]).is_file(), f"mutation {m.id}: no test file {test}"
    assert set(QUICK) <= set(ids)


def test_every_mutation_still_applies(tmp_path):
    copy = copy_of_the_package(tmp_path, REPO)
    for m in MUTATIONS:
        before = (copy / m.file).read_text()
        apply_mutation(m, copy)
        assert (copy / m.file).read_text() != before
        (copy / m.file).write_text(before)


def test_a_mutation_that_no_longer_applies_says_so(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\nx = 1\n")
    gone = Mutation("gone", "pkg/a.py", "y = 2\n", "y = 3\n", ("tests/x.py",), "")
    with pytest.raises(MutationDoesNotApply, match=r"^mutation gone no longer applies: text not found in pkg/a\.py$"):
        apply_mutation(gone, tmp_path)
    twice = Mutation("twice", "pkg/a.py", "x = 1\n", "x = 2\n", ("tests/x.py",), "")
    with pytest.raises(MutationDoesNotApply, match=r"text found 2 times in pkg/a\.py, it must be exactly once"):
        apply_mutation(twice, tmp_path)
    moved = Mutation("moved", "pkg/b.py", "x", "y", ("tests/x.py",), "")
    with pytest.raises(MutationDoesNotApply, match=r"mutation moved no longer applies: file pkg/b\.py not found"):
        apply_mutation(moved, tmp_path)


@pytest.mark.parametrize("mutation_id", QUICK)
def test_quick_mutants_are_caught(mutation_id, tmp_path):
    outcome = run_mutant(by_id(mutation_id), workdir=Path(tmp_path))
    assert outcome.caught, f"{mutation_id} {outcome.status}:\n{outcome.output[-3000:]}"
