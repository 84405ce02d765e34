#!/bin/bash
# bf16.sh: `sft train --dtype bf16` end to end on a tiny model made from the
# demo tokenizer: the loss falls, run.yaml and manifest.json record the dtype
# and what ran the products, the fallback note is printed once exactly when
# the products fall back to fp32, a wrong dtype or SFT_BF16 value is one clear
# error with the choices (nothing written), and a resume keeps the dtype.
set -euo pipefail
SFT=${SFT:-build/sft}
tmp=$(mktemp -d /tmp/sft-cli-bf16-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export SFT_CACHE_DIR=$tmp/cache
unset SFT_BF16
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$tmp/tiny.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 365, "hidden_size": 32,
 "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 8, "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-05,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": null, "eos_token_id": 364,
 "pad_token_id": 362, "torch_dtype": "float32"}
EOF
"$SFT" init --config "$tmp/tiny.json" --tokenizer assets/demo-model --out "$tmp/model" > /dev/null
for i in $(seq 0 39); do
    printf '{"instruction": "add %d %d", "output": "%d"}\n' $i $((i % 7)) $((i + i % 7))
done > "$tmp/data.jsonl"
train() { "$SFT" train --model "$tmp/model" --data "$tmp/data.jsonl" --batch-size 4 --lr 3e-3 --threads 2 \
    --eval-every 0 --samples-per-eval 0 "$@"; }
losses() { grep '"type":"train"' "$1/metrics.jsonl" | grep -o '"loss":[^,]*' | cut -d: -f2; }

# bf16 products forced (the portable kernel where the CPU lacks AVX512_BF16):
# the loss falls over 16 steps (mean of the last 4 below 90% of the first 4)
SFT_BF16=force train --dtype bf16 --max-steps 16 --out "$tmp/run" > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "sft train --dtype bf16 exited non-zero"; }
[ "$(losses "$tmp/run" | wc -l)" = 16 ] || fail "expected 16 train lines"
losses "$tmp/run" | awk 'NR <= 4 { a += $1 } NR > 12 { b += $1 } END { exit !(b < 0.9 * a) }' \
    || fail "the bf16 loss does not fall: $(losses "$tmp/run" | tr '\n' ' ')"
grep -qx 'dtype: bf16' "$tmp/run/run.yaml" || fail "run.yaml does not record dtype: bf16"
grep -q '"requested": "bf16"' "$tmp/run/manifest.json" || fail "manifest.json does not record the dtype"
grep -q '"products": "bf16"' "$tmp/run/manifest.json" || fail "manifest.json: the forced products are not bf16"

# automatic choice: the note appears (once) exactly when the products fall back to fp32
train --dtype bf16 --max-steps 2 --out "$tmp/auto" > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "automatic bf16 run failed"; }
notes=$(grep -c '^note: dtype bf16' "$tmp/err.txt" || true)
if grep -q '"products": "fp32"' "$tmp/auto/manifest.json"; then
    [ "$notes" = 1 ] || fail "fp32 fallback without exactly one note (got $notes)"
else
    [ "$notes" = 0 ] || fail "a fallback note although the products ran in bf16"
fi

# SFT_BF16=fp32: the fallback, said once, and the fp32 run's losses exactly
SFT_BF16=fp32 train --dtype bf16 --max-steps 3 --out "$tmp/fallback" > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "the fallback run failed"; }
[ "$(grep -c '^note: dtype bf16: SFT_BF16=fp32' "$tmp/err.txt")" = 1 ] || fail "the fallback note is not printed once"
train --max-steps 3 --out "$tmp/fp32" > /dev/null 2>&1 || fail "the fp32 run failed"
cmp <(losses "$tmp/fallback") <(losses "$tmp/fp32") || fail "the fallback's losses differ from fp32's"

# a dtype that is not one: the choices, exit 1, nothing written
if train --dtype fp16 --max-steps 1 --out "$tmp/bad" > /dev/null 2> "$tmp/err.txt"; then
    fail "--dtype fp16 was accepted"
fi
grep -q -- "--dtype expects one of fp32|bf16, got 'fp16'" "$tmp/err.txt" || fail "no clear error: $(cat "$tmp/err.txt")"
[ -e "$tmp/bad" ] && fail "a failed start wrote $tmp/bad"
printf 'dtype: float16\n' > "$tmp/bad.yaml"
if train -c "$tmp/bad.yaml" --max-steps 1 --out "$tmp/bad" > /dev/null 2> "$tmp/err.txt"; then
    fail "dtype: float16 in YAML was accepted"
fi
grep -q "bad.yaml:1:.*fp32|bf16" "$tmp/err.txt" || fail "no FILE:LINE error for the YAML dtype: $(cat "$tmp/err.txt")"
if SFT_BF16=fast train --dtype bf16 --max-steps 1 --out "$tmp/bad" > /dev/null 2> "$tmp/err.txt"; then
    fail "SFT_BF16=fast was accepted"
fi
grep -q "SFT_BF16='fast': expected auto, fp32 or force" "$tmp/err.txt" || fail "no clear SFT_BF16 error"
[ -e "$tmp/bad" ] && fail "a failed start wrote $tmp/bad"

# a resume keeps the dtype: another one is refused naming both
if "$SFT" train -c "$tmp/run/run.yaml" --dtype fp32 --max-steps 18 --resume > /dev/null 2> "$tmp/err.txt"; then
    fail "a bf16 run resumed in fp32"
fi
grep -q 'dtype bf16, this one asks for dtype fp32' "$tmp/err.txt" || fail "no clear resume error: $(cat "$tmp/err.txt")"
SFT_BF16=force "$SFT" train -c "$tmp/run/run.yaml" --max-steps 18 --resume > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "resume in bf16 failed"; }
[ "$(losses "$tmp/run" | wc -l)" = 18 ] || fail "expected 18 train lines after the resume"
echo "bf16 CLI: ok"
