/* parity_chat.h: the chat-template part of `sft parity`: each conversation
 * of a tokenizer_* entry's chat[] (text, text_gen_prompt, ids,
 * assistant_mask) and of the corpus' chat lists (text, ids, assistant_mask)
 * compared with what transformers' apply_chat_template produced. */
#ifndef SFT_TOK_PARITY_CHAT_H
#define SFT_TOK_PARITY_CHAT_H

#include "io/json.h"
#include "io/parity.h"
#include "tok/template.h"

/* Checks a JSON array of {messages, text, [text_gen_prompt], [ids],
 * [assistant_mask]} with the template detected from tok's own chat
 * template. One parity line per check, labelled "LABEL chat[i] field".
 * Returns -1 only when the checks could not run (no recognisable template,
 * malformed entry). */
int sft_parity_check_chats(const json_t *chats, const sft_tokenizer *tok, const char *label, sft_parity *p,
                           sft_err *err);

/* The same with a given template; tok NULL checks the texts only. */
int sft_parity_check_chats_with(const json_t *chats, const sft_chat_template *tmpl, const sft_tokenizer *tok,
                                const char *label, sft_parity *p, sft_err *err);

#endif
