/* template.h: chat templates rendered by built-in C renderers (not a Jinja
 * engine) that reproduce, character for character, what transformers'
 * apply_chat_template produces with the real templates of each family, plus
 * the assistant mask of apply_chat_template(..., return_assistant_tokens_mask=True).
 *
 * Families (sft_chat_template_names lists them): chatml and its variants with
 * a built-in default system prompt (qwen2, qwen2.5, smollm2), llama3,
 * llama3.1, llama2 (Meta's template: strip over system+content, roles must
 * alternate), llama2-trim (per-message `| trim`, as in the HF fixtures),
 * mistral (v0.1 / Mixtral) and alpaca. The family is detected from the
 * model's template text by its markers (<|im_start|>, <|start_header_id|>,
 * [INST], ### Instruction:), or chosen by name. A template that is not
 * recognised, or a known variant that renders differently (Llama 3.2's date
 * of today, Qwen3's <think>, later Mistral templates, text written between
 * tags), is an error listing the names --template accepts: never a silent
 * fallback. docs/templates.md has the details.
 *
 * Assistant spans are what the `{% generation %}` blocks of the HF fixture
 * templates (and TRL's assistant-only-loss templates) enclose: the
 * assistant's text and its end-of-turn token. Upstream templates without
 * generation blocks get the same spans (transformers would return an all-zero
 * mask for them, which no trainer can use).
 *
 * Usage for training (no JSON involved): build the template once, then for
 * each record call sft_chat_encode with a plain array of messages; the
 * sft_chat_encoding buffers are reused from call to call. A template is
 * read-only once made: threads may share it (and the tokenizer), each with
 * its own sft_chat_encoding. */
#ifndef SFT_TOK_TEMPLATE_H
#define SFT_TOK_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"
#include "tok/tokenizer.h"

typedef enum { SFT_ROLE_SYSTEM, SFT_ROLE_USER, SFT_ROLE_ASSISTANT } sft_chat_role;

typedef struct sft_chat_message {
    sft_chat_role role;
    const char *content; /* UTF-8, content_len bytes, need not be NUL-terminated */
    size_t content_len;
} sft_chat_message;

/* "system", "user", "assistant" -> role; -1 (err names the role and the
 * accepted ones) otherwise. */
int sft_chat_role_parse(const char *name, sft_chat_role *role, sft_err *err);
const char *sft_chat_role_name(sft_chat_role role);

/* The names --template accepts, in order; *count set. */
const char *const *sft_chat_template_names(size_t *count);

typedef struct sft_chat_template sft_chat_template;

/* A template by name (name not NULL and not "auto"), or detected from
 * template_text (name NULL or "auto"). bos_token / eos_token: the special
 * token strings the template inserts (NULL when the tokenizer has none; a
 * family that needs one then fails here). */
sft_chat_template *sft_chat_template_new(const char *name, const char *template_text, const char *bos_token,
                                         const char *eos_token, sft_err *err);
/* The same, with the template text and special tokens of a tokenizer. */
sft_chat_template *sft_chat_template_for_tokenizer(const sft_tokenizer *tok, const char *name, sft_err *err);
void sft_chat_template_free(sft_chat_template *tmpl);
/* The renderer's name (one of sft_chat_template_names). */
const char *sft_chat_template_name(const sft_chat_template *tmpl);
/* The renderer as a Jinja chat template for transformers (assistant turns
 * in {% generation %} blocks), for the chat_template.jinja of an exported
 * model: transformers renders and masks it exactly as sft does. */
const char *sft_chat_template_jinja(const sft_chat_template *tmpl);

/* A half-open byte range [start, end) of the rendered text. */
typedef struct sft_chat_span {
    size_t start, end;
} sft_chat_span;

/* Rendered text (NUL-terminated, len bytes) and the assistant spans, in
 * order. Zero-initialise; buffers grow and are reused across calls. */
typedef struct sft_chat_render {
    char *text;
    size_t len, text_cap;
    sft_chat_span *spans;
    size_t span_count, span_cap;
} sft_chat_render;

/* Renders messages as apply_chat_template(messages, add_generation_prompt=...)
 * would. Errors (message index and why): no message, invalid UTF-8, a role
 * order the template rejects or cannot render faithfully. */
int sft_chat_render_messages(const sft_chat_template *tmpl, const sft_chat_message *messages, size_t count,
                             int add_generation_prompt, sft_chat_render *out, sft_err *err);
void sft_chat_render_free(sft_chat_render *render);

/* transformers' mask from generation spans: for each span, the token holding
 * its first character through the token holding its last character get 1;
 * a span whose first character is in no token stops the walk; a last
 * character in no token (or in token 0) extends the span to the end, exactly
 * as apply_chat_template does. offsets are the tokenizer's byte offsets
 * (2 per token) into text; characters are UTF-8 code points, as Python's. */
void sft_chat_assistant_mask(const char *text, size_t len, const sft_chat_span *spans, size_t span_count,
                             const size_t *offsets, size_t token_count, uint8_t *mask);

/* Render + encode (add_special_tokens=False: the template writes BOS) +
 * assistant mask. Zero-initialise; buffers are reused across calls. */
typedef struct sft_chat_encoding {
    sft_chat_render render;
    sft_encoding tokens; /* ids, offsets, count */
    uint8_t *assistant_mask; /* tokens.count entries */
    size_t mask_cap;
} sft_chat_encoding;

int sft_chat_encode(const sft_chat_template *tmpl, const sft_tokenizer *tok, const sft_chat_message *messages,
                    size_t count, int add_generation_prompt, sft_chat_encoding *out, sft_err *err);
void sft_chat_encoding_free(sft_chat_encoding *enc);

#endif
