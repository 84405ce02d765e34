/* records.c: streaming reader, normaliser, converter and writer of
 * instruction-data records (see records.h for the formats and mappings).
 *
 * Files are read through zlib's gzread, which reads plain files as they are
 * and gunzips gzip files, in 64 KiB chunks: memory depends on the longest
 * record, never on the file size. A JSON array is split into its elements by
 * a small scanner (strings, escapes and nesting depth) so each element is
 * parsed alone, like a JSONL line. */
#include "data/records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/file.h"
#include "io/json.h"
#include "io/suggest.h"

static const char *format_names[] = {"auto", "alpaca", "sharegpt", "messages", "prompt-completion", "text"};
#define FORMAT_NAME_COUNT (sizeof format_names / sizeof format_names[0])

const char *sft_data_format_name(sft_data_format format) {
    if ((size_t)format < FORMAT_NAME_COUNT) return format_names[format];
    return "?";
}

int sft_data_format_parse(const char *name, sft_data_format *out, sft_err *err) {
    for (size_t i = 0; i < FORMAT_NAME_COUNT; i++)
        if (!strcmp(name, format_names[i])) {
            *out = (sft_data_format)i;
            return 0;
        }
    const char *near = sft_suggest(name, format_names, FORMAT_NAME_COUNT);
    return sft_errf(err,
                    "unknown data format '%s'%s%s%s (expected auto, alpaca, sharegpt, messages, "
                    "prompt-completion or text)",
                    name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
}

const char *sft_role_name(sft_role role) {
    static const char *names[] = {"system", "user", "assistant"};
    return (unsigned)role < SFT_ROLE_COUNT ? names[role] : "?";
}

void sft_record_init(sft_record *rec) {
    memset(rec, 0, sizeof *rec);
}

void sft_record_clear(sft_record *rec) {
    json_decref(rec->json);
    rec->json = NULL;
    free(rec->joined);
    rec->joined = NULL;
    free(rec->raw);
    rec->raw = NULL;
    rec->raw_len = 0;
    rec->message_count = 0;
    rec->format = SFT_FORMAT_AUTO;
}

void sft_record_free(sft_record *rec) {
    sft_record_clear(rec);
    free(rec->messages);
    rec->messages = NULL;
    rec->message_cap = 0;
}

static int push_message(sft_record *rec, sft_role role, const char *content, size_t len, const json_t *source,
                        sft_err *err) {
    if (rec->message_count == rec->message_cap) {
        size_t cap = rec->message_cap ? 2 * rec->message_cap : 8;
        sft_message *m = realloc(rec->messages, cap * sizeof *m);
        if (!m) return sft_errf(err, "out of memory");
        rec->messages = m;
        rec->message_cap = cap;
    }
    rec->messages[rec->message_count++] = (sft_message){role, content, len, source};
    return 0;
}

sft_data_format sft_data_format_detect(const json_t *record) {
    if (!json_is_object(record)) return SFT_FORMAT_AUTO;
    if (json_object_get(record, "messages")) return SFT_FORMAT_MESSAGES;
    if (json_object_get(record, "conversations")) return SFT_FORMAT_SHAREGPT;
    if (json_object_get(record, "instruction") && json_object_get(record, "output")) return SFT_FORMAT_ALPACA;
    if (json_object_get(record, "prompt") && json_object_get(record, "completion"))
        return SFT_FORMAT_PROMPT_COMPLETION;
    if (json_object_get(record, "text")) return SFT_FORMAT_TEXT;
    return SFT_FORMAT_AUTO;
}

static const char *format_keys(sft_data_format f) {
    switch (f) {
    case SFT_FORMAT_ALPACA:
        return "'instruction' and 'output' (optional 'input', 'system')";
    case SFT_FORMAT_SHAREGPT:
        return "'conversations' (a list of {from, value})";
    case SFT_FORMAT_MESSAGES:
        return "'messages' (a list of {role, content})";
    case SFT_FORMAT_PROMPT_COMPLETION:
        return "'prompt' and 'completion'";
    case SFT_FORMAT_TEXT:
        return "'text'";
    default:
        return "the keys of one of alpaca, sharegpt, messages, prompt-completion, text";
    }
}

/* A string member that must be present (required) or may be absent/null. */
static int string_member(const json_t *obj, const char *key, int required, const char **s, size_t *len,
                         const char *where, sft_data_format format, sft_err *err) {
    const char *fmt_name = sft_data_format_name(format);
    const json_t *v = json_object_get(obj, key);
    *s = NULL;
    *len = 0;
    if (!v || json_is_null(v)) {
        if (required)
            return sft_errf(err, "%s: %s record has no '%s'; expected %s", where, fmt_name, key,
                            format_keys(format));
        return 0;
    }
    if (!json_is_string(v))
        return sft_errf(err, "%s: '%s' must be a string, got %s", where, key,
                        json_is_array(v)    ? "a list"
                        : json_is_object(v) ? "an object"
                        : json_is_number(v) ? "a number"
                                            : "true/false");
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* ShareGPT speaker names as they occur in real dumps. */
static int sharegpt_role(const char *from, sft_role *role) {
    static const struct {
        const char *name;
        sft_role role;
    } table[] = {{"human", SFT_ROLE_USER},        {"user", SFT_ROLE_USER},
                 {"gpt", SFT_ROLE_ASSISTANT},     {"assistant", SFT_ROLE_ASSISTANT},
                 {"chatgpt", SFT_ROLE_ASSISTANT}, {"model", SFT_ROLE_ASSISTANT},
                 {"system", SFT_ROLE_SYSTEM}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(from, table[i].name)) {
            *role = table[i].role;
            return 0;
        }
    return -1;
}

static int messages_role(const char *name, sft_role *role) {
    for (int r = 0; r < SFT_ROLE_COUNT; r++)
        if (!strcmp(name, sft_role_name((sft_role)r))) {
            *role = (sft_role)r;
            return 0;
        }
    return -1;
}

/* A list of turns: sharegpt ({from, value}) or messages ({role, content}). */
static int turns_from_list(sft_record *rec, const json_t *list, const char *list_key, int sharegpt,
                           const char *where, sft_err *err) {
    const char *role_key = sharegpt ? "from" : "role";
    const char *content_key = sharegpt ? "value" : "content";
    if (!json_is_array(list)) return sft_errf(err, "%s: '%s' must be a list of turns", where, list_key);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *turn = json_array_get(list, i);
        if (!json_is_object(turn))
            return sft_errf(err, "%s: %s[%zu] must be an object {\"%s\", \"%s\"}", where, list_key, i,
                            role_key, content_key);
        const json_t *r = json_object_get(turn, role_key);
        const json_t *c = json_object_get(turn, content_key);
        /* Real dumps mix the two spellings; accept the other pair when this one is absent. */
        if (!r && !c) {
            r = json_object_get(turn, sharegpt ? "role" : "from");
            c = json_object_get(turn, sharegpt ? "content" : "value");
        }
        if (!json_is_string(r))
            return sft_errf(err, "%s: %s[%zu] needs a string '%s'", where, list_key, i, role_key);
        sft_role role;
        const char *rname = json_string_value(r);
        if ((sharegpt ? sharegpt_role(rname, &role) : messages_role(rname, &role)) &&
            (sharegpt ? messages_role(rname, &role) : sharegpt_role(rname, &role)))
            return sft_errf(err, "%s: %s[%zu] has unknown role '%s' (expected %s)", where, list_key, i, rname,
                            sharegpt ? "human, user, gpt, assistant, chatgpt, model or system"
                                     : "system, user or assistant");
        if (!json_is_string(c))
            return sft_errf(err, "%s: %s[%zu].%s must be a string, got %s", where, list_key, i, content_key,
                            !c                 ? "nothing"
                            : json_is_array(c) ? "a list (multimodal parts are not supported)"
                            : json_is_null(c)  ? "null"
                                               : "a non-string");
        if (push_message(rec, role, json_string_value(c), json_string_length(c), turn, err)) return -1;
    }
    return 0;
}

int sft_record_from_json(sft_record *rec, json_t *json, sft_data_format format, int allow_no_assistant,
                         const char *where, sft_err *err) {
    json_decref(rec->json);
    rec->json = json;
    rec->message_count = 0;
    free(rec->joined);
    rec->joined = NULL;
    rec->format = format;
    if (!json_is_object(json)) return sft_errf(err, "%s: expected a JSON object (one record)", where);
    const char *s, *s2;
    size_t n, n2;
    switch (format) {
    case SFT_FORMAT_ALPACA: {
        const char *instr, *input, *output;
        size_t ilen, inlen, olen;
        if (string_member(json, "system", 0, &s, &n, where, format, err) ||
            string_member(json, "instruction", 1, &instr, &ilen, where, format, err) ||
            string_member(json, "input", 0, &input, &inlen, where, format, err) ||
            string_member(json, "output", 1, &output, &olen, where, format, err))
            return -1;
        const json_t *history = json_object_get(json, "history");
        if (history && !(json_is_array(history) && json_array_size(history) == 0) && !json_is_null(history))
            return sft_errf(err,
                            "%s: alpaca 'history' (earlier turns) is not supported; convert the "
                            "record to sharegpt or messages",
                            where);
        if (s && push_message(rec, SFT_ROLE_SYSTEM, s, n, NULL, err)) return -1;
        if (input && inlen > 0) {
            rec->joined = malloc(ilen + inlen + 3);
            if (!rec->joined) return sft_errf(err, "out of memory");
            memcpy(rec->joined, instr, ilen);
            memcpy(rec->joined + ilen, "\n\n", 2);
            memcpy(rec->joined + ilen + 2, input, inlen);
            rec->joined[ilen + inlen + 2] = 0;
            if (push_message(rec, SFT_ROLE_USER, rec->joined, ilen + inlen + 2, NULL, err)) return -1;
        } else if (push_message(rec, SFT_ROLE_USER, instr, ilen, NULL, err))
            return -1;
        if (push_message(rec, SFT_ROLE_ASSISTANT, output, olen, NULL, err)) return -1;
        break;
    }
    case SFT_FORMAT_SHAREGPT: {
        if (string_member(json, "system", 0, &s, &n, where, format, err)) return -1;
        if (s && push_message(rec, SFT_ROLE_SYSTEM, s, n, NULL, err)) return -1;
        const json_t *conv = json_object_get(json, "conversations");
        if (!conv)
            return sft_errf(err, "%s: sharegpt record has no 'conversations'; expected %s", where,
                            format_keys(format));
        if (turns_from_list(rec, conv, "conversations", 1, where, err)) return -1;
        break;
    }
    case SFT_FORMAT_MESSAGES: {
        const json_t *msgs = json_object_get(json, "messages");
        if (!msgs)
            return sft_errf(err, "%s: messages record has no 'messages'; expected %s", where,
                            format_keys(format));
        if (turns_from_list(rec, msgs, "messages", 0, where, err)) return -1;
        break;
    }
    case SFT_FORMAT_PROMPT_COMPLETION: {
        const json_t *p = json_object_get(json, "prompt");
        const json_t *c = json_object_get(json, "completion");
        if (!p || !c)
            return sft_errf(err, "%s: prompt-completion record has no '%s'; expected %s", where,
                            p ? "completion" : "prompt", format_keys(format));
        if (json_is_array(p)) {
            if (turns_from_list(rec, p, "prompt", 0, where, err)) return -1;
        } else {
            if (string_member(json, "prompt", 1, &s, &n, where, format, err)) return -1;
            if (push_message(rec, SFT_ROLE_USER, s, n, NULL, err)) return -1;
        }
        if (json_is_array(c)) {
            if (turns_from_list(rec, c, "completion", 0, where, err)) return -1;
        } else {
            if (string_member(json, "completion", 1, &s2, &n2, where, format, err)) return -1;
            if (push_message(rec, SFT_ROLE_ASSISTANT, s2, n2, NULL, err)) return -1;
        }
        break;
    }
    case SFT_FORMAT_TEXT:
        if (string_member(json, "text", 1, &s, &n, where, format, err)) return -1;
        if (push_message(rec, SFT_ROLE_ASSISTANT, s, n, NULL, err)) return -1;
        break;
    default:
        return sft_errf(err, "%s: no data format given", where);
    }
    if (!allow_no_assistant && sft_record_last_assistant(rec) < 0)
        return sft_errf(err, "%s: record has no assistant turn (expected at least one %s)", where,
                        format == SFT_FORMAT_SHAREGPT ? "'gpt' message" : "'assistant' message");
    return 0;
}

size_t sft_record_count_role(const sft_record *rec, sft_role role) {
    size_t n = 0;
    for (size_t i = 0; i < rec->message_count; i++)
        n += rec->messages[i].role == role;
    return n;
}

long sft_record_last_assistant(const sft_record *rec) {
    for (size_t i = rec->message_count; i-- > 0;)
        if (rec->messages[i].role == SFT_ROLE_ASSISTANT) return (long)i;
    return -1;
}

/* ------------------------------------------------------------------ reader */

#define CHUNK (64 * 1024)

struct sft_reader {
    gzFile gz;
    char *path;
    sft_reader_options opts;
    sft_data_format format;
    size_t first_line;    /* line of the record that fixed the format */
    unsigned char *chunk; /* read buffer */
    size_t chunk_len, chunk_pos;
    int eof;
    size_t line;    /* current line (1-based) */
    size_t bytes;   /* bytes consumed */
    int array_mode; /* -1 unknown, 0 JSONL, 1 JSON array */
    int array_done; /* ']' seen */
    size_t element_count;
    char *buf; /* the current record text */
    size_t buf_len, buf_cap;
    size_t index;
    size_t skipped;
    char first_skip[SFT_ERR_MSG_MAX];
};

static int fill(sft_reader *r, sft_err *err) {
    if (r->chunk_pos < r->chunk_len || r->eof) return 0;
    int n = gzread(r->gz, r->chunk, CHUNK);
    if (n < 0) {
        int code;
        const char *msg = gzerror(r->gz, &code);
        return sft_errf(err, "%s: read error: %s", r->path, code == Z_ERRNO ? strerror(errno) : msg);
    }
    r->chunk_len = (size_t)n;
    r->chunk_pos = 0;
    if (n == 0) r->eof = 1;
    return 0;
}

/* Next byte, or -1 at the end (-2 on a read error). */
static int getbyte(sft_reader *r, sft_err *err) {
    if (r->chunk_pos >= r->chunk_len) {
        if (fill(r, err)) return -2;
        if (r->eof) return -1;
    }
    r->bytes++;
    return r->chunk[r->chunk_pos++];
}

static int peekbyte(sft_reader *r, sft_err *err) {
    if (r->chunk_pos >= r->chunk_len) {
        if (fill(r, err)) return -2;
        if (r->eof) return -1;
    }
    return r->chunk[r->chunk_pos];
}

static int buf_push(sft_reader *r, char c, sft_err *err) {
    if (r->buf_len + 1 >= r->buf_cap) {
        size_t cap = r->buf_cap ? 2 * r->buf_cap : 4096;
        char *b = realloc(r->buf, cap);
        if (!b) return sft_errf(err, "%s:%zu: out of memory (record too long)", r->path, r->line);
        r->buf = b;
        r->buf_cap = cap;
    }
    r->buf[r->buf_len++] = c;
    return 0;
}

static int is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Skips whitespace (counting lines). */
static int skip_space(sft_reader *r, sft_err *err) {
    for (;;) {
        int c = peekbyte(r, err);
        if (c == -2) return -1;
        if (c < 0 || !is_space(c)) return 0;
        getbyte(r, err);
        if (c == '\n') r->line++;
    }
}

sft_reader *sft_reader_open(const char *path, const sft_reader_options *opts, sft_err *err) {
    sft_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path)) || !(r->chunk = malloc(CHUNK))) {
        if (r) free(r->path);
        free(r);
        sft_errf(err, "%s: out of memory", path);
        return NULL;
    }
    if (opts) r->opts = *opts;
    r->format = r->opts.format;
    r->line = 1;
    r->array_mode = -1;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        sft_err_errno(err, path);
        free(r->chunk);
        free(r->path);
        free(r);
        return NULL;
    }
    gzbuffer(r->gz, CHUNK);
    return r;
}

void sft_reader_close(sft_reader *r) {
    if (!r) return;
    gzclose(r->gz);
    free(r->chunk);
    free(r->buf);
    free(r->path);
    free(r);
}

sft_data_format sft_reader_format(const sft_reader *r) {
    return r->format;
}
size_t sft_reader_skipped(const sft_reader *r) {
    return r->skipped;
}
const char *sft_reader_first_skip(const sft_reader *r) {
    return r->first_skip;
}
size_t sft_reader_bytes_read(const sft_reader *r) {
    return r->bytes;
}
const char *sft_reader_path(const sft_reader *r) {
    return r->path;
}

/* Decides JSONL or array from the first non-blank byte (after a UTF-8 BOM). */
static int detect_layout(sft_reader *r, sft_err *err) {
    if (peekbyte(r, err) == 0xEF) {
        /* A BOM: EF BB BF. Anything else starting with EF is not JSON anyway. */
        unsigned char bom[3];
        for (int i = 0; i < 3; i++) {
            int c = getbyte(r, err);
            if (c < 0) break;
            bom[i] = (unsigned char)c;
        }
        if (bom[0] != 0xEF || bom[1] != 0xBB || bom[2] != 0xBF)
            return sft_errf(err, "%s:1: not JSON (expected JSON lines or a JSON array)", r->path);
    }
    if (skip_space(r, err)) return -1;
    int c = peekbyte(r, err);
    if (c == -2) return -1;
    r->array_mode = c == '[';
    if (r->array_mode) getbyte(r, err);
    return 0;
}

/* Reads one JSONL line into buf; *start_line set. 1 = a line, 0 = end. */
static int read_line(sft_reader *r, size_t *start_line, sft_err *err) {
    for (;;) {
        r->buf_len = 0;
        *start_line = r->line;
        int c, any = 0, blank = 1;
        while ((c = getbyte(r, err)) >= 0) {
            any = 1;
            if (c == '\n') break;
            if (buf_push(r, (char)c, err)) return -1;
            if (!is_space(c)) blank = 0;
        }
        if (c == -2) return -1;
        if (c == '\n') r->line++;
        if (!any) return 0;
        while (r->buf_len && (r->buf[r->buf_len - 1] == '\r'))
            r->buf_len--;
        r->buf[r->buf_len] = 0;
        if (!blank) return 1;
        if (c < 0) return 0;
    }
}

/* Reads one element of a JSON array into buf. 1 = an element, 0 = end of array. */
static int read_element(sft_reader *r, size_t *start_line, sft_err *err) {
    if (r->array_done) return 0;
    if (skip_space(r, err)) return -1;
    int c = peekbyte(r, err);
    if (c == -2) return -1;
    if (r->element_count > 0 || c == ']') {
        if (c == ']') {
            getbyte(r, err);
            r->array_done = 1;
            if (skip_space(r, err)) return -1;
            int t = peekbyte(r, err);
            if (t == -2) return -1;
            if (t >= 0)
                return sft_errf(err, "%s:%zu: unexpected text after the JSON array", r->path, r->line);
            return 0;
        }
        if (c != ',')
            return sft_errf(err, "%s:%zu: expected ',' or ']' between array elements", r->path, r->line);
        getbyte(r, err);
        if (skip_space(r, err)) return -1;
        c = peekbyte(r, err);
        if (c == -2) return -1;
    }
    if (c < 0) return sft_errf(err, "%s:%zu: the JSON array is not closed (expected ']')", r->path, r->line);
    *start_line = r->line;
    r->buf_len = 0;
    int depth = 0, in_string = 0, escape = 0;
    for (;;) {
        c = peekbyte(r, err);
        if (c == -2) return -1;
        if (c < 0)
            return sft_errf(err, "%s:%zu: file ends inside a JSON array element started at line %zu", r->path,
                            r->line, *start_line);
        if (!in_string && depth == 0 && (c == ',' || c == ']' || is_space(c)) && r->buf_len > 0) break;
        getbyte(r, err);
        if (c == '\n') r->line++;
        if (buf_push(r, (char)c, err)) return -1;
        if (in_string) {
            if (escape)
                escape = 0;
            else if (c == '\\')
                escape = 1;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (--depth == 0) break;
            if (depth < 0) return sft_errf(err, "%s:%zu: unbalanced '%c'", r->path, r->line, c);
        }
    }
    r->buf[r->buf_len] = 0;
    r->element_count++;
    return 1;
}

/* Parses one record's text. Integers stay integers (an id 17 is written back
 * as 17, not 17.0); only integers past 64 bits are read as reals. */
static json_t *parse_record_text(const char *text, size_t len, const char *path, size_t line, sft_err *err) {
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!j && json_error_code(&jerr) == json_error_numeric_overflow)
        j = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!j) {
        sft_errf(err, "%s:%zu: invalid JSON (column %d): %s", path, line + (size_t)jerr.line - 1, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        sft_errf(err, "%s:%zu: expected a JSON object (one record), got %s", path, line,
                 json_is_array(j)    ? "a list"
                 : json_is_string(j) ? "a string"
                                     : "a scalar");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The raw text of the next record; 1/0/-1. */
static int next_text(sft_reader *r, size_t *line, sft_err *err) {
    if (r->array_mode < 0 && detect_layout(r, err)) return -1;
    return r->array_mode ? read_element(r, line, err) : read_line(r, line, err);
}

int sft_reader_next_json(sft_reader *r, json_t **json, size_t *line, sft_err *err) {
    for (;;) {
        int rc = next_text(r, line, err);
        if (rc <= 0) return rc;
        *json = parse_record_text(r->buf, r->buf_len, r->path, *line, err);
        if (*json) return 1;
        if (!r->opts.skip_bad) return -1; /* the scanner found its extent: the next element is readable */
        if (!r->skipped++) snprintf(r->first_skip, sizeof r->first_skip, "%s", err->msg);
    }
}

int sft_reader_next(sft_reader *r, sft_record *rec, sft_err *err) {
    for (;;) {
        sft_record_clear(rec);
        json_t *json;
        size_t line;
        int rc = sft_reader_next_json(r, &json, &line, err);
        if (rc <= 0) return rc;
        char where[512];
        snprintf(where, sizeof where, "%s:%zu", r->path, line);
        sft_data_format f = r->format;
        int bad = 0;
        if (f == SFT_FORMAT_AUTO) {
            f = sft_data_format_detect(json);
            if (f == SFT_FORMAT_AUTO) {
                const char *key = NULL;
                void *it = json_object_iter(json);
                if (it) key = json_object_iter_key(it);
                sft_errf(err, "%s: cannot tell the data format (first key '%s'); expected %s", where,
                         key ? key : "", format_keys(SFT_FORMAT_AUTO));
                json_decref(json);
                return -1; /* the first record decides the format: never skipped */
            }
            r->format = f;
            r->first_line = line;
        } else if (!r->opts.format && sft_data_format_detect(json) != f) {
            sft_errf(err, "%s: expected a %s record (%s) like the first record at line %zu", where,
                     sft_data_format_name(f), format_keys(f), r->first_line);
            json_decref(json);
            bad = 1;
        }
        if (!bad && sft_record_from_json(rec, json, f, r->opts.allow_no_assistant, where, err)) {
            bad = 1;
            rec->json = NULL; /* cleared below with the record */
            json_decref(json);
        }
        if (bad) {
            if (!r->opts.skip_bad) return -1;
            if (!r->skipped++) snprintf(r->first_skip, sizeof r->first_skip, "%s", err->msg);
            continue;
        }
        rec->raw = malloc(r->buf_len + 1);
        if (!rec->raw) return sft_errf(err, "%s: out of memory", where);
        memcpy(rec->raw, r->buf, r->buf_len + 1);
        rec->raw_len = r->buf_len;
        rec->path = r->path;
        rec->line = line;
        rec->index = r->index++;
        return 1;
    }
}

/* ------------------------------------------------------------------ writer */

/* Shortest of %.15g..%.17g that reads back to the same double. */
static void dump_real(FILE *f, double d) {
    char buf[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0"); /* stays a real ("nan"/"inf" cannot occur in JSON) */
    fputs(buf, f);
}

static void dump_value(FILE *f, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        fputc('{', f);
        const char *key;
        json_t *v;
        int first = 1;
        json_object_foreach((json_t *)j, key, v) {
            if (!first) fputc(',', f);
            first = 0;
            sft_json_write_string(f, key, strlen(key));
            fputc(':', f);
            dump_value(f, v);
        }
        fputc('}', f);
        break;
    }
    case JSON_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i) fputc(',', f);
            dump_value(f, json_array_get(j, i));
        }
        fputc(']', f);
        break;
    case JSON_STRING:
        sft_json_write_string(f, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        fprintf(f, "%lld", (long long)json_integer_value(j));
        break;
    case JSON_REAL:
        dump_real(f, json_real_value(j));
        break;
    case JSON_TRUE:
        fputs("true", f);
        break;
    case JSON_FALSE:
        fputs("false", f);
        break;
    case JSON_NULL:
        fputs("null", f);
        break;
    }
}

char *sft_record_dumps(const json_t *json) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    dump_value(f, json);
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}

struct sft_writer {
    sft_atomic_file *file;
    int array;
    size_t count;
};

sft_writer *sft_writer_open(const char *path, sft_err *err) {
    sft_writer *w = calloc(1, sizeof *w);
    if (!w) {
        sft_errf(err, "%s: out of memory", path);
        return NULL;
    }
    size_t n = strlen(path);
    w->array = n >= 5 && !strcmp(path + n - 5, ".json");
    w->file = sft_atomic_open(path, err);
    if (!w->file) {
        free(w);
        return NULL;
    }
    if (w->array && sft_atomic_write(w->file, "[\n", 2, err)) {
        sft_writer_abort(w);
        return NULL;
    }
    return w;
}

static int put_text(sft_writer *w, const char *text, size_t len, sft_err *err) {
    if (w->array && w->count && sft_atomic_write(w->file, ",\n", 2, err)) return -1;
    if (sft_atomic_write(w->file, text, len, err)) return -1;
    if (!w->array && sft_atomic_write(w->file, "\n", 1, err)) return -1;
    w->count++;
    return 0;
}

int sft_writer_put_json(sft_writer *w, const json_t *json, sft_err *err) {
    char *text = sft_record_dumps(json);
    if (!text) return sft_errf(err, "out of memory");
    int rc = put_text(w, text, strlen(text), err);
    free(text);
    return rc;
}

int sft_writer_put_record(sft_writer *w, const sft_record *rec, sft_err *err) {
    /* The raw text is the record exactly as the user wrote it; a multi-line
     * array element is re-serialised so that JSONL stays one record a line. */
    if (rec->raw && !memchr(rec->raw, '\n', rec->raw_len)) return put_text(w, rec->raw, rec->raw_len, err);
    return sft_writer_put_json(w, rec->json, err);
}

size_t sft_writer_count(const sft_writer *w) {
    return w->count;
}

int sft_writer_commit(sft_writer *w, sft_err *err) {
    int rc = 0;
    if (w->array && sft_atomic_write(w->file, w->count ? "\n]\n" : "]\n", w->count ? 3 : 2, err)) {
        sft_atomic_abort(w->file);
        rc = -1;
    } else
        rc = sft_atomic_commit(w->file, err);
    free(w);
    return rc;
}

void sft_writer_abort(sft_writer *w) {
    if (!w) return;
    sft_atomic_abort(w->file);
    free(w);
}

int sft_writer_finish(sft_writer *w, int rc, sft_err *err) {
    if (rc) {
        sft_writer_abort(w);
        return rc;
    }
    return sft_writer_commit(w, err);
}

/* -------------------------------------------------------------- conversion */

static int is_format_key(sft_data_format f, const char *key) {
    static const char *alpaca[] = {"instruction", "input", "output", "system", "history", NULL};
    static const char *sharegpt[] = {"conversations", "system", NULL};
    static const char *messages[] = {"messages", NULL};
    static const char *pc[] = {"prompt", "completion", NULL};
    static const char *text[] = {"text", NULL};
    const char **keys = f == SFT_FORMAT_ALPACA              ? alpaca
                        : f == SFT_FORMAT_SHAREGPT          ? sharegpt
                        : f == SFT_FORMAT_MESSAGES          ? messages
                        : f == SFT_FORMAT_PROMPT_COMPLETION ? pc
                        : f == SFT_FORMAT_TEXT              ? text
                                                            : NULL;
    for (; keys && *keys; keys++)
        if (!strcmp(*keys, key)) return 1;
    return 0;
}

static json_t *string_n(const char *s, size_t n) {
    return json_stringn_nocheck(s, n);
}

/* One turn object {role_key: name, content_key: text} keeping the source turn's other fields. */
static json_t *turn_object(const sft_message *m, const char *role_key, const char *role_value,
                           const char *content_key) {
    json_t *t = json_object();
    json_object_set_new(t, role_key, json_string(role_value));
    json_object_set_new(t, content_key, string_n(m->content, m->content_len));
    if (m->source) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)m->source, k, v) {
            if (!strcmp(k, "from") || !strcmp(k, "value") || !strcmp(k, "role") || !strcmp(k, "content"))
                continue;
            json_object_set(t, k, v);
        }
    }
    return t;
}

static json_t *messages_list(const sft_message *m, size_t count) {
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(list, turn_object(&m[i], "role", sft_role_name(m[i].role), "content"));
    return list;
}

/* The new format's members, as an object (in their order). */
static json_t *format_members(const sft_message *m, size_t count, sft_data_format format, const char *where,
                              sft_err *err) {
    json_t *out = json_object();
    size_t assistants = 0, users = 0, systems = 0;
    for (size_t i = 0; i < count; i++) {
        assistants += m[i].role == SFT_ROLE_ASSISTANT;
        users += m[i].role == SFT_ROLE_USER;
        systems += m[i].role == SFT_ROLE_SYSTEM;
    }
    switch (format) {
    case SFT_FORMAT_ALPACA: {
        size_t at = 0;
        if (count && m[0].role == SFT_ROLE_SYSTEM) at = 1;
        if (count - at != 2 || m[at].role != SFT_ROLE_USER || m[at + 1].role != SFT_ROLE_ASSISTANT) {
            sft_errf(err,
                     "%s: %zu messages (%zu user, %zu assistant, %zu system) cannot be written as "
                     "alpaca, which holds one instruction and one output (after an optional "
                     "system); use sharegpt or messages",
                     where, count, users, assistants, systems);
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, "instruction", string_n(m[at].content, m[at].content_len));
        json_object_set_new(out, "input", json_string(""));
        json_object_set_new(out, "output", string_n(m[at + 1].content, m[at + 1].content_len));
        if (at) json_object_set_new(out, "system", string_n(m[0].content, m[0].content_len));
        break;
    }
    case SFT_FORMAT_SHAREGPT: {
        json_t *conv = json_array();
        for (size_t i = 0; i < count; i++) {
            const char *from = m[i].role == SFT_ROLE_USER        ? "human"
                               : m[i].role == SFT_ROLE_ASSISTANT ? "gpt"
                                                                 : "system";
            json_array_append_new(conv, turn_object(&m[i], "from", from, "value"));
        }
        json_object_set_new(out, "conversations", conv);
        break;
    }
    case SFT_FORMAT_MESSAGES:
        json_object_set_new(out, "messages", messages_list(m, count));
        break;
    case SFT_FORMAT_PROMPT_COMPLETION: {
        /* Only the completion carries loss in prompt-completion; earlier assistant
         * turns would silently lose their supervision, so they are refused. */
        if (!count || m[count - 1].role != SFT_ROLE_ASSISTANT || assistants != 1) {
            sft_errf(err,
                     "%s: prompt-completion needs exactly one assistant message, the last one "
                     "(this record has %zu assistant of %zu messages); use sharegpt or messages",
                     where, assistants, count);
            json_decref(out);
            return NULL;
        }
        if (count == 2 && m[0].role == SFT_ROLE_USER) {
            json_object_set_new(out, "prompt", string_n(m[0].content, m[0].content_len));
            json_object_set_new(out, "completion", string_n(m[1].content, m[1].content_len));
        } else {
            /* TRL's conversational prompt-completion: lists of messages. */
            json_object_set_new(out, "prompt", messages_list(m, count - 1));
            json_object_set_new(out, "completion", messages_list(m + count - 1, 1));
        }
        break;
    }
    case SFT_FORMAT_TEXT:
        if (count != 1 || m[0].role != SFT_ROLE_ASSISTANT) {
            sft_errf(err,
                     "%s: writing text needs a chat template to render the %zu messages; text holds "
                     "one plain string",
                     where, count);
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, "text", string_n(m[0].content, m[0].content_len));
        break;
    default:
        sft_errf(err, "%s: no target format", where);
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *sft_record_build(const json_t *original, sft_data_format original_format, const sft_message *messages,
                         size_t count, sft_data_format format, const char *where, sft_err *err) {
    json_t *members = format_members(messages, count, format, where, err);
    if (!members) return NULL;
    json_t *out = json_object();
    int placed = 0;
    const char *key;
    json_t *v;
    if (original) {
        json_object_foreach((json_t *)original, key, v) {
            if (is_format_key(original_format, key) || json_object_get(members, key)) {
                if (!placed) {
                    json_object_update(out, members);
                    placed = 1;
                }
                continue;
            }
            json_object_set(out, key, v);
        }
    }
    if (!placed) json_object_update(out, members);
    json_decref(members);
    return out;
}

int sft_record_move_into(sft_record *slot, sft_record *rec, sft_path_pool *pool, sft_err *err) {
    if (!pool->count || strcmp(pool->paths[pool->count - 1], rec->path)) {
        char **paths = realloc(pool->paths, (pool->count + 1) * sizeof *paths);
        if (!paths) return sft_errf(err, "out of memory");
        pool->paths = paths;
        if (!(pool->paths[pool->count] = strdup(rec->path))) return sft_errf(err, "out of memory");
        pool->count++;
    }
    sft_record old = *slot;
    *slot = *rec;
    *rec = old;
    slot->path = pool->paths[pool->count - 1];
    return 0;
}

void sft_path_pool_free(sft_path_pool *pool) {
    for (size_t i = 0; i < pool->count; i++)
        free(pool->paths[i]);
    free(pool->paths);
    pool->paths = NULL;
    pool->count = 0;
}
