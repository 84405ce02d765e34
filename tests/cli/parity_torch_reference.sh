#!/usr/bin/env bash
# parity_torch_reference.sh: the Llama-family variants the HF fixtures do not
# hold (Qwen2 with q/k/v biases; Llama 3.1 with llama3 rope scaling and a
# single KV head), checked by `sft parity` against an independent PyTorch
# implementation (tests/helpers/torch_llama_reference.py: autograd gradients,
# torch.optim.AdamW steps). The models are made by `sft init`. Skipped when
# Debian's python3-torch is absent.
set -u
PY=/usr/bin/python3
if ! $PY -c "import torch" 2>/dev/null; then echo "parity_torch_reference: skipped (no python3-torch)"; exit 0; fi
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/qwen2.json" <<'JSON'
{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 50259, "hidden_size": 32,
 "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true,
 "use_sliding_window": false, "sliding_window": 4096, "max_window_layers": 28, "bos_token_id": 50256,
 "eos_token_id": 50258, "hidden_act": "silu", "torch_dtype": "bfloat16", "initializer_range": 0.1}
JSON
cat >"$tmp/llama31.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 32,
 "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
 "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "hidden_act": "silu",
 "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
 "bos_token_id": 128000, "eos_token_id": [128001, 128009], "dtype": "float32"}
JSON
$SFT init --config "$tmp/qwen2.json" --tokenizer tests/fixtures/hf/tokenizers/gpt2-chatml --out "$tmp/qwen2" --seed 1 >/dev/null &&
  $SFT init --config "$tmp/llama31.json" --tokenizer tests/fixtures/hf/models/llama3-tiny --out "$tmp/llama31" --seed 2 >/dev/null ||
  { echo "FAIL sft init"; exit 1; }
$PY tests/helpers/torch_llama_reference.py "$tmp/fx" qwen2-tiny="$tmp/qwen2" llama31-tiny="$tmp/llama31" ||
  { echo "FAIL reference generation"; exit 1; }
out=$($SFT parity "$tmp/fx" 2>&1); rc=$?
echo "$out" | grep -E '^(ok|FAIL) +model_[^:]*: [0-9]+ checks' | sed 's/^/  /'
if [ $rc -ne 0 ]; then echo "FAIL parity against the PyTorch reference"; echo "$out" | grep FAIL | head; fail=1; fi
[ $fail -eq 0 ] && echo "parity_torch_reference: ok"
exit $fail
