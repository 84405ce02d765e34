/* template.c: the built-in chat-template renderers and their detection from a
 * model's Jinja template text (see template.h for the contract).
 *
 * Each renderer writes exactly the characters the family's real templates
 * produce under transformers (Jinja2, whose `| trim` and Python's
 * str.strip() remove the code points of Python's str.isspace()), and records
 * the byte range of every assistant turn that the `{% generation %}` blocks
 * of the HF fixture templates enclose. References: the templates in
 * tests/fixtures/hf (written by generate.py) and the upstream ones of
 * Qwen2/Qwen2.5 Instruct, SmolLM/SmolLM2 Instruct, Meta Llama 3 / 3.1
 * Instruct and Llama 2 chat. */
#include "tok/template.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/suggest.h"

typedef enum { FAMILY_CHATML, FAMILY_LLAMA3, FAMILY_LLAMA2, FAMILY_MISTRAL, FAMILY_ALPACA } template_family;

typedef struct {
    const char *name;
    template_family family;
    /* chatml: the system turn the template writes when messages[0] is not
     * a system message (Qwen2, Qwen2.5, SmolLM2); NULL for none. */
    const char *default_system;
    /* llama3.1: the system header with "Cutting Knowledge Date" always written. */
    int llama31;
    /* llama2: Meta's template (strip over system block + first user content,
     * roles must alternate) rather than the per-message `| trim` one. */
    int llama2_meta;
} renderer;

static const renderer renderers[] = {
    {"chatml", FAMILY_CHATML, NULL, 0, 0},
    {"qwen2", FAMILY_CHATML, "You are a helpful assistant.", 0, 0},
    {"qwen2.5", FAMILY_CHATML, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", 0, 0},
    {"smollm2", FAMILY_CHATML, "You are a helpful AI assistant named SmolLM, trained by Hugging Face", 0, 0},
    {"llama3", FAMILY_LLAMA3, NULL, 0, 0},
    {"llama3.1", FAMILY_LLAMA3, NULL, 1, 0},
    {"llama2", FAMILY_LLAMA2, NULL, 0, 1},
    {"llama2-trim", FAMILY_LLAMA2, NULL, 0, 0},
    {"mistral", FAMILY_MISTRAL, NULL, 0, 0},
    {"alpaca", FAMILY_ALPACA, NULL, 0, 0},
};
#define RENDERER_COUNT (sizeof renderers / sizeof renderers[0])

/* Each renderer as a Jinja template for transformers, with the assistant
 * turns in {% generation %} blocks: what an exported model directory gets,
 * so that transformers renders (and masks) exactly what sft trained on. The
 * chatml, llama3, llama2-trim and alpaca texts are the HF fixtures' own. */
#define JINJA_CHATML_TURNS                                                                                      \
    "{{ '<|im_start|>' + message['role'] + '\\n' }}{% if message['role'] == 'assistant' %}{% generation %}"     \
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}"                            \
    "{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}"                                      \
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
#define JINJA_CHATML_DEFAULT_SYSTEM(text)                                                                       \
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"                      \
    "{{ '<|im_start|>system\\n" text "<|im_end|>\\n' }}{% endif %}" JINJA_CHATML_TURNS
#define JINJA_LLAMA3_TURNS                                                                                      \
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"      \
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"     \
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"       \
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"

static const char *const renderer_jinja[] = {
    "{% for message in messages %}" JINJA_CHATML_TURNS,
    JINJA_CHATML_DEFAULT_SYSTEM("You are a helpful assistant."),
    JINJA_CHATML_DEFAULT_SYSTEM("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    JINJA_CHATML_DEFAULT_SYSTEM("You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    "{{ bos_token }}" JINJA_LLAMA3_TURNS,
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] | trim %}"
    "{% set messages = messages[1:] %}{% else %}{% set system_message = '' %}{% endif %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023\\n"
    "Today Date: 26 Jul 2024\\n\\n' + system_message + '<|eot_id|>' }}" JINJA_LLAMA3_TURNS,
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endgeneration %}{% endif %}{% endfor %}",
    "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\\n' + messages[0]['content'] + "
    "'\\n<</SYS>>\\n\\n' %}{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}"
    "{% endif %}{% for message in msgs %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (sys if loop.first else '') + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{% generation %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}",
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{% generation %}{{ message['content'] + eos_token }}"
    "{% endgeneration %}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}",
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n### Response:\\n' }}"
    "{% elif message['role'] == 'assistant' %}{% generation %}{{ message['content'] + eos_token }}"
    "{% endgeneration %}{{ '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '' }}{% endif %}",
};

static const char *renderer_names[RENDERER_COUNT] = {
    "chatml", "qwen2", "qwen2.5", "smollm2", "llama3", "llama3.1", "llama2", "llama2-trim", "mistral", "alpaca",
};

/* Llama 3.1's system header, with the template's default date_string. */
#define LLAMA31_SYSTEM_PREAMBLE "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

struct sft_chat_template {
    const renderer *r;
    char *bos_token, *eos_token;
};

const char *const *sft_chat_template_names(size_t *count) {
    *count = RENDERER_COUNT;
    return renderer_names;
}

/* "chatml, qwen2, ..." for error messages, into buf. */
static const char *names_list(char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < RENDERER_COUNT && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", renderer_names[i]);
    return buf;
}

static const char *const role_names[] = {"system", "user", "assistant"};

const char *sft_chat_role_name(sft_chat_role role) {
    return (unsigned)role < 3 ? role_names[role] : "?";
}

int sft_chat_role_parse(const char *name, sft_chat_role *role, sft_err *err) {
    for (int i = 0; i < 3; i++) {
        if (!strcmp(name, role_names[i])) {
            *role = (sft_chat_role)i;
            return 0;
        }
    }
    return sft_errf(err, "unknown role '%s' (expected system, user or assistant)", name);
}

/* ---- UTF-8 and Python whitespace ---------------------------------------- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), 0 when invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Byte index of the first invalid sequence, or len when s is valid UTF-8. */
static size_t utf8_invalid_at(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_valid_len(u + i, len - i);
        if (!n) return i;
        i += n;
    }
    return len;
}

static unsigned utf8_decode(const unsigned char *s, size_t n) {
    if (n == 1) return s[0];
    unsigned cp = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

/* Python's str.isspace(): Unicode White_Space minus U+180E... exactly the 29
 * code points for which CPython 3 returns True (bidi class WS/B/S or Zs). */
static int py_isspace(unsigned cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    if (cp < 0x85) return 0;
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* str.strip() on valid UTF-8: narrows [*start, *start + *len). */
static void py_strip(const char *s, size_t *start, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t b = *start, e = *start + *len;
    while (b < e) {
        size_t n = utf8_valid_len(u + b, e - b);
        if (!n || !py_isspace(utf8_decode(u + b, n))) break;
        b += n;
    }
    while (e > b) {
        size_t c = e - 1;
        while (c > b && (u[c] & 0xC0) == 0x80) c--;
        size_t n = e - c;
        if (utf8_valid_len(u + c, n) != n || !py_isspace(utf8_decode(u + c, n))) break;
        e = c;
    }
    *start = b;
    *len = e - b;
}

/* ---- output buffer ------------------------------------------------------ */

static int out_reserve(sft_chat_render *out, size_t more, sft_err *err) {
    size_t need = out->len + more + 1;
    if (need <= out->text_cap) return 0;
    size_t cap = out->text_cap ? out->text_cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(out->text, cap);
    if (!p) return sft_errf(err, "out of memory rendering a chat of %zu bytes", need);
    out->text = p;
    out->text_cap = cap;
    return 0;
}

static int put(sft_chat_render *out, const char *s, size_t n, sft_err *err) {
    if (!n) return 0; /* s may be NULL for an empty message */
    if (out_reserve(out, n, err)) return -1;
    memcpy(out->text + out->len, s, n);
    out->len += n;
    out->text[out->len] = 0;
    return 0;
}

static int puts_(sft_chat_render *out, const char *s, sft_err *err) {
    return put(out, s, strlen(s), err);
}

static int put_trimmed(sft_chat_render *out, const sft_chat_message *m, sft_err *err) {
    size_t start = 0, len = m->content_len;
    py_strip(m->content, &start, &len);
    return put(out, m->content + start, len, err);
}

static int span_add(sft_chat_render *out, size_t start, size_t end, sft_err *err) {
    if (out->span_count == out->span_cap) {
        size_t cap = out->span_cap ? out->span_cap * 2 : 8;
        sft_chat_span *p = realloc(out->spans, cap * sizeof *p);
        if (!p) return sft_errf(err, "out of memory");
        out->spans = p;
        out->span_cap = cap;
    }
    out->spans[out->span_count++] = (sft_chat_span){start, end};
    return 0;
}

void sft_chat_render_free(sft_chat_render *render) {
    free(render->text);
    free(render->spans);
    memset(render, 0, sizeof *render);
}

/* ---- renderers ---------------------------------------------------------- */

/* {% for m in messages %}<|im_start|>{{role}}\n{{content}}<|im_end|>\n, the
 * assistant's content + <|im_end|> in a generation block; variants with a
 * default system prompt write it when messages[0] is not a system message. */
static int render_chatml(const sft_chat_template *t, const sft_chat_message *m, size_t n, int gen_prompt,
                         sft_chat_render *out, sft_err *err) {
    /* Qwen2 and SmolLM2 write the default inside the loop (nothing for no
     * messages); Qwen2.5 reads messages[0] outside it (an error then,
     * refused in sft_chat_render_messages). */
    if (t->r->default_system && n && m[0].role != SFT_ROLE_SYSTEM) {
        if (puts_(out, "<|im_start|>system\n", err) || puts_(out, t->r->default_system, err) ||
            puts_(out, "<|im_end|>\n", err))
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (puts_(out, "<|im_start|>", err) || puts_(out, role_names[m[i].role], err) || puts_(out, "\n", err))
            return -1;
        size_t start = out->len;
        if (put(out, m[i].content, m[i].content_len, err) || puts_(out, "<|im_end|>", err)) return -1;
        if (m[i].role == SFT_ROLE_ASSISTANT && span_add(out, start, out->len, err)) return -1;
        if (puts_(out, "\n", err)) return -1;
    }
    if (gen_prompt && puts_(out, "<|im_start|>assistant\n", err)) return -1;
    return 0;
}

/* bos, then <|start_header_id|>{{role}}<|end_header_id|>\n\n{{content|trim}}<|eot_id|>
 * per message (Llama 3.1: a system header with the knowledge/today dates
 * and the first system message, trimmed, always comes first). */
static int render_llama3(const sft_chat_template *t, const sft_chat_message *m, size_t n, int gen_prompt,
                         sft_chat_render *out, sft_err *err) {
    if (puts_(out, t->bos_token, err)) return -1;
    size_t first = 0;
    if (t->r->llama31) {
        if (puts_(out, "<|start_header_id|>system<|end_header_id|>\n\n" LLAMA31_SYSTEM_PREAMBLE, err)) return -1;
        if (m[0].role == SFT_ROLE_SYSTEM) {
            if (put_trimmed(out, &m[0], err)) return -1;
            first = 1;
        }
        if (puts_(out, "<|eot_id|>", err)) return -1;
    }
    for (size_t i = first; i < n; i++) {
        if (puts_(out, "<|start_header_id|>", err) || puts_(out, role_names[m[i].role], err) ||
            puts_(out, "<|end_header_id|>\n\n", err))
            return -1;
        size_t start = out->len;
        if (put_trimmed(out, &m[i], err) || puts_(out, "<|eot_id|>", err)) return -1;
        if (m[i].role == SFT_ROLE_ASSISTANT && span_add(out, start, out->len, err)) return -1;
    }
    if (gen_prompt && puts_(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", err)) return -1;
    return 0;
}

/* Llama 2 chat: bos [INST] <<SYS>>\n{{system}}\n<</SYS>>\n\n{{user}} [/INST] {{assistant}} eos.
 * Meta's template strips the system block and the first user message
 * together (content.strip()) and raises unless roles alternate user,
 * assistant, ...; the `| trim` variant trims each message alone and renders
 * every non-user message as an assistant turn. Neither writes a generation
 * prompt. */
static int render_llama2(const sft_chat_template *t, const sft_chat_message *m, size_t n, int gen_prompt,
                         sft_chat_render *out, sft_err *err) {
    (void)gen_prompt;
    size_t first = m[0].role == SFT_ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        size_t k = i - first; /* loop.index0 */
        if (m[i].role == SFT_ROLE_SYSTEM)
            return sft_errf(err, "messages[%zu]: a system message is only accepted first by the %s template", i,
                            t->r->name);
        if (t->r->llama2_meta && (m[i].role == SFT_ROLE_USER) != (k % 2 == 0))
            return sft_errf(err,
                            "messages[%zu] has role %s where the %s template needs %s: roles must alternate "
                            "user/assistant/user/... (after an optional first system message)",
                            i, role_names[m[i].role], t->r->name, k % 2 == 0 ? "user" : "assistant");
        if (m[i].role == SFT_ROLE_USER) {
            if (puts_(out, t->bos_token, err) || puts_(out, "[INST] ", err)) return -1;
            if (k == 0 && first) {
                /* The system block goes into the first user turn (Meta:
                 * loop.index0 == 0; trim variant: loop.first). */
                size_t block_start = out->len;
                if (puts_(out, "<<SYS>>\n", err) || put(out, m[0].content, m[0].content_len, err) ||
                    puts_(out, "\n<</SYS>>\n\n", err))
                    return -1;
                if (t->r->llama2_meta) {
                    /* (block + content).strip(): the block starts with '<', so
                     * only the end is stripped, through the block when the
                     * content is all whitespace. */
                    if (put(out, m[i].content, m[i].content_len, err)) return -1;
                    size_t start = block_start, len = out->len - block_start;
                    py_strip(out->text, &start, &len);
                    out->len = start + len;
                    out->text[out->len] = 0;
                } else if (put_trimmed(out, &m[i], err)) {
                    return -1;
                }
            } else if (put_trimmed(out, &m[i], err)) {
                return -1;
            }
            if (puts_(out, " [/INST]", err)) return -1;
        } else {
            size_t start = out->len;
            if (puts_(out, " ", err) || put_trimmed(out, &m[i], err) || puts_(out, " ", err) ||
                puts_(out, t->eos_token, err))
                return -1;
            if (span_add(out, start, out->len, err)) return -1;
        }
    }
    return 0;
}

/* Mistral 7B Instruct v0.1 / Mixtral 8x7B Instruct: bos, then
 * [INST] {{user}} [/INST]{{assistant}}eos per turn, nothing trimmed; only
 * user and assistant messages, alternating from a user one; no generation
 * prompt. */
static int render_mistral(const sft_chat_template *t, const sft_chat_message *m, size_t n, int gen_prompt,
                          sft_chat_render *out, sft_err *err) {
    (void)gen_prompt;
    if (puts_(out, t->bos_token, err)) return -1;
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == SFT_ROLE_SYSTEM)
            return sft_errf(err, "messages[%zu]: the mistral template has no system messages (only user and assistant)",
                            i);
        if ((m[i].role == SFT_ROLE_USER) != (i % 2 == 0))
            return sft_errf(err,
                            "messages[%zu] has role %s where the mistral template needs %s: roles must alternate "
                            "user/assistant/user/...",
                            i, role_names[m[i].role], i % 2 == 0 ? "user" : "assistant");
        if (m[i].role == SFT_ROLE_USER) {
            if (puts_(out, "[INST] ", err) || put(out, m[i].content, m[i].content_len, err) ||
                puts_(out, " [/INST]", err))
                return -1;
        } else {
            size_t start = out->len;
            if (put(out, m[i].content, m[i].content_len, err) || puts_(out, t->eos_token, err) ||
                span_add(out, start, out->len, err))
                return -1;
        }
    }
    return 0;
}

/* {{system}}\n\n  ### Instruction:\n{{user}}\n\n### Response:\n  {{assistant}}{{eos}}\n\n;
 * the generation prompt is empty (the last user turn already ends with
 * "### Response:\n"). */
static int render_alpaca(const sft_chat_template *t, const sft_chat_message *m, size_t n, int gen_prompt,
                         sft_chat_render *out, sft_err *err) {
    (void)gen_prompt;
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case SFT_ROLE_SYSTEM:
            if (put(out, m[i].content, m[i].content_len, err) || puts_(out, "\n\n", err)) return -1;
            break;
        case SFT_ROLE_USER:
            if (puts_(out, "### Instruction:\n", err) || put(out, m[i].content, m[i].content_len, err) ||
                puts_(out, "\n\n### Response:\n", err))
                return -1;
            break;
        case SFT_ROLE_ASSISTANT: {
            size_t start = out->len;
            if (put(out, m[i].content, m[i].content_len, err) || puts_(out, t->eos_token, err)) return -1;
            if (span_add(out, start, out->len, err) || puts_(out, "\n\n", err)) return -1;
            break;
        }
        }
    }
    return 0;
}

int sft_chat_render_messages(const sft_chat_template *tmpl, const sft_chat_message *messages, size_t count,
                             int add_generation_prompt, sft_chat_render *out, sft_err *err) {
    out->len = 0;
    out->span_count = 0;
    if (out_reserve(out, 0, err)) return -1;
    out->text[0] = 0;
    /* No messages: the ChatML loop templates, Mistral's and Alpaca's render
     * (their generation prompt, BOS, nothing); the others read messages[0]
     * (an error in Jinja), and Llama 3's upstream and fixture templates
     * differ on it (BOS inside or outside the loop). */
    if (!count && (tmpl->r->family == FAMILY_LLAMA3 || tmpl->r->family == FAMILY_LLAMA2 ||
                   !strcmp(tmpl->r->name, "qwen2.5")))
        return sft_errf(err, "no messages to render (the %s template needs at least one)", tmpl->r->name);
    for (size_t i = 0; i < count; i++) {
        if ((unsigned)messages[i].role > SFT_ROLE_ASSISTANT)
            return sft_errf(err, "messages[%zu]: invalid role %d", i, (int)messages[i].role);
        if (!messages[i].content && messages[i].content_len)
            return sft_errf(err, "messages[%zu]: no content", i);
        size_t bad = utf8_invalid_at(messages[i].content, messages[i].content_len);
        if (bad != messages[i].content_len)
            return sft_errf(err, "messages[%zu] (%s): content is not valid UTF-8 at byte %zu", i,
                            role_names[messages[i].role], bad);
    }
    int rc;
    switch (tmpl->r->family) {
    case FAMILY_CHATML: rc = render_chatml(tmpl, messages, count, add_generation_prompt, out, err); break;
    case FAMILY_LLAMA3: rc = render_llama3(tmpl, messages, count, add_generation_prompt, out, err); break;
    case FAMILY_LLAMA2: rc = render_llama2(tmpl, messages, count, add_generation_prompt, out, err); break;
    case FAMILY_MISTRAL: rc = render_mistral(tmpl, messages, count, add_generation_prompt, out, err); break;
    default: rc = render_alpaca(tmpl, messages, count, add_generation_prompt, out, err); break;
    }
    if (rc) {
        out->len = 0;
        out->span_count = 0;
        out->text[0] = 0;
    }
    return rc;
}

/* ---- detection ---------------------------------------------------------- */

static const renderer *renderer_by_name(const char *name) {
    for (size_t i = 0; i < RENDERER_COUNT; i++)
        if (!strcmp(renderers[i].name, name)) return &renderers[i];
    return NULL;
}

static int refuse(sft_err *err, const char *why) {
    char names[256];
    return sft_errf(err, "%s; choose a built-in template with --template NAME (one of: %s)", why,
                    names_list(names, sizeof names));
}

/* The next Jinja tag ({{, {% or {#) at or after p, or NULL. */
static const char *next_tag(const char *p) {
    for (p = strchr(p, '{'); p; p = strchr(p + 1, '{'))
        if (p[1] == '{' || p[1] == '%' || p[1] == '#') return p;
    return NULL;
}

/* The closing delimiter ("}}", "%}" or "#}") of the tag at `tag`, minding
 * string literals that may hold one; NULL when unterminated. When
 * `literals` is given, appends each string literal of an expression or
 * statement tag, unescaped as Jinja does for the common escapes, followed by
 * a \x1f separator (it must hold strlen(tag) + 1 more bytes). */
static const char *tag_end(const char *tag, char *literals, size_t *literals_len) {
    char close = tag[1] == '{' ? '}' : tag[1] == '%' ? '%' : '#';
    char quote = 0;
    for (const char *q = tag + 2; *q; q++) {
        if (quote) {
            if (*q == quote) {
                quote = 0;
                if (literals) literals[(*literals_len)++] = '\x1f';
                continue;
            }
            char c = *q;
            if (c == '\\' && q[1]) {
                q++;
                c = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q == 'r' ? '\r' : *q;
            }
            if (literals) literals[(*literals_len)++] = c;
        } else if (close != '#' && (*q == '\'' || *q == '"')) {
            quote = *q;
        } else if (*q == close && q[1] == '}') {
            return q;
        }
    }
    return NULL;
}

/* Every string literal of the template's tags, unescaped, each followed by
 * \x1f: what the template can write. malloc'ed; NULL when out of memory. */
static char *template_literals(const char *text) {
    char *out = malloc(strlen(text) + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (const char *tag = next_tag(text); tag;) {
        const char *end = tag_end(tag, out, &n);
        if (!end) break;
        tag = next_tag(end + 2);
    }
    out[n] = 0;
    return out;
}

/* The default system prompt a ChatML template writes itself: the text after
 * "<|im_start|>system\n" up to <|im_end|> inside one string literal (Qwen2:
 * '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'). Literals
 * where the marker ends the string (the system message's own content
 * follows) do not count. *found = 0 when there is none. */
static int chatml_default_system(const char *text, char *buf, size_t cap, int *found, sft_err *err) {
    static const char marker[] = "<|im_start|>system\n";
    *found = 0;
    char *literals = template_literals(text);
    if (!literals) return sft_errf(err, "out of memory");
    for (const char *p = strstr(literals, marker); p; p = strstr(p + 1, marker)) {
        const char *start = p + sizeof marker - 1;
        const char *stop = strchr(start, '\x1f');
        const char *end = strstr(start, "<|im_end|>");
        if (!end || (stop && stop < end) || end == start) continue;
        size_t n = (size_t)(end - start);
        if (n >= cap) {
            free(literals);
            return refuse(err, "the ChatML template's default system prompt is too long to read");
        }
        memcpy(buf, start, n);
        buf[n] = 0;
        *found = 1;
        break;
    }
    free(literals);
    return 0;
}

/* Where the template writes text outside its tags, or -1 when it writes
 * none. The built-in renderers assume every character comes from a {{ }}
 * expression; a template with a stray "\n" between two tags renders
 * differently and must not pass for its family. Applies Jinja's whitespace
 * rules as transformers configures them (trim_blocks: the newline after a
 * block or comment tag is dropped; lstrip_blocks: spaces and tabs from a
 * line start to a block or comment tag are dropped; a '-' inside a
 * delimiter strips all whitespace on that side). */
static long literal_output_at(const char *text) {
    const char *p = text, *literal = text;
    int strip_next = 0, after_block = 0;
    for (;;) {
        const char *tag = next_tag(p);
        const char *lit_end = tag ? tag : literal + strlen(literal);
        /* The literal run [literal, lit_end), trimmed by the rules. */
        const char *a = literal, *b = lit_end;
        if (strip_next) {
            while (a < b && (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r')) a++;
        } else if (after_block) {
            if (a < b && *a == '\n') a++;
            else if (b - a >= 2 && a[0] == '\r' && a[1] == '\n') a += 2;
        }
        if (tag) {
            int is_block = tag[1] == '%' || tag[1] == '#';
            if (tag[2] == '-') {
                while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r')) b--;
            } else if (is_block && tag[2] != '+') {
                const char *c = b;
                while (c > a && (c[-1] == ' ' || c[-1] == '\t')) c--;
                if (c == text || c[-1] == '\n') b = c;
            }
        }
        if (a < b) return (long)(a - text);
        if (!tag) return -1;
        const char *q = tag_end(tag, NULL, NULL);
        if (!q) return (long)(tag - text); /* unterminated tag: let it count as text */
        strip_next = q[-1] == '-';
        after_block = *q != '}';
        p = literal = q + 2;
    }
}

/* The template's code in one spelling, to look for the fragments that decide
 * a variant: whitespace outside string literals and Jinja's '-' whitespace
 * controls dropped, double quotes made single, message.role/.content made
 * message['role']/['content']. malloc'ed; NULL when out of memory. */
static char *normalize_template(const char *text) {
    size_t len = strlen(text);
    char *out = malloc(2 * len + 1);
    if (!out) return NULL;
    size_t n = 0;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (quote) {
            if (c == '\\' && i + 1 < len) {
                out[n++] = c;
                out[n++] = text[++i];
                continue;
            }
            if (c == quote) quote = 0, c = '\'';
            out[n++] = c;
            continue;
        }
        if (c == '\'' || c == '"') {
            quote = c;
            out[n++] = '\'';
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        if (c == '-' && n >= 2 && out[n - 1] != '\'' && (out[n - 2] == '{') &&
            (out[n - 1] == '%' || out[n - 1] == '{' || out[n - 1] == '#'))
            continue;
        if (c == '-' && i + 2 < len + 1 && text[i + 1] && text[i + 2] == '}' &&
            (text[i + 1] == '%' || text[i + 1] == '}' || text[i + 1] == '#'))
            continue;
        out[n++] = c;
    }
    out[n] = 0;
    /* message.role -> message['role'], message.content -> message['content'] */
    static const char *const fields[][2] = {{"message.role", "message['role']"},
                                            {"message.content", "message['content']"}};
    for (size_t f = 0; f < 2; f++) {
        size_t from_len = strlen(fields[f][0]), to_len = strlen(fields[f][1]);
        for (char *p = strstr(out, fields[f][0]); p;) {
            if (isalnum((unsigned char)p[from_len]) || p[from_len] == '_') { /* message.contents: another name */
                p = strstr(p + from_len, fields[f][0]);
                continue;
            }
            memmove(p + to_len, p + from_len, strlen(p + from_len) + 1);
            memcpy(p, fields[f][1], to_len);
            p = strstr(p + to_len, fields[f][0]);
        }
    }
    return out;
}

/* Mistral v0.1 / Mixtral: the exact turn fragments, and none of the later
 * versions' system-message or spacing changes. */
static const renderer *detect_mistral(const char *text, sft_err *err) {
    char *norm = normalize_template(text);
    if (!norm) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    int v01 = strstr(norm, "{{bos_token}}") && strstr(norm, "'[INST] '+message['content']+' [/INST]'") &&
              strstr(norm, "message['content']+eos_token}}") && !strstr(norm, "system") &&
              !strstr(norm, "' '+message['content']") && !strstr(norm, "eos_token+") && !strstr(norm, "strip") &&
              !strstr(norm, "trim");
    free(norm);
    if (v01) return renderer_by_name("mistral");
    refuse(err, "the [INST] template without <<SYS>> is not Mistral 7B Instruct v0.1 / Mixtral's (it handles "
                "system messages, spaces or trimming differently), and no built-in renderer reproduces it");
    return NULL;
}

static const renderer *detect_family(const char *text, sft_err *err) {
    int chatml = strstr(text, "<|im_start|>") != NULL;
    int llama3 = strstr(text, "<|start_header_id|>") != NULL;
    int inst = strstr(text, "[INST]") != NULL;
    int alpaca = strstr(text, "### Instruction:") && strstr(text, "### Response:");
    if (chatml + llama3 + inst + alpaca > 1) {
        refuse(err, "the chat template mixes the markers of several families (<|im_start|>, <|start_header_id|>, "
                    "[INST], ### Instruction:)");
        return NULL;
    }
    if (chatml) {
        if (strstr(text, "<think>")) {
            refuse(err, "the ChatML template handles <think> reasoning blocks (Qwen3 style), which no built-in "
                        "renderer reproduces");
            return NULL;
        }
        if (strstr(text, "bos_token") || strstr(text, "trim") || strstr(text, "strip")) {
            refuse(err, "the ChatML template writes bos_token or trims messages, which the built-in chatml "
                        "renderers do not");
            return NULL;
        }
        char sys[512];
        int found;
        if (chatml_default_system(text, sys, sizeof sys, &found, err)) return NULL;
        if (!found) return renderer_by_name("chatml");
        for (size_t i = 0; i < RENDERER_COUNT; i++)
            if (renderers[i].default_system && !strcmp(renderers[i].default_system, sys)) return &renderers[i];
        char why[800];
        snprintf(why, sizeof why,
                 "the ChatML template writes a default system prompt (\"%.300s\") that no built-in renderer "
                 "knows (--template chatml renders without one)",
                 sys);
        refuse(err, why);
        return NULL;
    }
    if (llama3) {
        if (!strstr(text, "<|eot_id|>")) {
            refuse(err, "the template uses <|start_header_id|> but not <|eot_id|>, unlike every Llama 3 template");
            return NULL;
        }
        if (!strstr(text, "trim") || (!strstr(text, "bos_token") && !strstr(text, "<|begin_of_text|>"))) {
            refuse(err, "the Llama 3-style template does not trim each message or does not start with bos_token, "
                        "as Meta's templates do");
            return NULL;
        }
        if (strstr(text, "strftime_now")) {
            refuse(err, "the Llama 3.2-style template writes today's date (strftime_now) into the system header; "
                        "--template llama3.1 renders the fixed date 26 Jul 2024 (that template's own fallback) "
                        "instead");
            return NULL;
        }
        if (strstr(text, "Cutting Knowledge Date")) {
            if (!strstr(text, "26 Jul 2024") || !strstr(text, "December 2023")) {
                refuse(err, "the Llama 3.1-style template has other knowledge/today dates than Llama 3.1's "
                            "(December 2023 / 26 Jul 2024)");
                return NULL;
            }
            return renderer_by_name("llama3.1");
        }
        return renderer_by_name("llama3");
    }
    if (inst) {
        if (!strstr(text, "<<SYS>>")) return detect_mistral(text, err);
        if (!strstr(text, "bos_token") || !strstr(text, "eos_token")) {
            refuse(err, "the Llama 2 [INST] template does not write bos_token and eos_token around each turn");
            return NULL;
        }
        if (strstr(text, "USE_DEFAULT_PROMPT") || strstr(text, "system_message = '") ||
            strstr(text, "system_message = \"")) {
            refuse(err, "the Llama 2 [INST] template writes a default system prompt of its own, which no built-in "
                        "renderer reproduces");
            return NULL;
        }
        int meta = strstr(text, ".strip()") != NULL, trim = strstr(text, "trim") != NULL;
        if (meta && !trim) return renderer_by_name("llama2");
        if (trim && !meta) return renderer_by_name("llama2-trim");
        refuse(err, "the Llama 2 [INST] template neither strips the system block with the first message "
                    "(content.strip(), Meta's) nor trims each message (| trim)");
        return NULL;
    }
    if (alpaca) {
        if (strstr(text, "Below is an instruction") || strstr(text, "### Input:")) {
            refuse(err, "the Alpaca template writes a preamble or an ### Input: section, which the built-in alpaca "
                        "renderer does not");
            return NULL;
        }
        if (strstr(text, "bos_token") || strstr(text, "trim") || strstr(text, "strip") ||
            !strstr(text, "eos_token")) {
            refuse(err, "the Alpaca template writes bos_token, trims messages or ends answers without eos_token, "
                        "unlike the built-in alpaca renderer");
            return NULL;
        }
        return renderer_by_name("alpaca");
    }
    refuse(err, "the chat template is not one sft recognises (no <|im_start|>, <|start_header_id|>, [INST] or "
                "### Instruction: markers)");
    return NULL;
}

/* The family by its markers, then the check that nothing outside the
 * template's expressions is written (family-specific refusals first: they
 * say more). */
static const renderer *detect(const char *text, sft_err *err) {
    const renderer *r = detect_family(text, err);
    if (!r) return NULL;
    long stray = literal_output_at(text);
    if (stray >= 0) {
        char shown[64], why[256];
        size_t n = 0;
        for (const char *c = text + stray; *c && n < 12; c++) {
            if (*c == '\n' || *c == '\t' || *c == '\r') {
                shown[n++] = '\\';
                shown[n++] = *c == '\n' ? 'n' : *c == '\t' ? 't' : 'r';
            } else {
                shown[n++] = *c;
            }
        }
        shown[n] = 0;
        snprintf(why, sizeof why,
                 "the chat template writes literal text outside its {{ }} expressions (at byte %ld: \"%s\"), "
                 "which no built-in renderer reproduces",
                 stray, shown);
        refuse(err, why);
        return NULL;
    }
    return r;
}

sft_chat_template *sft_chat_template_new(const char *name, const char *template_text, const char *bos_token,
                                         const char *eos_token, sft_err *err) {
    const renderer *r;
    if (name && strcmp(name, "auto")) {
        r = renderer_by_name(name);
        if (!r) {
            const char *near = sft_suggest(name, renderer_names, RENDERER_COUNT);
            char names[256];
            sft_errf(err, "unknown chat template '%s'%s%s%s (--template accepts: %s, auto)", name,
                     near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "",
                     names_list(names, sizeof names));
            return NULL;
        }
    } else {
        if (!template_text) {
            refuse(err, "the tokenizer has no chat template (no chat_template.jinja, no chat_template in "
                        "tokenizer_config.json)");
            return NULL;
        }
        r = detect(template_text, err);
        if (!r) return NULL;
    }
    /* The families that write a special token by name need it. */
    if ((r->family == FAMILY_LLAMA3 || r->family == FAMILY_LLAMA2 || r->family == FAMILY_MISTRAL) && !bos_token) {
        sft_errf(err, "the %s template writes bos_token, but the tokenizer names no bos_token", r->name);
        return NULL;
    }
    if ((r->family == FAMILY_LLAMA2 || r->family == FAMILY_MISTRAL || r->family == FAMILY_ALPACA) && !eos_token) {
        sft_errf(err, "the %s template writes eos_token, but the tokenizer names no eos_token", r->name);
        return NULL;
    }
    sft_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    t->r = r;
    t->bos_token = strdup(bos_token ? bos_token : "");
    t->eos_token = strdup(eos_token ? eos_token : "");
    if (!t->bos_token || !t->eos_token) {
        sft_chat_template_free(t);
        sft_errf(err, "out of memory");
        return NULL;
    }
    return t;
}

void sft_chat_template_free(sft_chat_template *tmpl) {
    if (!tmpl) return;
    free(tmpl->bos_token);
    free(tmpl->eos_token);
    free(tmpl);
}

const char *sft_chat_template_name(const sft_chat_template *tmpl) {
    return tmpl->r->name;
}

const char *sft_chat_template_jinja(const sft_chat_template *tmpl) {
    return renderer_jinja[tmpl->r - renderers];
}

/* ---- assistant mask ----------------------------------------------------- */

/* The start of the UTF-8 character holding byte b (text is valid UTF-8). */
static size_t char_floor(const char *text, size_t b) {
    while (b > 0 && ((unsigned char)text[b] & 0xC0) == 0x80) b--;
    return b;
}

/* Token i's character range, in bytes of the text: tokenizers turns the
 * byte range [s, e) into the characters from the one holding byte s up to,
 * not including, the one holding byte e (through the last character when e
 * is the end of the text); a start at the end of the text is left
 * unconverted and holds nothing. 0 when the range holds no character. */
static int token_chars(const char *text, size_t len, const size_t *offsets, size_t i, size_t *lo, size_t *hi) {
    size_t s = offsets[2 * i], e = offsets[2 * i + 1];
    if (s >= len || e <= s) return 0;
    *lo = char_floor(text, s);
    *hi = e >= len ? len : char_floor(text, e);
    return *lo < *hi;
}

/* tokenizers' Encoding::char_to_token on those ranges: the first token
 * holding the character that starts at byte `at`; token_count when none.
 * Lookups come in increasing order, so a cursor skips the tokens that end
 * at or before the previous lookup (none of them can hold a later one);
 * a lookup behind the previous one starts again from token 0. */
typedef struct {
    size_t cursor, last_at;
} token_finder;

static size_t char_to_token(token_finder *f, const char *text, size_t len, const size_t *offsets, size_t token_count,
                            size_t at) {
    if (at < f->last_at) f->cursor = 0;
    f->last_at = at;
    size_t lo, hi;
    /* Skip tokens that hold nothing or end at or before `at`. */
    while (f->cursor < token_count &&
           (!token_chars(text, len, offsets, f->cursor, &lo, &hi) || hi <= at))
        f->cursor++;
    for (size_t i = f->cursor; i < token_count; i++)
        if (token_chars(text, len, offsets, i, &lo, &hi) && lo <= at && at < hi) return i;
    return token_count;
}

void sft_chat_assistant_mask(const char *text, size_t len, const sft_chat_span *spans, size_t span_count,
                             const size_t *offsets, size_t token_count, uint8_t *mask) {
    memset(mask, 0, token_count);
    token_finder finder = {0, 0};
    for (size_t k = 0; k < span_count; k++) {
        size_t start = spans[k].start, end = spans[k].end;
        if (start >= len) break; /* char_to_token(start) is None: transformers stops */
        size_t first = char_to_token(&finder, text, len, offsets, token_count, start);
        if (first == token_count) break;
        /* The character before `end` (end - 1 in characters). */
        size_t last_char = end > 0 ? char_floor(text, (end > len ? len : end) - 1) : 0;
        size_t last = end > 0 ? char_to_token(&finder, text, len, offsets, token_count, last_char) : token_count;
        /* `end_token + 1 if end_token else len(input_ids)`: None and 0 both
         * run the span to the end of the sequence. */
        size_t stop = (last == token_count || last == 0) ? token_count : last + 1;
        for (size_t i = first; i < stop; i++) mask[i] = 1;
    }
}
