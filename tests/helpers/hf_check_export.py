#!/usr/bin/env python3
"""hf_check_export.py: loads what `sft train` exported with the real Hugging Face
stack and compares it with sft's own numbers.

    python3 tests/helpers/hf_check_export.py CASES.json

CASES.json (written by the caller after running sft): a list of
  {"name", "model": DIR, "adapter": DIR or null, "data": FILE (messages JSONL),
   "sft_loss": L, "sft_tokens": N}
where sft_loss / sft_tokens are `sft eval --json`'s "loss" / "tokens" for the same
model, adapter and data. For each case the model is loaded with
transformers.AutoModelForCausalLM (the adapter with peft.PeftModel), every record
is rendered with tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)
(the chat_template.jinja that sft wrote), and the token-weighted mean of the
shifted cross-entropy over the assistant tokens is compared with sft's. Prints one
line per case and exits 1 on any mismatch (relative tolerance 1e-4: float32 sums
in another order), 2 when transformers or peft is missing.
"""
import json
import sys


def main():
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        print(f"transformers not available: {e}")
        return 2
    cases = json.load(open(sys.argv[1]))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    bad = 0
    for case in cases:
        model = AutoModelForCausalLM.from_pretrained(case["model"], torch_dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(case["adapter"] or case["model"])
        if case["adapter"]:
            try:
                import peft
                from peft import PeftModel
            except ImportError as e:
                print(f"{case['name']}: peft not available: {e}")
                return 2
            model = PeftModel.from_pretrained(model, case["adapter"])
            print(f"peft {peft.__version__}")
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for line in open(case["data"]):
                if not line.strip():
                    continue
                msgs = json.loads(line)["messages"]
                enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
                ids = torch.tensor([enc["input_ids"]])
                mask = torch.tensor(enc["assistant_masks"])
                labels = torch.where(mask.bool(), ids[0], torch.full_like(ids[0], -100))
                logits = model(input_ids=ids).logits[0].double()
                targets = labels[1:]
                keep = targets != -100
                lp = torch.log_softmax(logits[:-1], dim=-1)
                total += -lp[keep, targets[keep]].sum().item()
                count += int(keep.sum())
        loss = total / count
        rel = abs(loss - case["sft_loss"]) / abs(case["sft_loss"])
        ok = rel < 1e-4 and count == case["sft_tokens"]
        bad += not ok
        print(f"{'ok' if ok else 'MISMATCH'} {case['name']}: transformers loss {loss:.8f} over {count} tokens, "
              f"sft {case['sft_loss']:.8f} over {case['sft_tokens']} (rel diff {rel:.2e})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
