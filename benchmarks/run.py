"""Run the benchmarks, print them as tables, save them as JSON.

    python -m benchmarks.run [--backend numpy|cupy] [--quick] [--only train,decode,memory,codon]
                             [--out results.json]

Parts (all by default; ``--quick`` runs fewer steps and sequences and skips ``codon``):

* ``train``:  one training step of two configurations, ours and PyTorch's, interleaved;
  GFLOP/s against the machine's large-matmul rate;
* ``decode``: greedy decoding with and without the KV cache, and beam search;
* ``memory``: peak memory of one training step (in a fresh process);
* ``codon``:  time from scratch to 99% exact match on the codon task (minutes).

``benchmarks/README.md`` explains every number.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from minitransformer.backend import BackendUnavailableError

from .common import (STEP_CONFIGS, Device, fmt, layer_matmul_rates, machine_info, matmul_rate, percent,
                     print_table, small_matmul_latency, step_configs, torch_device_for, torch_matmul_rate)

PARTS = ("train", "decode", "memory", "codon")

FULL = dict(steps=20, warmup=3, block=5, decode_sequences=1000)
QUICK = dict(steps=6, warmup=1, block=3, decode_sequences=200)


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mib(n_bytes) -> float | None:
    return None if n_bytes is None else n_bytes / 2 ** 20


# --------------------------------------------------------------------------------------
# The parts: each measures, prints its tables and returns what goes into the JSON
# --------------------------------------------------------------------------------------
def run_train(device, torch_device, settings, matmul) -> dict:
    from .train_step import check_same_logits, measure_training

    configs = step_configs(device)
    results = {"configs": list(configs)}
    if torch_device is not None:
        results["max_abs_logit_difference_eval_mode"] = {
            name: check_same_logits(make()) for name, make in configs.items()}
    for key, make in configs.items():
        cfg = make()
        log(f"training step, {cfg.name} config ({cfg.description})")
        results[key] = measure_training(cfg, device, steps=settings["steps"], warmup=settings["warmup"],
                                        block=settings["block"], torch_device=torch_device,
                                        matmul_probe=lambda: matmul_rate(device, repeats=1)["gflops"])
    cfg = STEP_CONFIGS["benchmark"]()
    rows, d, f = cfg.batch_size * cfg.src_len, cfg.model.d_model, cfg.model.d_ff
    results["layer_matmuls"] = layer_matmul_rates(device, rows, d, f)
    print_train(results, settings, matmul)
    return results


def print_train(results, settings, matmul) -> None:
    rows = []
    for key in results["configs"]:
        r = results[key]
        for who in ("ours", "torch"):
            s = r[who]
            if s is None:
                continue
            who_label = f"ours, {r['shards']} shard{'s' if r['shards'] > 1 else ''}" if who == "ours" else who
            rows.append([f"{r['config']} ({who_label})", r["shape"], s["median_ms"], f"{fmt(s['p25_ms'])}-{fmt(s['p75_ms'])}",
                         s["target_tokens_per_s"], r["flops"]["step"] / 1e9, s["gflops_per_s"],
                         percent(s["fraction_of_matmul_paired"]), percent(s["fraction_of_matmul"]),
                         r["ours_over_torch"] if who == "ours" else None])
    print_table(
        f"Training step: forward + backward + Adam, float32 (median of {settings['steps']} steps after "
        f"{settings['warmup']} warm-up, in alternating blocks of {settings['block']})",
        ["config", "batch BxS->T", "ms/step", "ms p25-p75", "target tok/s", "GFLOP/step", "GFLOP/s",
         "of matmul", "of median matmul", "ours/torch"], rows,
        note="'of matmul': each step's GFLOP/s over the large-matmul rate measured just before and just after "
             "it (their mean), median over the steps; 'of median matmul': the median step's GFLOP/s over the "
             "median of all those rates (" + ", ".join(f"{results[k]['config']} {fmt(results[k]['matmul_gflops'])}"
                                                      for k in results["configs"])
             + f" GFLOP/s; {fmt(matmul['gflops'])} at the start of the run). 'ours/torch' > 1: ours is "
               f"slower. Shards: the batch cut in this many parts, run at once on one core each "
               f"(minitransformer.parallel; small batches run whole).")
    print_table("The three products of one encoder feed-forward linear (benchmark config), alone",
                ["product", "shape", "GFLOP/s"], [[m["product"], m["shape"], m["gflops"]]
                                                  for m in results["layer_matmuls"]],
                note="equal FLOPs; a much lower rate for one shape means the BLAS handles that shape badly "
                     "on this machine (see README: threads on a busy machine).")
    if "max_abs_logit_difference_eval_mode" in results:
        diffs = results["max_abs_logit_difference_eval_mode"]
        print("same model on both sides: max |logits ours - torch| in eval mode = "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    for key in results["configs"]:
        r = results[key]
        f = r["flops"]
        sym = ", ".join(f"{k}={v}" for k, v in f["symbols"].items())
        rows = [[t["part"] + ": " + t["term"], t["formula"], t["per_layer"] / 1e6, t["layers"], t["forward"] / 1e6]
                for t in f["terms"]]
        rows.append(["forward total", "", None, None, f["forward"] / 1e6])
        rows.append(["backward = 2 x forward", "", None, None, f["backward"] / 1e6])
        rows.append(["step = 3 x forward", "", None, None, f["step"] / 1e6])
        print_table(f"FLOP count, {r['config']} config ({sym}); matmuls only, embeddings excluded",
                    ["term", "formula", "MFLOP/layer", "layers", "MFLOP"], rows)


def run_decode(device, settings) -> list:
    from .decode import measure_decoding

    n = settings["decode_sequences"]
    log(f"decoding {n} sequences at protein lengths 30 and 100 (cached, uncached, beam 4)")
    results = measure_decoding(device, n_sequences=n)
    rows = [[r["protein_len"], r["n_sequences"], r["encode_s"], r["cached_s"], r["uncached_s"], r["cache_speedup"], r["beam_s"],
             r["beam_over_cached"], r["identical_tokens"], r["sequences_ended_early"]] for r in results]
    note = ("fresh codon-demo model, random RNA, batches of 250, max_len = protein length + 1 "
            "(an untrained model rarely ends early, so every method decodes the same number of steps).\n"
            "'encoder s': the encoder pass alone, which every method also runs once per batch.")
    for r in results:
        if not r["identical_tokens"]:
            note += (f"\nL={r['protein_len']}: {r['n_sequences'] - r['identical_sequences']} of {r['n_sequences']} "
                     f"sequences differ; |logit gap| between the two choices at the first difference: "
                     + ", ".join(f"{g:.1e}" for g in r["mismatch_logit_gaps"])
                     + " (tiny gaps: near-ties decided by float32 rounding)")
    if n < 1000:
        note += f"\nQUICK MODE: {n} sequences per length instead of 1,000."
    print_table("Greedy decoding with / without KV cache, and beam search (width 4)",
                ["protein len", "sequences", "encoder s", "cached s", "uncached s", "speed-up", "beam s", "beam/cached",
                 "same tokens", "ended early"], rows, note=note)
    return results


def run_memory(device, threads, with_torch) -> dict:
    log("peak memory of one training step (benchmark config), in a fresh process")
    results = {}
    frameworks = ["ours"] + (["torch"] if with_torch else [])
    for framework in frameworks:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--backend", device.name, "--framework", framework,
               "--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        if done.returncode != 0:
            log(f"memory measurement ({framework}) failed:\n{done.stderr}")
            results[framework] = {"error": done.stderr[-2000:]}
            continue
        results[framework] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = results.get("ours", {}), results.get("torch", {})
    rows = []
    if "error" not in ours and "cupy_pool_bytes" not in ours:   # tracemalloc sees host memory only
        rows += [["ours: parameters + grads + Adam moments (16 B/parameter)", mib(ours["model_state_bytes"])],
                 ["ours: tracemalloc after building model, optimizer, batch", mib(ours["tracemalloc_built_bytes"])],
                 ["ours: tracemalloc peak during one step", mib(ours["tracemalloc_peak_bytes"])],
                 ["ours: tracemalloc still held after the step (layer caches)",
                  mib(ours["tracemalloc_after_step_bytes"])]]
    if "cupy_pool_bytes" in ours:
        rows.append(["ours: CuPy memory pool after one step (~ GPU peak)", mib(ours["cupy_pool_bytes"])])
    for who, r in (("ours", ours), ("torch", theirs)):
        if r and "error" not in r:
            rows += [[f"{who}: process peak RSS (VmHWM) / after imports", mib(r["peak_rss_bytes"]),
                      mib(r["after_import_peak_rss_bytes"])],
                     [f"{who}: resource.getrusage ru_maxrss / after imports", mib(r["ru_maxrss_bytes"]),
                      mib(r["after_import_ru_maxrss_bytes"])]]
    if theirs.get("cuda_max_allocated_bytes") is not None:
        rows.append(["torch: torch.cuda.max_memory_allocated", mib(theirs["cuda_max_allocated_bytes"])])
    print_table("Memory of one training step, benchmark config (MiB)", ["what", "MiB", "after imports"], rows,
                note="RSS growth (peak minus after imports) is the fair ours-vs-torch comparison: torch's own "
                     "libraries are larger. ru_maxrss survives exec on Linux, so in this child process it can "
                     "include the parent's size; VmHWM cannot.")
    return results


def run_codon(device, budget) -> dict:
    from .codon import measure_codon

    log(f"codon task from scratch to 99% exact (time_budget={budget:.0f} s)")
    r = measure_codon(device, time_budget=budget)
    curriculum = " -> ".join(f"L<={c['max_len']} @ step {c['step']} ({c['seconds']:.0f} s)" for c in r["curriculum"])
    tries = ", ".join(f"{100 * e['exact_match']:.2f}% @ step {e['step']}" for e in r["benchmark_evaluations"])
    rows = [["training seconds (optimizer steps only)", r["train_seconds"]],
            ["wall seconds (with curriculum checks)", r["wall_seconds"]],
            ["steps", r["steps"]],
            ["stopped because", r["stop_reason"]],
            [f"exact match on {r['eval_pairs']:,} fresh pairs, L 1-100", f"{100 * r['exact_match']:.2f}%"],
            ["residue accuracy", f"{100 * r['residue_accuracy']:.2f}%"],
            [f"exact match on {r['eval_pairs']:,} other fresh pairs", f"{100 * r['confirm_exact_match']:.2f}%"],
            ["reached 99% exact", r["reached_target"]]]
    print_table("Codon task: from scratch to 99% exact match on fresh pairs (CodonRecipe(), as the demo)", ["what", "value"], rows,
                note=f"curriculum: {curriculum}\nscored on the fresh pairs (clock stopped) after checks at 99%: "
                     f"{tries or 'never'} ({r['benchmark_evaluation_seconds']:.0f} s off the clock)")
    by_length = [[b["lengths"], b["n"], f"{100 * b['exact_match']:.1f}%", f"{100 * b['residue_accuracy']:.1f}%"]
                 for b in r["by_length"]]
    print_table("  by protein length", ["lengths", "pairs", "exact", "residues"], by_length)
    return r


# --------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps (6 after 1 warm-up) and sequences (200); skips codon unless --only names it")
    parser.add_argument("--only", default=None, help=f"comma-separated parts among {','.join(PARTS)}")
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/results-<backend>.json)")
    parser.add_argument("--codon-budget", type=float, default=1800.0,
                        help="time_budget (seconds) given to train_codon_model in the codon part (default 1800)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = parser.parse_args(argv)
    if args.only:
        parts = [p.strip() for p in args.only.split(",") if p.strip()]
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            parser.error(f"unknown part(s) {unknown}: choose among {', '.join(PARTS)}")
    else:
        parts = [p for p in PARTS if not (p == "codon" and args.quick)]
    args.parts = parts
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        device = Device(args.backend)
    except BackendUnavailableError as exc:
        sys.exit(f"cannot run the {args.backend} benchmarks: {exc}")
    settings = dict(QUICK if args.quick else FULL)
    out = args.out or os.path.join(os.path.dirname(__file__), f"results-{device.name}.json")

    info = machine_info(device)
    torch_device = None if args.no_torch else torch_device_for(device)
    if torch_device is not None:
        import torch
        info["torch_threads_default"] = torch.get_num_threads()
        if torch_device.type == "cpu":
            torch.set_num_threads(info["numpy_blas_threads"])   # the same number of threads on both sides
        info["torch_threads"] = torch.get_num_threads()
        info["torch_device"] = str(torch_device)

    log("large-matmul rate")
    matmul = matmul_rate(device)
    torch_matmul = torch_matmul_rate(torch_device)
    small = small_matmul_latency(device)
    results = {"machine": info, "settings": {**settings, "quick": args.quick, "parts": args.parts},
               "matmul": matmul, "torch_matmul": torch_matmul, "small_matmul": small}

    print(f"minitransformer benchmarks: backend {device.name}, float32"
          + ("   [QUICK MODE: fewer steps and sequences; numbers are rough]" if args.quick else ""))
    print(f"machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs (os.cpu_count() = {info['cpu_count']}), "
          f"load average {fmt(info['load_average_1min'])}" + (f", GPU {info['gpu']}" if "gpu" in info else ""))
    blas = info["blas"]
    print(f"numpy {info['numpy']} ({blas.get('name', '?')} {blas.get('version', '')}), BLAS threads "
          f"{info['numpy_blas_threads']} ({info['numpy_blas_threads_source']}); torch "
          f"{info.get('torch') or 'not installed'}"
          + (f", {info['torch_threads']} threads (default {info['torch_threads_default']}) on {info['torch_device']}"
             if torch_device is not None else ""))
    print(f"large matmul ({matmul['n']}x{matmul['n']} float32 a @ b, median of {matmul['repeats']}): "
          f"{device.name} {fmt(matmul['gflops'])} GFLOP/s (best {fmt(matmul['best_gflops'])})"
          + (f"; torch {fmt(torch_matmul['gflops'])} GFLOP/s" if torch_matmul else ""))
    print(f"small matmul {small['shape']} (one decoding step's feed-forward): {small['median_ms']:.3f} ms median")
    busy = (info["load_average_1min"] or 0) > info["cpus_usable"]
    if not device.is_gpu and info["numpy_blas_threads"] > 1 and (busy or small["median_ms"] > 1.0):
        print(f"WARNING: {'the machine is busy (load average above the CPU count); ' if busy else ''}"
              f"{'small products wait for the scheduler; ' if small['median_ms'] > 1.0 else ''}"
              f"multi-threaded BLAS timings are unreliable here. Compare with "
              f"OPENBLAS_NUM_THREADS=1 python -m benchmarks.run ...")

    def save():
        with open(out, "w") as f:
            json.dump(results, f, indent=1, default=str)

    if "train" in args.parts:
        results["train"] = run_train(device, torch_device, settings, matmul)
        save()
    if "decode" in args.parts:
        results["decode"] = run_decode(device, settings)
        save()
    if "memory" in args.parts:
        results["memory"] = run_memory(device, info["numpy_blas_threads"], torch_device is not None)
        save()
    if "codon" in args.parts:
        results["codon"] = run_codon(device, args.codon_budget)
        save()
    save()
    print(f"\nresults written to {out}")
    return results


if __name__ == "__main__":
    main()
