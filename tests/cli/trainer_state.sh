#!/usr/bin/env bash
# trainer_state.sh: `sft diagnose RUN --to-trainer-state FILE` on the real
# runs of tests/fixtures/runs: the file is what Python's
# json.dumps(indent=2, sort_keys=True) writes of its own content (HF's
# layout), reads back with the label, and bad input leaves no file.
set -u
SFT=${SFT:-build/sft}
runs=tests/fixtures/runs
tmp=$(mktemp -d /tmp/sft-cli-trainer-state-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then :; else echo "  FAIL: $name"; fail=1; fi
}
has() { grep -q -- "$2" "$1"; }

for label in healthy lr_too_high overfitting lr_too_low nan; do
  $SFT diagnose "$runs/$label/metrics.jsonl" --to-trainer-state "$tmp/$label.json" --logging-steps 5 \
    >"$tmp/out" 2>"$tmp/err"
  check "$label: exit 0" test $? -eq 0
  check "$label: written" test -s "$tmp/$label.json"
  # any python3 will do: json is in its standard library
  if command -v python3 >/dev/null; then
    python3 - "$tmp/$label.json" <<'EOF' >"$tmp/py" 2>&1
import json, sys
text = open(sys.argv[1]).read()
again = json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
print("same" if text == again else "differs")
EOF
    check "$label: byte for byte json.dumps(indent=2, sort_keys=True)" has "$tmp/py" "^same$"
  fi
  $SFT diagnose "$tmp/$label.json" >"$tmp/again" 2>&1
  check "$label: reads back" test $? -eq 0
  verdict() { head -1 "$1" | sed 's/^.*evaluations): \([a-z]*\).*$/\1/'; }
  check "$label: same verdict" test "$(verdict "$tmp/out")" = "$(verdict "$tmp/again")"
done
check "nan: NaN written bare" has "$tmp/nan.json" '"loss": NaN,'
check "windows of 5 steps" has "$tmp/healthy.json" '"logging_steps": 5,'

# Bad input: one error, exit 1, no file.
$SFT diagnose "$runs/healthy/metrics.jsonl" --to-trainer-state "$tmp/bad.json" --logging-steps 0 >"$tmp/out" 2>"$tmp/err"
check "logging-steps 0: exit 1" test $? -eq 1
check "logging-steps 0: says why" has "$tmp/err" "logging-steps must be >= 1"
check "logging-steps 0: no file" test ! -e "$tmp/bad.json"
$SFT diagnose "$runs/healthy/metrics.jsonl" --to-trainer-state "$tmp/no/such/dir/state.json" >"$tmp/out" 2>"$tmp/err"
check "unwritable: exit 1" test $? -eq 1
check "unwritable: names the file" has "$tmp/err" "no/such/dir"

exit $fail
