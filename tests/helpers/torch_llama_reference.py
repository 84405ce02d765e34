#!/usr/bin/python3
"""torch_llama_reference.py: writes a `sft parity` fixture folder for
Llama-family model dirs from an independent PyTorch implementation (autograd
for the gradients, torch.optim.AdamW for the steps), for the variants the HF
fixtures do not hold: Qwen2 q/k/v biases, llama3 rope scaling, a single KV
head. The architecture follows transformers' modeling_llama.py /
modeling_qwen2.py and modeling_rope_utils.py (eager attention, float32); the
entry layout and the recorded run follow tests/fixtures/hf/generate.py.

    /usr/bin/python3 tests/helpers/torch_llama_reference.py OUT_DIR NAME=MODEL_DIR...

Needs Debian's python3-torch (no transformers). Model dirs are symlinked
into OUT_DIR/models/NAME."""
import json, math, os, random, struct, sys

import torch
import torch.nn.functional as F


def load_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    kinds = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a:base + b]), dtype=kinds[info["dtype"]])
        out[name] = t.reshape(info["shape"]).to(torch.float32).clone()
    return out


def rope_inv_freq(cfg, head_dim):
    rp = cfg.get("rope_parameters") or {}
    rs = cfg.get("rope_scaling") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    kind = rp.get("rope_type") or rs.get("rope_type") or rs.get("type") or "default"
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if kind == "llama3":
        p = rp if rp.get("rope_type") == "llama3" else rs
        factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
        old = p["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


class Llama:
    def __init__(self, model_dir):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        c = self.cfg
        self.C, self.L = c["hidden_size"], c["num_hidden_layers"]
        self.NH = c["num_attention_heads"]
        self.NKV = c.get("num_key_value_heads") or self.NH
        self.HD = c.get("head_dim") or self.C // self.NH
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.tied = c.get("tie_word_embeddings", False)
        self.params = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        if self.tied:
            self.params.pop("lm_head.weight", None)
        for p in self.params.values():
            p.requires_grad_(True)
        self.inv_freq = rope_inv_freq(c, self.HD)

    def named(self):  # transformers' named_parameters order
        order = ["model.embed_tokens.weight"]
        for l in range(self.L):
            pre = f"model.layers.{l}."
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                order += [pre + m + s for s in (".weight", ".bias") if pre + m + s in self.params]
            order += [pre + "input_layernorm.weight", pre + "post_attention_layernorm.weight"]
        order += ["model.norm.weight"] + ([] if self.tied else ["lm_head.weight"])
        return [(n, self.params[n]) for n in order]

    def lin(self, x, name):
        w, b = self.params[name + ".weight"], self.params.get(name + ".bias")
        return F.linear(x, w, b)

    def norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def forward(self, ids):
        B, T = ids.shape
        P = self.params
        x = P["model.embed_tokens.weight"][ids]
        freqs = (self.inv_freq[:, None].float() @ torch.arange(T)[None, :].float()).t()  # [T, HD/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()

        def rot(t):
            h = t.shape[-1] // 2
            return torch.cat((-t[..., h:], t[..., :h]), dim=-1)

        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        for l in range(self.L):
            pre = f"model.layers.{l}."
            h = self.norm(x, P[pre + "input_layernorm.weight"])
            q = self.lin(h, pre + "self_attn.q_proj").view(B, T, self.NH, self.HD).transpose(1, 2)
            k = self.lin(h, pre + "self_attn.k_proj").view(B, T, self.NKV, self.HD).transpose(1, 2)
            v = self.lin(h, pre + "self_attn.v_proj").view(B, T, self.NKV, self.HD).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            g = self.NH // self.NKV
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
            att = (q @ k.transpose(-2, -1)) * self.HD ** -0.5
            att = att.masked_fill(mask, torch.finfo(torch.float32).min).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, self.NH * self.HD)
            x = x + self.lin(y, pre + "self_attn.o_proj")
            h = self.norm(x, P[pre + "post_attention_layernorm.weight"])
            x = x + self.lin(F.silu(self.lin(h, pre + "mlp.gate_proj")) * self.lin(h, pre + "mlp.up_proj"),
                             pre + "mlp.down_proj")
        x = self.norm(x, P["model.norm.weight"])
        head = P["model.embed_tokens.weight"] if self.tied else P["lm_head.weight"]
        return x @ head.t()


def stats(t, idx):
    f = t.detach().double().flatten()
    return {"shape": list(t.shape), "sum": f.sum().item(), "sumsq": (f * f).sum().item(), "idx": idx,
            "vals": [f[i].item() for i in idx]}


def pick_idx(n, k, seed):
    return sorted(random.Random(seed).sample(range(n), min(k, n)))


def loss_of(model, ids, labels):
    logits = model.forward(ids)
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100), logits


def run(name, model_dir, seed, lr=1e-3, B=2, T=24):
    torch.manual_seed(seed)
    model = Llama(model_dir)
    V = model.cfg["vocab_size"]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = ids.clone()
    labels[0, :8] = -100
    labels[1, -4:] = -100
    ref = {"dir": "models/" + name, "model": name, "batch_seed": seed, "input_ids": ids.tolist(),
           "labels": labels.tolist()}
    eos = model.cfg.get("eos_token_id")
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    with torch.no_grad():
        seq = ids[:1, :6].clone()
        out = []
        for _ in range(12):
            nxt = int(model.forward(seq)[0, -1].argmax())
            out.append(nxt)
            if nxt in eos:
                break
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
        ref["greedy"] = {"prompt": ids[0, :6].tolist(), "output": out}
    params = model.named()
    loss, logits = loss_of(model, ids, labels)
    logits = logits.detach()
    ref["loss"] = loss.item()
    ref["logsumexp"] = torch.logsumexp(logits.double(), dim=-1).tolist()
    ref["argmax"] = logits.argmax(-1).tolist()
    vidx = pick_idx(V, 64, seed)
    ref["logits_at"] = [{"b": b, "t": t, "vocab_idx": vidx, "vals": [logits[b, t, v].item() for v in vidx]}
                        for b, t in [(0, 0), (0, 7), (0, T - 1), (1, 3), (1, T - 1)]]
    loss.backward()
    ref["grad"] = {n: stats(p.grad, pick_idx(p.numel(), 16, len(n))) for n, p in params}
    ref["grad_norm_total_preclip"] = torch.sqrt(sum((p.grad.double() ** 2).sum() for _, p in params)).item()
    ref["clip_max_norm"] = 1.0
    ref["clip_returned_norm"] = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0).item()
    opt = torch.optim.AdamW([{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": 0.1},
                             {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8)
    ref["optimizer"] = {"type": "torch.optim.AdamW", "lr": lr, "betas": [0.9, 0.95], "eps": 1e-8,
                        "weight_decay": 0.1}
    opt.step()
    opt.zero_grad()
    ref["after_step1"] = {n: stats(p, pick_idx(p.numel(), 16, len(n) + 1)) for n, p in params}
    with torch.no_grad():
        ref["loss_after_step1"] = loss_of(model, ids, labels)[0].item()
    loss_of(model, ids, labels)[0].backward()
    ref["grad_norm_step2_preclip"] = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0).item()
    opt.step()
    with torch.no_grad():
        ref["loss_after_step2"] = loss_of(model, ids, labels)[0].item()
    ref["after_step2"] = {n: stats(p, pick_idx(p.numel(), 16, len(n) + 2)) for n, p in params}
    return ref


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    refs = {}
    for i, arg in enumerate(sys.argv[2:]):
        name, model_dir = arg.split("=", 1)
        link = os.path.join(out, "models", name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(model_dir), link)
        refs["model_" + name] = run(name, model_dir, 31 + i)
    json.dump(refs, open(os.path.join(out, "reference.json"), "w"))
