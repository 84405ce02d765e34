/* tok_internal.h: the pieces of the tokenizer shared between its modules
 * (not a public interface; see tokenizer.h for that).
 *
 * The pipeline mirrors Hugging Face tokenizers (tokenizers/src/tokenizer):
 *   raw text -> added tokens (non-normalized) -> normalizer -> added tokens
 *   (normalized) -> pre-tokenizers -> BPE model -> post-processor,
 * and decoding runs the decoder chain over the token strings. Offsets are
 * tracked like tokenizers' NormalizedString: every byte of a normalized
 * string carries the byte range of the original text it came from. */
#ifndef SFT_TOK_INTERNAL_H
#define SFT_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "io/err.h"
#include "io/json.h"
#include "tok/tokenizer.h"

/* ---------- UTF-8 ---------- */

/* Length of the valid UTF-8 character at s (1..4), or 0 when the bytes there
 * are not a valid character (each such byte is then treated as a unit). */
int tok_utf8_valid_len(const unsigned char *s, size_t avail);
/* Length of the unit at s: a valid character, or 1 byte of invalid input. */
static inline size_t tok_unit_len(const char *s, size_t avail) {
    int n = tok_utf8_valid_len((const unsigned char *)s, avail);
    return n > 0 ? (size_t)n : 1;
}
/* Decodes the valid character at s (call only when tok_utf8_valid_len > 0). */
uint32_t tok_utf8_decode(const unsigned char *s);
/* Encodes a code point; returns the byte count. */
int tok_utf8_encode(uint32_t cp, char *out);
/* Appends s[0..len) to out (capacity managed by the caller) replacing each
 * invalid sequence by U+FFFD the way Rust's String::from_utf8_lossy does
 * (one replacement per maximal invalid subpart). Returns bytes written;
 * out must hold 3*len bytes. */
size_t tok_utf8_lossy(const char *s, size_t len, char *out);
int tok_utf8_is_valid(const char *s, size_t len);

/* ---------- growable buffers ---------- */

typedef struct {
    char *data;
    size_t len, cap;
} tok_buf;
int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_append(tok_buf *b, const void *data, size_t len);
void tok_buf_free(tok_buf *b);

/* ---------- hash maps ---------- */

uint64_t tok_hash_bytes(const void *data, size_t len);

/* String -> int32 map over strings owned by a pool (offsets into it). */
typedef struct {
    uint32_t *slots; /* entry index + 1, 0 = empty */
    size_t mask;
    struct tok_str_entry {
        uint32_t offset, len; /* into pool */
        int32_t value;
        uint32_t hash32;
    } * entries;
    size_t count, cap;
    tok_buf pool;
} tok_strmap;
int tok_strmap_init(tok_strmap *m, size_t expected);
/* Inserts or overwrites. */
int tok_strmap_put(tok_strmap *m, const char *s, size_t len, int32_t value);
/* -1 when absent. */
int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len);
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (rank, merged id): BPE merges. */
typedef struct {
    uint64_t *keys; /* (left << 32 | right) + 1, 0 = empty */
    uint32_t *ranks;
    int32_t *merged;
    size_t mask, count;
} tok_pairmap;
int tok_pairmap_init(tok_pairmap *m, size_t expected);
void tok_pairmap_put(tok_pairmap *m, uint32_t left, uint32_t right, uint32_t rank, int32_t merged);
/* 1 and fills rank/merged when present. */
static inline int tok_pairmap_get(const tok_pairmap *m, uint32_t left, uint32_t right, uint32_t *rank,
                                  int32_t *merged) {
    uint64_t key = (((uint64_t)left << 32) | right) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & m->mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = m->ranks[i];
            *merged = m->merged[i];
            return 1;
        }
        if (!k) return 0;
        i = (i + 1) & m->mask;
    }
}
void tok_pairmap_free(tok_pairmap *m);

/* ---------- regexes (PCRE2, JIT) ---------- */

/* A compiled pattern with Oniguruma's meaning (the regex engine tokenizers
 * uses): \s and \S mean the Unicode White_Space property, ^ and $ are line
 * anchors. Invalid UTF-8 in the subject never matches and never fails. */
typedef struct {
    pcre2_code *code;
} tok_regex;
int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, int literal, sft_err *err);
void tok_regex_free(tok_regex *re);

/* Per-call matching state (pcre2 match data and JIT stack are not shareable
 * between threads). */
typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} tok_matcher;
int tok_matcher_init(tok_matcher *m, sft_err *err);
void tok_matcher_free(tok_matcher *m);

/* Iterates matches the way the onig crate's find_iter does (an empty match
 * right after the previous match is skipped by one character). */
typedef struct {
    const tok_regex *re;
    tok_matcher *m;
    const char *text;
    size_t len, last_end;
    int have_last;
    size_t last_match_end;
} tok_find_iter;
void tok_find_begin(tok_find_iter *it, const tok_regex *re, tok_matcher *m, const char *text, size_t len);
/* 1 with [*start, *end) for the next match, 0 at the end, -1 on a matcher failure. */
int tok_find_next(tok_find_iter *it, size_t *start, size_t *end, sft_err *err);

/* ---------- normalized strings ---------- */

typedef struct {
    uint32_t start, end;
} tok_span;

/* A string with, for each byte, the original byte range it came from. */
typedef struct {
    char *text;
    tok_span *align;
    size_t len, cap;
} tok_nstr;
int tok_nstr_reserve(tok_nstr *s, size_t cap);
void tok_nstr_free(tok_nstr *s);
/* s = text (reserved by the caller), each byte aligned to its whole
 * character at base + offset, as NormalizedString::from does. */
void tok_nstr_set_original(tok_nstr *s, const char *text, size_t len, size_t base);
/* A read-only view into a tok_nstr (or any text + alignments). */
typedef struct {
    const char *text;
    const tok_span *align;
    size_t len;
} tok_view;
/* The original range covered by [start, end) of a view (tokenizers'
 * convert_offsets: first alignment's start, last alignment's end). */
static inline tok_span tok_view_original(const tok_view *v, size_t start, size_t end) {
    tok_span r;
    if (start >= end) {
        uint32_t at = start < v->len ? v->align[start].start : (v->len ? v->align[v->len - 1].end : 0);
        r.start = r.end = at;
        return r;
    }
    r.start = v->align[start].start;
    r.end = v->align[end - 1].end;
    return r;
}

/* ---------- components ---------- */

enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_CONTIGUOUS,
};

enum tok_prepend_scheme { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };

/* Normalizers (a Sequence is flattened into a list). */
typedef struct {
    enum { TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_UNICODE } type;
    int unicode_options; /* utf8proc options of NFC / NFD / NFKC / NFKD */
    char *text;          /* Prepend: the prefix; Replace: the content */
    size_t text_len;
    tok_regex pattern; /* Replace */
} tok_normalizer;

/* Pre-tokenizers (a Sequence is flattened). */
typedef struct {
    enum { TOK_PRE_SPLIT, TOK_PRE_BYTE_LEVEL, TOK_PRE_METASPACE } type;
    /* Split */
    tok_regex pattern;
    enum tok_split_behavior behavior;
    int invert;
    /* ByteLevel */
    int add_prefix_space, use_regex;
    /* Metaspace */
    char replacement[5];
    size_t replacement_len;
    enum tok_prepend_scheme prepend_scheme;
    int split;
} tok_pretokenizer;

typedef struct {
    enum {
        TOK_DEC_BYTE_LEVEL,
        TOK_DEC_METASPACE,
        TOK_DEC_REPLACE,
        TOK_DEC_BYTE_FALLBACK,
        TOK_DEC_FUSE,
        TOK_DEC_STRIP
    } type;
    tok_regex pattern; /* Replace */
    char *content;     /* Replace: replacement text; Strip: the character */
    size_t content_len;
    size_t strip_start, strip_stop;
    char replacement[5]; /* Metaspace */
    size_t replacement_len;
    enum tok_prepend_scheme prepend_scheme;
} tok_decoder;

typedef struct {
    int is_sequence;    /* 1: $A; 0: a special token */
    int sequence_index; /* 0 = A, 1 = B */
    int32_t *ids;       /* special token ids and strings */
    char **tokens;
    size_t count;
} tok_template_piece;

typedef struct {
    enum { TOK_POST_BYTE_LEVEL, TOK_POST_TEMPLATE } type;
    int trim_offsets, add_prefix_space; /* ByteLevel */
    tok_template_piece *single;         /* TemplateProcessing */
    size_t single_count;
} tok_postprocessor;

typedef struct {
    int32_t id;
    char *content;
    size_t len;
    char *normalized_content; /* content after the normalizer, when it differs */
    size_t normalized_len;
    int special, single_word, lstrip, rstrip, normalized;
} tok_added_token;

/* Leftmost-longest literal matching of added tokens. */
typedef struct {
    size_t *order;        /* token indices grouped by first byte */
    size_t bucket[257];   /* bucket[b]..bucket[b+1] in order */
    const char **pattern; /* per token index: the text to match */
    size_t *pattern_len;
    size_t count;
} tok_added_matcher;

/* The BPE model (tokenizers/src/models/bpe). */
typedef struct tok_cache tok_cache;
typedef struct {
    tok_strmap vocab;
    char **vocab_r; /* id -> token string (NUL-terminated, in vocab.pool's copy) */
    uint32_t *vocab_r_len;
    size_t vocab_r_count; /* max id + 1 */
    size_t vocab_size;    /* distinct entries */
    tok_pairmap merges;
    int32_t unk_id;    /* -1: no unk_token */
    char *unk_missing; /* an unk_token named but absent from the vocabulary */
    char *continuing_subword_prefix, *end_of_word_suffix;
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_fallback_ids[256]; /* <0xNN> ids, -1 when absent */
    tok_cache *cache;
} tok_bpe;

struct sft_tokenizer {
    tok_bpe bpe;
    tok_added_token *added;
    size_t added_count;
    tok_added_matcher match_raw, match_normalized;
    tok_normalizer *normalizers;
    size_t normalizer_count;
    tok_pretokenizer *pretokenizers;
    size_t pretokenizer_count;
    tok_postprocessor *post;
    size_t post_count;
    tok_decoder *decoders;
    size_t decoder_count;
    size_t id_limit;        /* max id + 1 over model and added tokens */
    int32_t *added_by_id;   /* id -> index into added, -1 */
    tok_strmap added_map;   /* content -> id */
    tok_strmap special_set; /* contents of special added tokens */
    char *bos_token, *eos_token, *pad_token, *unk_token;
    char *chat_template;
    tok_regex gpt2_regex; /* ByteLevel's built-in split pattern, compiled once */
    int have_gpt2_regex;
    tok_regex word_char_regex;  /* one \w character (single_word) */
    tok_regex space_char_regex; /* one White_Space character (lstrip, rstrip, trim_offsets) */
};

/* ---------- module entry points ---------- */

/* bpe.c */
int tok_bpe_load(tok_bpe *bpe, const json_t *model, sft_err *err);
void tok_bpe_free(tok_bpe *bpe);

/* Scratch of one encoding call. */
typedef struct tok_ctx tok_ctx;

/* Output sink of the model: appends one token. */
int tok_emit(tok_ctx *ctx, int32_t id, const char *token, size_t token_len, int token_is_stable,
             tok_span span, sft_err *err);

/* Tokenizes one pre-token (a view whose bytes are the model's input). */
int tok_bpe_tokenize(const tok_bpe *bpe, tok_ctx *ctx, const tok_view *word, sft_err *err);

/* added_tokens.c */
int tok_added_matcher_build(tok_added_matcher *m, const sft_tokenizer *tok, int normalized, sft_err *err);
void tok_added_matcher_free(tok_added_matcher *m);
/* Splits text into added-token matches and the text between them, as
 * added_vocabulary.rs find_matches: token = index into tok->added, or -1. */
struct tok_added_split {
    long token;
    size_t start, end;
};
int tok_added_split(const sft_tokenizer *tok, const tok_added_matcher *m, tok_matcher *mt, const char *text,
                    size_t len, struct tok_added_split **out, size_t *count, size_t *cap);

/* normalize.c: applies the normalizers to s in place (using tmp). */
int tok_normalize(const sft_tokenizer *tok, tok_ctx *ctx, tok_nstr *s, sft_err *err);
int tok_normalizer_load(tok_normalizer **list, size_t *count, const json_t *j, sft_err *err);
void tok_normalizers_free(tok_normalizer *list, size_t count);
/* Normalizes a plain string (added tokens' normalized form); *out malloc'ed. */
int tok_normalize_string(const sft_tokenizer *tok, const char *s, size_t len, char **out, size_t *out_len,
                         sft_err *err);

/* pretokenize.c */
int tok_pretokenizer_load(sft_tokenizer *tok, const json_t *j, sft_err *err);
void tok_pretokenizers_free(tok_pretokenizer *list, size_t count);
/* Runs the pre-tokenizers from step `step` on a piece, then the model. */
int tok_pretokenize_and_model(const sft_tokenizer *tok, tok_ctx *ctx, const tok_view *piece, size_t step,
                              sft_err *err);

/* decode.c */
int tok_decoder_load(tok_decoder **list, size_t *count, const json_t *j, sft_err *err);
void tok_decoders_free(tok_decoder *list, size_t count);

/* tokenizer.c: the encoding being built */
const char *tok_encoding_token(const tok_ctx *ctx, size_t i);
/* Rebuilds the encoding as a template: special pieces around the sequence. */
int tok_encoding_wrap(tok_ctx *ctx, const tok_template_piece *pieces, size_t n, sft_err *err);
/* The string of an id as decode sees it (NULL when unknown). */
const char *tok_id_string(const sft_tokenizer *tok, int32_t id, size_t *len);
int tok_is_special(const sft_tokenizer *tok, const char *s, size_t len);

/* postprocess.c */
int tok_postprocessor_load(sft_tokenizer *tok, const json_t *j, sft_err *err);
void tok_postprocessors_free(tok_postprocessor *list, size_t count);
int tok_postprocess(const sft_tokenizer *tok, tok_ctx *ctx, int add_special, sft_err *err);

/* Byte-level alphabet (GPT-2's bytes_to_unicode). */
extern const uint16_t tok_byte_to_cp[256];
/* Code point -> byte, -1 when the code point is not in the alphabet. */
int tok_cp_to_byte(uint32_t cp);

/* The scratch of one encoding call. */
#define TOK_MAX_STEPS 16
struct tok_ctx {
    const sft_tokenizer *tok;
    tok_matcher matcher;
    tok_nstr segment;                 /* a normalized segment */
    tok_nstr tmp;                     /* normalizer scratch */
    tok_nstr level[TOK_MAX_STEPS][2]; /* pre-tokenizer scratch per step */
    struct tok_seg *segs[TOK_MAX_STEPS][2];
    size_t segs_cap[TOK_MAX_STEPS][2];
    struct tok_added_split *splits[2]; /* raw and normalized added-token splits */
    size_t splits_cap[2];
    /* BPE scratch */
    struct tok_symbol *symbols;
    size_t symbols_cap;
    struct tok_merge *heap;
    size_t heap_cap;
    tok_buf word_key; /* cache key / ignore_merges lookup scratch */
    /* output */
    sft_encoding *out;
    tok_buf token_pool;        /* token strings that are not the tokenizer's own */
    size_t *token_pool_offset; /* per token: offset+1 into token_pool, 0 = stable */
    size_t pool_cap;
};

#endif
