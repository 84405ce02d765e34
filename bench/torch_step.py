#!/usr/bin/python3
"""torch_step.py: the PyTorch side of the training-step benchmark (bench/run.sh).

The same model configurations as bench/bench_step.c (its SHAPES table; run.sh
checks that both sides count the same parameters), written here with plain
torch.nn the way transformers' eager code path computes them:
  GPT-2: learned position embeddings, pre-LayerNorm blocks, tanh GELU, biases,
         tied lm_head (modeling_gpt2).
  Llama: RMSNorm, rotary embeddings (rotate_half layout), SwiGLU MLP, grouped-query
         attention (repeat_kv), no biases, tied lm_head (modeling_llama).
One training step = zero_grad, forward, cross-entropy (ignore index -100),
backward, clip_grad_norm_(1.0), AdamW (betas 0.9/0.95, weight decay 0.1 on
tensors with 2+ dimensions). LoRA (Hu et al. 2021, PEFT's layout): r=8,
alpha=16, no dropout, A kaiming-uniform, B zero, on the same modules sft
targets by default; the base weights frozen.

Run with Debian's /usr/bin/python3 (python3-torch 1.13), at PyTorch's best
setting on this machine: OMP_WAIT_POLICY=PASSIVE (set here before torch is
imported unless the caller set it), torch.set_num_threads(THREADS), and
OpenBLAS's own kernels for its fp32 products (an OPENBLAS_CORETYPE without
the CPU's AVX-512 is dropped, as the sft binary does for itself).

  torch_step.py step SHAPE [--mode full|lora] [--dtype fp32|bf16] [--steps N] [--warmup N] [--threads N]
  torch_step.py matmul SHAPE [--threads N] [--reps N]      # torch.matmul rate at the step's shapes, fp32 and bf16

Each result is one line `RESULT key=value ...` that run.sh reads; everything
else goes to stderr. Peak RSS is resource.getrusage(RUSAGE_SELF).ru_maxrss of
this process (so one configuration per process)."""
import argparse
import math
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def drop_slow_openblas_coretype():
    """Debian's torch does its fp32 products through OpenBLAS, which reads
    OPENBLAS_CORETYPE when it loads. A core type without AVX-512 forced on a
    CPU that has it halves the sgemm rate (bench/NOTES.md); PyTorch's best
    setting is OpenBLAS's own choice, as the sft binary makes it for itself.
    Kept with --keep-openblas-coretype. Returns the core type in force."""
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    if not forced or "--keep-openblas-coretype" in sys.argv:
        return forced or "auto"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return forced
    avx512 = all(x in flags for x in ("avx512f", "avx512vl", "avx512bw", "avx512dq"))
    if avx512 and forced.lower() not in ("skylakex", "cooperlake", "sapphirerapids"):
        del os.environ["OPENBLAS_CORETYPE"]
        return "auto"
    return forced


OPENBLAS_CORETYPE = drop_slow_openblas_coretype()

import torch  # noqa: E402  (after OMP_WAIT_POLICY and OPENBLAS_CORETYPE, read when the libraries load)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Keep in sync with SHAPES in bench/bench_step.c.
SHAPES = {
    "gpt2-6l": dict(arch="gpt2", layers=6, dim=384, heads=6, kv_heads=6, ffn=1536, vocab=50257, positions=1024, B=8, T=256),
    "gpt2-124m": dict(arch="gpt2", layers=12, dim=768, heads=12, kv_heads=12, ffn=3072, vocab=50257, positions=1024, B=4, T=256),
    "llama-100m": dict(arch="llama", layers=12, dim=768, heads=12, kv_heads=4, ffn=2048, vocab=32000, positions=2048, B=4, T=256),
}
LORA_R, LORA_ALPHA = 8, 16.0
NORM_EPS = 1e-5
ROPE_THETA = 10000.0


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * x A^T B^T, base frozen (PEFT's lora.Linear, no dropout)."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(LORA_R, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, LORA_R))
        self.scale = LORA_ALPHA / LORA_R

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t()) @ self.lora_B.t() * self.scale


class GPT2Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        C = s["dim"]
        self.C, self.NH = C, s["heads"]
        self.ln_1, self.ln_2 = nn.LayerNorm(C, eps=NORM_EPS), nn.LayerNorm(C, eps=NORM_EPS)
        self.c_attn, self.attn_c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_c_proj = nn.Linear(C, s["ffn"]), nn.Linear(s["ffn"], C)

    def forward(self, x, mask):
        B, T, C = x.shape
        HD = C // self.NH
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, HD).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_c_proj(y)
        return x + self.mlp_c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class RMSNorm(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        # LlamaRMSNorm: the variance in float32, then back to the input dtype.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)
        return self.weight * x.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, s):
        super().__init__()
        C, HD = s["dim"], s["dim"] // s["heads"]
        self.NH, self.NKV, self.HD = s["heads"], s["kv_heads"], HD
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(C), RMSNorm(C)
        self.q_proj = nn.Linear(C, self.NH * HD, bias=False)
        self.k_proj = nn.Linear(C, self.NKV * HD, bias=False)
        self.v_proj = nn.Linear(C, self.NKV * HD, bias=False)
        self.o_proj = nn.Linear(self.NH * HD, C, bias=False)
        self.gate_proj = nn.Linear(C, s["ffn"], bias=False)
        self.up_proj = nn.Linear(C, s["ffn"], bias=False)
        self.down_proj = nn.Linear(s["ffn"], C, bias=False)

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.NH, self.HD).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.NKV, self.HD).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.NKV, self.HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.NH // self.NKV
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.HD))
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.NH * self.HD)
        x = x + self.o_proj(y)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.gpt2 = s["arch"] == "gpt2"
        self.wte = nn.Embedding(s["vocab"], s["dim"])
        if self.gpt2:
            self.wpe = nn.Embedding(s["positions"], s["dim"])
            self.h = nn.ModuleList(GPT2Block(s) for _ in range(s["layers"]))
            self.ln_f = nn.LayerNorm(s["dim"], eps=NORM_EPS)
        else:
            self.h = nn.ModuleList(LlamaBlock(s) for _ in range(s["layers"]))
            self.ln_f = RMSNorm(s["dim"])
            HD = s["dim"] // s["heads"]
            inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD)
            freqs = torch.outer(torch.arange(s["T"], dtype=torch.float32), inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.register_buffer("cos", emb.cos(), persistent=False)
            self.register_buffer("sin", emb.sin(), persistent=False)
        # transformers' _init_weights: normal(0, 0.02) matrices, zero biases, unit norms.
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        x = self.wte(idx)
        if self.gpt2:
            x = x + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x, mask)
        else:
            cos, sin = self.cos[:T], self.sin[:T]
            for block in self.h:
                x = block(x, mask, cos, sin)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied lm_head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.view(-1), ignore_index=-100)


LORA_TARGETS = {"gpt2": ("c_attn", "attn_c_proj", "c_fc", "mlp_c_proj"),
                "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}


def matmul_param_count(model):
    """Parameters that take part in a matrix product: every Linear weight and
    the (tied) lm_head; embedding lookups, norms and biases left out. The N of
    the 6N + 12 L d T FLOPs per token (bench/NOTES.md)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return n + model.wte.weight.numel()


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_step(args):
    s = SHAPES[args.shape]
    B, T = s["B"], s["T"]
    torch.manual_seed(1)
    model = Model(s)
    total_params = sum(p.numel() for p in model.parameters())
    if args.mode == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        for block in model.h:
            for name in LORA_TARGETS[s["arch"]]:
                setattr(block, name, LoRALinear(getattr(block, name)))
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=args.foreach)
    # The batch of bench_step.c: token ids from the same LCG, targets shifted, the last position of each row ignored.
    state, ids = 12345, []
    for _ in range(B * T):
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        ids.append((state >> 8) % s["vocab"])
    idx = torch.tensor(ids, dtype=torch.long).view(B, T)
    targets = torch.cat([idx[:, 1:], torch.full((B, 1), -100, dtype=torch.long)], dim=1)
    bf16 = args.dtype == "bf16"
    times, cpu_times, losses = [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"torch {args.shape} {args.mode} {args.dtype} step {step}: {dt * 1e3:.0f} ms (cpu {cpu * 1e3:.0f} ms) loss {losses[-1]:.4f}",
              file=sys.stderr, flush=True)
        if step >= args.warmup:
            times.append(dt)
            cpu_times.append(cpu)
    median = statistics.median(times)
    print(f"RESULT system=torch-{args.dtype} shape={args.shape} mode={args.mode} threads={torch.get_num_threads()} "
          f"openblas_coretype={OPENBLAS_CORETYPE} "
          f"B={B} T={T} ms={median * 1e3:.1f} min_ms={min(times) * 1e3:.1f} "
          f"cpu_ms={statistics.median(cpu_times) * 1e3:.1f} tokens_s={B * T / median:.1f} "
          f"rss_mib={rss_mib():.0f} params={total_params} matmul_params={matmul_param_count(model)} "
          f"trainable={trainable} loss0={losses[0]:.4f} loss={losses[-1]:.4f} steps={args.steps} "
          f"step_ms={','.join(f'{t * 1e3:.1f}' for t in times)}", flush=True)


def step_matmul_shapes(s):
    """(M, K, N, count) of the products of one training step: for each linear
    [in -> out] applied to B*T rows, the forward [BT, in] x [in, out], the
    input gradient [BT, out] x [out, in] and the weight gradient
    [out, BT] x [BT, in]; the same for the lm_head."""
    BT, C, I = s["B"] * s["T"], s["dim"], s["ffn"]
    HD = C // s["heads"]
    if s["arch"] == "gpt2":
        linears = [(C, 3 * C), (C, C), (C, I), (I, C)]
    else:
        kv = s["kv_heads"] * HD
        linears = [(C, C), (C, kv), (C, kv), (C, C), (C, I), (C, I), (I, C)]
    out = []
    for (i, o) in linears:
        out += [(BT, i, o, s["layers"]), (BT, o, i, s["layers"]), (o, BT, i, s["layers"])]
    V = s["vocab"]
    out += [(BT, C, V, 1), (BT, V, C, 1), (V, BT, C, 1)]
    return out


def run_matmul(args):
    """The rate of torch.matmul over the step's product shapes, weighted as the
    step weights them (total FLOPs / total time), for float32 and bfloat16
    operands (oneDNN / mkldnn's bf16 path on AVX512_BF16 CPUs)."""
    s = SHAPES[args.shape]
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        total_flops, total_s = 0.0, 0.0
        for (M, K, N, count) in step_matmul_shapes(s):
            a, b = torch.randn(M, K).to(dtype), torch.randn(K, N).to(dtype)
            c = torch.matmul(a, b)  # warm-up
            best = float("inf")
            for _ in range(args.reps):
                t0 = time.perf_counter()
                torch.matmul(a, b, out=c)
                best = min(best, time.perf_counter() - t0)
            total_flops += 2.0 * M * K * N * count
            total_s += best * count
            print(f"torch.matmul {name} {M}x{K}x{N}: {2.0 * M * K * N / best / 1e9:.1f} GFLOP/s", file=sys.stderr)
        print(f"RESULT kind=matmul lib=torch dtype={name} shape={args.shape} threads={torch.get_num_threads()} "
              f"openblas_coretype={OPENBLAS_CORETYPE} "
              f"gflops={total_flops / total_s / 1e9:.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("step", "matmul"))
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("--mode", choices=("full", "lora"), default="full")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3, help="matmul: repetitions per shape (best kept)")
    ap.add_argument("--keep-openblas-coretype", action="store_true",
                    help="keep an OPENBLAS_CORETYPE that lacks the CPU's AVX-512 (default: drop it, as sft does)")
    ap.add_argument("--foreach", action=argparse.BooleanOptionalAction, default=None,
                    help="AdamW's multi-tensor path (default: PyTorch's own choice)")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be at least 1 and --warmup at least 0")
    torch.set_num_threads(args.threads)
    (run_step if args.what == "step" else run_matmul)(args)


if __name__ == "__main__":
    main()
