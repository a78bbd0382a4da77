"""The gradient checker itself: a check that checked nothing, or measured noise, must not pass."""
import numpy as np
import pytest

from minitransformer import nn
from minitransformer.gradcheck import GradCheckReport, check_function, check_module


def test_a_module_with_nothing_to_check_is_refused():
    with pytest.raises(ValueError, match="nothing to check: ReLU has no float input and no parameter"):
        check_module(nn.ReLU(), np.arange(6).reshape(2, 3))


def test_a_function_with_nothing_to_check_is_refused():
    with pytest.raises(ValueError, match="nothing to check"):
        check_function(lambda ids: (ids * 2.0, None), lambda dout, cache: (), {"ids": np.arange(4)})


def test_an_empty_report_does_not_pass():
    report = GradCheckReport()
    assert not report.ok()
    with pytest.raises(AssertionError, match="checked nothing"):
        report.assert_ok()


def test_dropout_in_training_mode_is_refused_not_reported_as_an_error():
    layer = nn.Dropout(0.5, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 5))
    with pytest.raises(ValueError, match="different outputs for the same input .*call .eval\\(\\)"):
        check_module(layer, x)
    layer.eval()
    check_module(layer, x).assert_ok()


def test_a_wrong_gradient_still_fails():
    x = np.random.default_rng(2).standard_normal((3, 4))
    report = check_function(lambda a: (a * a, a), lambda dout, a: (dout * a,), {"a": x})   # 2a expected
    assert not report.ok()
    report = check_function(lambda a: (a * a, a), lambda dout, a: (2 * dout * a,), {"a": x})
    assert report.ok()

