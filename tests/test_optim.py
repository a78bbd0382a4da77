"""Tests for minitransformer.optim: optimisers against torch.optim, schedules, clipping, state."""
import json
import math

import numpy as np
import pytest

from minitransformer import backend
from minitransformer.module import Parameter
from minitransformer.optim import (SGD, Adam, AdamW, ConstantSchedule, NoamSchedule, Optimizer,
                                   WarmupCosineSchedule, clip_grad_norm, optimizer_from_state_dict,
                                   schedule_from_dict)
from minitransformer.schedules import LinearTailSchedule

SHAPES = [(6, 5), (5,), (3, 2, 4), (1,)]

# (name, our constructor, torch constructor): the same settings on both sides
OPTIMIZER_CASES = [
    ("sgd", lambda p: SGD(p, lr=0.1), "SGD", dict(lr=0.1)),
    ("sgd-momentum", lambda p: SGD(p, lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd-momentum-wd", lambda p: SGD(p, lr=0.05, momentum=0.8, weight_decay=0.01),
     "SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.01)),
    ("sgd-nesterov", lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True),
     "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd-nesterov-wd", lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
     "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("sgd-wd", lambda p: SGD(p, lr=0.1, weight_decay=0.05), "SGD", dict(lr=0.1, weight_decay=0.05)),
    ("adam", lambda p: Adam(p), "Adam", dict()),
    ("adam-custom", lambda p: Adam(p, lr=0.01, betas=(0.8, 0.98), eps=1e-9),
     "Adam", dict(lr=0.01, betas=(0.8, 0.98), eps=1e-9)),
    ("adam-wd", lambda p: Adam(p, lr=0.01, weight_decay=0.1), "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", lambda p: AdamW(p), "AdamW", dict()),
    ("adamw-wd", lambda p: AdamW(p, lr=0.02, betas=(0.9, 0.95), weight_decay=0.1),
     "AdamW", dict(lr=0.02, betas=(0.9, 0.95), weight_decay=0.1)),
    ("adamw-no-wd", lambda p: AdamW(p, lr=0.01, weight_decay=0.0), "AdamW", dict(lr=0.01, weight_decay=0.0)),
]
CASE_IDS = [c[0] for c in OPTIMIZER_CASES]


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def gradients(n_steps, seed=1, dtype=np.float64):
    """A fixed list of random gradients, one list of arrays per step."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(n_steps)]


def run_steps(optimizer, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        optimizer.step()


def need_torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: the comparison with torch.optim is skipped")


# --------------------------------------------------------------------------------------
# Agreement with torch.optim
# --------------------------------------------------------------------------------------

def torch_run(torch, torch_name, kwargs, params, grads, lr_lambda=None):
    """Run torch.optim on copies of ``params`` with the same gradients; parameters after each step."""
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, torch_name)(tparams, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(topt, lr_lambda) if lr_lambda is not None else None
    history = []
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        if sched is not None:
            sched.step()
        history.append([tp.detach().numpy().copy() for tp in tparams])
    return history


def assert_matches_torch(params, optimizer, torch_history, grads):
    for step, step_grads in enumerate(grads):
        run_steps(optimizer, params, [step_grads])
        for p, expected in zip(params, torch_history[step]):
            np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=0,
                                       err_msg=f"differs from torch after step {step + 1}")


@pytest.mark.parametrize("name, make, torch_name, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_matches_torch_float64(name, make, torch_name, kwargs):
    torch = need_torch()
    params, grads = make_params(), gradients(8)
    history = torch_run(torch, torch_name, kwargs, params, grads)
    assert_matches_torch(params, make(params), history, grads)


def test_adam_with_noam_schedule_matches_torch_lambda_lr():
    torch = need_torch()
    params, grads = make_params(), gradients(12)
    noam = NoamSchedule(d_model=16, warmup_steps=5, factor=2.0)
    # LambdaLR multiplies the base lr (1.0) by lambda(e), e = 0 for the first step: our step e + 1
    history = torch_run(torch, "Adam", dict(lr=1.0, betas=(0.9, 0.98), eps=1e-9), params, grads,
                        lr_lambda=lambda e: noam(e + 1))
    assert_matches_torch(params, Adam(params, lr=noam, betas=(0.9, 0.98), eps=1e-9), history, grads)


def test_adamw_with_cosine_schedule_matches_torch_lambda_lr():
    torch = need_torch()
    params, grads = make_params(), gradients(12)
    cosine = WarmupCosineSchedule(peak_lr=0.05, warmup_steps=3, total_steps=10, min_lr=0.001)
    history = torch_run(torch, "AdamW", dict(lr=1.0, weight_decay=0.1), params, grads,
                        lr_lambda=lambda e: cosine(e + 1))
    assert_matches_torch(params, AdamW(params, lr=cosine, weight_decay=0.1), history, grads)


def test_sgd_momentum_with_schedule_matches_torch_lambda_lr():
    torch = need_torch()
    params, grads = make_params(), gradients(10)
    cosine = WarmupCosineSchedule(peak_lr=0.1, warmup_steps=2, total_steps=8)
    history = torch_run(torch, "SGD", dict(lr=1.0, momentum=0.9, nesterov=True), params, grads,
                        lr_lambda=lambda e: cosine(e + 1))
    assert_matches_torch(params, SGD(params, lr=cosine, momentum=0.9, nesterov=True), history, grads)


# --------------------------------------------------------------------------------------
# Gradient clipping
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    torch = need_torch()
    params = make_params()
    grads = gradients(1)[0]
    for p, g in zip(params, grads):
        p.grad[...] = g
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g.copy())

    norm = clip_grad_norm(params, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm)

    assert isinstance(norm, float)
    assert norm == pytest.approx(float(tnorm), rel=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-13, atol=0)


def test_clip_grad_norm_values_without_torch():
    params = make_params()
    grads = gradients(1)[0]
    for p, g in zip(params, grads):
        p.grad[...] = g
    expected = math.sqrt(sum(float((g ** 2).sum()) for g in grads))

    assert clip_grad_norm(params, 1e6) == pytest.approx(expected, rel=1e-13)
    for p, g in zip(params, grads):  # below the limit: untouched
        np.testing.assert_array_equal(p.grad, g)

    assert clip_grad_norm(params, 1.0) == pytest.approx(expected, rel=1e-13)
    new_norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    assert new_norm == pytest.approx(1.0, rel=1e-5)  # 1e-6 in the denominator
    assert clip_grad_norm([], 1.0) == 0.0


def test_clip_grad_norm_float32_and_non_finite():
    params = make_params(dtype=np.float32)
    for p in params:
        p.grad[...] = 10.0
    clip_grad_norm(params, 1.0)
    assert all(p.grad.dtype == np.float32 for p in params)

    params[0].grad[0, 0] = np.inf
    before = [p.grad.copy() for p in params]
    assert clip_grad_norm(params, 1.0) == math.inf
    for p, b in zip(params, before):  # left for the caller to skip the step
        np.testing.assert_array_equal(p.grad, b)


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_clip_grad_norm_rejects_bad_max_norm(max_norm):
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(make_params(), max_norm)


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------

def test_constant_schedule():
    s = ConstantSchedule(0.01)
    assert s(0) == s(1) == s(10 ** 6) == 0.01


def test_noam_schedule_values():
    s = NoamSchedule(d_model=64, warmup_steps=400, factor=2.0)
    peak = 2.0 / math.sqrt(64 * 400)
    assert s(400) == pytest.approx(peak, rel=1e-15)
    assert s.peak_lr == pytest.approx(peak, rel=1e-15)
    assert s(0) == 0.0
    assert s(1) == pytest.approx(2.0 * 64 ** -0.5 * 400 ** -1.5)
    assert s(1600) == pytest.approx(2.0 * 64 ** -0.5 * 1600 ** -0.5)
    values = [s(t) for t in range(1, 2001)]
    assert int(np.argmax(values)) + 1 == 400
    assert all(a < b for a, b in zip(values[:399], values[1:400]))      # rising during warm-up
    assert all(a > b for a, b in zip(values[399:-1], values[400:]))     # decaying after


def test_warmup_cosine_schedule_values():
    s = WarmupCosineSchedule(peak_lr=1e-3, warmup_steps=10, total_steps=110, min_lr=1e-5)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5e-3)
    assert s(10) == pytest.approx(1e-3, rel=1e-15)
    assert s(60) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-14)   # half-way down the cosine
    assert s(110) == 1e-5
    assert s(500) == 1e-5
    values = [s(t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert s(109) > 1e-5

    no_warmup = WarmupCosineSchedule(peak_lr=0.1, warmup_steps=0, total_steps=10)
    assert no_warmup(0) == 0.1
    assert no_warmup(10) == 0.0


@pytest.mark.parametrize("schedule", [
    ConstantSchedule(3e-4),
    NoamSchedule(d_model=128, warmup_steps=4000, factor=1.5),
    WarmupCosineSchedule(peak_lr=1e-3, warmup_steps=100, total_steps=1000, min_lr=1e-6),
    LinearTailSchedule(NoamSchedule(d_model=64, warmup_steps=400, factor=0.5), start=900, steps=600),
], ids=["constant", "noam", "cosine", "linear tail"])
def test_schedule_dict_round_trip(schedule):
    d = schedule.to_dict()
    assert json.loads(json.dumps(d)) == d
    rebuilt = schedule_from_dict(d)
    assert type(rebuilt) is type(schedule) and rebuilt == schedule
    assert [rebuilt(t) for t in range(0, 2000, 37)] == [schedule(t) for t in range(0, 2000, 37)]
    assert type(schedule).__name__ in repr(schedule)


@pytest.mark.parametrize("make, match", [
    (lambda: ConstantSchedule(-0.1), "lr"),
    (lambda: ConstantSchedule(float("inf")), "lr"),
    (lambda: NoamSchedule(d_model=64, warmup_steps=0), "warmup_steps"),
    (lambda: NoamSchedule(d_model=64, warmup_steps=-5), "warmup_steps"),
    (lambda: NoamSchedule(d_model=0, warmup_steps=10), "d_model"),
    (lambda: NoamSchedule(d_model=64, warmup_steps=10, factor=-1.0), "factor"),
    (lambda: NoamSchedule(d_model=64, warmup_steps=2.5), "warmup_steps"),
    (lambda: WarmupCosineSchedule(peak_lr=-1.0, warmup_steps=1, total_steps=10), "peak_lr"),
    (lambda: WarmupCosineSchedule(peak_lr=1.0, warmup_steps=-1, total_steps=10), "warmup_steps"),
    (lambda: WarmupCosineSchedule(peak_lr=1.0, warmup_steps=10, total_steps=10), "total_steps"),
    (lambda: WarmupCosineSchedule(peak_lr=1.0, warmup_steps=1, total_steps=10, min_lr=2.0), "min_lr"),
    (lambda: schedule_from_dict({"name": "triangle"}), "unknown schedule"),
    (lambda: schedule_from_dict({"lr": 1.0}), "name"),
    (lambda: NoamSchedule(d_model=64, warmup_steps=10)(-1), "step"),
    (lambda: LinearTailSchedule(ConstantSchedule(0.1), start=-1, steps=10), "start"),
    (lambda: LinearTailSchedule(ConstantSchedule(0.1), start=5, steps=0), "steps"),
    (lambda: LinearTailSchedule({"name": "triangle"}, start=5, steps=10), "unknown schedule"),
])
def test_schedules_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_linear_tail_schedule_values():
    noam = NoamSchedule(d_model=64, warmup_steps=400, factor=0.5)
    s = LinearTailSchedule(noam, start=1000, steps=500)
    assert [s(t) for t in (1, 400, 999, 1000)] == [noam(t) for t in (1, 400, 999, 1000)]   # the base until start
    assert s(1100) == pytest.approx(noam(1100) * 0.8, rel=1e-14)    # 100 of 500 steps down the line
    assert s(1250) == pytest.approx(noam(1250) * 0.5, rel=1e-14)
    assert s(1500) == 0.0 and s(4000) == 0.0
    values = [s(t) for t in range(1000, 1501)]
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(TypeError, match="must be a Schedule"):
        LinearTailSchedule(lambda step: 0.1, start=5, steps=10)


def test_current_lr_follows_the_schedule():
    noam = NoamSchedule(d_model=32, warmup_steps=4)
    params = make_params()
    opt = Adam(params, lr=noam)
    assert opt.current_lr == noam(1)       # the first step uses step=1
    run_steps(opt, params, gradients(3))
    assert opt.step_count == 3
    assert opt.current_lr == noam(4)
    assert Adam(params, lr=0.25).current_lr == 0.25
    assert SGD(params, lr=lambda step: 1.0 / step).current_lr == 1.0  # any callable works


# --------------------------------------------------------------------------------------
# dtypes, in-place updates
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, make, torch_name, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_float32_stays_float32(name, make, torch_name, kwargs):
    params32 = make_params(dtype=np.float32)
    params64 = make_params(dtype=np.float64)
    opt32, opt64 = make(params32), make(params64)
    run_steps(opt32, params32, gradients(5, dtype=np.float32))
    run_steps(opt64, params64, gradients(5, dtype=np.float32))
    for p32, p64 in zip(params32, params64):
        assert p32.data.dtype == np.float32 and p32.grad.dtype == np.float32
        np.testing.assert_allclose(p32.data, p64.data, rtol=1e-4, atol=1e-5)
    for state in opt32.state:
        assert all(buf.dtype == np.float32 for buf in state.values())


@pytest.mark.parametrize("name, make, torch_name, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_updates_in_place_and_leave_grads_alone(name, make, torch_name, kwargs):
    params = make_params()
    arrays = [p.data for p in params]
    views = [p.data.reshape(-1)[:1] for p in params]
    before = [p.data.copy() for p in params]
    opt = make(params)
    grads = gradients(1)[0]
    run_steps(opt, params, [grads])
    for p, a, v, b, g in zip(params, arrays, views, before, grads):
        assert p.data is a                          # same array object, updated in place
        assert v[0] == p.data.reshape(-1)[0]        # views see the update
        assert not np.array_equal(p.data, b)
        np.testing.assert_array_equal(p.grad, g)    # weight decay did not write into the gradient


def test_zero_grad():
    params = make_params()
    opt = SGD(params, lr=0.1)
    for p in params:
        p.grad[...] = 1.0
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)


def test_state_follows_parameters_to_another_dtype():
    params = make_params(dtype=np.float32)
    opt = Adam(params, lr=0.01)
    run_steps(opt, params, gradients(2, dtype=np.float32))
    for p in params:  # as model.to(dtype=np.float64) does
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    run_steps(opt, params, gradients(1))
    assert all(buf.dtype == np.float64 for s in opt.state for buf in s.values())
    opt.to("numpy", dtype=np.float32)
    assert all(buf.dtype == np.float32 for s in opt.state for buf in s.values())
    assert opt.to("numpy") is opt


@pytest.mark.gpu
def test_cupy_matches_numpy():
    if not backend.cupy_available():
        pytest.skip(backend.cupy_unavailable_reason())
    params_np = make_params()
    params_cp = make_params()
    for p in params_cp:
        p.data = backend.asarray(p.data, "cupy")
        p.grad = backend.asarray(p.grad, "cupy")
    opt_np = Adam(params_np, lr=0.01, weight_decay=0.1)
    opt_cp = Adam(params_cp, lr=0.01, weight_decay=0.1)
    grads = gradients(5)
    run_steps(opt_np, params_np, grads)
    run_steps(opt_cp, params_cp, grads)
    assert backend.get_array_module_name(opt_cp.state[0]["exp_avg"]) == "cupy"
    clip_grad_norm(params_cp, 0.1)
    for a, b in zip(params_np, params_cp):
        np.testing.assert_allclose(backend.to_numpy(b.data), a.data, rtol=1e-12)
    sd = opt_cp.state_dict()
    assert all(isinstance(a, np.ndarray) for a in sd["state"].values())
    opt_cp.to("numpy")
    assert backend.get_array_module_name(opt_cp.state[0]["exp_avg"]) == "numpy"


# --------------------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------------------

RESUME_CASES = [
    lambda p: SGD(p, lr=WarmupCosineSchedule(0.1, 3, 15), momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda p: Adam(p, lr=NoamSchedule(d_model=16, warmup_steps=5), betas=(0.9, 0.98), eps=1e-9),
    lambda p: AdamW(p, lr=3e-3, weight_decay=0.1),
]


@pytest.mark.parametrize("make", RESUME_CASES, ids=["sgd", "adam", "adamw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_resumes_bit_identically(make, dtype):
    grads = gradients(20, dtype=dtype)

    straight = make_params(dtype=dtype)
    run_steps(make(straight), straight, grads)

    first = make_params(dtype=dtype)
    opt = make(first)
    run_steps(opt, first, grads[:10])
    saved_state = opt.state_dict()
    saved_params = [p.data.copy() for p in first]
    json.dumps({k: v for k, v in saved_state.items() if k != "state"})  # scalars are JSON-able
    assert all(type(a) is np.ndarray for a in saved_state["state"].values())

    resumed = make_params(seed=99, dtype=dtype)  # fresh objects, other values
    for p, saved in zip(resumed, saved_params):
        p.data[...] = saved
    opt2 = make(resumed)
    opt2.load_state_dict(saved_state)
    assert opt2.step_count == 10
    run_steps(opt2, resumed, grads[10:])

    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_is_a_snapshot():
    params = make_params()
    opt = Adam(params)
    run_steps(opt, params, gradients(2))
    sd = opt.state_dict()
    copy = {k: v.copy() for k, v in sd["state"].items()}
    run_steps(opt, params, gradients(2, seed=5))
    for k in copy:
        np.testing.assert_array_equal(sd["state"][k], copy[k])
    # and loading does not alias the given arrays either
    opt.load_state_dict(sd)
    run_steps(opt, params, gradients(1))
    for k in copy:
        np.testing.assert_array_equal(sd["state"][k], copy[k])


def test_load_state_dict_restores_hyperparameters_and_schedule():
    params = make_params()
    opt = AdamW(params, lr=NoamSchedule(8, 3), betas=(0.8, 0.9), eps=1e-7, weight_decay=0.2)
    run_steps(opt, params, gradients(4))
    other = AdamW(params)
    other.load_state_dict(opt.state_dict())
    assert other.betas == (0.8, 0.9) and other.eps == 1e-7 and other.weight_decay == 0.2
    assert other.schedule == NoamSchedule(8, 3)
    assert other.current_lr == opt.current_lr

    rebuilt = optimizer_from_state_dict(params, opt.state_dict())
    assert type(rebuilt) is AdamW and rebuilt.step_count == 4
    for a, b in zip(rebuilt.state, opt.state):
        np.testing.assert_array_equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_load_state_dict_errors():
    params = make_params()
    adam = Adam(params)
    run_steps(adam, params, gradients(1))
    sd = adam.state_dict()

    with pytest.raises(ValueError, match="for Adam, cannot load it into SGD"):
        SGD(params, lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="is for 4 parameters, this optimizer has 3"):
        Adam(params[:3]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shapes do not match"):
        Adam(params[::-1]).load_state_dict(sd)
    with pytest.raises(ValueError, match="missing the key 'state'"):
        Adam(params).load_state_dict({k: v for k, v in sd.items() if k != "state"})

    broken = dict(sd, state={k: v for k, v in sd["state"].items() if k != "2.exp_avg"})
    fresh = Adam(params, lr=0.5, betas=(0.5, 0.5))
    with pytest.raises(ValueError, match="missing \\['2.exp_avg'\\]"):
        fresh.load_state_dict(broken)
    # a failed load leaves the optimiser as it was
    assert fresh.betas == (0.5, 0.5) and fresh.step_count == 0 and fresh.current_lr == 0.5

    no_buffers = SGD(params, lr=0.1).state_dict()
    no_buffers["hyperparameters"]["momentum"] = 0.9           # says momentum, but has no buffers
    sgd = SGD(params, lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="momentum_buffer"):
        sgd.load_state_dict(no_buffers)
    assert sgd.momentum == 0.5

    # hyper-parameters come from the state dict (as in PyTorch): momentum 0 loads into SGD(momentum=0.5)
    sgd.load_state_dict(SGD(params, lr=0.1).state_dict())
    assert sgd.momentum == 0.0 and sgd.state == [{} for _ in params]


# --------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda p: SGD(p, lr=-0.1), "lr"),
    (lambda p: SGD(p, lr=float("nan")), "lr"),
    (lambda p: SGD(p, lr="fast"), "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: Adam(p, lr=-1e-3), "lr"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "betas"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), "betas"),
    (lambda p: Adam(p, betas=(0.9,)), "betas"),
    (lambda p: Adam(p, eps=-1e-8), "eps"),
    (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
    (lambda p: AdamW(p, weight_decay=-0.01), "weight_decay"),
    (lambda p: Adam([]), "empty"),
    (lambda p: Adam(p + p[:1]), "more than once"),
])
def test_optimizers_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params())


def test_optimizer_rejects_non_parameters():
    with pytest.raises(TypeError, match="Parameter"):
        Adam([np.zeros(3)])


def test_repr_and_base_class():
    opt = Adam(make_params(), lr=NoamSchedule(16, 4))
    assert "Adam(4 parameters" in repr(opt) and "NoamSchedule" in repr(opt)
    assert isinstance(opt, Optimizer)


def test_the_three_modules_are_one_api():
    """The rules (optim), the state (optim_state) and the schedules (schedules) live apart;
    every name a training loop imports from minitransformer.optim is still there, and is the
    same object as in its own module."""
    from minitransformer import optim, optim_state, schedules
    assert set(optim.__all__) == {"Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "Schedule",
                                  "ConstantSchedule", "NoamSchedule", "WarmupCosineSchedule",
                                  "schedule_from_dict", "optimizer_from_state_dict", "OPTIMIZERS",
                                  "SCHEDULES"}
    for name in optim.__all__:
        home = schedules if name in schedules.__all__ else optim_state if name in optim_state.__all__ else optim
        assert getattr(optim, name) is getattr(home, name), name
    assert optim.SGD.__module__ == optim.Adam.__module__ == optim.AdamW.__module__ == "minitransformer.optim"
    assert optim.Optimizer.__module__ == "minitransformer.optim_state"
    assert optim.NoamSchedule.__module__ == optim.clip_grad_norm.__module__ == "minitransformer.schedules"
