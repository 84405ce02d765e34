#!/usr/bin/env bash
# report.sh: `sft report` on HF Trainer's real files and on a hand-made run
# dir: report.html is well-formed and self-contained, the PNGs are PNGs, bad
# input fails cleanly; when Debian's chromium is installed, the page renders
# headless without console errors and the screenshot is written.
set -u
SFT=${SFT:-build/sft}
fx=tests/fixtures/hf_trainer
tmp=$(mktemp -d /tmp/sft-cli-report-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {
  local name=$1; shift
  if "$@"; then :; else echo "  FAIL: $name"; fail=1; fi
}
has() { grep -q -- "$2" "$1"; }

# HF's overfitting run, from its event file, into another folder.
$SFT report $fx/sample_overfit.events.out.tfevents.* --out "$tmp/overfit" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "report exit 0" test $rc -eq 0
check "report prints the page path" has "$tmp/out" "$tmp/overfit/report.html"
for png in loss grad_norm lr; do
  check "$png.png is a PNG" python3 -c "
import sys; d = open('$tmp/overfit/$png.png', 'rb').read(24)
assert d[:8] == b'\x89PNG\r\n\x1a\n' and d[12:16] == b'IHDR', d"
done
check "report.html is well-formed and self-contained" python3 - "$tmp/overfit/report.html" <<'PY'
import sys
from html.parser import HTMLParser
void = {"meta", "br", "img", "line", "circle", "rect", "polyline", "link", "input", "hr"}
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []; self.tags = set(); self.refs = []
    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and ("//" in v or v.startswith("data:")): self.refs.append(v)
        if tag not in void: self.stack.append(tag)
    def handle_startendtag(self, tag, attrs): self.tags.add(tag)
    def handle_endtag(self, tag):
        if tag in void: return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
p = P(); p.feed(open(sys.argv[1]).read()); p.close()
assert not p.stack, p.stack
assert "script" not in p.tags and not p.refs, (p.tags, p.refs)
assert "svg" in p.tags and "polyline" in p.tags
PY
check "overfitting on the page" has "$tmp/overfit/report.html" "<b>overfitting</b> (warning) at step 50 to 120"

# A run dir with run.yaml: the clipping threshold comes from it.
mkdir -p "$tmp/run"
cp $fx/sample_healthy.trainer_state.json "$tmp/run/trainer_state.json"
printf 'max_grad_norm: 1.0\nlr: 5.0e-4\n' >"$tmp/run/run.yaml"
$SFT report "$tmp/run" >/dev/null 2>"$tmp/err"; rc=$?
check "run dir report exit 0" test $rc -eq 0
check "healthy verdict on the page" has "$tmp/run/report.html" 'class="verdict healthy"'
check "clipping threshold drawn" has "$tmp/run/report.html" "clipping threshold"
check "run.yaml on the page" has "$tmp/run/report.html" "lr: 5.0e-4"

# Bad input.
mkdir -p "$tmp/empty"
$SFT report "$tmp/empty" >/dev/null 2>"$tmp/err"; rc=$?
check "empty dir exit 1" test $rc -eq 1
check "empty dir explains" has "$tmp/err" "no metrics.jsonl"
check "no report left behind" test ! -e "$tmp/empty/report.html"

# Rendered by Chromium when it is there (Debian's chromium package).
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chrome" ]; then
  timeout 120 "$chrome" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,2000 \
    --enable-logging=stderr --v=0 --screenshot="$tmp/shot.png" "file://$tmp/overfit/report.html" >/dev/null 2>"$tmp/chrome.log"
  check "chromium screenshot written" test -s "$tmp/shot.png"
  check "no console errors" bash -c "! grep -q 'CONSOLE' '$tmp/chrome.log'"
else
  echo "  (chromium not installed: rendering check skipped)"
fi

[ $fail -eq 0 ] && echo "report.sh: all checks passed"
exit $fail
