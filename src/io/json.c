/* json.c: loading JSON documents with jansson and reading numbers and
 * members with errors that say where (see json.h). */
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

#define SFT_JSON_FLAGS (JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL | JSON_DECODE_ANY)

json_t *sft_json_loadb(const char *text, size_t len, const char *name, sft_err *err) {
    json_error_t jerr;
    json_t *j = json_loadb(text, len, SFT_JSON_FLAGS, &jerr);
    if (!j) {
        sft_errf(err, "%s:%d:%d: invalid JSON: %s", name, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    return j;
}

json_t *sft_json_load_file(const char *path, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return NULL;
    json_t *j = sft_json_loadb(text, len, path, err);
    free(text);
    return j;
}

/* Rewrites bare NaN / Infinity / -Infinity (outside strings) as strings.
 * The output is at most 2 bytes longer per word, so 2*len+1 always fits. */
static char *quote_nonfinite_words(const char *text, size_t len, size_t *out_len) {
    char *out = malloc(2 * len + 1);
    if (!out) return NULL;
    size_t o = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            out[o++] = c;
            if (c == '\\' && i + 1 < len)
                out[o++] = text[++i];
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            out[o++] = c;
            continue;
        }
        static const char *words[] = {"-Infinity", "Infinity", "NaN"};
        int replaced = 0;
        for (size_t w = 0; w < 3 && !replaced; w++) {
            size_t wl = strlen(words[w]);
            if (i + wl <= len && memcmp(text + i, words[w], wl) == 0) {
                out[o++] = '"';
                memcpy(out + o, words[w], wl);
                o += wl;
                out[o++] = '"';
                i += wl - 1;
                replaced = 1;
            }
        }
        if (!replaced) out[o++] = c;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

json_t *sft_json_loadb_lenient(const char *text, size_t len, const char *name, sft_err *err) {
    size_t fixed_len;
    char *fixed = quote_nonfinite_words(text, len, &fixed_len);
    if (!fixed) {
        sft_errf(err, "%s: out of memory", name);
        return NULL;
    }
    json_t *j = sft_json_loadb(fixed, fixed_len, name, err);
    free(fixed);
    return j;
}

json_t *sft_json_load_file_lenient(const char *path, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return NULL;
    json_t *j = sft_json_loadb_lenient(text, len, path, err);
    free(text);
    return j;
}

int sft_json_number(const json_t *j, double *out) {
    if (json_is_real(j)) {
        *out = json_real_value(j);
        return 0;
    }
    if (json_is_integer(j)) {
        *out = (double)json_integer_value(j);
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!strcmp(s, "NaN")) *out = NAN;
        else if (!strcmp(s, "Infinity")) *out = INFINITY;
        else if (!strcmp(s, "-Infinity")) *out = -INFINITY;
        else return -1;
        return 0;
    }
    return -1;
}

int sft_json_int(const json_t *j, int64_t *out) {
    if (json_is_integer(j)) {
        *out = (int64_t)json_integer_value(j);
        return 0;
    }
    if (!json_is_real(j)) return -1;
    double d = json_real_value(j);
    /* 2^63 is exactly representable; anything at or past it is out of range. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

static int member(const json_t *obj, const char *key, const json_t **out, int required,
                  const char *ctx, sft_err *err) {
    *out = NULL;
    if (!json_is_object(obj)) return sft_errf(err, "%s: expected a JSON object", ctx);
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) return sft_errf(err, "%s: missing key '%s'", ctx, key);
        return 0;
    }
    *out = v;
    return 0;
}

static int get_int(const json_t *obj, const char *key, int64_t *out, int required,
                   const char *ctx, sft_err *err) {
    const json_t *v;
    if (member(obj, key, &v, required, ctx, err)) return -1;
    if (v && sft_json_int(v, out))
        return sft_errf(err, "%s: '%s' must be an integer", ctx, key);
    return 0;
}

int sft_json_get_int(const json_t *obj, const char *key, int64_t *out, const char *ctx, sft_err *err) {
    return get_int(obj, key, out, 1, ctx, err);
}

int sft_json_get_int_opt(const json_t *obj, const char *key, int64_t *out, const char *ctx, sft_err *err) {
    return get_int(obj, key, out, 0, ctx, err);
}

static int get_number(const json_t *obj, const char *key, double *out, int required,
                      const char *ctx, sft_err *err) {
    const json_t *v;
    if (member(obj, key, &v, required, ctx, err)) return -1;
    if (v && sft_json_number(v, out)) return sft_errf(err, "%s: '%s' must be a number", ctx, key);
    return 0;
}

int sft_json_get_number(const json_t *obj, const char *key, double *out, const char *ctx, sft_err *err) {
    return get_number(obj, key, out, 1, ctx, err);
}

int sft_json_get_number_opt(const json_t *obj, const char *key, double *out, const char *ctx, sft_err *err) {
    return get_number(obj, key, out, 0, ctx, err);
}

int sft_json_get_bool_opt(const json_t *obj, const char *key, int *out, const char *ctx, sft_err *err) {
    const json_t *v;
    if (member(obj, key, &v, 0, ctx, err)) return -1;
    if (!v) return 0;
    if (!json_is_boolean(v)) return sft_errf(err, "%s: '%s' must be true or false", ctx, key);
    *out = json_is_true(v);
    return 0;
}

static int get_string(const json_t *obj, const char *key, const char **out, int required,
                      const char *ctx, sft_err *err) {
    const json_t *v;
    if (member(obj, key, &v, required, ctx, err)) return -1;
    if (!v) return 0;
    if (!json_is_string(v)) return sft_errf(err, "%s: '%s' must be a string", ctx, key);
    *out = json_string_value(v);
    return 0;
}

int sft_json_get_string(const json_t *obj, const char *key, const char **out, const char *ctx, sft_err *err) {
    return get_string(obj, key, out, 1, ctx, err);
}

int sft_json_get_string_opt(const json_t *obj, const char *key, const char **out, const char *ctx, sft_err *err) {
    return get_string(obj, key, out, 0, ctx, err);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len;
    unsigned min;
    unsigned cp;
    if ((s[0] & 0xE0) == 0xC0) len = 2, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, cp = s[0] & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

void sft_json_write_string(FILE *f, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') fputs("\\n", f), i++;
        else if (c == '\r') fputs("\\r", f), i++;
        else if (c == '\t') fputs("\\t", f), i++;
        else if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c), i++;
        else {
            size_t l = utf8_seq_len(p + i, len - i);
            if (l == 0) {
                fputs("\xEF\xBF\xBD", f);
                i++;
            } else {
                fwrite(p + i, 1, l, f);
                i += l;
            }
        }
    }
    fputc('"', f);
}
