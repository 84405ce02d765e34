#!/usr/bin/env python3
"""make_report_runs.py: synthetic run dirs for tests/cli/report.sh, written
from the formats in SPEC.md (metrics.jsonl, run.yaml, manifest.json) and
monitor/report.h (samples.jsonl).

  make_report_runs.py run DIR     one 300-step run: a loss spike at step 150,
                                  clipping in the first 40 steps, evaluations
                                  every 25 steps, samples with markup in them
                                  and one malformed line
  make_report_runs.py sweep DIR   DIR/trials/lr-*/ : three runs, one of them
                                  diverging, as `sft sweep` lays them out

Deterministic (a fixed seed); the Python standard library only."""
import json
import math
import os
import random
import sys


def write_run(path, lr, steps=300, spike_at=150, diverge=False, seed=1):
    rng = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for s in range(1, steps + 1):
            # A higher learning rate falls faster (up to the diverging one).
            # The floor is lowest at lr 3e-4, the sweep's best.
            speed = 30.0 * (2e-4 / lr) ** 0.5
            floor = 1.1 + 0.05 * abs(math.log10(lr / 3e-4))
            loss = floor + 2.4 * math.exp(-s / speed) + rng.gauss(0, 0.03)
            if diverge and s > 120:
                loss *= math.exp((s - 120) / 60.0)
            if s == spike_at:
                loss *= 2.5
            grad = 0.5 + 3.0 * math.exp(-s / 12.0) + abs(rng.gauss(0, 0.05))
            clipped = grad > 1.0
            rec = {"type": "train", "step": s, "epoch": s / 100.0, "loss": loss, "grad_norm": grad,
                   "grad_norm_clipped": min(grad, 1.0), "clipped": clipped,
                   "lr": lr * min(1.0, s / 20.0) * 0.5 * (1 + math.cos(math.pi * s / steps)),
                   "tokens": 2048, "tokens_per_s": 5200 + 300 * math.sin(s / 7.0), "elapsed_s": 0.39 * s}
            f.write(json.dumps(rec) + "\n")
            if s % 25 == 0:
                val = floor + 0.1 + 2.4 * math.exp(-s / speed)
                if diverge and s > 120:
                    val *= math.exp((s - 120) / 60.0)
                f.write(json.dumps({"type": "eval", "step": s, "epoch": s / 100.0, "val_loss": val,
                                    "val_tokens": 9000}) + "\n")
    with open(os.path.join(path, "run.yaml"), "w") as f:
        f.write("model: models/tiny-llama\ndata: data/train.jsonl\nlr: %g\nmax_grad_norm: 1.0\n"
                "epochs: 3\nnote: \"<not a tag> & co\"\n" % lr)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump({"program": "sft", "version": "0.1.0", "seed": 42, "threads": 2}, f, indent=2)
        f.write("\n")
    with open(os.path.join(path, "samples.jsonl"), "w") as f:
        f.write(json.dumps({"step": 150, "prompt": "What is 2 + 3?", "output": "2 + 3 = 5",
                            "reference": "2 + 3 = 5"}) + "\n")
        f.write(json.dumps({"step": 300, "prompt": "Write <b>bold</b> & escape it",
                            "output": "<b>bold</b> &amp; done", "reference": "**bold**"}) + "\n")
        f.write("{\"step\": 300, \"prompt\": \"no output here\"}\n")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "sweep"):
        sys.exit(__doc__)
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "run":
        write_run(out, 2e-4)
    else:
        for i, (lr, diverge) in enumerate([(1e-4, False), (3e-4, False), (3e-3, True)]):
            write_run(os.path.join(out, "trials", "lr-%g" % lr), lr, spike_at=-1, diverge=diverge, seed=10 + i)


if __name__ == "__main__":
    main()
