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
  %bf16        GFLOP/s over torch.matmul's bf16 rate at the same shapes
  x torch      tokens/s over PyTorch fp32's (and over PyTorch bf16's)

    summarize.py RESULTS_FILE [--markdown]"""
import statistics
import sys

SHAPE_DIMS = {  # layers, d, T: keep in sync with SHAPES of bench_step.c / torch_step.py
    "gpt2-6l": (6, 384, 256),
    "gpt2-124m": (12, 768, 256),
    "llama-100m": (12, 768, 256),
}
SYSTEM_ORDER = ["sft", "sft-train", "torch-fp32", "torch-bf16"]


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
        bf16 = rates.get(("torch", "bf16", shape))
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
        # Both sides must have built the same model: the same parameter counts.
        counts = {s: (v["params"], v["trainable"]) for s, v in per_system.items() if v["params"]}
        if len(set(counts.values())) > 1:
            problems.append(f"{shape} {mode}: parameter counts differ between systems: {counts}")
        torch32 = per_system.get("torch-fp32", {}).get("tok_s")
        torch16 = per_system.get("torch-bf16", {}).get("tok_s")
        for system, v in per_system.items():
            g = v["gflops"]
            if g is not None and sgemm and system != "torch-bf16" and g > sgemm:  # only bf16 may pass fp32 sgemm
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
        label = f"{lib} {dtype}" + (f" (OPENBLAS_CORETYPE={coretypes.get(shape)})" if lib == "openblas" else "")
        print(f"matmul rate at the {shape} step's shapes: {label}: {v:.1f} GFLOP/s")
    for (lib, dtype, shape, coretype), v in sorted(alt_rates.items()):
        print(f"  for comparison, {lib} {dtype} with OPENBLAS_CORETYPE={coretype}: {v:.1f} GFLOP/s ({shape})")
    for p in problems:
        print("WARNING: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
