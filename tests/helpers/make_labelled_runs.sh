#!/bin/sh
# make_labelled_runs.sh: the labelled corpus of real training curves
# (tests/fixtures/runs), made by real `sft train` runs of a tiny Llama model
# on generated arithmetic records, one run per label:
#   healthy      a sound recipe: the loss falls fast, then settles
#   lr_too_high  learning rate 1.0 (300x the healthy one): the loss climbs
#   overfitting  32 records for 100 epochs: validation rises while training falls
#   lr_too_low   learning rate 1e-5: both curves stay flat near the start
#   nan          the healthy recipe with the loss made NaN at step 150
#                (SFT_TEST_NAN_AT_STEP); --on-nonfinite stop ends the run there
# Each run leaves tests/fixtures/runs/LABEL/metrics.jsonl (as sft wrote it)
# and trainer_state.json (the same curve in HF Trainer's form, logged every 5
# steps as HF averages it; `sft diagnose --to-trainer-state`). tests/
# test_labelled_runs.c checks every label in both forms.
#
# Deterministic: one thread, fixed seeds; about a minute on one core.
# usage: tests/helpers/make_labelled_runs.sh [SFT] [OUT]
#        (defaults: build/sft, tests/fixtures/runs; run from the repo root)
set -eu
SFT=$(realpath "${1:-build/sft}")
OUT=$(realpath -m "${2:-tests/fixtures/runs}")
ASSETS=$(realpath assets/demo-model)
WORK=$(mktemp -d /tmp/sft-labelled-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# A 2-layer Llama (hidden 64) on the demo tokenizer: small enough that every
# run takes seconds, big enough to learn the tasks.
cat >tiny.json <<'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 365, "hidden_size": 64,
 "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-05,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": null, "eos_token_id": 364,
 "pad_token_id": 362, "torch_dtype": "float32"}
EOF
"$SFT" init --config tiny.json --tokenizer "$ASSETS" --out model --seed 1 >/dev/null
mkdir data
TASKS=add,subtract,max,multiply
"$SFT" data generate -o data/train.jsonl --count 3000 --seed 1 --tasks $TASKS >/dev/null
"$SFT" data generate -o data/val.jsonl --count 200 --seed 2 --tasks $TASKS >/dev/null
"$SFT" data generate -o data/tiny.jsonl --count 32 --seed 3 --tasks $TASKS >/dev/null

COMMON="--model model --val-data data/val.jsonl --threads 1 --seed 42 --max-len 128 --eval-every 20 --save-every 0"
run() { # LABEL FLAGS...: trains into runs/LABEL; the exit status is the caller's business
    label=$1
    shift
    # shellcheck disable=SC2086
    "$SFT" train $COMMON --out "runs/$label" "$@" >"$label.log" 2>&1
}
run healthy --data data/train.jsonl --lr 3e-3 --max-steps 300 --batch-size 32 --warmup-steps 20
run lr_too_high --data data/train.jsonl --lr 1.0 --max-steps 200 --batch-size 16 --warmup-steps 10
run overfitting --data data/tiny.jsonl --lr 3e-3 --epochs 100 --batch-size 8 --warmup-steps 10
run lr_too_low --data data/train.jsonl --lr 1e-5 --max-steps 300 --batch-size 32 --warmup-steps 20
if SFT_TEST_NAN_AT_STEP=150 run nan --data data/train.jsonl --lr 3e-3 --max-steps 300 --batch-size 32 \
    --warmup-steps 20 --on-nonfinite stop; then
    echo "the nan run did not stop at its NaN step" >&2
    exit 1
fi
grep -q "step 150: the loss is not finite" nan.log || {
    echo "the nan run stopped without naming step 150:" >&2
    cat nan.log >&2
    exit 1
}

for label in healthy lr_too_high overfitting lr_too_low nan; do
    mkdir -p "$OUT/$label"
    cp "runs/$label/metrics.jsonl" "$OUT/$label/metrics.jsonl"
    "$SFT" diagnose "runs/$label" --to-trainer-state "$OUT/$label/trainer_state.json" --logging-steps 5 >/dev/null
    printf '%-12s %s\n' "$label" "$("$SFT" diagnose "$OUT/$label/metrics.jsonl" | head -1 | sed 's/^[^:]*: //')"
done
