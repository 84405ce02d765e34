#!/usr/bin/env bash
# generate_init.sh: `sft init` makes a loadable model dir (and refuses a
# non-empty --out or a tokenizer larger than the vocabulary, leaving nothing
# behind); `sft generate` is deterministic for greedy and for a fixed seed,
# loads a PEFT adapter, and rejects bad flags with one clear line.
set -u
FX=tests/fixtures/hf/models
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect_error() { # name, expected substring, command...
  local name=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq 0 ] || ! grep -qF -- "$want" "$tmp/err"; then
    echo "FAIL $name: exit $rc, stderr: $(cat "$tmp/err")"; fail=1
  fi
}

$SFT init --config $FX/gpt2-tiny/config.json --tokenizer $FX/gpt2-tiny --out "$tmp/m" --seed 7 >/dev/null ||
  { echo "FAIL init"; fail=1; }
for f in config.json model.safetensors generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  [ -f "$tmp/m/$f" ] || { echo "FAIL init wrote no $f"; fail=1; }
done
a=$($SFT generate --model "$tmp/m" --prompt "Hello" --max-new-tokens 6 --json)
b=$($SFT generate --model "$tmp/m" --prompt "Hello" --max-new-tokens 6 --json)
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL greedy generation not reproducible: $a / $b"; fail=1; }
echo "$a" | grep -q '"new_tokens": 6' || { echo "FAIL expected 6 new tokens: $a"; fail=1; }
s1=$($SFT generate --model "$tmp/m" --prompt "Hello" --max-new-tokens 6 --temperature 1.0 --top-p 0.9 --seed 4)
s2=$($SFT generate --model "$tmp/m" --prompt "Hello" --max-new-tokens 6 --temperature 1.0 --top-p 0.9 --seed 4)
[ "$s1" = "$s2" ] || { echo "FAIL seeded sampling not reproducible"; fail=1; }
# same seed, same weights: init is deterministic
$SFT init --config $FX/gpt2-tiny/config.json --tokenizer $FX/gpt2-tiny --out "$tmp/m2" --seed 7 >/dev/null
cmp -s "$tmp/m/model.safetensors" "$tmp/m2/model.safetensors" || { echo "FAIL init not reproducible by seed"; fail=1; }
$SFT generate --model $FX/llama2-tiny --adapter $FX/llama2-tiny-lora --prompt "Hi" --max-new-tokens 3 >/dev/null ||
  { echo "FAIL generate with a PEFT adapter"; fail=1; }

# chat: a reply per user line, each the greedy reply `sft generate` gives to the
# conversation so far; /reset forgets it, so the same question gets the same answer
one=$($SFT generate --model "$tmp/m" --prompt "Hello" --max-new-tokens 4)
chat=$(printf 'Hello\n/reset\nHello\n' | $SFT chat --model "$tmp/m" --max-new-tokens 4 2>/dev/null)
[ "$chat" = "$(printf '%s\n%s' "$one" "$one")" ] || { echo "FAIL chat replies: [$chat] vs generate [$one]"; fail=1; }

expect_error "init into a non-empty dir" "already exists and is not empty" \
  $SFT init --config $FX/gpt2-tiny/config.json --tokenizer $FX/gpt2-tiny --out "$tmp/m"
expect_error "init with a larger tokenizer" "the tokenizer has 50257 tokens but config.json vocab_size is 32000" \
  $SFT init --config $FX/llama2-tiny/config.json --tokenizer $FX/gpt2-tiny --out "$tmp/bad"
[ -e "$tmp/bad" ] && { echo "FAIL a failed init left $tmp/bad behind"; fail=1; }
ls "$tmp" | grep -q tmp && { echo "FAIL a failed init left a temporary dir"; fail=1; }
expect_error "generate without a prompt" "--model and --prompt are required" $SFT generate --model $FX/gpt2-tiny
expect_error "top-k without temperature" "give --temperature too" \
  $SFT generate --model $FX/gpt2-tiny --prompt x --top-k 5
expect_error "missing model dir" "$tmp/none" $SFT generate --model "$tmp/none" --prompt x

[ $fail -eq 0 ] && echo "generate_init: ok"
exit $fail
