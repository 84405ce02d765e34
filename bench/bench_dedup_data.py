#!/usr/bin/env python3
"""bench_dedup_data.py: writes N instruction records (JSON lines) for the dedup
benchmark, built from the real-text corpus of the fixtures: each record takes a
window of 10-30 words as instruction and 60-200 words as output from the 2000
corpus chunks. 5% of the records are exact copies (recased), 5% near copies
(two words changed) of an earlier record, so the index does real work.

usage: bench_dedup_data.py N OUT.jsonl [SEED]"""
import gzip, json, random, sys

n, out = int(sys.argv[1]), sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
corpus = json.load(gzip.open("tests/fixtures/hf/corpus/reference_corpus.json.gz", "rt", encoding="utf-8"))
texts = [s.split() for s in corpus["strings"] if len(s.split()) >= 40]
vocab = sorted({w for t in texts for w in t})

def window(lo, hi):
    t = rng.choice(texts)
    k = rng.randint(min(lo, len(t)), min(hi, len(t)))
    at = rng.randint(0, len(t) - k)
    return t[at:at + k]

records = []
with open(out, "w", encoding="utf-8") as f:
    for i in range(n):
        r = rng.random()
        if records and r < 0.05:
            src = rng.choice(records)
            rec = {"instruction": src[0].upper(), "output": src[1]}
        elif records and r < 0.10:
            src = rng.choice(records)
            words = src[1].split()
            for _ in range(2):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            rec = {"instruction": src[0], "output": " ".join(words)}
        else:
            rec = {"instruction": " ".join(window(10, 30)), "output": " ".join(window(60, 200))}
            if len(records) < 20000:
                records.append((rec["instruction"], rec["output"]))
        rec = {"id": i, **rec}
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
