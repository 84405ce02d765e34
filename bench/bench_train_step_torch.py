#!/usr/bin/python3
"""bench_train_step_torch.py: the step of bench_train_step.c in PyTorch, for
comparison: a GPT-2-124M-shaped model (written here with torch.nn, the
transformers GPT-2 layout: tied embeddings, pre-LayerNorm blocks, tanh GELU,
eager attention) at B=4, T=256, float32 on CPU: forward, cross-entropy,
backward, clip_grad_norm_(1.0), AdamW(betas 0.9/0.95, weight decay 0.1).
LoRA: r=8, alpha=16 on the attention and MLP projections, base frozen.

    /usr/bin/python3 bench/bench_train_step_torch.py [full|lora|both] [STEPS] [THREADS]

Run with Debian's python3 (python3-torch). Each mode runs in its own
process so that its peak RSS is its own."""
import math, os, resource, subprocess, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, V, C, L, H, P = 4, 256, 50257, 768, 12, 12, 1024


class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.base.bias.requires_grad_(False)
        self.a = nn.Parameter(torch.empty(r, base.in_features))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.b = nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.attn_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x, mask):
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(P, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x, mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)


def run(mode, steps, threads):
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = GPT2()
    if mode == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        for blk in model.h:
            for name in ("c_attn", "attn_proj", "c_fc", "mlp_proj"):
                setattr(blk, name, LoRALinear(getattr(blk, name), 8, 16))
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    idx = torch.randint(0, V, (B, T))
    targets = torch.cat([idx[:, 1:], torch.full((B, 1), -100)], dim=1)
    times, cpu_total = [], 0.0
    for step in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = model(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        if step:
            cpu_total += time.process_time() - c0
    times = sorted(times[1:])
    median = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {mode:4s} B={B} T={T} threads={torch.get_num_threads()}: {median * 1e3:.0f} ms/step, "
          f"{B * T / median:.0f} tokens/s, {cpu_total / steps:.1f} CPU s/step, peak RSS {rss:.0f} MiB (trainable {sum(p.numel() for p in params)}, "
          f"loss {loss.item():.4f})", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "both"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if mode == "both":
        for m in ("full", "lora"):
            subprocess.run([sys.executable, __file__, m, str(steps), str(threads)], check=True)
    else:
        run(mode, steps, threads)
