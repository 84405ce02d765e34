#!/usr/bin/env bash
# template.sh: `sft template` on the fixtures: exact output lines (the text,
# ids and assistant masks transformers 5.17 wrote into reference.json), the
# generation prompt, --template overrides, and each bad input's error.
set -u
FX=tests/fixtures/hf
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name, expected, got
  if [ "$2" != "$3" ]; then
    echo "FAIL $1"; echo "  expected: $2"; echo "  got:      $3"; fail=1
  fi
}
# expect_error NAME EXPECTED_SUBSTRING cmd...: non-zero exit, message on stderr, nothing on stdout
expect_error() {
  local name=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" <"$tmp/in"
  local rc=$?
  if [ $rc -eq 0 ] || ! grep -qF -- "$want" "$tmp/err"; then
    echo "FAIL $name: exit $rc, stderr: $(cat "$tmp/err")"; fail=1
  fi
}

conv='{"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "The capital of France is Paris."}]}'

check "chatml ids and mask" \
  '{"text": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n", "ids": [50257, 7220, 198, 2061, 318, 262, 3139, 286, 4881, 30, 50258, 198, 50257, 562, 10167, 198, 464, 3139, 286, 4881, 318, 6342, 13, 50258, 198], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]}' \
  "$(echo "$conv" | $SFT template --tokenizer $FX/tokenizers/gpt2-chatml)"

check "llama3 ids and mask" \
  '{"text": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe capital of France is Paris.<|eot_id|>", "ids": [128000, 128006, 882, 128007, 271, 3923, 374, 279, 6864, 315, 9822, 30, 128009, 128006, 78191, 128007, 271, 791, 6864, 315, 9822, 374, 12366, 13, 128009], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]}' \
  "$(echo "$conv" | $SFT template --tokenizer $FX/models/llama3-tiny)"

check "llama2 ids and mask" \
  '{"text": "<s>[INST] What is the capital of France? [/INST] The capital of France is Paris. </s>", "ids": [1, 518, 25580, 29962, 1724, 338, 278, 7483, 310, 3444, 29973, 518, 29914, 25580, 29962, 450, 7483, 310, 3444, 338, 3681, 29889, 29871, 2], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]}' \
  "$(echo "$conv" | $SFT template --tokenizer $FX/models/llama2-tiny)"

check "alpaca ids and mask" \
  '{"text": "### Instruction:\nWhat is the capital of France?\n\n### Response:\nThe capital of France is Paris.<|endoftext|>\n\n", "ids": [21017, 46486, 25, 198, 2061, 318, 262, 3139, 286, 4881, 30, 198, 198, 21017, 18261, 25, 198, 464, 3139, 286, 4881, 318, 6342, 13, 50256, 628], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]}' \
  "$(echo "$conv" | $SFT template --tokenizer $FX/models/gpt2-tiny)"

# The generation prompt after a user turn; blank lines are skipped; one output line per input line.
user='{"messages": [{"role": "user", "content": "Hi"}]}'
got=$(printf '%s\n\n%s\n' "$user" "$user" | $SFT template --tokenizer $FX/tokenizers/gpt2-chatml --add-generation-prompt)
check "generation prompt" \
  '{"text": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "ids": [50257, 7220, 198, 17250, 50258, 198, 50257, 562, 10167, 198], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}' \
  "$(echo "$got" | head -1)"
check "one line per record" 2 "$(echo "$got" | wc -l)"

# --template overrides the model's own template.
got=$(echo "$user" | $SFT template --tokenizer $FX/tokenizers/gpt2-chatml --template alpaca)
check "--template alpaca" '{"text": "### Instruction:\nHi\n\n### Response:\n", "ids": [21017, 46486, 25, 198, 17250, 198, 198, 21017, 18261, 25, 198], "assistant_mask": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}' "$got"

# Bad input: each a clear error with the line number, non-zero exit.
echo "$user" >"$tmp/in"
expect_error "unknown template name" "unknown chat template 'chatlm' (did you mean 'chatml'?)" \
  $SFT template --tokenizer $FX/tokenizers/gpt2-chatml --template chatlm
printf '%s\n{"messages": [{"role": "robot", "content": "x"}]}\n' "$user" >"$tmp/in"
expect_error "bad role" "stdin line 2: messages[0]: unknown role 'robot' (expected system, user or assistant)" \
  $SFT template --tokenizer $FX/tokenizers/gpt2-chatml
printf '{"messages": [{"role": "user"}]}\n' >"$tmp/in"
expect_error "missing content" "stdin line 1: messages[0] (user) has no 'content'" \
  $SFT template --tokenizer $FX/tokenizers/gpt2-chatml
printf '%s\n{"messages": [\n' "$user" >"$tmp/in"
expect_error "invalid JSON" "stdin line 2: invalid JSON" $SFT template --tokenizer $FX/tokenizers/gpt2-chatml
printf '{"text": "x"}\n' >"$tmp/in"
expect_error "no messages" "stdin line 1: expected an object with \"messages\"" \
  $SFT template --tokenizer $FX/tokenizers/gpt2-chatml
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}\n' >"$tmp/in"
expect_error "llama2 roles" "stdin line 1: messages[1] has role user where the llama2 template needs assistant" \
  $SFT template --tokenizer $FX/models/llama2-tiny --template llama2
# A model folder whose template no renderer knows: the error lists the names.
mkdir -p "$tmp/odd"
cp $FX/tokenizers/gpt2-chatml/tokenizer.json $FX/tokenizers/gpt2-chatml/tokenizer_config.json "$tmp/odd/"
echo '{{ messages | tojson }}' >"$tmp/odd/chat_template.jinja"
echo "$user" >"$tmp/in"
expect_error "unrecognised template" "--template NAME (one of: chatml, qwen2, qwen2.5, smollm2, llama3, llama3.1, llama2, llama2-trim, mistral, alpaca)" \
  $SFT template --tokenizer "$tmp/odd"
expect_error "missing --tokenizer" "--tokenizer DIR is required" $SFT template
exit $fail
