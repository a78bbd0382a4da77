"""The step profiler times the math the model really runs: the fast path by default, the
textbook functions with ``math="reference"``."""
import pytest

profile_step = pytest.importorskip("benchmarks.profile_step")


@pytest.mark.parametrize("math", ["fast", "reference"])
def test_the_profile_lists_the_functions_of_the_path_the_model_runs(math):
    profile = profile_step.profile("codon", steps=1, warmup=0, math=math)
    names = set(profile["functions"].calls)
    fast_names = {n for n in names if n.startswith("fast.")}
    if math == "fast":
        assert {"fast.linear_forward", "fast.linear_backward", "fast.layer_norm_forward"} <= fast_names
        assert "linear_forward" not in names          # the textbook linear does not run
    else:
        assert not fast_names
        assert {"linear_forward", "linear_backward", "attention_forward"} <= names
    assert "embedding_forward" in names               # no fast twin: both paths run the reference
    # the functions are put back: nothing stays wrapped after the profile
    from minitransformer import fast, functional
    assert fast.linear_forward.__name__ == "linear_forward" and not hasattr(fast.linear_forward, "__wrapped__")
    assert not hasattr(functional.linear_forward, "__wrapped__")
