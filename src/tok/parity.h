/* parity.h: the tokenizer part of `sft parity` (tokenizer_* entries of
 * reference.json and the strings of corpus/reference_corpus.json.gz),
 * compared with what Hugging Face tokenizers produced. The chats of the same
 * entries are checked by parity_chat.h, called from here. */
#ifndef SFT_TOK_PARITY_H
#define SFT_TOK_PARITY_H

#include "io/json.h"
#include "io/parity.h"

/* A reference.json tokenizer_* entry: loads DIR/entry.dir and checks every
 * strings[] item (ids, tokens, offsets, ids_with_special, decoded), then
 * its chat[] list. Returns -1 only when the checks could not run. */
int sft_parity_check_tokenizer(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                               sft_err *err);

/* DIR/corpus/reference_corpus.json.gz when present (0 and nothing printed
 * when absent): every string's ids and decoded text for every tokenizer in
 * it, then its conversations; one summary line per tokenizer. */
int sft_parity_check_corpus(const char *dir, sft_parity *p, sft_err *err);

#endif
