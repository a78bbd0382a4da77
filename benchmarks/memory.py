"""Peak memory of one training step (the benchmark config).

Run in a fresh process (``python -m benchmarks.memory``, which ``benchmarks.run`` does for
you), so that the process's maximum resident set size belongs to this measurement alone
and not to whatever ran before. It prints one JSON line.

Two figures for our step on the CPU:

* ``tracemalloc``: NumPy reports every array buffer it allocates to Python's
  ``tracemalloc``, so its peak is the most bytes held by Python objects and arrays at any
  moment: the model's parameters, gradients and Adam moments (alive all the time) plus
  the activations kept for the backward pass and the temporaries of the moment. We also
  report what is still held *after* the step: whatever the layers keep of their last
  forward pass (their caches) stays alive until the next forward pass replaces it.
* the process's maximum resident set size (``VmHWM`` on Linux, and ``ru_maxrss`` from
  ``resource.getrusage``; see :func:`ru_maxrss_bytes` for why both): what the operating system saw, including the Python interpreter, the imported libraries, BLAS buffers and
  memory the allocator keeps after it is freed.

On a GPU, ``tracemalloc`` sees nothing: the figure is then the size of CuPy's memory pool
after one step (the pool keeps every block it has handed out, so it is close to the
step's peak), and for PyTorch ``torch.cuda.max_memory_allocated``. For PyTorch on the CPU
only the resident set size is available (its allocator does not report to tracemalloc).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tracemalloc


def peak_rss_bytes() -> int | None:
    """The high-water mark of this program's resident memory: ``VmHWM`` from
    ``/proc/self/status`` (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def ru_maxrss_bytes() -> int:
    """``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB, macOS bytes).

    The portable figure, with one catch: Linux keeps it across ``exec``, so a process started
    from a large parent reports at least the parent's size. :func:`peak_rss_bytes` has no
    such catch; both are reported.
    """
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def rss_figures(prefix: str = "") -> dict:
    return {f"{prefix}peak_rss_bytes": peak_rss_bytes(), f"{prefix}ru_maxrss_bytes": ru_maxrss_bytes()}


def measure_ours(backend: str, config: str) -> dict:
    from .common import STEP_CONFIGS, Device
    from .train_step import OurStep

    device = Device(backend)
    cfg = STEP_CONFIGS[config]()
    after_import = rss_figures("after_import_")
    tracemalloc.start()
    step = OurStep(cfg, device)
    n_params = step.model.num_parameters()
    device.sync()
    built, _ = tracemalloc.get_traced_memory()    # weights, gradients, Adam moments, the batch
    step.step()                                   # the first step creates whatever is made lazily
    device.sync()
    tracemalloc.reset_peak()
    if device.is_gpu:
        import cupy
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
    step.step()                                   # the step measured
    device.sync()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {"framework": "ours", "backend": backend, "config": config, "parameters": n_params,
              "parameter_bytes": 4 * n_params,
              # parameters + gradients + Adam's two moments: 4 float32 arrays the size of the model
              "model_state_bytes": 16 * n_params,
              "tracemalloc_built_bytes": built, "tracemalloc_peak_bytes": peak,
              "tracemalloc_after_step_bytes": after,
              **rss_figures(), **after_import}
    if device.is_gpu:
        result["cupy_pool_bytes"] = int(pool.total_bytes())
    return result


def measure_torch(backend: str, config: str) -> dict:
    import torch

    from .common import STEP_CONFIGS, Device, torch_device_for
    from .train_step import OurStep, TorchStep

    cfg = STEP_CONFIGS[config]()
    torch_device = torch_device_for(Device(backend))
    ours = OurStep(cfg, Device("numpy"))     # only to build the same model and batch
    after_import = rss_figures("after_import_")
    theirs = TorchStep(ours, torch_device)
    del ours
    theirs.step()
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    theirs.step()
    result = {"framework": "torch", "backend": backend, "config": config, "torch_threads": torch.get_num_threads(),
              **rss_figures(), **after_import}
    if torch_device.type == "cuda":
        result["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--config", default="benchmark", choices=["benchmark", "codon"])
    parser.add_argument("--framework", default="ours", choices=["ours", "torch"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (torch only)")
    args = parser.parse_args(argv)
    if args.framework == "torch":
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        result = measure_torch(args.backend, args.config)
    else:
        result = measure_ours(args.backend, args.config)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
