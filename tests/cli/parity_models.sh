#!/usr/bin/env bash
# parity_models.sh: `sft parity` on the model_* and lora_* entries of the
# fixtures (transformers 5.17 / PEFT 0.21 numbers): every check passes; a
# reference number moved by 1% fails with a line naming it; a model dir with
# a missing tensor reports the tensor.
set -u
FX=tests/fixtures/hf
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# make_fixture DIR PYTHON_EDIT: a fixture dir with only the model/LoRA entries of
# reference.json (edited by the Python statement, which sees it as `r`) and the models.
make_fixture() {
  mkdir -p "$1"
  ln -s "$PWD/$FX/models" "$1/models"
  python3 - "$FX/reference.json" "$1/reference.json" "$2" <<'PY'
import json, sys
r = {k: v for k, v in json.load(open(sys.argv[1])).items() if k.startswith(("model_", "lora_"))}
exec(sys.argv[3])
json.dump(r, open(sys.argv[2], "w"))
PY
}

make_fixture "$tmp/all" "pass"
out=$($SFT parity "$tmp/all" 2>&1); rc=$?
echo "$out" | grep -E '^(ok|FAIL)  ? ?(model_|lora_)[^:]*: [0-9]+ checks' | sed 's/^/  /'
if [ $rc -ne 0 ] || ! echo "$out" | grep -q "parity passed"; then
  echo "FAIL parity on the fixtures (exit $rc)"; echo "$out" | grep -v '^ok' | head -20; fail=1
fi
for key in model_gpt2-tiny model_llama3-tiny model_llama2-tiny lora_llama2-tiny; do
  echo "$out" | grep -q "^ok   $key: " || { echo "FAIL no passing line for $key"; fail=1; }
done

# a moved reference value must be caught, by name
make_fixture "$tmp/moved" "r = {k: r[k] for k in ('model_llama2-tiny', 'model_gpt2-tiny')}; r['model_llama2-tiny']['loss'] *= 1.01; r['model_gpt2-tiny']['grad']['transformer.h.0.mlp.c_fc.weight']['sumsq'] *= 1.01"
out=$($SFT parity "$tmp/moved" 2>&1); rc=$?
[ $rc -eq 1 ] || { echo "FAIL moved values: exit $rc, expected 1"; fail=1; }
echo "$out" | grep -q "FAIL model_llama2-tiny: loss: got" || { echo "FAIL moved loss not reported"; fail=1; }
echo "$out" | grep -q "FAIL model_gpt2-tiny: grad sumsq transformer.h.0.mlp.c_fc.weight" ||
  { echo "FAIL moved gradient statistic not reported"; fail=1; }

# a model dir without one tensor: one clear line naming it
mkdir -p "$tmp/broken/models/gpt2-tiny"
cp "$FX/models/gpt2-tiny/config.json" "$tmp/broken/models/gpt2-tiny/"
python3 - "$FX/reference.json" "$tmp/broken/reference.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
json.dump({"model_gpt2-tiny": r["model_gpt2-tiny"]}, open(sys.argv[2], "w"))
PY
out=$($SFT parity "$tmp/broken" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "model.safetensors" ||
  { echo "FAIL missing weights file: exit $rc: $out"; fail=1; }

[ $fail -eq 0 ] && echo "parity_models: ok"
exit $fail
