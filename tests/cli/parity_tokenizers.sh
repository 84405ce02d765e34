#!/usr/bin/env bash
# parity_tokenizers.sh: `sft parity` on the fixtures' tokenizer_* entries
# (strings and chats) and on the real-text corpus; fails on any mismatch.
# Also checks that a wrong reference is reported as a failure, so that the
# parity run cannot pass by checking nothing.
set -eu
SFT=${SFT:-build/sft}
out=$("$SFT" parity tests/fixtures/hf --only tokenizer_) || { echo "$out"; echo "parity_tokenizers: mismatches" >&2; exit 1; }
echo "$out" | grep -E "^(ok|FAIL) " 
for name in tokenizer_gpt2 tokenizer_gpt2-chatml tokenizer_llama3 tokenizer_llama2 "corpus gpt2" "corpus llama3" "corpus llama2"; do
  echo "$out" | grep -q "^ok   $name" || { echo "parity_tokenizers: no passing line for $name" >&2; exit 1; }
done

# A fixture folder whose reference has one id changed must fail, naming the string.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/models"
ln -s "$PWD/tests/fixtures/hf/models/gpt2-tiny" "$tmp/models/gpt2-tiny"
cat > "$tmp/reference.json" <<'JSON'
{"tokenizer_gpt2": {"dir": "models/gpt2-tiny", "strings": [{"text": "Hello world", "ids": [15496, 996],
 "tokens": ["Hello", "\u0120world"], "offsets": [[0, 5], [5, 11]], "ids_with_special": [15496, 995],
 "decoded": "Hello world"}]}}
JSON
if "$SFT" parity "$tmp" > "$tmp/out.txt"; then
  echo "parity_tokenizers: a changed reference id was not detected" >&2; exit 1
fi
grep -q 'FAIL tokenizer_gpt2 strings\[0\] "Hello world" ids: differ at token 1' "$tmp/out.txt" || {
  cat "$tmp/out.txt"; echo "parity_tokenizers: unexpected failure report" >&2; exit 1; }
echo "parity_tokenizers: ok"
