#!/bin/bash
# train.sh: sft train / eval / export end to end on a tiny model made from
# the demo tokenizer: the run folder, plain progress lines off a terminal,
# re-running run.yaml, --resume, SIGTERM (finish the step, save, exit 143),
# a malformed line (file:line, nothing written), eval --json/--generate,
# and export --merge giving the same loss as the adapter on its base.
set -euo pipefail
SFT=${SFT:-build/sft}
tmp=$(mktemp -d /tmp/sft-cli-train-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export SFT_CACHE_DIR=$tmp/cache
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

# a run: files, plain progress lines on a pipe, a summary on stdout
"$SFT" train --model "$tmp/model" --data "$tmp/data.jsonl" --out "$tmp/run" --val-split 0.2 --max-steps 4 \
    --eval-every 2 --save-every 2 --batch-size 4 --lr 3e-3 --threads 1 > "$tmp/out.txt" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "train exited non-zero"; }
for f in run.yaml manifest.json metrics.jsonl diagnosis.json final/model.safetensors final/config.json \
         final/tokenizer.json final/chat_template.jinja best/model.safetensors checkpoints/step-4/trainer_state.json; do
    [ -e "$tmp/run/$f" ] || fail "missing $f"
done
[ "$(grep -c '"type":"train"' "$tmp/run/metrics.jsonl")" = 4 ] || fail "expected 4 train lines"
[ "$(grep -c '"type":"eval"' "$tmp/run/metrics.jsonl")" = 2 ] || fail "expected 2 eval lines"
grep -q 'alpaca (detected)' "$tmp/err.txt" || fail "the detected format is not reported"
grep -q '^step 4/4 ' "$tmp/err.txt" || fail "no plain progress line for step 4"
grep -q $'\r' "$tmp/err.txt" && fail "carriage returns in output that is not a terminal"
grep -q '^best val loss: ' "$tmp/out.txt" || fail "no best val loss in the summary"

# run.yaml re-runs the run (a flag overrides the file)
"$SFT" train -c "$tmp/run/run.yaml" --out "$tmp/rerun" > /dev/null 2>&1 || fail "run.yaml does not re-run"
cmp <(grep -o '"loss":[^,]*' "$tmp/run/metrics.jsonl") <(grep -o '"loss":[^,]*' "$tmp/rerun/metrics.jsonl") \
    || fail "the re-run from run.yaml has other losses"

# --resume continues the run to a new max_steps
"$SFT" train -c "$tmp/run/run.yaml" --max-steps 6 --resume > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "resume failed"; }
grep -q 'resuming from .*step-4' "$tmp/err.txt" || fail "resume did not start from step-4"
[ "$(grep -c '"type":"train"' "$tmp/run/metrics.jsonl")" = 6 ] || fail "expected 6 train lines after resume"

# another run's folder is refused
"$SFT" train -c "$tmp/run/run.yaml" > /dev/null 2> "$tmp/err.txt" && fail "a second run into the same folder"
grep -q 'already holds a run' "$tmp/err.txt" || fail "no message for an occupied run folder"

# a malformed line: file:line, exit 1, nothing written
{ head -3 "$tmp/data.jsonl"; echo '{"instruction": "x", "output": '; } > "$tmp/bad.jsonl"
if "$SFT" train --model "$tmp/model" --data "$tmp/bad.jsonl" --out "$tmp/badrun" > /dev/null 2> "$tmp/err.txt"; then
    fail "a malformed line was accepted"
fi
grep -q "bad.jsonl:4" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "the error does not name bad.jsonl:4"; }
[ ! -e "$tmp/badrun" ] || fail "a failed run left $tmp/badrun"
"$SFT" train --model "$tmp/model" --data "$tmp/bad.jsonl" --out "$tmp/skiprun" --skip-bad-records --max-steps 1 \
    --threads 1 > /dev/null 2> "$tmp/err.txt" || fail "--skip-bad-records did not train"
grep -q 'skipped 1 malformed' "$tmp/err.txt" || fail "the skipped record is not counted"

# SIGTERM: the step finishes, a checkpoint is saved, exit 143
"$SFT" train --model "$tmp/model" --data "$tmp/data.jsonl" --out "$tmp/sig" --max-steps 1000000 --threads 1 \
    --save-every 0 > /dev/null 2> "$tmp/sig.txt" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/sig/metrics.jsonl" ] && break; sleep 0.1; done
kill -TERM $pid
status=0
wait $pid || status=$?
[ $status = 143 ] || { cat "$tmp/sig.txt"; fail "SIGTERM gave exit status $status, expected 143"; }
ls "$tmp/sig/checkpoints" | grep -q '^step-' || fail "no checkpoint after SIGTERM"
grep -q 'continue with' "$tmp/sig.txt" || fail "no resume hint after SIGTERM"

# eval: loss and perplexity as JSON, exact match by generation
"$SFT" eval --model "$tmp/run/final" --data "$tmp/data.jsonl" --json --generate --threads 1 > "$tmp/eval.json"
grep -q '"loss": ' "$tmp/eval.json" && grep -q '"perplexity": ' "$tmp/eval.json" || fail "eval --json lacks loss"
grep -q '"exact_match": {"correct": [0-9]*, "total": 40' "$tmp/eval.json" || { cat "$tmp/eval.json"; fail "eval --generate"; }

# LoRA: the adapter on its base and export --merge give the same loss
"$SFT" train --model "$tmp/model" --data "$tmp/data.jsonl" --out "$tmp/lora" --lora-r 4 --lr 0.02 --max-steps 3 \
    --threads 1 > /dev/null 2>&1 || fail "LoRA run failed"
[ -e "$tmp/lora/final/adapter_config.json" ] || fail "LoRA final/ is not a PEFT adapter dir"
"$SFT" export "$tmp/lora/checkpoints/step-3" --out "$tmp/merged" --merge > /dev/null || fail "export --merge failed"
a=$("$SFT" eval --model "$tmp/model" --adapter "$tmp/lora/final" --data "$tmp/data.jsonl" --json --threads 1 \
    | grep -o '"loss": [^,]*' | cut -d' ' -f2)
b=$("$SFT" eval --model "$tmp/merged" --data "$tmp/data.jsonl" --json --threads 1 | grep -o '"loss": [^,]*' | cut -d' ' -f2)
awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-5) }' \
    || fail "merged export loss $b differs from adapter loss $a"
"$SFT" export "$tmp/lora/final" --out "$tmp/x" --gguf "$tmp/x.gguf" > /dev/null 2>&1 && fail "--gguf pretended to work"
echo "train.sh: ok"
