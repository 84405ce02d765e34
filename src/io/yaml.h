/* yaml.h: reading YAML configuration files (run.yaml, sweep.yaml) through
 * libyaml (https://pyyaml.org/wiki/LibYAML), Debian's YAML 1.1 parser.
 *
 * A file is loaded whole into a small tree of scalars, sequences and
 * mappings; every node keeps the line and column where it starts so that
 * callers can report "run.yaml:4:10: lr expects a number". libyaml only
 * parses; it does not decide whether `3` is a number, so the typed readers
 * below do that once for the whole project, the same way for every caller.
 * Aliases are resolved by libyaml; duplicate keys in one mapping are an
 * error (libyaml accepts them silently, and the last one winning is a
 * well-known source of confusing configurations). */
#ifndef SFT_IO_YAML_H
#define SFT_IO_YAML_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef enum { SFT_YAML_SCALAR, SFT_YAML_SEQUENCE, SFT_YAML_MAPPING } sft_yaml_kind;

typedef struct sft_yaml_node sft_yaml_node;
struct sft_yaml_node {
    sft_yaml_kind kind;
    int line, column; /* 1-based, where the node starts */
    /* SFT_YAML_SCALAR: the text (NUL-terminated, len bytes) and whether it
     * was written plain (unquoted): only plain scalars can mean null. */
    char *value;
    size_t len;
    int plain;
    /* SFT_YAML_SEQUENCE: items[0..count); SFT_YAML_MAPPING: keys[i] -> items[i]. */
    size_t count;
    sft_yaml_node **items;
    sft_yaml_node **keys;
};

typedef struct sft_yaml_doc sft_yaml_doc;

/* Loads one YAML document. An empty file gives a document whose root is NULL.
 * Errors name the file with line and column ("run.yaml:3:7: invalid YAML: ..."). */
sft_yaml_doc *sft_yaml_load_file(const char *path, sft_err *err);
sft_yaml_doc *sft_yaml_load_string(const char *text, size_t len, const char *name, sft_err *err);
void sft_yaml_free(sft_yaml_doc *doc);

const sft_yaml_node *sft_yaml_root(const sft_yaml_doc *doc);
/* The name given at load (the path), for error messages. */
const char *sft_yaml_name(const sft_yaml_doc *doc);

/* NULL when the mapping has no such key (keys compared as scalar text). */
const sft_yaml_node *sft_yaml_get(const sft_yaml_node *mapping, const char *key);

/* "scalar", "list" or "mapping", for messages. */
const char *sft_yaml_kind_name(sft_yaml_kind kind);

/* Scalar interpretation. Each returns 0 on success, -1 when the node does
 * not hold that type (no error is set: the caller knows the key's name).
 *   null:   a plain `null`, `Null`, `NULL`, `~` or empty scalar
 *   bool:   true/false, yes/no, on/off (any of YAML 1.1's spellings)
 *   int:    a decimal integer with optional sign, within int64
 *   number: a decimal or exponent number (2e-5, .5, 1_000 is not one);
 *           .inf / .nan are read too, callers decide whether they are valid */
int sft_yaml_is_null(const sft_yaml_node *node);
int sft_yaml_scalar_bool(const char *text, int *out);
int sft_yaml_scalar_int(const char *text, int64_t *out);
int sft_yaml_scalar_number(const char *text, double *out);

/* Appends `text` to `out` as a YAML scalar that reads back as exactly that
 * string: plain when it is safe and cannot be mistaken for another type,
 * double-quoted with escapes otherwise. Returns the number of bytes it
 * needs (like snprintf); writes at most cap-1 bytes plus a NUL. */
size_t sft_yaml_quote(char *out, size_t cap, const char *text);

#endif
