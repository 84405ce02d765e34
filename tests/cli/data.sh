#!/usr/bin/env bash
# data.sh: `sft data` end to end through the binary: generate, convert round
# trips, stats (text, JSON, HTML), filter, dedup, decontaminate, split, augment,
# score and model-based generation on the fixture models;
# bad lines named FILE:LINE with a non-zero exit and no output file left behind.
# Run by `make test` from the repository root with SFT=path to the binary.
set -u
SFT=${SFT:-build/sft}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "  ok   $1"; }
bad() { echo "  FAIL $1"; fails=$((fails + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# generate: seeded, tagged, the same file twice for one seed
$SFT data generate -o "$tmp/gen.jsonl" --count 300 --seed 5 >/dev/null
$SFT data generate -o "$tmp/gen2.jsonl" --count 300 --seed 5 >/dev/null
check "generate writes the requested records" '[ "$(wc -l < "$tmp/gen.jsonl")" = 300 ]'
check "generate is deterministic for a seed" 'cmp -s "$tmp/gen.jsonl" "$tmp/gen2.jsonl"'
check "generated records carry task and answer" 'head -1 "$tmp/gen.jsonl" | grep -q "\"task\":\"add\",\"answer\""'
$SFT data generate -o "$tmp/gen3.jsonl" --count 300 --seed 6 >/dev/null
check "another seed gives other records" '! cmp -s "$tmp/gen.jsonl" "$tmp/gen3.jsonl"'
$SFT data generate -o "$tmp/uniq.jsonl" --count 1000 --seed 5 --unique >/dev/null
check "generate --unique gives distinct prompts" \
  '[ "$($SFT data stats "$tmp/uniq.jsonl" --json --quiet | python3 -c "import json,sys; print(json.load(sys.stdin)[\"exact_duplicates\"])")" = 0 ]'
check "generate --unique says when a family runs out" \
  '$SFT data generate -o "$tmp/x.jsonl" --count 500 --tasks reverse_word --unique 2>&1 | grep -q "no new prompt left"'
check "unknown task family is refused with a suggestion" \
  '$SFT data generate -o "$tmp/x.jsonl" --tasks ad 2>&1 | grep -q "did you mean .add."'

# convert: messages -> sharegpt -> alpaca -> prompt-completion -> messages is the identity here
$SFT data convert "$tmp/gen.jsonl" --to sharegpt -o "$tmp/c1.jsonl" --quiet >/dev/null
$SFT data convert "$tmp/c1.jsonl" --to alpaca -o "$tmp/c2.json" --quiet >/dev/null
$SFT data convert "$tmp/c2.json" --to prompt-completion -o "$tmp/c3.jsonl" --quiet >/dev/null
$SFT data convert "$tmp/c3.jsonl" --to messages -o "$tmp/c4.jsonl" --quiet >/dev/null
check "convert round trip keeps every record and field" 'cmp -s "$tmp/gen.jsonl" "$tmp/c4.jsonl"'
check "convert to .json writes a JSON array" 'head -c 1 "$tmp/c2.json" | grep -q "\["'
printf '{"id": 1, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}\n' > "$tmp/multi.jsonl"
out=$($SFT data convert "$tmp/multi.jsonl" --to alpaca -o "$tmp/m.jsonl" 2>&1); rc=$?
check "multi-turn to alpaca is refused with FILE:LINE" '[ $rc -ne 0 ] && echo "$out" | grep -q "multi.jsonl:1: 4 messages"'
check "a refused conversion leaves no output" '[ ! -e "$tmp/m.jsonl" ] && ! ls "$tmp"/m.jsonl.tmp.* 2>/dev/null'

# stats
$SFT data stats "$tmp/gen.jsonl" --json --quiet > "$tmp/stats.json"
check "stats --json is valid JSON with the record count" \
  'python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d[\"records\"]!=300 or d[\"files\"][0][\"format\"]!=\"messages\")" "$tmp/stats.json"'
$SFT data stats "$tmp/gen.jsonl" --html "$tmp/stats.html" --quiet > "$tmp/stats.txt"
check "stats text names the detected format" 'grep -q "messages format" "$tmp/stats.txt"'
check "stats HTML holds the histogram" 'grep -q "<svg" "$tmp/stats.html" && grep -q "<rect" "$tmp/stats.html"'

# tokens with a model's tokenizer and chat template
$SFT data stats "$tmp/gen.jsonl" --tokenizer tests/fixtures/hf/models/llama3-tiny --max-len 20 --json --quiet > "$tmp/tstats.json"
check "stats --tokenizer counts tokens as trained, supervised share and overlong records" \
  'python3 -c "import json,sys; t=json.load(open(sys.argv[1]))[\"tokens\"]; sys.exit(not (t[\"template\"]==\"llama3\" and t[\"per_record\"][\"count\"]==300 and 0<t[\"supervised_share\"]<0.5 and 0<t[\"longer_than_max_len\"]<300))" "$tmp/tstats.json"'
$SFT data filter "$tmp/gen.jsonl" -o "$tmp/tfilt.jsonl" --tokenizer tests/fixtures/hf/models/gpt2-tiny --max-tokens 9 --quiet > "$tmp/tfilt.txt"
check "filter --max-tokens rejects long turns" 'grep -q "too_long" "$tmp/tfilt.txt" && [ "$(wc -l < "$tmp/tfilt.jsonl")" -lt 300 ]'
check "--min-tokens without --tokenizer is refused" \
  '$SFT data filter "$tmp/gen.jsonl" -o "$tmp/x.jsonl" --min-tokens 3 2>&1 | grep -q "need --tokenizer"'

# a small hand-made set: junk, duplicates, contamination
cat > "$tmp/raw.jsonl" <<'EOF'
{"id": "a1", "instruction": "Explain why the sky is blue during the day.", "output": "Sunlight is scattered by the molecules of the air, and blue light is scattered much more than red light because of its shorter wavelength."}
{"id": "a2", "instruction": "explain why the SKY is blue   during the day.", "output": "Sunlight is scattered by the molecules of the air, and blue light is scattered much more than red light because of its shorter wavelength."}
{"id": "a3", "instruction": "Tell me a joke.", "output": "As an AI language model, I cannot tell jokes."}
{"id": "a4", "instruction": "Describe a river.", "output": ""}
{"id": "a5", "instruction": "What is the boiling point of water at sea level in degrees Celsius and why does it change on a mountain?", "output": "It is 100 degrees; lower air pressure on a mountain lowers it."}
{"id": "a6", "instruction": "Name a primary colour.", "output": "Red."}
EOF
$SFT data filter "$tmp/raw.jsonl" -o "$tmp/filtered.jsonl" --rejected "$tmp/rejected.jsonl" --quiet > "$tmp/filter.txt"
check "filter keeps clean records" '[ "$(wc -l < "$tmp/filtered.jsonl")" = 4 ]'
check "filter writes rejected records with the rule" \
  'grep -q "\"id\":\"a3\".*\"_filter_rule\":\"refusal\"" "$tmp/rejected.jsonl" && grep -q "\"_filter_rule\":\"empty_turn\"" "$tmp/rejected.jsonl"'
check "filter prints counts per rule" 'grep -q "refusal *1" "$tmp/filter.txt" && grep -q "empty_turn *1" "$tmp/filter.txt"'
check "kept records are written byte for byte" 'grep -qF "{\"id\": \"a6\", \"instruction\": \"Name a primary colour.\", \"output\": \"Red.\"}" "$tmp/filtered.jsonl"'

$SFT data dedup "$tmp/filtered.jsonl" -o "$tmp/dedup.jsonl" --report "$tmp/clusters.jsonl" --quiet >/dev/null
check "dedup removes the normalised exact duplicate" '[ "$(wc -l < "$tmp/dedup.jsonl")" = 3 ] && ! grep -q "\"a2\"" "$tmp/dedup.jsonl"'
check "dedup report lists the cluster with ids" 'grep -q "\"kept_id\":\"a1\".*\"record_id\":\"a2\".*\"exact\"" "$tmp/clusters.jsonl"'

printf '{"q": "What is the boiling point of water at sea level in degrees Celsius and why does it change on a mountain?", "a": "100"}\n{"q": "Who wrote Hamlet?", "a": "Shakespeare"}\n' > "$tmp/eval.jsonl"
$SFT data decontaminate "$tmp/dedup.jsonl" --against "$tmp/eval.jsonl" -o "$tmp/clean.jsonl" --report "$tmp/contam.json" --quiet >/dev/null
check "decontaminate drops the record with an evaluation 13-gram" '[ "$(wc -l < "$tmp/clean.jsonl")" = 2 ] && ! grep -q "\"a5\"" "$tmp/clean.jsonl"'
check "decontaminate reports the evaluation item hit" 'grep -q "\"eval\":\"[^\"]*eval.jsonl:1\"" "$tmp/contam.json"'

# split: fractions, seed, stratification, near duplicates on one side
$SFT data split "$tmp/gen.jsonl" -o "$tmp/split" --val 0.2 --test 0.1 --seed 3 --stratify task --quiet >/dev/null
check "split writes train/val/test covering every record once" \
  '[ "$(cat "$tmp/split/train.jsonl" "$tmp/split/val.jsonl" "$tmp/split/test.jsonl" | sort | uniq | wc -l)" = "$(sort "$tmp/gen.jsonl" | uniq | wc -l)" ] && [ "$(cat "$tmp"/split/*.jsonl | wc -l)" = 300 ]'
check "split puts about the validation fraction aside" 'n=$(wc -l < "$tmp/split/val.jsonl"); [ $n -ge 50 ] && [ $n -le 70 ]'
$SFT data split "$tmp/gen.jsonl" -o "$tmp/split2" --val 0.2 --test 0.1 --seed 3 --stratify task --quiet >/dev/null
check "split is deterministic for a seed" 'cmp -s "$tmp/split/val.jsonl" "$tmp/split2/val.jsonl"'
# normalised duplicates within gen.jsonl must never straddle train and val
python3 - "$tmp/split/train.jsonl" "$tmp/split/val.jsonl" <<'EOF' && ok "split keeps duplicate prompts on one side" || bad "split keeps duplicate prompts on one side"
import json, sys
def keys(p):
    return {json.dumps(json.loads(l)["messages"]).lower() for l in open(p)}
sys.exit(1 if keys(sys.argv[1]) & keys(sys.argv[2]) else 0)
EOF

# augment: originals kept, variants point to their origin, answers unchanged
$SFT data augment "$tmp/clean.jsonl" -o "$tmp/aug.jsonl" --variants 2 --seed 1 --quiet >/dev/null
check "augment writes originals and variants" '[ "$(wc -l < "$tmp/aug.jsonl")" = 6 ]'
check "variants point to their origin" 'grep -q "\"id\":\"a1-aug1\".*\"origin\":{\"file\":\"[^\"]*clean.jsonl\",\"line\":1,\"id\":\"a1\"}" "$tmp/aug.jsonl"'

# bad input: FILE:LINE, non-zero exit, nothing under the output name
printf '{"text": "fine"}\n{"text": broken}\n{"text": "fine too"}\n' > "$tmp/bad.jsonl"
out=$($SFT data dedup "$tmp/bad.jsonl" -o "$tmp/bad_out.jsonl" 2>&1); rc=$?
check "a malformed line is fatal and named FILE:LINE" '[ $rc -ne 0 ] && echo "$out" | grep -q "bad.jsonl:2: invalid JSON"'
check "no output is left after a failure" '[ ! -e "$tmp/bad_out.jsonl" ] && ! ls "$tmp"/bad_out.jsonl.tmp.* 2>/dev/null'
out=$($SFT data dedup "$tmp/bad.jsonl" -o "$tmp/bad_out.jsonl" --skip-bad-records 2>&1); rc=$?
check "--skip-bad-records skips and counts" '[ $rc -eq 0 ] && echo "$out" | grep -q "skipped bad records: 1" && [ "$(wc -l < "$tmp/bad_out.jsonl")" = 2 ]'
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' > "$tmp/noanswer.jsonl"
check "a record without an assistant turn is named" \
  '$SFT data convert "$tmp/noanswer.jsonl" --to sharegpt -o "$tmp/na.jsonl" 2>&1 | grep -q "noanswer.jsonl:1: record has no assistant turn"'
check "unknown flags get the nearest name" '$SFT data dedup "$tmp/gen.jsonl" -o "$tmp/x.jsonl" --treshold 0.5 2>&1 | grep -q "did you mean --threshold"'

# score: sft_scores on every record, every field kept; with a model ppl and IFD; filter on them
M=tests/fixtures/hf/models
$SFT data score "$tmp/clean.jsonl" -o "$tmp/scored.jsonl" --quiet >/dev/null
check "score adds sft_scores to every record" \
  '[ "$(grep -c "\"id\":\"a[0-9]\".*\"sft_scores\":{\"heuristic\":" "$tmp/scored.jsonl")" = "$(wc -l < "$tmp/clean.jsonl")" ]'
$SFT data score "$tmp/clean.jsonl" -o "$tmp/scored_m.jsonl" --model $M/gpt2-tiny --max-len 64 --quiet >/dev/null
check "score --model adds ppl and IFD" 'grep -q "\"ppl\":[0-9]" "$tmp/scored_m.jsonl" && grep -q "\"ifd\":[0-9]" "$tmp/scored_m.jsonl"'
check "filter --max-ifd reads the scores" '$SFT data filter "$tmp/scored_m.jsonl" -o "$tmp/x.jsonl" --max-ifd 0.0001 --quiet | grep -q "high_ifd"'
check "filter --max-ifd without scores or model says what to do" \
  '$SFT data filter "$tmp/clean.jsonl" -o "$tmp/x.jsonl" --max-ifd 1 2>&1 | grep -q "clean.jsonl:1: .*sft data score --model"'
check "a tokenizer that does not fit the model is refused" \
  '$SFT data score "$tmp/clean.jsonl" -o "$tmp/x.jsonl" --model $M/gpt2-tiny --tokenizer $M/llama3-tiny 2>&1 | grep -q "does not fit the model"'
printf 'Name a colour.\nCount to three.\n' > "$tmp/prompts.txt"
$SFT data generate --model $M/gpt2-tiny --instructions "$tmp/prompts.txt" -o "$tmp/ans1.jsonl" --max-new-tokens 5 --seed 3 --quiet >/dev/null
$SFT data generate --model $M/gpt2-tiny --instructions "$tmp/prompts.txt" -o "$tmp/ans2.jsonl" --max-new-tokens 5 --seed 3 --quiet >/dev/null
check "generate --model answers each prompt, seeded" \
  '[ "$(wc -l < "$tmp/ans1.jsonl")" = 2 ] && cmp -s "$tmp/ans1.jsonl" "$tmp/ans2.jsonl" && grep -q "\"method\":\"answer\"" "$tmp/ans1.jsonl"'
check "augment --evolve needs a model" '! $SFT data augment --evolve "$tmp/clean.jsonl" -o "$tmp/x.jsonl" 2>/dev/null'

if [ $fails -ne 0 ]; then echo "data.sh: $fails failed"; exit 1; fi
echo "data.sh: all passed"
