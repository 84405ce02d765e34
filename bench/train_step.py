#!/usr/bin/python3
"""train_step.py: times `sft train` end to end on a benchmark shape (bench/run.sh).

Runs the real command on a model dir made by `sft init` (from `bench_step config
SHAPE`) and on text records cut from the project's corpus
(tests/fixtures/hf/corpus/reference_corpus.json.gz), each longer than T tokens
so that every row of every batch holds exactly T tokens (--max-len T truncates;
loss on every token, as the PyTorch side). The optimizer matches bench_step and
torch_step.py: AdamW betas 0.9/0.95, weight decay 0.1, clip 1.0, a constant
learning rate. The step time is read from metrics.jsonl (the difference of
consecutive `elapsed_s`, which covers data loading, forward, backward, clipping
and AdamW); the peak RSS is the child's ru_maxrss. --dtype bf16 trains with
`--dtype bf16` (bf16 operands in the matrix products, fp32 master weights):
system sft-train-bf16. Prints one RESULT line.

    train_step.py SFT MODEL_DIR SHAPE MODE WORK_DIR --B N --T N --steps N --warmup N --threads N [--dtype fp32|bf16]"""
import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "hf", "corpus",
                      "reference_corpus.json.gz")


def write_data(path, count, min_chars):
    """count records of at least min_chars characters (about 4 per token in
    English text, so 8 * T characters leave a wide margin over T tokens), each
    the corpus strings in order, joined by blank lines until long enough."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        strings = json.load(f)["strings"]
    if sum(len(s) for s in strings) < min_chars:
        sys.exit(f"train_step.py: {CORPUS} holds fewer than {min_chars} characters")
    i = 0
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(count):
            parts, size = [], 0
            while size < min_chars:
                parts.append(strings[i % len(strings)])
                size += len(parts[-1]) + 2
                i += 1
            out.write(json.dumps({"text": "\n\n".join(parts)}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sft")
    ap.add_argument("model_dir")
    ap.add_argument("shape")
    ap.add_argument("mode", choices=("full", "lora"))
    ap.add_argument("work_dir")
    ap.add_argument("--B", type=int, required=True)
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    total = a.warmup + a.steps
    data = os.path.join(a.work_dir, "train.jsonl")
    write_data(data, a.B * total, 8 * a.T)
    out = os.path.join(a.work_dir, f"run-{a.shape}-{a.mode}-{a.dtype}")
    cmd = [a.sft, "train", "--model", a.model_dir, "--data", data, "--format", "text", "--max-len", str(a.T),
           "--batch-size", str(a.B), "--max-steps", str(total), "--lr", "1e-4", "--lr-schedule", "constant",
           "--warmup-steps", "0", "--warmup-ratio", "0", "--weight-decay", "0.1", "--adam-beta2", "0.95",
           "--max-grad-norm", "1", "--eval-every", "0", "--save-every", "0", "--threads", str(a.threads),
           "--seed", "1", "--out", out]
    if a.dtype != "fp32":
        cmd += ["--dtype", a.dtype]
    if a.mode == "lora":
        cmd += ["--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0"]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    elapsed, losses, tokens = [], [], []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train":
                elapsed.append(r["elapsed_s"])
                losses.append(r["loss"])
                tokens.append(r["tokens"])
    if len(elapsed) != total:
        sys.exit(f"train_step.py: {out}/metrics.jsonl has {len(elapsed)} training steps, expected {total}")
    step_s = [b - a_ for a_, b in zip([0.0] + elapsed[:-1], elapsed)][a.warmup:]
    ms = statistics.median(step_s) * 1e3
    system = "sft-train" if a.dtype == "fp32" else f"sft-train-{a.dtype}"
    print(f"RESULT system={system} shape={a.shape} mode={a.mode} threads={a.threads} B={a.B} T={a.T} ms={ms:.1f} "
          f"min_ms={min(step_s) * 1e3:.1f} tokens_s={a.B * a.T / (ms / 1e3):.1f} rss_mib={rss_mib:.0f} "
          f"loss0={losses[0]:.4f} loss={losses[-1]:.4f} supervised_tokens={tokens[-1]} steps={a.steps} "
          f"step_ms={','.join(f'{t * 1e3:.1f}' for t in step_s)}", flush=True)


if __name__ == "__main__":
    main()
