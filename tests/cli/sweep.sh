#!/bin/bash
# sweep.sh: sft sweep end to end on a tiny model made from the demo
# tokenizer: a sweep from a YAML file with two trials at a time (the
# files, summary.json, best/, a well-formed report); a sweep stopped by
# SIGTERM during its second trial and one whose process is killed with
# SIGKILL both resume with --resume without rerunning a finished trial;
# --help and bad input (one clear error, nothing written).
set -euo pipefail
SFT=${SFT:-build/sft}
tmp=$(mktemp -d /tmp/sft-cli-sweep-XXXXXX)
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
"$SFT" data generate -o "$tmp/data.jsonl" --count 200 --seed 3 --tasks reverse_word,uppercase > /dev/null

# --help: the sweep's flags beside the training flags
"$SFT" sweep --help > "$tmp/help.txt"
for flag in --lr-range --sweep --parallel --prune --prune-factor --max-grad-norm --val-split; do
    grep -q -- "$flag" "$tmp/help.txt" || fail "--help does not list $flag"
done

# a sweep from a file: three learning rates, two at a time
cat > "$tmp/sweep.yaml" <<EOF
model: $tmp/model
data: [$tmp/data.jsonl]
val_split: 0.2
max_steps: 20
eval_every: 5
batch_size: 8
threads: 2
lr: [1e-5, 3e-3, 1e-2]
parallel: 2
EOF
"$SFT" sweep -c "$tmp/sweep.yaml" --out "$tmp/s1" > "$tmp/out.txt" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "sweep exited non-zero"; }
for f in sweep.yaml sweep.json summary.json report.html val_loss.png best/model.safetensors best/config.json \
         trials/lr-1e-05/metrics.jsonl trials/lr-0.003/best/model.safetensors trials/lr-0.01/diagnosis.json; do
    [ -e "$tmp/s1/$f" ] || fail "missing $f"
done
grep -q '2 at a time with 1 thread each' "$tmp/err.txt" || fail "the threads are not split"
grep -q '^best: lr-0.01 -> ' "$tmp/out.txt" || { cat "$tmp/out.txt"; fail "lr-0.01 not chosen"; }
grep -q '^advice:' "$tmp/out.txt" || fail "no advice printed"
/usr/bin/python3 - "$tmp/s1" <<'EOF' || fail "summary.json"
import json, sys, xml.dom.minidom
d = sys.argv[1]
s = json.load(open(d + "/summary.json"))
assert sorted(s) == ["best", "metric", "trials"], sorted(s)
assert s["metric"] == "val_loss" and s["best"] == "lr-0.01", s["best"]
assert [t["name"] for t in s["trials"]] == ["lr-1e-05", "lr-0.003", "lr-0.01"]
for t in s["trials"]:
    assert sorted(t) == sorted(["name", "params", "best_val_loss", "best_step", "final_train_loss", "verdict",
                                "findings", "wall_s"]), sorted(t)
    assert isinstance(t["params"]["lr"], float)
best = min(s["trials"], key=lambda t: t["best_val_loss"])
assert best["name"] == s["best"]
assert open(d + "/best/model.safetensors", "rb").read() == open(d + "/trials/lr-0.01/best/model.safetensors", "rb").read()
xml.dom.minidom.parse(d + "/report.html")  # well-formed
EOF
# the resolved sweep.yaml re-runs the same sweep
"$SFT" sweep -c "$tmp/s1/sweep.yaml" --out "$tmp/s1b" > "$tmp/out2.txt" 2>/dev/null || fail "sweep.yaml does not re-run"
grep -q '^best: lr-0.01 -> ' "$tmp/out2.txt" || fail "the re-run chose another trial"

# stopped by SIGTERM during the second trial, then resumed
sweep_args() {
    echo --model "$tmp/model" --data "$tmp/data.jsonl" --val-split 0.2 --max-steps 200 --eval-every 50 \
        --save-every 10 --batch-size 8 --lr 1e-3,3e-3,1e-2 --out "$1"
}
"$SFT" sweep $(sweep_args "$tmp/s2") --threads 1 > "$tmp/out.txt" 2> "$tmp/err.txt" &
pid=$!
second=$tmp/s2/trials/lr-0.003/metrics.jsonl
for _ in $(seq 1 600); do
    [ -f "$second" ] && [ "$(grep -c '"type":"train"' "$second")" -ge 15 ] && break
    sleep 0.1
done
[ -f "$second" ] || { kill -9 $pid; fail "the second trial never started"; }
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc = 143 ] || { cat "$tmp/err.txt"; fail "SIGTERM: exit $rc, expected 143"; }
grep -q 'continue with: sft sweep --out .* --resume' "$tmp/err.txt" || fail "no resume hint"
[ -f "$tmp/s2/summary.json" ] && fail "summary.json written by an interrupted sweep"
first_sum=$(cd "$tmp/s2/trials/lr-0.001" && find . -type f | sort | xargs md5sum)
first_mtime=$(stat -c %Y.%y "$tmp/s2/trials/lr-0.001/metrics.jsonl")
"$SFT" sweep --out "$tmp/s2" --resume > "$tmp/out.txt" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "resume exited non-zero"; }
grep -q '1 of 3 trials are done and will not run again' "$tmp/err.txt" || fail "resume did not skip the first trial"
grep -q 'lr-0.003: continuing from its checkpoint' "$tmp/err.txt" || fail "the second trial did not continue"
[ "$first_sum" = "$(cd "$tmp/s2/trials/lr-0.001" && find . -type f | sort | xargs md5sum)" ] \
    || fail "the first trial's files changed"
[ "$first_mtime" = "$(stat -c %Y.%y "$tmp/s2/trials/lr-0.001/metrics.jsonl")" ] || fail "the first trial was touched"
for s in 1 37 200; do
    n=$(grep -c "\"type\":\"train\",\"step\":$s," "$second")
    [ "$n" = 1 ] || fail "step $s of the second trial appears $n times"
done
[ -f "$tmp/s2/summary.json" ] || fail "no summary after the resume"

# the sweep's process killed outright (two trials at a time): its trials
# stop at a checkpoint (they get SIGTERM when their parent dies) and the
# sweep resumes
"$SFT" sweep $(sweep_args "$tmp/s3") --parallel 2 --threads 2 > /dev/null 2> "$tmp/err.txt" &
pid=$!
for _ in $(seq 1 600); do
    f=$tmp/s3/trials/lr-0.001/metrics.jsonl
    [ -f "$f" ] && [ "$(grep -c '"type":"train"' "$f")" -ge 15 ] && break
    sleep 0.1
done
{ kill -KILL $pid; wait $pid || true; } 2>/dev/null
for _ in $(seq 1 300); do  # the orphaned trials save and exit; they hold the lock until then
    pgrep -f -- "--out $tmp/s3" > /dev/null || break
    sleep 0.1
done
"$SFT" sweep --out "$tmp/s3" --resume > "$tmp/out.txt" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "resume after SIGKILL exited non-zero"; }
grep -q 'continuing from its checkpoint' "$tmp/err.txt" || fail "no trial continued from its checkpoint after SIGKILL"
[ -f "$tmp/s3/summary.json" ] || fail "no summary after resuming the killed sweep"

# bad input: one clear error, exit 1, nothing written
expect_error() {
    local want=$1; shift
    local rc=0
    "$SFT" sweep "$@" > /dev/null 2> "$tmp/err.txt" || rc=$?
    [ $rc = 1 ] || fail "exit $rc for: $*"
    grep -q -- "$want" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "expected '$want' for: $*"; }
}
base=(--model "$tmp/model" --data "$tmp/data.jsonl" --val-split 0.2 --out "$tmp/bad")
expect_error 'nothing to sweep' "${base[@]}"
expect_error "did you mean 'batch_size'" "${base[@]}" --sweep batch_sise=4,8
expect_error 'LO:HI:N' "${base[@]}" --lr-range 1e-5:1e-3
expect_error '--lr and --lr-range both given' "${base[@]}" --lr 1e-4 --lr-range 1e-5:1e-3:3
expect_error 'no validation data' --model "$tmp/model" --data "$tmp/data.jsonl" --out "$tmp/bad" --lr 1e-4,1e-3
expect_error 'holds no sweep' "${base[@]}" --lr 1e-4,1e-3 --resume
expect_error 'already holds a sweep' --model "$tmp/model" --data "$tmp/data.jsonl" --val-split 0.2 --out "$tmp/s1" --lr 1e-4,1e-3
printf 'model: m\nparalel: 2\n' > "$tmp/typo.yaml"
expect_error "unknown key 'paralel' (did you mean 'parallel'?)" -c "$tmp/typo.yaml" --lr 1e-4
[ -e "$tmp/bad" ] && fail "a failed sweep left $tmp/bad"
echo "sweep.sh: all checks passed"
