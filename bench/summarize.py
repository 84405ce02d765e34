#!/usr/bin/python3
"""summarize.py: the table of bench/run.sh from its RESULT lines.

Reads a results file (one `RESULT key=value ...` line per measurement, as
bench_step, torch_step.py and run.sh's `sft train` timing print them) and
prints, per shape and mode, one row per system:

  ms/step      median of every timed step (after warm-up) of every run of the system
  best ms      the fastest single step of all runs (on a shared machine: the least disturbed)
  tok/s        B*T / ms/step
  CPU ms       process CPU time per step, all threads (not for sft train)
  RSS MiB      the largest peak RSS of the runs (getrusage ru_maxrss)
  GFLOP/s      model FLOPs per token x tokens/s; FLOPs per token = 6N + 12 L d T for
               full fine-tuning, 4N + 12 L d T for LoRA (no weight gradients), with N
               the parameters of the matrix products (linear weights + lm_head)
  %sgemm       GFLOP/s over OpenBLAS's sgemm rate at the step's shapes (bench_step sgemm; the
               best of the kernel sets measured: the one the environment forces, if any, and
               OpenBLAS's own choice for this CPU)
  %bf16        GFLOP/s over the bf16 matmul rate at the same shapes (the best of
               torch.matmul in bf16, oneDNN, and sft's own sft_gemm_bf16 from
               bench_step bf16gemm, when the CPU has AVX512_BF16)
  x torch      tokens/s over PyTorch fp32's (and over PyTorch bf16's); the issue's targets
               read sft (fp32) against torch fp32 and sft-bf16 against torch bf16

After the table: the ceilings measured, and, from bench_data's kind=data lines,
the share of data loading and tokenization in `sft train`'s step time (issue 8:
under 2%): the per-step batch building over the step, and the one-time load
(read, template, tokenize, mask, cache) spread over one epoch of steps.

    summarize.py RESULTS_FILE [--markdown]"""
import statistics
import sys

SHAPE_DIMS = {  # layers, d, T: keep in sync with SHAPES of bench_step.c / torch_step.py
    "gpt2-6l": (6, 384, 256),
    "gpt2-124m": (12, 768, 256),
    "llama-100m": (12, 768, 256),
}
SYSTEM_ORDER = ["sft", "sft-train", "sft-bf16", "sft-train-bf16", "torch-fp32", "torch-bf16"]
DATA_SHARE_TARGET = 2.0  # percent of the step (issue 8)


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.startswith("RESULT "):
                continue
            kv = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
            rows.append(kv)
    return rows


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def target_lines(groups):
    """Issue 8's targets, read off this run: sft fp32 at least 1.15x PyTorch fp32 on the
    GPT-2 shapes and above 80% of sgemm on gpt2-124m (full fine-tuning); sft bf16 at
    least 1.5x PyTorch bf16 autocast; peak RSS at or below PyTorch's (fp32 against fp32,
    bf16 against bf16). llm.c is measured by hand (bench/NOTES.md), not here."""
    lines = []
    for (shape, mode), (per, sgemm) in groups.items():
        checks = []

        def ratio(ours, theirs, target):
            if ours in per and theirs in per:
                r = per[ours]["tok_s"] / per[theirs]["tok_s"]
                checks.append(f"{ours} {r:.2f}x {theirs} (target {target}x: {'met' if r >= target else 'not met'})")

        def rss(ours, theirs):
            if per.get(ours, {}).get("rss") and per.get(theirs, {}).get("rss"):
                a, b = per[ours]["rss"], per[theirs]["rss"]
                checks.append(f"RSS {ours} {a:.0f} vs {theirs} {b:.0f} MiB ({'met' if a <= b else 'not met'})")

        ratio("sft", "torch-fp32", 1.15)
        ratio("sft-bf16", "torch-bf16", 1.5)
        if shape == "gpt2-124m" and mode == "full" and per.get("sft", {}).get("gflops") and sgemm:
            frac = per["sft"]["gflops"] / sgemm
            checks.append(f"sft {100 * frac:.0f}% of sgemm (target 80%: {'met' if frac >= 0.8 else 'not met'})")
        rss("sft", "torch-fp32")
        rss("sft-bf16", "torch-bf16")
        if checks:
            lines.append(f"targets {shape} {mode}: " + "; ".join(checks))
    return lines + ([""] if lines else [])


def data_share_lines(data_rows, steps, problems):
    """The share of data loading and tokenization in the step, per shape: the shortest
    full fine-tuning step of sft's systems (median) against bench_data's per-step and
    one-time costs."""
    lines = []
    for d in data_rows:
        shape = d["shape"]
        # The shortest of sft's full fine-tuning steps (fp32 or bf16, library or sft train): the
        # step the data path is the largest share of.
        step_ms, source = None, None
        for system in ("sft-train", "sft", "sft-train-bf16", "sft-bf16"):
            runs = [r for r in steps if r["shape"] == shape and r["mode"] == "full" and r["system"] == system]
            if runs:
                ms = statistics.median(float(x) for r in runs for x in r.get("step_ms", r["ms"]).split(","))
                if step_ms is None or ms < step_ms:
                    step_ms, source = ms, system
        setup_ms = float(d.get("setup_ms", 0))  # tokenizer, template, encoder: once per run
        batch_ms = float(d["batch_ms"])
        cold_ms = setup_ms + float(d["load_cold_ms"]) + float(d["loader_init_ms"])
        cached_ms = setup_ms + float(d["load_cached_ms"]) + float(d["loader_init_ms"])
        epoch = int(d["steps_per_epoch"])
        head = (f"data loading at {shape} ({d['records']} chat records, {int(d['tokens']) / 1e6:.2f}M tokens, "
                f"B={d['B']}, T={d['T']}): one-time load {cold_ms:.0f} ms cold (tokenizer; read, template, tokenize, cache), "
                f"{cached_ms:.0f} ms from the cache; batch building {batch_ms * 1e3:.1f} us per step")
        if step_ms is None:
            lines.append(head + " (no step time measured for this shape)")
            continue
        per_step = 100 * batch_ms / step_ms
        once = 100 * cold_ms / (step_ms * epoch)
        lines.append(head)
        lines.append(f"  against the {step_ms:.0f} ms step ({source}): per step {per_step:.2g}%, the one-time load "
                     f"over one epoch ({epoch} steps) {once:.2g}% cold, {100 * cached_ms / (step_ms * epoch):.2g}% "
                     f"cached, over a 100-step run {100 * cold_ms / (step_ms * 100):.2g}% cold; total over one epoch "
                     f"{per_step + once:.2g}% (target: under {DATA_SHARE_TARGET:g}%)")
        if per_step + once >= DATA_SHARE_TARGET:
            problems.append(f"{shape}: data loading and tokenization are {per_step + once:.2f}% of the step time "
                            f"(target under {DATA_SHARE_TARGET:g}%)")
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    markdown = "--markdown" in sys.argv[2:]
    rows = parse(sys.argv[1])
    # (lib, dtype, shape) -> GFLOP/s, best of the measurements; kind=matmul-alt lines are
    # OpenBLAS with other kernels than the ones the systems ran with.
    rates, alt_rates, coretypes = {}, {}, {}
    for r in rows:
        if r.get("kind") in ("matmul", "matmul-alt"):
            target = rates if r["kind"] == "matmul" else alt_rates
            key = (r["lib"], r["dtype"], r["shape"]) + (() if r["kind"] == "matmul" else (r.get("coretype", ""),))
            target[key] = max(target.get(key, 0.0), float(r["gflops"]))
            if r["lib"] == "openblas" and r["kind"] == "matmul":
                coretypes[r["shape"]] = r.get("coretype", "")
    steps = [r for r in rows if "system" in r]
    problems = []
    header = ["shape", "mode", "system", "ms/step", "best ms", "tok/s", "CPU ms", "RSS MiB", "GFLOP/s", "%sgemm", "%bf16",
              "x torch fp32", "x torch bf16"]
    table = []
    groups = {}  # (shape, mode) -> (per-system figures, sgemm ceiling), for the targets
    keys = []
    for r in steps:
        k = (r["shape"], r["mode"])
        if k not in keys:
            keys.append(k)
    for shape, mode in keys:
        L, d, T = SHAPE_DIMS[shape]
        group = [r for r in steps if r["shape"] == shape and r["mode"] == mode]
        # The ceiling is the best sgemm measured on this machine, whichever OpenBLAS kernels gave it.
        sgemm = max([v for k, v in rates.items() if k[:3] == ("openblas", "fp32", shape)] +
                    [v for k, v in alt_rates.items() if k[:3] == ("openblas", "fp32", shape)], default=None)
        bf16 = max([v for k, v in rates.items() if k[1:] == ("bf16", shape)], default=None)
        per_system = {}
        for system in SYSTEM_ORDER + sorted({r["system"] for r in group} - set(SYSTEM_ORDER)):
            runs = [r for r in group if r["system"] == system]
            if not runs:
                continue
            # Every timed step of every run together when the runs list them; else each run's median.
            if all("step_ms" in r for r in runs):
                ms = statistics.median(float(x) for r in runs for x in r["step_ms"].split(","))
            else:
                ms = statistics.median(float(r["ms"]) for r in runs)
            B, Tr = int(runs[0]["B"]), int(runs[0]["T"])
            tok_s = B * Tr / (ms / 1000.0)
            cpu = [float(r["cpu_ms"]) for r in runs if "cpu_ms" in r]
            rss = max((float(r["rss_mib"]) for r in runs if "rss_mib" in r), default=None)
            # sft train does not report the parameter count: the other systems of the group do.
            n = next((int(r["matmul_params"]) for r in runs + group if "matmul_params" in r), None)
            flops_tok = None if n is None else (6 if mode == "full" else 4) * n + 12 * L * d * T
            gflops = None if flops_tok is None else flops_tok * tok_s / 1e9
            best = min((float(r["min_ms"]) for r in runs if "min_ms" in r), default=None)
            per_system[system] = dict(ms=ms, best=best, tok_s=tok_s, cpu=statistics.median(cpu) if cpu else None, rss=rss,
                                      gflops=gflops, runs=len(runs), params=runs[0].get("params"),
                                      trainable=runs[0].get("trainable"))
        # sft-bf16 falls back to float32 products on a CPU without AVX512_BF16: say so beside its row.
        kernels = {r.get("products") for r in group if r["system"] in ("sft-bf16",) and r.get("products")}
        if kernels - {"avx512-bf16"}:
            problems.append(f"{shape} {mode} sft-bf16 ran its products with {', '.join(sorted(kernels))}, not "
                            f"avx512-bf16: this CPU (or build) has no AVX512_BF16 kernel")
        # Both sides must have built the same model: the same parameter counts.
        counts = {s: (v["params"], v["trainable"]) for s, v in per_system.items() if v["params"]}
        if len(set(counts.values())) > 1:
            problems.append(f"{shape} {mode}: parameter counts differ between systems: {counts}")
        torch32 = per_system.get("torch-fp32", {}).get("tok_s")
        torch16 = per_system.get("torch-bf16", {}).get("tok_s")
        groups[(shape, mode)] = (per_system, sgemm)
        for system, v in per_system.items():
            g = v["gflops"]
            if g is not None and sgemm and "bf16" not in system and g > sgemm:  # only bf16 may pass fp32 sgemm
                problems.append(f"{shape} {mode} {system}: {g:.1f} GFLOP/s is above the sgemm ceiling "
                                f"{sgemm:.1f}: the ceiling was measured while the machine was loaded; rerun")
            table.append([shape, mode, f"{system} ({v['runs']}x)", fmt(v["ms"], ".0f"), fmt(v["best"], ".0f"),
                          fmt(v["tok_s"], ".0f"),
                          fmt(v["cpu"], ".0f"), fmt(v["rss"], ".0f"), fmt(g, ".1f"),
                          "-" if g is None or not sgemm else f"{100 * g / sgemm:.0f}%",
                          "-" if g is None or not bf16 else f"{100 * g / bf16:.0f}%",
                          "-" if not torch32 else f"{v['tok_s'] / torch32:.2f}",
                          "-" if not torch16 else f"{v['tok_s'] / torch16:.2f}"])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *table)] if table else [len(h) for h in header]
        for row in [header] + table:
            print("  ".join(str(x).rjust(w) if i > 2 else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))
    print()
    for (lib, dtype, shape), v in sorted(rates.items()):
        label = f"{lib} {dtype}" + (f" (OPENBLAS_CORETYPE={coretypes.get(shape)})" if lib == "openblas" else
                                    " (sft_gemm_bf16, AVX512_BF16, split as the engine splits)" if lib == "sft" else
                                    " (torch.matmul)")
        print(f"matmul rate at the {shape} step's shapes: {label}: {v:.1f} GFLOP/s")
    for (lib, dtype, shape, coretype), v in sorted(alt_rates.items()):
        print(f"  for comparison, {lib} {dtype} with OPENBLAS_CORETYPE={coretype}: {v:.1f} GFLOP/s ({shape})")
    for line in target_lines(groups):
        print(line)
    for line in data_share_lines([r for r in rows if r.get("kind") == "data"], steps, problems):
        print(line)
    for p in problems:
        print("WARNING: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
