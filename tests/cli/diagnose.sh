#!/usr/bin/env bash
# diagnose.sh: `sft diagnose` on HF Trainer's real files (trainer_state.json
# and the TensorBoard event files it wrote), on hand-made metrics.jsonl, CSV
# and run dirs, and on bad input (one clear error naming file and line or
# record offset, exit status 1).
set -u
SFT=${SFT:-build/sft}
fx=tests/fixtures/hf_trainer
tmp=$(mktemp -d /tmp/sft-cli-diagnose-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then :; else echo "  FAIL: $name"; fail=1; fi
}
has() { grep -q -- "$2" "$1"; }

# The healthy run, from both files HF wrote.
for f in $fx/sample_healthy.trainer_state.json $fx/sample_healthy.events.out.tfevents.*; do
  $SFT diagnose "$f" >"$tmp/out" 2>"$tmp/err"; rc=$?
  check "healthy exit 0 ($f)" test $rc -eq 0
  check "healthy verdict ($f)" has "$tmp/out" ": healthy"
  check "healthy best step ($f)" has "$tmp/out" "best step: 376"
  check "healthy has no warning ($f)" bash -c "! grep -q '^\[warning\]\|^\[critical\]' '$tmp/out'"
done

# The overfitting run: the finding, its evidence and advice.
for f in $fx/sample_overfit.trainer_state.json $fx/sample_overfit.events.out.tfevents.*; do
  $SFT diagnose "$f" >"$tmp/out" 2>"$tmp/err"; rc=$?
  check "overfit exit 0 ($f)" test $rc -eq 0
  check "overfit verdict ($f)" has "$tmp/out" ": warning"
  check "overfit finding ($f)" has "$tmp/out" "\[warning\] overfitting at step 50-120"
  check "overfit advice ($f)" has "$tmp/out" "Keep the checkpoint of step 50"
  $SFT diagnose "$f" --json >"$tmp/json" || fail=1
  check "overfit --json parses ($f)" python3 -c "
import json, sys
d = json.load(open('$tmp/json'))
assert d['verdict'] == 'warning' and d['best_step'] == 50, d
k = [f['kind'] for f in d['findings'] if f['severity'] != 'info']
assert k == ['overfitting'], k
f = [f for f in d['findings'] if f['kind'] == 'overfitting'][0]
assert f['step'] == 50 and f['end_step'] == 120 and abs(f['evidence']['best_val_loss'] - 3.3873) < 1e-3
"
done

# Thresholds are flags: a 50% margin makes the 11% rise acceptable.
$SFT diagnose $fx/sample_overfit.trainer_state.json --overfit-rise 0.5 >"$tmp/out"
check "--overfit-rise changes the verdict" has "$tmp/out" ": healthy"
$SFT diagnose $fx/sample_overfit.trainer_state.json --overfit-rse 0.5 >"$tmp/out" 2>"$tmp/err"; rc=$?
check "misspelled threshold flag fails" test $rc -ne 0
check "misspelled flag suggests" has "$tmp/err" "overfit-rise"

# A run dir with metrics.jsonl written by hand from SPEC.md, a NaN at the end.
mkdir -p "$tmp/run"
python3 - "$tmp/run/metrics.jsonl" <<'PY'
import math, sys
with open(sys.argv[1], "w") as f:
    for s in range(1, 61):
        loss = 1.0 + 4.0 * math.exp(-s / 8.0) if s < 55 else float("nan")
        f.write('{"type":"train","step":%d,"epoch":%r,"loss":%s,"grad_norm":0.5,"grad_norm_clipped":0.5,'
                '"clipped":false,"lr":0.0001,"tokens":512,"tokens_per_s":1000.0,"elapsed_s":%d}\n'
                % (s, s / 60, "NaN" if math.isnan(loss) else repr(loss), s))
        if s % 10 == 0:
            f.write('{"type":"eval","step":%d,"epoch":%r,"val_loss":%r,"val_tokens":2048}\n' % (s, s / 60, 1.1 + 4.0 * math.exp(-s / 8.0)))
PY
$SFT diagnose "$tmp/run" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "run dir exit 0" test $rc -eq 0
check "run dir NaN is non_finite" has "$tmp/out" "\[critical\] non_finite at step 55"
check "run dir verdict failing" has "$tmp/out" ": failing"

# CSV with empty cells.
printf 'step,loss,val_loss,grad_norm\n' >"$tmp/curve.csv"
for s in $(seq 1 80); do
  python3 -c "import math; s=$s; print(f'{s},{2+8*math.exp(-s/6):.5f},{(2.1+8*math.exp(-s/6)) if s%10==0 else \"\"},0.8')" >>"$tmp/curve.csv"
done
$SFT diagnose "$tmp/curve.csv" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "csv exit 0" test $rc -eq 0
check "csv healthy" has "$tmp/out" "csv, 80 training points, 8 evaluations): healthy"

# Bad input: one clear error with the place, exit 1.
head -n 2 "$tmp/run/metrics.jsonl" >"$tmp/bad.jsonl"; printf '{"type":"train","step":3,"loss":}\n' >>"$tmp/bad.jsonl"
$SFT diagnose "$tmp/bad.jsonl" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bad jsonl exit 1" test $rc -eq 1
check "bad jsonl names line 3" has "$tmp/err" "bad.jsonl:3:"
check "bad jsonl prints nothing on stdout" test ! -s "$tmp/out"
printf '{"type":"train","step":1,"loss":"high"}\n' >"$tmp/bad2.jsonl"
$SFT diagnose "$tmp/bad2.jsonl" 2>"$tmp/err"; rc=$?
check "wrong type names key and line" has "$tmp/err" "bad2.jsonl:1: 'loss' must be a number"
printf 'step,loss\n1,2.5\n2,abc\n' >"$tmp/bad.csv"
$SFT diagnose "$tmp/bad.csv" 2>"$tmp/err"; rc=$?
check "bad csv exit 1" test $rc -eq 1
check "bad csv names line and column" has "$tmp/err" "bad.csv:3: column 2: 'abc' is not a number"
printf 'loss,val_loss\n1,2\n' >"$tmp/nostep.csv"
$SFT diagnose "$tmp/nostep.csv" 2>"$tmp/err"
check "csv without step column" has "$tmp/err" "no 'step' column"
python3 -c "
d = bytearray(open('$(ls $fx/sample_overfit.events.out.tfevents.*)', 'rb').read()); d[500] ^= 1
open('$tmp/events.out.tfevents.3.bad', 'wb').write(d)"
$SFT diagnose "$tmp/events.out.tfevents.3.bad" 2>"$tmp/err"; rc=$?
check "corrupt tfevents exit 1" test $rc -eq 1
check "corrupt tfevents names the record offset" has "$tmp/err" "at byte offset [0-9]*: data CRC mismatch"
printf '{"log_history": [{"loss": 1.0}]}' >"$tmp/trainer_state.json"
$SFT diagnose "$tmp/trainer_state.json" 2>"$tmp/err"
check "trainer_state without step" has "$tmp/err" "log_history\[0\]: missing key 'step'"
$SFT diagnose "$tmp/no-such-file.jsonl" 2>"$tmp/err"; rc=$?
check "missing file exit 1" test $rc -eq 1
check "missing file named" has "$tmp/err" "no-such-file.jsonl"
mkdir -p "$tmp/empty"
$SFT diagnose "$tmp/empty" 2>"$tmp/err"
check "empty dir explains" has "$tmp/err" "no metrics.jsonl, trainer_state.json or events.out.tfevents"

[ $fail -eq 0 ] && echo "diagnose.sh: all checks passed"
exit $fail
