/* yaml.c: libyaml's document loader turned into a small owned tree with
 * source positions, plus the scalar typing rules of the project (see yaml.h). */
#include "io/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "io/file.h"

/* Deeper nesting than this is not a configuration file; the limit also
 * stops recursive aliases (&a [*a]) from recursing forever. */
#define YAML_MAX_DEPTH 64

struct sft_yaml_doc {
    char *name;
    sft_yaml_node *root;
};

static void node_free(sft_yaml_node *node) {
    if (!node) return;
    free(node->value);
    for (size_t i = 0; i < node->count; i++) {
        if (node->items) node_free(node->items[i]);
        if (node->keys) node_free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node);
}

void sft_yaml_free(sft_yaml_doc *doc) {
    if (!doc) return;
    node_free(doc->root);
    free(doc->name);
    free(doc);
}

const sft_yaml_node *sft_yaml_root(const sft_yaml_doc *doc) {
    return doc ? doc->root : NULL;
}

const char *sft_yaml_name(const sft_yaml_doc *doc) {
    return doc ? doc->name : "";
}

const char *sft_yaml_kind_name(sft_yaml_kind kind) {
    switch (kind) {
    case SFT_YAML_SCALAR:
        return "scalar";
    case SFT_YAML_SEQUENCE:
        return "list";
    case SFT_YAML_MAPPING:
        return "mapping";
    }
    return "?";
}

/* Copies libyaml node `id` (and everything under it) into an owned node. */
static sft_yaml_node *convert(yaml_document_t *ydoc, int id, int depth, const char *name, sft_err *err) {
    yaml_node_t *yn = yaml_document_get_node(ydoc, id);
    if (!yn) {
        sft_errf(err, "%s: invalid YAML: dangling node reference", name);
        return NULL;
    }
    int line = (int)yn->start_mark.line + 1, column = (int)yn->start_mark.column + 1;
    if (depth > YAML_MAX_DEPTH) {
        sft_errf(err, "%s:%d:%d: YAML nested deeper than %d levels (or a recursive alias)", name, line,
                 column, YAML_MAX_DEPTH);
        return NULL;
    }
    sft_yaml_node *node = calloc(1, sizeof *node);
    if (!node) {
        sft_errf(err, "%s: out of memory", name);
        return NULL;
    }
    node->line = line;
    node->column = column;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        node->kind = SFT_YAML_SCALAR;
        node->len = yn->data.scalar.length;
        node->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        node->value = malloc(node->len + 1);
        if (!node->value) goto oom;
        memcpy(node->value, yn->data.scalar.value, node->len);
        node->value[node->len] = 0;
        return node;
    case YAML_SEQUENCE_NODE: {
        node->kind = SFT_YAML_SEQUENCE;
        size_t n = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
        node->items = calloc(n ? n : 1, sizeof *node->items);
        if (!node->items) goto oom;
        for (size_t i = 0; i < n; i++) {
            node->items[i] = convert(ydoc, yn->data.sequence.items.start[i], depth + 1, name, err);
            node->count = i + 1;
            if (!node->items[i]) goto fail;
        }
        return node;
    }
    case YAML_MAPPING_NODE: {
        node->kind = SFT_YAML_MAPPING;
        size_t n = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
        node->items = calloc(n ? n : 1, sizeof *node->items);
        node->keys = calloc(n ? n : 1, sizeof *node->keys);
        if (!node->items || !node->keys) goto oom;
        for (size_t i = 0; i < n; i++) {
            yaml_node_pair_t *pair = &yn->data.mapping.pairs.start[i];
            node->count = i + 1;
            node->keys[i] = convert(ydoc, pair->key, depth + 1, name, err);
            if (!node->keys[i]) goto fail;
            node->items[i] = convert(ydoc, pair->value, depth + 1, name, err);
            if (!node->items[i]) goto fail;
            const sft_yaml_node *key = node->keys[i];
            if (key->kind != SFT_YAML_SCALAR) {
                sft_errf(err, "%s:%d:%d: a mapping key must be a plain name, not a %s", name, key->line,
                         key->column, sft_yaml_kind_name(key->kind));
                goto fail;
            }
            for (size_t j = 0; j < i; j++) {
                if (!strcmp(node->keys[j]->value, key->value)) {
                    sft_errf(err, "%s:%d:%d: duplicate key '%s' (first given at line %d)", name, key->line,
                             key->column, key->value, node->keys[j]->line);
                    goto fail;
                }
            }
        }
        return node;
    }
    default:
        sft_errf(err, "%s:%d:%d: invalid YAML: empty node", name, line, column);
        goto fail;
    }
oom:
    sft_errf(err, "%s: out of memory", name);
fail:
    node_free(node);
    return NULL;
}

static int parser_error(const yaml_parser_t *parser, const char *text, size_t len, const char *name,
                        sft_err *err) {
    const char *problem = parser->problem ? parser->problem : "malformed document";
    int line = (int)parser->problem_mark.line + 1, column = (int)parser->problem_mark.column + 1;
    /* The commonest YAML mistake has the least helpful message. */
    size_t at = parser->problem_mark.index;
    const char *hint = at < len && text[at] == '\t' ? " (a tab: YAML indents with spaces)" : "";
    if (parser->context)
        return sft_errf(err, "%s:%d:%d: invalid YAML: %s%s (%s started at line %d)", name, line, column, problem,
                        hint, parser->context, (int)parser->context_mark.line + 1);
    return sft_errf(err, "%s:%d:%d: invalid YAML: %s%s", name, line, column, problem, hint);
}

sft_yaml_doc *sft_yaml_load_string(const char *text, size_t len, const char *name, sft_err *err) {
    sft_yaml_doc *doc = calloc(1, sizeof *doc);
    if (!doc || !(doc->name = strdup(name))) {
        free(doc);
        sft_errf(err, "%s: out of memory", name);
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        sft_yaml_free(doc);
        sft_errf(err, "%s: out of memory", name);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_document_t ydoc;
    if (!yaml_parser_load(&parser, &ydoc)) {
        parser_error(&parser, text, len, name, err);
        yaml_parser_delete(&parser);
        sft_yaml_free(doc);
        return NULL;
    }
    int failed = 0;
    if (yaml_document_get_root_node(&ydoc)) {
        doc->root = convert(&ydoc, 1, 0, name, err);
        failed = doc->root == NULL;
    }
    yaml_document_delete(&ydoc);
    if (!failed) {
        /* A configuration is one document; a second one ("---") is almost
         * certainly two files pasted together. */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            parser_error(&parser, text, len, name, err);
            failed = 1;
        } else {
            yaml_node_t *second = yaml_document_get_root_node(&next);
            if (second) {
                sft_errf(err, "%s:%d:%d: a second YAML document; one configuration per file expected", name,
                         (int)next.start_mark.line + 1, (int)next.start_mark.column + 1);
                failed = 1;
            }
            yaml_document_delete(&next);
        }
    }
    yaml_parser_delete(&parser);
    if (failed) {
        sft_yaml_free(doc);
        return NULL;
    }
    return doc;
}

sft_yaml_doc *sft_yaml_load_file(const char *path, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return NULL;
    sft_yaml_doc *doc = sft_yaml_load_string(text, len, path, err);
    free(text);
    return doc;
}

const sft_yaml_node *sft_yaml_get(const sft_yaml_node *mapping, const char *key) {
    if (!mapping || mapping->kind != SFT_YAML_MAPPING) return NULL;
    for (size_t i = 0; i < mapping->count; i++)
        if (!strcmp(mapping->keys[i]->value, key)) return mapping->items[i];
    return NULL;
}

static int is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

int sft_yaml_is_null(const sft_yaml_node *node) {
    return node && node->kind == SFT_YAML_SCALAR && node->plain && is_null_text(node->value);
}

int sft_yaml_scalar_bool(const char *text, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "y"};
    static const char *const no[] = {"false", "no", "off", "n"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(text, yes[i])) return *out = 1, 0;
        if (!strcasecmp(text, no[i])) return *out = 0, 0;
    }
    if (!strcmp(text, "1")) return *out = 1, 0;
    if (!strcmp(text, "0")) return *out = 0, 0;
    return -1;
}

int sft_yaml_scalar_int(const char *text, int64_t *out) {
    const char *p = text;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return -1;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || *end) return -1;
    *out = (int64_t)v;
    return 0;
}

int sft_yaml_scalar_number(const char *text, double *out) {
    /* YAML's spellings of infinity and NaN; strtod's own "inf"/"nan"/hex
     * forms are not YAML and are rejected by the character check below. */
    const char *p = text;
    int negative = 0;
    if (*p == '+' || *p == '-') negative = *p++ == '-';
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF"))
        return *out = negative ? -INFINITY : INFINITY, 0;
    if (p == text && (!strcmp(p, ".nan") || !strcmp(p, ".NaN") || !strcmp(p, ".NAN"))) return *out = NAN, 0;
    int digits = 0;
    for (const char *q = text; *q; q++) {
        if (*q >= '0' && *q <= '9')
            digits = 1;
        else if (!strchr("+-.eE", *q))
            return -1;
    }
    if (!digits) return -1;
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (*end || end == text) return -1;
    if (errno == ERANGE && isinf(v)) return -1;
    *out = v;
    return 0;
}

/* A plain scalar is safe when it is made of path-and-name characters, does
 * not start with a YAML indicator, and would not read back as null, a bool
 * or a number. */
static int plain_is_safe(const char *s) {
    if (!*s || strchr("-?:,[]{}#&*!|>'\"%@`~ ", s[0])) return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_./+-@=", c)))
            return 0;
    }
    int b;
    int64_t i;
    double d;
    if (is_null_text(s) || !sft_yaml_scalar_bool(s, &b) || !sft_yaml_scalar_int(s, &i) ||
        !sft_yaml_scalar_number(s, &d))
        return 0;
    return 1;
}

size_t sft_yaml_quote(char *out, size_t cap, const char *text) {
    size_t n = 0;
#define PUT(ch)                                                                                        \
    do {                                                                                               \
        if (n + 1 < cap) out[n] = (ch);                                                                \
        n++;                                                                                           \
    } while (0)
    if (plain_is_safe(text)) {
        for (const char *p = text; *p; p++) PUT(*p);
    } else {
        PUT('"');
        for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
            unsigned char c = *p;
            if (c == '"' || c == '\\') {
                PUT('\\');
                PUT((char)c);
            } else if (c == '\n') {
                PUT('\\');
                PUT('n');
            } else if (c == '\t') {
                PUT('\\');
                PUT('t');
            } else if (c < 0x20 || c == 0x7f) {
                char hex[5];
                snprintf(hex, sizeof hex, "\\x%02x", c);
                for (int k = 0; k < 4; k++) PUT(hex[k]);
            } else if (c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
                /* U+0080..U+009F: not printable in YAML, and U+0085 (NEL) is
                 * a line break that folding would turn into a space. */
                char hex[5];
                snprintf(hex, sizeof hex, "\\x%02x", p[1]);
                for (int k = 0; k < 4; k++) PUT(hex[k]);
                p++;
            } else if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                /* U+2028 / U+2029: YAML 1.1 line and paragraph separators. */
                PUT('\\');
                PUT(p[2] == 0xa8 ? 'L' : 'P');
                p += 2;
            } else if (c == 0xef && ((p[1] == 0xbb && p[2] == 0xbf) || (p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)))) {
                /* U+FEFF (a byte order mark) and the non-characters U+FFFE/FFFF. */
                char hex[7];
                snprintf(hex, sizeof hex, "\\u%04x", p[1] == 0xbb ? 0xfeff : 0xffc0 | (p[2] & 0x3f));
                for (int k = 0; k < 6; k++) PUT(hex[k]);
                p += 2;
            } else {
                PUT((char)c);
            }
        }
        PUT('"');
    }
#undef PUT
    if (cap) out[n < cap ? n : cap - 1] = 0;
    return n;
}
