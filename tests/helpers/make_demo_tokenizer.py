"""Writes assets/demo-model/: the tokenizer files of the offline demo.

A GPT-2-style byte-level BPE (the GPT-2 pre-tokenizer regex, ByteLevel
decoder) with the 256 byte tokens, merges of the most frequent letter pairs
of English task words, and the ChatML special tokens. Small on purpose: the
demo trains a model from scratch in minutes on 2 cores, and a 50k vocabulary
would spend most of that time in the lm_head. Run from the repo root:
    python3 tests/helpers/make_demo_tokenizer.py
"""
import json
import os


def bytes_to_unicode():
    # The GPT-2 byte-to-character table (printable bytes map to themselves).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    # Merges: frequent pairs in the demo's words, learned greedily from a fixed word list.
    words = ("the of to and a in is what reverse sort numbers word list convert answer plus minus "
             "times count letters how many meters centimeters kilometers grams kilograms minutes seconds "
             "hours ascending descending order letter sum product difference first last").split()
    corpus = {}
    for w in words:
        key = tuple(b2u[b] for b in (" " + w).encode())
        corpus[key] = corpus.get(key, 0) + 1
        key = tuple(b2u[b] for b in w.encode())
        corpus[key] = corpus.get(key, 0) + 1
    merges = []
    for _ in range(240):
        pairs = {}
        for word, freq in corpus.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + freq
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        if pairs[best] < 2:
            break
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        new_corpus = {}
        for word, freq in corpus.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_corpus[tuple(out)] = new_corpus.get(tuple(out), 0) + freq
        corpus = new_corpus
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    out = "assets/demo-model"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "unk_token": None, "model_max_length": 512}, f, indent=2)
    with open(os.path.join(out, "chat_template.jinja"), "w") as f:
        f.write("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
                "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
                "{% endgeneration %}{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    print(len(vocab), "tokens,", len(merges), "merges")


main()
