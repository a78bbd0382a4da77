"""What every benchmark needs: the device and its clock, the two model configurations and
their batches, the machine's description, its large-matmul rate, and small helpers to
summarise timings and print tables.

A GPU runs asynchronously: a CuPy call returns as soon as the work is *queued*. Reading
the clock without waiting would time the queueing, not the work, so every timing here
goes through :meth:`Device.sync` first.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np

from minitransformer import backend as mt_backend
from minitransformer.codon.data import generate_pairs, protein_vocabulary, rna_vocabulary
from minitransformer.codon.train import CodonRecipe, encode_pairs
from minitransformer.training import Batch
from minitransformer.transformer import TransformerConfig


# --------------------------------------------------------------------------------------
# The device: which array library, and how to wait for it
# --------------------------------------------------------------------------------------
class Device:
    """The backend being measured (``"numpy"`` or ``"cupy"``) and its clock."""

    def __init__(self, name: str = "numpy"):
        self.name = mt_backend.resolve_backend_name(name)
        self.xp = mt_backend.get_backend(self.name)   # one clear sentence if CuPy is missing

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def sync(self) -> None:
        """Wait until the GPU has finished everything queued (nothing to wait for on the CPU)."""
        if self.is_gpu:
            import cupy
            cupy.cuda.Device().synchronize()

    def clock(self) -> float:
        """Seconds, read after the device has caught up."""
        self.sync()
        return time.perf_counter()

    def asarray(self, a):
        return mt_backend.asarray(a, self.name)


def torch_device_for(device: Device):
    """The torch device matching ours (CUDA for a GPU run, if torch can see one), or None
    when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    if device.is_gpu:
        return torch.device("cuda") if torch.cuda.is_available() else None
    return torch.device("cpu")


def torch_sync(torch_device) -> None:
    import torch
    if torch_device is not None and torch_device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------
# The two configurations
# --------------------------------------------------------------------------------------
@dataclass
class StepConfig:
    """A model and the shape of one training batch."""

    name: str
    model: TransformerConfig
    batch_size: int
    protein_len: int   #: residues per target sequence (no padding: every sequence is this long)
    src_len: int       #: source tokens per sequence
    tgt_len: int       #: decoder positions = protein_len + 1 (start token in, end token out)
    description: str

    @property
    def shape(self) -> str:
        return f"{self.batch_size}x{self.src_len}->{self.tgt_len}"


def benchmark_config(seed: int = 0) -> StepConfig:
    """d_model 128, 8 heads, d_ff 512, 3+3 layers, post-LN, dropout 0.1; 64 sequences of
    protein length 30: sources of 92 tokens (90 nucleotides between a start and an end
    token), decoder inputs of 31 tokens (start + 30 residues)."""
    model = TransformerConfig(src_vocab_size=len(rna_vocabulary()), tgt_vocab_size=len(protein_vocabulary()),
                              d_model=128, n_heads=8, d_ff=512, n_encoder_layers=3, n_decoder_layers=3,
                              dropout=0.1, norm_first=False, dtype="float32", seed=seed)
    return StepConfig("benchmark", model, batch_size=64, protein_len=30, src_len=92, tgt_len=31,
                      description="d128 h8 ff512 3+3 layers, 64 seqs, protein length 30")


def codon_config(seed: int = 0) -> StepConfig:
    """The codon demo's model (``CodonRecipe()`` defaults: d_model 64, 4 heads, d_ff 256,
    2+2 layers) with one batch of about ``recipe.max_tokens`` source nucleotides at protein
    length 50: 1200 // 150 = 8 sequences of 150 nucleotides."""
    recipe = CodonRecipe()
    protein_len = 50
    batch_size = max(1, recipe.max_tokens // (3 * protein_len))
    return StepConfig("codon demo", recipe.model_config(seed=seed, dtype="float32"), batch_size=batch_size,
                      protein_len=protein_len, src_len=3 * protein_len, tgt_len=protein_len + 1,
                      description=f"CodonRecipe() d{recipe.d_model} h{recipe.n_heads} ff{recipe.d_ff} "
                                  f"{recipe.n_encoder_layers}+{recipe.n_decoder_layers} layers, "
                                  f"{batch_size} seqs, protein length {protein_len}")


def gpu_config(seed: int = 0) -> StepConfig:
    """A model the size a GPU is for: d_model 512, 8 heads, d_ff 2048, 6+6 layers, post-LN,
    dropout 0.1; 128 sequences of protein length 100 (sources of 302 tokens, decoder inputs
    of 101). About 7.4 TFLOP a step (matmuls): timed on a GPU only (:func:`step_configs`)."""
    model = TransformerConfig(src_vocab_size=len(rna_vocabulary()), tgt_vocab_size=len(protein_vocabulary()),
                              d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6,
                              dropout=0.1, norm_first=False, dtype="float32", seed=seed)
    return StepConfig("GPU-sized", model, batch_size=128, protein_len=100, src_len=302, tgt_len=101,
                      description="d512 h8 ff2048 6+6 layers, 128 seqs, protein length 100")


STEP_CONFIGS = {"benchmark": benchmark_config, "codon": codon_config}

#: Configurations too large for a CPU run of the benchmarks: timed on a GPU only.
GPU_STEP_CONFIGS = {"gpu": gpu_config}


def step_configs(device: Device) -> dict:
    """The training-step configurations to time on ``device``: :data:`STEP_CONFIGS`, and on a
    GPU also :data:`GPU_STEP_CONFIGS`."""
    return {**STEP_CONFIGS, **(GPU_STEP_CONFIGS if device.is_gpu else {})}


def make_batch(cfg: StepConfig, seed: int = 0) -> Batch:
    """A NumPy batch of real codon pairs of exactly the configured shape (no padding)."""
    pairs = generate_pairs(cfg.batch_size, cfg.protein_len, cfg.protein_len, table=1, seed=seed)
    rna_vocab, protein_vocab = rna_vocabulary(), protein_vocabulary()
    batch = encode_pairs(pairs["rna"], pairs["protein"], rna_vocab, protein_vocab)
    extra = cfg.src_len - batch.src.shape[1]
    if extra == 2:   # the benchmark config: start and end tokens around the nucleotides
        b = batch.src.shape[0]
        src = np.concatenate([np.full((b, 1), rna_vocab.bos_id), batch.src, np.full((b, 1), rna_vocab.eos_id)],
                             axis=1)
        batch = Batch(src, batch.tgt_in, batch.tgt_out, batch.n_tokens)
    elif extra != 0:
        raise ValueError(f"no rule to make sources of length {cfg.src_len} from {batch.src.shape[1]} nucleotides")
    assert batch.src.shape == (cfg.batch_size, cfg.src_len) and batch.tgt_in.shape == (cfg.batch_size, cfg.tgt_len)
    return batch


# --------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------
def blas_threads() -> tuple[int, str]:
    """(threads NumPy's BLAS uses, how we know): threadpoolctl if installed, else the
    environment variables OpenBLAS reads, else the number of CPUs this process may use."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return int(pools[0]["num_threads"]), "threadpoolctl"
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), f"${var}"
    return usable_cpus(), "CPUs usable by this process (threadpoolctl not installed)"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> dict:
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return {k: blas.get(k) for k in ("name", "version", "openblas configuration") if k in blas}
    except Exception:  # older NumPy: no mode="dicts"
        return {}


def machine_info(device: Device) -> dict:
    threads, source = blas_threads()
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "numpy": np.__version__,
        "blas": _blas_info(),
        "numpy_blas_threads": threads,
        "numpy_blas_threads_source": source,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "backend": device.name,
    }
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.cuda.is_available()
    except ImportError:
        info["torch"] = None
    if device.is_gpu:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info["cupy"] = cupy.__version__
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return info


def matmul_rate(device: Device, n: int | None = None, repeats: int = 7) -> dict:
    """The machine's own limit: GFLOP/s of a large float32 product ``a @ b`` (median of
    ``repeats``, after one warm-up). A product of two n x n matrices is 2 n^3 FLOPs."""
    n = n or (4096 if device.is_gpu else 2048)
    rng = np.random.default_rng(0)
    a = device.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = device.asarray(rng.standard_normal((n, n), dtype=np.float32))
    a @ b
    times = []
    for _ in range(repeats):
        start = device.clock()
        a @ b
        times.append(device.clock() - start)
    flops = 2.0 * n ** 3
    return {"n": n, "repeats": repeats, "median_s": statistics.median(times),
            "gflops": flops / statistics.median(times) / 1e9, "best_gflops": flops / min(times) / 1e9}


def small_matmul_latency(device: Device, m: int = 200, k: int = 64, n: int = 256, repeats: int = 50) -> dict:
    """Median milliseconds of one small product, (200 x 64) @ (64 x 256): the size of a
    feed-forward product in one decoding step of 200 sequences. It should take well under
    a millisecond; a multi-threaded BLAS on a busy machine can take a scheduler time slice
    (several ms) for every such call, waiting for its other threads to be scheduled."""
    rng = np.random.default_rng(0)
    a = device.asarray(rng.standard_normal((m, k), dtype=np.float32))
    b = device.asarray(rng.standard_normal((k, n), dtype=np.float32))
    a @ b
    times = []
    for _ in range(repeats):
        start = device.clock()
        a @ b
        times.append(device.clock() - start)
    median = statistics.median(times)
    return {"shape": f"({m}x{k}) @ ({k}x{n})", "median_ms": 1000 * median, "gflops": 2.0 * m * k * n / median / 1e9}


def layer_matmul_rates(device: Device, rows: int, d: int, f: int, repeats: int = 5) -> list[dict]:
    """GFLOP/s of the three products of one linear layer d -> f over ``rows`` positions, at
    its real shapes: forward y = x W, backward dx = dy W^T and dW = x^T dy. Same FLOPs,
    different shapes: a BLAS that is fast on all three runs the backward at the forward's
    rate; one that is not shows it here (compare with the large-matmul rate)."""
    rng = np.random.default_rng(0)
    x = device.asarray(rng.standard_normal((rows, d), dtype=np.float32))
    w = device.asarray(rng.standard_normal((d, f), dtype=np.float32))
    dy = device.asarray(rng.standard_normal((rows, f), dtype=np.float32))
    products = [("forward  y = x @ W", f"({rows}x{d}) @ ({d}x{f})", lambda: x @ w),
                ("backward dx = dy @ W.T", f"({rows}x{f}) @ ({f}x{d})", lambda: dy @ w.T),
                ("backward dW = x.T @ dy", f"({d}x{rows}) @ ({rows}x{f})", lambda: x.T @ dy)]
    out = []
    for name, shape, product in products:
        product()
        times = []
        for _ in range(repeats):
            start = device.clock()
            product()
            times.append(device.clock() - start)
        out.append({"product": name, "shape": shape,
                    "gflops": 2.0 * rows * d * f / statistics.median(times) / 1e9})
    return out


def torch_matmul_rate(torch_device, n: int = 2048, repeats: int = 7) -> dict | None:
    """The same large product in PyTorch (its BLAS may differ from NumPy's)."""
    if torch_device is None:
        return None
    import torch
    n = 4096 if torch_device.type == "cuda" else n
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(torch_device)
    b = torch.randn(n, n, generator=g).to(torch_device)
    a @ b
    times = []
    for _ in range(repeats):
        torch_sync(torch_device)
        start = time.perf_counter()
        a @ b
        torch_sync(torch_device)
        times.append(time.perf_counter() - start)
    return {"n": n, "repeats": repeats, "gflops": 2.0 * n ** 3 / statistics.median(times) / 1e9}


# --------------------------------------------------------------------------------------
# Summaries and tables
# --------------------------------------------------------------------------------------
def summarize(seconds: list[float]) -> dict:
    """Median, fastest and spread (25th to 75th percentile) of a list of timings, in ms."""
    ms = sorted(1000.0 * s for s in seconds)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"n": len(ms), "median_ms": statistics.median(ms), "min_ms": ms[0], "p25_ms": q[0], "p75_ms": q[2]}


def percent(fraction) -> str | None:
    """A fraction as a percentage with one decimal ('47.6%'), or None."""
    return None if fraction is None else f"{100 * fraction:.1f}%"


def fmt(value, digits: int = 3) -> str:
    """A number with about ``digits`` significant digits (thousands separated), or '-'."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    value = float(value)
    if value != value:
        return "nan"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{max(0, digits - 1 - int(np.log10(abs(value))))}f}"


def print_table(title: str, header: list[str], rows: list[list], note: str | None = None) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[fmt(c) for c in list(row) + [None] * (len(header) - len(row))] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(header)]

    def line(values):
        return "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    print(f"\n{title}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print(line(r))
    if note:
        print(note)
