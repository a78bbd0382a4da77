"""Errors counted by alignment (minitransformer.codon.alignment): hand-made cases with a known
answer, a brute-force reference on small random pairs, and long inputs."""
import time

import numpy as np
import pytest

from minitransformer.codon.alignment import MAX_CELLS, EditCounts, align_in_pieces, edit_counts


def _reference_distance(a: str, b: str) -> int:
    """Levenshtein distance by the textbook recursion, cell by cell in plain Python."""
    prev = list(range(len(a) + 1))
    for i, cb in enumerate(b, start=1):
        row = [i]
        for j, ca in enumerate(a, start=1):
            row.append(min(prev[j - 1] + (ca != cb), prev[j] + 1, row[j - 1] + 1))
        prev = row
    return prev[-1]


@pytest.mark.parametrize("predicted, expected, counts", [
    ("MAIVK", "MAIVK", EditCounts(0, 0, 0)),
    ("MIVK", "MAIVK", EditCounts(0, 0, 1)),          # a dropped residue counts once
    ("MAAIVK", "MAIVK", EditCounts(0, 1, 0)),        # a doubled residue counts once
    ("MKIVK", "MAIVK", EditCounts(1, 0, 0)),         # a substitution
    ("", "", EditCounts(0, 0, 0)),
    ("", "MA*", EditCounts(0, 0, 3)),                # nothing predicted: every residue missing
    ("MA*", "", EditCounts(0, 3, 0)),
    ("MAIVKK*", "MAIVK*", EditCounts(0, 1, 0)),      # the last residue written twice
    ("KAIVM", "MAIVK", EditCounts(2, 0, 0)),
    ("AIVKR", "MAIVK", EditCounts(0, 1, 1)),         # shifted by one: a deletion and an insertion
])
def test_hand_made_cases(predicted, expected, counts):
    got = edit_counts(predicted, expected)
    assert got == counts
    assert got.distance == _reference_distance(predicted, expected)


def test_one_dropped_residue_in_a_long_protein_counts_once():
    rng = np.random.default_rng(0)
    expected = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=5000))
    predicted = expected[:1234] + expected[1235:]
    positional = sum(a != b for a, b in zip(predicted, expected)) + 1
    assert positional > 1000                        # what a position-by-position count says
    assert edit_counts(predicted, expected) == EditCounts(0, 0, 1)


def test_distance_matches_brute_force_and_counts_add_up():
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = "".join(rng.choice(list("MAK"), size=rng.integers(0, 9)))
        b = "".join(rng.choice(list("MAK"), size=rng.integers(0, 9)))
        c = edit_counts(a, b)
        assert c.distance == _reference_distance(a, b)
        # the kinds are consistent with the lengths: every insertion adds a residue, every deletion removes one
        assert len(a) - len(b) == c.insertions - c.deletions
        assert c.substitutions + c.insertions <= len(a) and c.substitutions + c.deletions <= len(b)


def test_pieces_sum():
    assert align_in_pieces(["MIVK", "MA", ""], ["MAIVK", "MA", "K"]) == EditCounts(0, 0, 2)
    with pytest.raises(ValueError, match="as many predicted pieces"):
        align_in_pieces(["MA"], ["MA", "K"])


def test_long_comparison_in_blocks_never_undercounts(monkeypatch):
    """With a tiny table limit, small inputs go block by block: the count is at least the true
    distance, and equal when the errors are far apart."""
    import minitransformer.codon.alignment as alignment
    monkeypatch.setattr(alignment, "MAX_CELLS", 30)
    monkeypatch.setattr(alignment, "BLOCK_RESIDUES", 4)
    rng = np.random.default_rng(3)
    for _ in range(200):
        b = "".join(rng.choice(list("MAK"), size=rng.integers(0, 30)))
        a = list(b)
        for _ in range(rng.integers(0, 4)):
            if a:
                del a[rng.integers(0, len(a))]
        a = "".join(a) + "".join(rng.choice(list("MAK"), size=rng.integers(0, 3)))
        assert alignment.edit_counts(a, b).distance >= _reference_distance(a, b)
    expected = "MAKAMKKAMAKAMAMKAKAKAMAMMAKMAKAMAKM"
    assert alignment.edit_counts(expected[:3] + expected[4:30] + "W" + expected[30:], expected) \
        == EditCounts(0, 1, 1)


def test_long_sequences_stay_fast():
    """A million residues with a few scattered errors: the shared start and end are cut off,
    and what is left too large for one table goes block by block -- seconds, not hours."""
    rng = np.random.default_rng(2)
    expected = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=1_000_000))
    predicted = list(expected)
    for pos in (10_000, 400_000, 900_000):
        del predicted[pos]                         # three dropped residues, far apart
    predicted[500_000] = "W" if predicted[500_000] != "W" else "Y"   # one substitution
    predicted = "".join(predicted)
    assert (len(expected) + 1) ** 2 > MAX_CELLS
    started = time.perf_counter()
    assert edit_counts(predicted, expected) == EditCounts(1, 0, 3)   # errors far apart: exact
    assert time.perf_counter() - started < 20
    # one table for a wrong stretch in the middle of a long, otherwise right protein
    assert edit_counts(expected[:300_000] + "K" + expected[300_000:], expected) == EditCounts(0, 1, 0)


def test_describe():
    assert EditCounts(1, 1, 0).describe() == "2 edits (1 substitution, 1 insertion, 0 deletions)"
