#!/bin/bash
# demo.sh: sft demo, shortened (--records, --max-steps): the folder it
# writes (data with held-out prompts no training record has, the initial
# model, the sweep with best/ and report.html, demo.json), what it prints,
# that a second demo replaces the first, and that any other non-empty
# folder is refused. The full demo's numbers are in the README.
set -euo pipefail
SFT=${SFT:-build/sft}
tmp=$(mktemp -d /tmp/sft-cli-demo-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export SFT_CACHE_DIR=$tmp/cache
fail() { echo "FAIL: $*" >&2; exit 1; }

"$SFT" demo --out "$tmp/d" --records 400 --max-steps 12 --threads 2 > "$tmp/out.txt" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "demo exited non-zero"; }
for f in demo.json data/train.jsonl data/val.jsonl data/heldout.jsonl model/model.safetensors model/tokenizer.json \
         sweep/summary.json sweep/report.html sweep/best/model.safetensors sweep/best/chat_template.jinja \
         sweep/trials/lr-0.001/metrics.jsonl; do
    [ -e "$tmp/d/$f" ] || fail "missing $f"
done
grep -q '^accuracy before training: 0/220' "$tmp/err.txt" || fail "no accuracy before training"
grep -q '3 at a time with 1 thread each' "$tmp/err.txt" || fail "the learning rates do not train side by side"
grep -q '^validation loss: [0-9.]* at step [0-9]* -> [0-9.]* at step 12' "$tmp/out.txt" || fail "no validation losses"
grep -q '^exact-match accuracy on 220 held-out prompts: ' "$tmp/out.txt" || fail "no accuracy line"
grep -q "^best model: .*/sweep/best\$" "$tmp/out.txt" || fail "no best model line"
grep -q "^report: .*/sweep/report.html" "$tmp/out.txt" || fail "no report line"
/usr/bin/python3 - "$tmp/d" <<'EOF' || fail "demo.json or the held-out prompts"
import json, sys
d = sys.argv[1]
j = json.load(open(d + "/demo.json"))
assert j["accuracy"]["heldout"] == 220 and len(j["accuracy"]["per_task"]) == 11
assert j["val_loss"]["last_step"] == 12 and j["val_loss"]["first"] > j["val_loss"]["last"] > 0
assert j["chosen_trial"] == json.load(open(d + "/sweep/summary.json"))["best"]
held = {json.loads(l)["messages"][0]["content"] for l in open(d + "/data/heldout.jsonl")}
assert len(held) == 220
for name in ("train", "val"):
    for l in open(d + "/data/%s.jsonl" % name):
        assert json.loads(l)["messages"][0]["content"] not in held, "a held-out prompt in " + name
EOF
# a second demo into the same folder replaces the first
"$SFT" demo --out "$tmp/d" --records 200 --max-steps 4 --threads 2 > /dev/null 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "a second demo into the folder failed"; }
grep -q '"last_step": 4' "$tmp/d/demo.json" || fail "the second demo did not replace the first"
# any other non-empty folder is refused
mkdir "$tmp/other" && echo keep > "$tmp/other/notes.txt"
rc=0; "$SFT" demo --out "$tmp/other" --records 200 --max-steps 4 > /dev/null 2> "$tmp/err.txt" || rc=$?
[ $rc = 1 ] || fail "exit $rc for a non-demo folder"
grep -q 'holds no earlier demo' "$tmp/err.txt" || fail "no clear error for a non-demo folder"
[ "$(ls "$tmp/other")" = notes.txt ] || fail "the non-demo folder was changed"
echo "demo.sh: all checks passed"
