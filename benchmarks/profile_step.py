"""Where the time of one training step goes: per layer, per module type, per function.

    python -m benchmarks.profile_step [--config benchmark|codon] [--steps 10] [--backend numpy|cupy]
                                      [--math fast|reference]

How it works: before the steps run, every submodule of the model gets its ``forward`` and
``backward`` replaced (on the instance, not the class) by a wrapper that reads the clock
before and after the call. A parent's time includes its children's (an encoder layer's
forward includes its attention's forward), so each wrapper also keeps a stack: when a
call ends, its time is added to its parent's "children" total, and its **self time** is
its total minus its children's. Self times add up to the whole step without counting
anything twice. The math functions -- the fast path's (``minitransformer.fast``, listed as
``fast.linear_forward``...), the reference path's (``minitransformer.functional``: the model
runs those where the fast path has no twin, and everywhere with ``--math reference``) and
``minitransformer.losses`` -- are wrapped the same way on a stack of their own, which gives a
third view of the same step.

Three tables come out:

1. per layer, in model order: each top-level piece and each encoder/decoder layer, its
   forward and backward time *including* its children;
2. per module type, sorted by time: self time of all Linear layers, all LayerNorms...;
3. per math function, sorted by self time;

plus the phases of the step (zero_grad, forward, loss, backward, optimizer).
On a GPU every wrapper synchronises the device, which serialises the work: the profile
then shows where the time goes, but the step itself is slower than unprofiled.
"""
from __future__ import annotations

import argparse
import os
import functools
import time
from collections import defaultdict

from minitransformer import fast
from minitransformer import functional as F
from minitransformer import losses as L
from minitransformer.backend import BackendUnavailableError
from minitransformer.cpu import THREADS_ENV_VAR

from .common import STEP_CONFIGS, Device, print_table
from .train_step import OurStep


class Timers:
    """Total and self time per key, for calls that nest (a stack of open calls)."""

    def __init__(self, sync):
        self.sync = sync
        self.total = defaultdict(float)
        self.self_time = defaultdict(float)
        self.calls = defaultdict(int)
        self._children = []          # one entry per open call: time spent in its children so far

    def wrap(self, key, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            self._children.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                elapsed = time.perf_counter() - start
                children = self._children.pop()
                self.total[key] += elapsed
                self.self_time[key] += elapsed - children
                self.calls[key] += 1
                if self._children:
                    self._children[-1] += elapsed
        return timed


def wrap_modules(model, criterion, timers: Timers) -> dict:
    """Wrap forward/backward of every module (once per object, however many names it has).
    Returns {module label: class name}."""
    names = defaultdict(list)
    objects = {}
    for name, module in list(model.named_modules()) + [("loss", criterion)]:
        names[id(module)].append(name or "model")
        objects[id(module)] = module
    kinds = {}
    for key, module in objects.items():
        label = " = ".join(names[key])
        kinds[label] = type(module).__name__
        for method in ("forward", "backward"):
            if hasattr(type(module), method):
                setattr(module, method, timers.wrap((label, method), getattr(module, method)))
    return kinds


#: (module whose functions are timed, prefix of their names in the table). The fast path is
#: wrapped in its package (what the layers call: ``fast.linear_forward``) and in its modules
#: (what its functions call inside them, e.g. the batched attention's slices).
MATH_MODULES = ((F, ""), (L, ""), (fast, "fast."), (fast.layers, "fast."), (fast.attention, "fast."))


def wrap_functions(timers: Timers) -> list:
    """Wrap the math functions of :data:`MATH_MODULES` (module attributes, so both callers
    like ``F.linear_forward(...)`` and calls inside those modules are timed).
    Returns (module, name, original) triples for :func:`unwrap_functions`."""
    originals = []
    for module, prefix in MATH_MODULES:
        for name, fn in list(vars(module).items()):
            # its own functions only (for the fast package: those of its modules), not those it imports
            if callable(fn) and not isinstance(fn, type) and getattr(fn, "__module__", "").startswith(module.__name__):
                originals.append((module, name, fn))
                setattr(module, name, timers.wrap(prefix + name, fn))
    return originals


def unwrap_functions(originals) -> None:
    for module, name, fn in originals:
        setattr(module, name, fn)


def profile(config: str = "benchmark", backend: str = "numpy", steps: int = 10, warmup: int = 2,
            math: str = "fast") -> dict:
    device = Device(backend)
    cfg = STEP_CONFIGS[config]()
    step = OurStep(cfg, device)
    step.model.use_math(math)
    for _ in range(warmup):
        step.step()

    modules, functions, phases = Timers(device.sync), Timers(device.sync), Timers(device.sync)
    kinds = wrap_modules(step.model, step.criterion, modules)
    originals = wrap_functions(functions)
    model, criterion, optimizer, batch = step.model, step.criterion, step.optimizer, step.batch
    zero_grad = phases.wrap("zero_grad", model.zero_grad)
    forward = phases.wrap("model forward", model.forward)
    loss_forward = phases.wrap("loss forward", criterion.forward)
    loss_backward = phases.wrap("loss backward", criterion.backward)
    backward = phases.wrap("model backward", model.backward)
    optimizer_step = phases.wrap("optimizer step (Adam)", optimizer.step)
    # The clocks keep one stack of open calls, which threads would interleave: the slices
    # of batched attention run one after another while profiling (see the note printed).
    threads_before = os.environ.get(THREADS_ENV_VAR)
    os.environ[THREADS_ENV_VAR] = "1"
    try:
        started = device.clock()
        for _ in range(steps):
            zero_grad()
            logits = forward(batch.src, batch.tgt_in)
            loss_forward(logits, batch.tgt_out)
            backward(loss_backward())
            optimizer_step()
        wall = device.clock() - started
    finally:
        unwrap_functions(originals)
        if threads_before is None:
            del os.environ[THREADS_ENV_VAR]
        else:
            os.environ[THREADS_ENV_VAR] = threads_before
    return {"config": cfg, "steps": steps, "wall_s": wall, "kinds": kinds,
            "modules": modules, "functions": functions, "phases": phases}


def report(p: dict) -> None:
    cfg, n = p["config"], p["steps"]
    step_ms = 1000 * p["wall_s"] / n

    def ms(seconds):
        return 1000 * seconds / n

    def share(seconds):
        return f"{100 * ms(seconds) / step_ms:.1f}%"

    print(f"profile of one training step: {cfg.name} config ({cfg.description}), batch {cfg.shape}, "
          f"mean of {n} steps: {step_ms:,.0f} ms/step (timers included)")

    phases = p["phases"]
    rows = [[k, ms(v), share(v)] for k, v in phases.total.items()]
    rows.append(["(outside the phases: loop, timers)", ms(p["wall_s"] - sum(phases.total.values())),
                 share(p["wall_s"] - sum(phases.total.values()))])
    print_table("1. The step, phase by phase", ["phase", "ms/step", "share"], rows)

    # per layer: top-level pieces and the layers of each stack, children included
    modules = p["modules"]
    rows = []
    for label, kind in p["kinds"].items():
        depth = label.count(".")
        is_layer = label.startswith(("encoder.layers.", "decoder.layers.")) and depth == 2
        if not (is_layer or (depth == 0 and label not in ("model", "encoder", "decoder"))):
            continue
        fwd, bwd = modules.total[(label, "forward")], modules.total[(label, "backward")]
        rows.append([label, kind, ms(fwd), ms(bwd), ms(fwd + bwd), share(fwd + bwd)])
    print_table("2. Per layer, model order (time includes the layer's children)",
                ["module", "type", "forward ms", "backward ms", "total ms", "share"], rows,
                note="the model's own code between layers (masks, id checks) is under 'model' in table 3.")

    by_type = defaultdict(lambda: [0.0, 0.0, 0])
    for (label, method), seconds in modules.self_time.items():
        kind = p["kinds"][label]
        by_type[kind][0 if method == "forward" else 1] += seconds
    for label, kind in p["kinds"].items():
        by_type[kind][2] += 1
    rows = sorted(([kind, count, ms(f), ms(b), ms(f + b), share(f + b)] for kind, (f, b, count) in by_type.items()),
                  key=lambda r: -r[4])
    print_table("3. Per module type, sorted (self time: the module's own code, children excluded)",
                ["type", "modules", "forward ms", "backward ms", "total ms", "share"], rows)

    functions = p["functions"]
    rows = sorted(([name, functions.calls[name] // n, ms(functions.total[name]), ms(seconds), share(seconds)]
                   for name, seconds in functions.self_time.items()), key=lambda r: -r[3])
    print_table("4. Per math function (fast.*: the fast path; the others: functional.py, losses.py), "
                "sorted by self time",
                ["function", "calls/step", "total ms", "self ms", "share"], rows,
                note="self time excludes the wrapped functions it calls (e.g. attention_forward calls "
                     "softmax_forward and dropout_forward). Profiled as one pass over the whole batch on one "
                     "thread: unprofiled, a large batch runs in shards of at least 2,048 tokens on the library's threads "
                     "(minitransformer.parallel) and a small one's attention in slices on them (python -m benchmarks.run measures "
                     "that step).")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="benchmark", choices=sorted(STEP_CONFIGS))
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--math", default="fast", choices=["fast", "reference"],
                        help="the path the model runs (model.use_math): the fast one, as trained, or the textbook one")
    args = parser.parse_args(argv)
    try:
        Device(args.backend)
    except BackendUnavailableError as exc:
        raise SystemExit(f"cannot profile on {args.backend}: {exc}")
    report(profile(args.config, args.backend, args.steps, args.warmup, args.math))


if __name__ == "__main__":
    main()
