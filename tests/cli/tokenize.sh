#!/usr/bin/env bash
# tokenize.sh: `sft tokenize` reads JSON lines and writes ids and tokens;
# bad input stops with an error naming the line.
set -eu
SFT=${SFT:-build/sft}
GPT2=tests/fixtures/hf/models/gpt2-tiny
LLAMA2=tests/fixtures/hf/models/llama2-tiny
got=$(printf '{"text": "Hello world"}\n\n{"text": ""}\n' | "$SFT" tokenize --tokenizer $GPT2)
want=$'{"ids": [15496, 995], "tokens": ["Hello", "\xc4\xa0world"]}\n{"ids": [], "tokens": []}'
[ "$got" = "$want" ] || { echo "tokenize: got $got"; exit 1; }
got=$(printf '{"text": "Hello world"}\n' | "$SFT" tokenize --tokenizer $LLAMA2 --add-special)
[ "$got" = $'{"ids": [1, 15043, 3186], "tokens": ["<s>", "\xe2\x96\x81Hello", "\xe2\x96\x81world"]}' ] || { echo "tokenize: got $got"; exit 1; }
# A line without "text", then a line that is not JSON: errors with the line number, exit 1.
if err=$(printf '{"text": "a"}\n{"txt": "b"}\n' | "$SFT" tokenize --tokenizer $GPT2 2>&1 >/dev/null); then
  echo "tokenize: a line without text was accepted"; exit 1
fi
[ "$err" = 'sft tokenize: stdin line 2: expected an object with a string "text"' ] || { echo "tokenize: $err"; exit 1; }
if err=$(printf 'not json\n' | "$SFT" tokenize --tokenizer $GPT2 2>&1 >/dev/null); then
  echo "tokenize: invalid JSON was accepted"; exit 1
fi
case "$err" in "sft tokenize: stdin line 1"*"invalid JSON"*) ;; *) echo "tokenize: $err"; exit 1 ;; esac
if err=$("$SFT" tokenize 2>&1 </dev/null); then echo "tokenize: ran without --tokenizer"; exit 1; fi
echo "tokenize: ok"
