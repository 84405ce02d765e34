/* template_json.h: chat messages read from JSON ({"role", "content"}
 * objects, as in the messages format, HF fixtures and `sft template` input)
 * into the plain sft_chat_message array the template library takes. */
#ifndef SFT_TOK_TEMPLATE_JSON_H
#define SFT_TOK_TEMPLATE_JSON_H

#include "io/json.h"
#include "tok/template.h"

/* Fills *messages (malloc'ed, grown as needed: *cap entries; the content
 * pointers point into `array`, which must outlive them) from a JSON array
 * of {"role": "system"|"user"|"assistant", "content": string}. Errors name
 * the message index and what was expected. */
int sft_chat_messages_from_json(const json_t *array, sft_chat_message **messages, size_t *cap, size_t *count,
                                sft_err *err);

#endif
