#!/usr/bin/env bash
# report.sh: `sft report` on HF Trainer's real files (trainer_state.json and
# the TensorBoard event files), on a synthetic run dir (metrics.jsonl,
# run.yaml, manifest.json, samples.jsonl) and on a sweep dir: report.html is
# well-formed (xmllint parses it as XML), self-contained (no script, no
# external resource), carries the verdict, findings and configuration; the
# PNGs are PNGs of the expected size. Bad input: one clear error, exit 1,
# no report.html left. The look of the page is checked by hand in headless
# Chromium (SFT_TEST_CHROMIUM=1, below); CI does not depend on a browser.
set -u
SFT=${SFT:-build/sft}
fx=tests/fixtures/hf_trainer
tmp=$(mktemp -d /tmp/sft-cli-report-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then :; else echo "  FAIL: $name"; fail=1; fi
}
has() { grep -q -- "$2" "$1"; }
lacks() { ! grep -q -- "$2" "$1"; }
well_formed() { xmllint --noout "$1" 2>"$tmp/xmllint.err" || { cat "$tmp/xmllint.err"; return 1; }; }
# Self-contained: no script, no stylesheet link, no src=, no URL but the XML namespaces.
self_contained() {
  lacks "$1" "<script" && lacks "$1" "<link" && lacks "$1" " src=" &&
    ! grep -o 'https\?://[^"]*' "$1" | grep -qv '^http://www.w3.org/\(2000/svg\|1999/xhtml\)$'
}
# png_size FILE: "WIDTH HEIGHT" from the IHDR chunk, after checking the signature.
png_size() {
  python3 - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
assert data[-8:-4] == b"IEND", "truncated PNG"
print(*struct.unpack(">II", data[16:24]))
PY
}
sane_pngs() { # sane_pngs DIR: loss, grad_norm, lr at twice 860 px wide
  local d=$1 f size
  for f in loss grad_norm lr; do
    size=$(png_size "$d/$f.png") || return 1
    set -- $size
    [ "$1" = 1720 ] && [ "$2" -ge 400 ] && [ "$2" -le 800 ] || { echo "  $d/$f.png is $size"; return 1; }
  done
}

# HF Trainer's runs, from both files it wrote.
for f in $fx/sample_overfit.trainer_state.json $fx/sample_overfit.events.out.tfevents.* \
         $fx/sample_healthy.trainer_state.json $fx/sample_healthy.events.out.tfevents.*; do
  out="$tmp/hf/$(basename "$f")"
  $SFT report "$f" --out "$out" >"$tmp/stdout" 2>"$tmp/err"; rc=$?
  check "exit 0 ($f)" test $rc -eq 0
  check "prints the page's path ($f)" has "$tmp/stdout" "$out/report.html"
  check "well-formed ($f)" well_formed "$out/report.html"
  check "self-contained ($f)" self_contained "$out/report.html"
  check "loss chart ($f)" has "$out/report.html" 'aria-label="Loss'
  check "PNGs ($f)" sane_pngs "$out"
  case $f in
    *overfit*)
      check "overfit verdict ($f)" has "$out/report.html" 'class="verdict warning"'
      check "overfit finding ($f)" has "$out/report.html" "<b>overfitting</b> (warning) at step 50 to 120"
      check "best step marked ($f)" has "$out/report.html" ">best</text>"
      # 10.4 down to 0.012: the loss axis is logarithmic.
      check "log loss axis ($f)" has "$out/report.html" "Loss (log scale)";;
    *healthy*)
      check "healthy verdict ($f)" has "$out/report.html" 'class="verdict healthy"';;
  esac
done

# A synthetic run dir: the report goes into it.
python3 tests/helpers/make_report_runs.py run "$tmp/run"
$SFT report "$tmp/run" >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "run dir exit 0" test $rc -eq 0
html="$tmp/run/report.html"
check "run dir well-formed" well_formed "$html"
check "run dir self-contained" self_contained "$html"
check "run dir PNGs" sane_pngs "$tmp/run"
check "four charts" test "$(grep -c '<svg ' "$html")" = 4
check "spike finding" has "$html" "<b>loss_spike</b> (warning) at step 150"
check "spike marked with its message" has "$html" "<title>The training loss jumped"
check "threshold from run.yaml" has "$html" "clipping threshold"
check "clipped steps marked" has "$html" "clipped ([0-9]* of 300 steps)"
check "smoothed line" has "$html" "train (smoothed)"
check "configuration, escaped" has "$html" "note: &quot;&lt;not a tag&gt; &amp; co&quot;"
check "manifest" has "$html" "&quot;seed&quot;: 42"
check "sample output, escaped" has "$html" "&lt;b&gt;bold&lt;/b&gt; &amp;amp; done"
check "sample matching its reference" has "$html" '<pre class="match">2 + 3 = 5</pre>'
check "bad sample line named" has "$html" "samples.jsonl line 3 skipped"

# --out FILE.html: the page and the PNGs there, nothing in the run dir.
rm -f "$tmp/run/report.html" "$tmp/run"/*.png
$SFT report "$tmp/run/metrics.jsonl" --out "$tmp/pages/run.html" >/dev/null 2>"$tmp/err"
check "--out FILE.html" test -f "$tmp/pages/run.html"
check "--out FILE.html PNGs beside it" sane_pngs "$tmp/pages"
check "--out FILE.html leaves the run dir alone" test ! -e "$tmp/run/report.html"
$SFT report "$tmp/run" --out "$tmp/pages/raw.html" --no-png --smoothing -1 >/dev/null
check "--smoothing -1: raw line only" lacks "$tmp/pages/raw.html" "train (smoothed)"

# A CSV with no learning rate or gradient norm: those charts say so.
mkdir -p "$tmp/csv"
printf 'step,loss,val_loss\n1,3.0,\n2,2.5,\n3,2.2,2.4\n4,2.0,\n5,1.9,2.1\n' >"$tmp/csv/m.csv"
$SFT report "$tmp/csv/m.csv" >/dev/null 2>"$tmp/err"; rc=$?
check "CSV exit 0" test $rc -eq 0
check "CSV well-formed" well_formed "$tmp/csv/report.html"
check "CSV PNGs, empty ones included" sane_pngs "$tmp/csv"
check "CSV: only the loss chart on the page" test "$(grep -c '<svg ' "$tmp/csv/report.html")" = 1

# A sweep dir: the comparison of its trials.
python3 tests/helpers/make_report_runs.py sweep "$tmp/sweep"
$SFT report "$tmp/sweep" >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "sweep exit 0" test $rc -eq 0
check "sweep well-formed" well_formed "$tmp/sweep/report.html"
check "sweep self-contained" self_contained "$tmp/sweep/report.html"
check "sweep best run" has "$tmp/sweep/report.html" "Best run: <b>lr-0.0003</b>"
check "sweep diverging trial failing" has "$tmp/sweep/report.html" '<td>lr-0.003</td>.*verdict failing'
check "sweep legend" has "$tmp/sweep/report.html" ">lr-0.0001</text>"
check "sweep val_loss.png" bash -c "python3 -c \"import sys; d=open('$tmp/sweep/val_loss.png','rb').read(); sys.exit(d[:8]!=b'\\x89PNG\\r\\n\\x1a\\n')\""

# A run dir of another tool (trainer_state.json) with a run.yaml: the
# clipping threshold comes from run.yaml.
mkdir -p "$tmp/hfrun"
cp $fx/sample_healthy.trainer_state.json "$tmp/hfrun/trainer_state.json"
printf 'max_grad_norm: 1.0\nlr: 5.0e-4\n' >"$tmp/hfrun/run.yaml"
$SFT report "$tmp/hfrun" >/dev/null 2>"$tmp/err"; rc=$?
check "HF run dir exit 0" test $rc -eq 0
check "HF run dir healthy" has "$tmp/hfrun/report.html" 'class="verdict healthy"'
check "HF run dir threshold from run.yaml" has "$tmp/hfrun/report.html" "clipping threshold"
check "HF run dir run.yaml on the page" has "$tmp/hfrun/report.html" "lr: 5.0e-4"

# Bad input: one clear error, exit 1, no page left behind.
mkdir -p "$tmp/empty"
$SFT report "$tmp/empty" >/dev/null 2>"$tmp/err"; rc=$?
check "empty dir exit 1" test $rc -eq 1
check "empty dir explains" has "$tmp/err" "no metrics.jsonl"
check "empty dir: no page left" test ! -e "$tmp/empty/report.html"
mkdir -p "$tmp/bad"
printf '{"type":"train","step":1,"loss":2.0}\n{"type":"train","step":2,"loss":\n' >"$tmp/bad/metrics.jsonl"
$SFT report "$tmp/bad" >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "malformed metrics exit 1" test $rc -eq 1
check "malformed metrics names the line" has "$tmp/err" "metrics.jsonl:2"
check "malformed metrics leaves no page" test ! -e "$tmp/bad/report.html"
$SFT report "$tmp/nowhere" >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "missing path exit 1" test $rc -eq 1
check "missing path named" has "$tmp/err" "$tmp/nowhere"
$SFT report "$tmp/run" --smoothing 1 >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "--smoothing 1 rejected" test $rc -eq 1
check "--smoothing error says why" has "$tmp/err" "below 1"
$SFT report "$tmp/run" --smothing 0.5 >"$tmp/stdout" 2>"$tmp/err"; rc=$?
check "misspelled flag suggests" has "$tmp/err" "smoothing"

# By hand (SFT_TEST_CHROMIUM=1, with Debian's chromium installed): the run
# report renders headless with no console message, and the screenshot is
# written. Not part of CI: a browser is not a build dependency.
if [ "${SFT_TEST_CHROMIUM:-0}" = 1 ]; then
  $SFT report "$tmp/run" >/dev/null
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars --window-size=1200,2400 \
    --enable-logging=stderr --v=0 --screenshot="$tmp/shot.png" "file://$tmp/run/report.html" >/dev/null 2>"$tmp/chrome.log"
  check "chromium screenshot written" test -s "$tmp/shot.png"
  check "no console messages" bash -c "! grep -q 'CONSOLE' '$tmp/chrome.log'"
  [ -n "${SFT_TEST_SHOT:-}" ] && cp "$tmp/shot.png" "$SFT_TEST_SHOT"
fi

[ $fail = 0 ] && echo "report.sh: all checks passed"
exit $fail
