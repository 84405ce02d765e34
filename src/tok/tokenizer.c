/* tokenizer.c: loading a Hugging Face tokenizer.json (+ tokenizer_config.json
 * and the chat template) and the encoding pipeline of tokenizers'
 * TokenizerImpl::encode (tokenizers/src/tokenizer/mod.rs):
 *   1. added tokens with normalized=false are cut out of the raw text;
 *   2. each remaining segment is normalized, then added tokens with
 *      normalized=true are cut out of it;
 *   3. each remaining piece runs through the pre-tokenizers and the BPE model;
 *   4. the post-processors run (special tokens only with add_special).
 * truncation and padding in tokenizer.json are not applied: transformers
 * resets them on every call too, and sft truncates with its own --max-len. */
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "tok/tok_internal.h"

/* ---------- the encoding being built ---------- */

static int out_reserve(tok_ctx *ctx, size_t n, sft_err *err) {
    sft_encoding *e = ctx->out;
    if (n > e->capacity) {
        size_t cap = e->capacity ? e->capacity : 64;
        while (cap < n)
            cap *= 2;
        int32_t *ids = realloc(e->ids, cap * sizeof *ids);
        if (ids) e->ids = ids;
        size_t *off = realloc(e->offsets, cap * 2 * sizeof *off);
        if (off) e->offsets = off;
        const char **toks = realloc((void *)e->tokens, cap * sizeof *toks);
        if (toks) e->tokens = toks;
        if (!ids || !off || !toks) return sft_errf(err, "out of memory");
        e->capacity = cap;
    }
    if (n > ctx->pool_cap) {
        size_t cap = ctx->pool_cap ? ctx->pool_cap : 64;
        while (cap < n)
            cap *= 2;
        size_t *p = realloc(ctx->token_pool_offset, cap * sizeof *p);
        if (!p) return sft_errf(err, "out of memory");
        ctx->token_pool_offset = p;
        ctx->pool_cap = cap;
    }
    return 0;
}

int tok_emit(tok_ctx *ctx, int32_t id, const char *token, size_t token_len, int token_is_stable,
             tok_span span, sft_err *err) {
    sft_encoding *e = ctx->out;
    if (e->count == e->capacity || e->count >= ctx->pool_cap)
        if (out_reserve(ctx, e->count + 1, err)) return -1;
    size_t i = e->count;
    e->ids[i] = id;
    e->offsets[2 * i] = span.start;
    e->offsets[2 * i + 1] = span.end;
    if (token_is_stable) {
        e->tokens[i] = token;
        ctx->token_pool_offset[i] = 0;
    } else {
        e->tokens[i] = NULL;
        ctx->token_pool_offset[i] = ctx->token_pool.len + 1;
        if (tok_buf_append(&ctx->token_pool, token, token_len) || tok_buf_append(&ctx->token_pool, "", 1))
            return sft_errf(err, "out of memory");
    }
    e->count++;
    return 0;
}

const char *tok_encoding_token(const tok_ctx *ctx, size_t i) {
    if (ctx->token_pool_offset[i]) return ctx->token_pool.data + ctx->token_pool_offset[i] - 1;
    return ctx->out->tokens[i];
}

int tok_encoding_wrap(tok_ctx *ctx, const tok_template_piece *pieces, size_t n, sft_err *err) {
    sft_encoding *e = ctx->out;
    size_t count = e->count, extra = 0;
    for (size_t k = 0; k < n; k++)
        if (!pieces[k].is_sequence) extra += pieces[k].count;
    int32_t *ids = malloc((count + 1) * sizeof *ids);
    size_t *off = malloc((count + 1) * 2 * sizeof *off);
    const char **toks = malloc((count + 1) * sizeof *toks);
    size_t *pool = malloc((count + 1) * sizeof *pool);
    int rc = -1;
    if (!ids || !off || !toks || !pool) {
        sft_errf(err, "out of memory");
        goto done;
    }
    memcpy(ids, e->ids, count * sizeof *ids);
    memcpy(off, e->offsets, count * 2 * sizeof *off);
    memcpy(toks, e->tokens, count * sizeof *toks);
    memcpy(pool, ctx->token_pool_offset, count * sizeof *pool);
    if (out_reserve(ctx, count + extra, err)) goto done;
    e->count = 0;
    for (size_t k = 0; k < n; k++) {
        const tok_template_piece *p = &pieces[k];
        if (p->is_sequence) {
            memcpy(e->ids + e->count, ids, count * sizeof *ids);
            memcpy(e->offsets + 2 * e->count, off, count * 2 * sizeof *off);
            memcpy(e->tokens + e->count, toks, count * sizeof *toks);
            memcpy(ctx->token_pool_offset + e->count, pool, count * sizeof *pool);
            e->count += count;
        } else {
            for (size_t t = 0; t < p->count; t++) {
                e->ids[e->count] = p->ids[t];
                e->offsets[2 * e->count] = e->offsets[2 * e->count + 1] = 0;
                e->tokens[e->count] = p->tokens[t];
                ctx->token_pool_offset[e->count] = 0;
                e->count++;
            }
        }
    }
    rc = 0;
done:
    free(ids);
    free(off);
    free(toks);
    free(pool);
    return rc;
}

/* Moves token strings that live in the call's scratch into the encoding. */
static int finish_tokens(tok_ctx *ctx, sft_err *err) {
    sft_encoding *e = ctx->out;
    free(e->token_storage);
    e->token_storage = NULL;
    if (!ctx->token_pool.len) return 0;
    e->token_storage = malloc(ctx->token_pool.len);
    if (!e->token_storage) return sft_errf(err, "out of memory");
    memcpy(e->token_storage, ctx->token_pool.data, ctx->token_pool.len);
    for (size_t i = 0; i < e->count; i++)
        if (ctx->token_pool_offset[i]) e->tokens[i] = e->token_storage + ctx->token_pool_offset[i] - 1;
    return 0;
}

static void ctx_free(tok_ctx *ctx) {
    tok_matcher_free(&ctx->matcher);
    tok_nstr_free(&ctx->segment);
    tok_nstr_free(&ctx->tmp);
    for (int i = 0; i < TOK_MAX_STEPS; i++)
        for (int k = 0; k < 2; k++) {
            tok_nstr_free(&ctx->level[i][k]);
            free(ctx->segs[i][k]);
        }
    free(ctx->splits[0]);
    free(ctx->splits[1]);
    free(ctx->symbols);
    free(ctx->heap);
    tok_buf_free(&ctx->word_key);
    tok_buf_free(&ctx->token_pool);
    free(ctx->token_pool_offset);
}

static int emit_added(tok_ctx *ctx, long index, const char *text, size_t len, tok_span span, sft_err *err) {
    const tok_added_token *t = &ctx->tok->added[index];
    /* The token string is the matched text (it includes what lstrip/rstrip took). */
    if (len == t->len && !memcmp(text, t->content, len))
        return tok_emit(ctx, t->id, t->content, t->len, 1, span, err);
    return tok_emit(ctx, t->id, text, len, 0, span, err);
}

int sft_tokenizer_encode(const sft_tokenizer *tok, const char *text, size_t len, int add_special,
                         sft_encoding *out, sft_err *err) {
    out->count = 0;
    if (len >= UINT32_MAX / 4) return sft_errf(err, "text of %zu bytes is too long to encode at once", len);
    tok_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.tok = tok;
    ctx.out = out;
    int rc = -1;
    if (tok_matcher_init(&ctx.matcher, err)) return -1;
    /* About 4 bytes per token in English; grown by doubling past that. */
    if (out_reserve(&ctx, (len < (1u << 18) ? len : (1u << 18)) / 4 + 16, err)) goto done;
    size_t n1;
    if (tok_added_split(tok, &tok->match_raw, &ctx.matcher, text, len, &ctx.splits[0], &n1,
                        &ctx.splits_cap[0])) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n1; i++) {
        struct tok_added_split s = ctx.splits[0][i];
        if (s.end <= s.start) continue;
        if (s.token >= 0) {
            if (emit_added(&ctx, s.token, text + s.start, s.end - s.start,
                           (tok_span){(uint32_t)s.start, (uint32_t)s.end}, err))
                goto done;
            continue;
        }
        if (tok_nstr_reserve(&ctx.segment, s.end - s.start + 1)) {
            sft_errf(err, "out of memory");
            goto done;
        }
        tok_nstr_set_original(&ctx.segment, text + s.start, s.end - s.start, s.start);
        if (tok_normalize(tok, &ctx, &ctx.segment, err)) goto done;
        tok_view seg = {ctx.segment.text, ctx.segment.align, ctx.segment.len};
        size_t n2;
        if (tok_added_split(tok, &tok->match_normalized, &ctx.matcher, seg.text, seg.len, &ctx.splits[1], &n2,
                            &ctx.splits_cap[1])) {
            sft_errf(err, "out of memory");
            goto done;
        }
        for (size_t k = 0; k < n2; k++) {
            struct tok_added_split s2 = ctx.splits[1][k];
            if (s2.end <= s2.start) continue;
            if (s2.token >= 0) {
                if (emit_added(&ctx, s2.token, seg.text + s2.start, s2.end - s2.start,
                               tok_view_original(&seg, s2.start, s2.end), err))
                    goto done;
                continue;
            }
            tok_view piece = {seg.text + s2.start, seg.align + s2.start, s2.end - s2.start};
            if (tok_pretokenize_and_model(tok, &ctx, &piece, 0, err)) goto done;
        }
    }
    if (tok_postprocess(tok, &ctx, add_special, err)) goto done;
    if (finish_tokens(&ctx, err)) goto done;
    rc = 0;
done:
    if (rc) out->count = 0;
    ctx_free(&ctx);
    return rc;
}

void sft_encoding_free(sft_encoding *enc) {
    free(enc->ids);
    free(enc->offsets);
    free((void *)enc->tokens);
    free(enc->token_storage);
    memset(enc, 0, sizeof *enc);
}

/* ---------- lookups ---------- */

const char *tok_id_string(const sft_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= tok->id_limit) return NULL;
    int32_t a = tok->added_by_id[id];
    if (a >= 0) {
        const tok_added_token *t = &tok->added[a];
        /* tokenizers reports a normalized added token in its normalized form. */
        if (t->normalized_content) {
            *len = t->normalized_len;
            return t->normalized_content;
        }
        *len = t->len;
        return t->content;
    }
    if ((size_t)id < tok->bpe.vocab_r_count && tok->bpe.vocab_r[id]) {
        *len = tok->bpe.vocab_r_len[id];
        return tok->bpe.vocab_r[id];
    }
    return NULL;
}

int tok_is_special(const sft_tokenizer *tok, const char *s, size_t len) {
    return tok_strmap_get(&tok->special_set, s, len) >= 0;
}

size_t sft_tokenizer_vocab_size(const sft_tokenizer *tok) {
    return tok->id_limit;
}

const char *sft_tokenizer_id_to_token(const sft_tokenizer *tok, int32_t id) {
    size_t len;
    return tok_id_string(tok, id, &len);
}

int32_t sft_tokenizer_token_to_id(const sft_tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    int32_t id = tok_strmap_get(&tok->added_map, token, len);
    return id >= 0 ? id : tok_strmap_get(&tok->bpe.vocab, token, len);
}

int sft_tokenizer_is_special_id(const sft_tokenizer *tok, int32_t id) {
    if (id < 0 || (size_t)id >= tok->id_limit || tok->added_by_id[id] < 0) return 0;
    return tok->added[tok->added_by_id[id]].special;
}

const char *sft_tokenizer_bos_token(const sft_tokenizer *tok) {
    return tok->bos_token;
}
const char *sft_tokenizer_eos_token(const sft_tokenizer *tok) {
    return tok->eos_token;
}
const char *sft_tokenizer_pad_token(const sft_tokenizer *tok) {
    return tok->pad_token;
}
const char *sft_tokenizer_unk_token(const sft_tokenizer *tok) {
    return tok->unk_token;
}
const char *sft_tokenizer_chat_template(const sft_tokenizer *tok) {
    return tok->chat_template;
}

/* ---------- loading ---------- */

static int load_added_tokens(sft_tokenizer *tok, const json_t *list, sft_err *err) {
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) return sft_errf(err, "added_tokens: expected a list");
    size_t n = json_array_size(list);
    tok->added = calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added) return sft_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(list, i);
        const json_t *content = json_object_get(a, "content");
        int64_t id;
        if (!json_is_string(content) || !json_string_length(content))
            return sft_errf(err, "added_tokens[%zu]: expected a non-empty string \"content\"", i);
        if (sft_json_get_int(a, "id", &id, "added_tokens", err))
            return sft_err_prefix(err, "added_tokens[%zu]", i);
        if (id < 0 || id > INT32_MAX - 1)
            return sft_errf(err, "added_tokens[%zu]: id %lld out of range", i, (long long)id);
        tok_added_token *t = &tok->added[tok->added_count];
        t->len = json_string_length(content);
        t->content = malloc(t->len + 1);
        if (!t->content) return sft_errf(err, "out of memory");
        memcpy(t->content, json_string_value(content), t->len + 1);
        tok->added_count++;
        /* normalized defaults to !special, as AddedToken::from does. */
        const json_t *special = json_object_get(a, "special"), *normalized = json_object_get(a, "normalized");
        t->special = json_is_true(special);
        t->normalized = normalized ? json_is_true(normalized) : !t->special;
        t->single_word = json_is_true(json_object_get(a, "single_word"));
        t->lstrip = json_is_true(json_object_get(a, "lstrip"));
        t->rstrip = json_is_true(json_object_get(a, "rstrip"));
        /* A token the model already has keeps the model's id (AddedVocabulary::add_tokens). */
        int32_t model_id = tok_strmap_get(&tok->bpe.vocab, t->content, t->len);
        t->id = model_id >= 0 ? model_id : (int32_t)id;
        if (t->normalized && tok->normalizer_count) {
            char *norm;
            size_t norm_len;
            if (tok_normalize_string(tok, t->content, t->len, &norm, &norm_len, err)) return -1;
            if (norm_len == t->len && !memcmp(norm, t->content, norm_len))
                free(norm);
            else {
                t->normalized_content = norm;
                t->normalized_len = norm_len;
            }
        }
    }
    return 0;
}

static int build_indexes(sft_tokenizer *tok, sft_err *err) {
    size_t limit = tok->bpe.vocab_r_count;
    for (size_t i = 0; i < tok->added_count; i++)
        if ((size_t)tok->added[i].id + 1 > limit) limit = (size_t)tok->added[i].id + 1;
    tok->id_limit = limit;
    tok->added_by_id = malloc((limit ? limit : 1) * sizeof *tok->added_by_id);
    if (!tok->added_by_id) return sft_errf(err, "out of memory");
    for (size_t i = 0; i < limit; i++)
        tok->added_by_id[i] = -1;
    if (tok_strmap_init(&tok->added_map, tok->added_count) ||
        tok_strmap_init(&tok->special_set, tok->added_count))
        return sft_errf(err, "out of memory");
    for (size_t i = 0; i < tok->added_count; i++) {
        const tok_added_token *t = &tok->added[i];
        tok->added_by_id[t->id] = (int32_t)i;
        if (tok_strmap_put(&tok->added_map, t->content, t->len, t->id)) return sft_errf(err, "out of memory");
        if (t->special && tok_strmap_put(&tok->special_set, t->content, t->len, t->id))
            return sft_errf(err, "out of memory");
    }
    if (tok_added_matcher_build(&tok->match_raw, tok, 0, err) ||
        tok_added_matcher_build(&tok->match_normalized, tok, 1, err))
        return -1;
    return 0;
}

static int load_json(sft_tokenizer *tok, const json_t *root, sft_err *err) {
    if (!json_is_object(root)) return sft_errf(err, "expected a JSON object");
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return sft_errf(err, "missing \"model\"");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return sft_errf(
            err,
            "model type \"%s\" is not supported (sft supports BPE tokenizers: GPT-2, Llama, Mistral, Qwen2)",
            type);
    if (!type && (!json_object_get(model, "vocab") || !json_object_get(model, "merges")))
        return sft_errf(err, "model: no \"type\" and not a BPE model (no vocab and merges)");
    if (tok_bpe_load(&tok->bpe, model, err)) return -1;
    if (tok_normalizer_load(&tok->normalizers, &tok->normalizer_count, json_object_get(root, "normalizer"),
                            err) ||
        tok_pretokenizer_load(tok, json_object_get(root, "pre_tokenizer"), err) ||
        tok_postprocessor_load(tok, json_object_get(root, "post_processor"), err) ||
        tok_decoder_load(&tok->decoders, &tok->decoder_count, json_object_get(root, "decoder"), err))
        return -1;
    static const char word[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]",
                      space[] = "\\p{White_Space}";
    if (tok_regex_compile(&tok->word_char_regex, word, strlen(word), 0, err) ||
        tok_regex_compile(&tok->space_char_regex, space, strlen(space), 0, err))
        return -1;
    if (load_added_tokens(tok, json_object_get(root, "added_tokens"), err)) return -1;
    return build_indexes(tok, err);
}

sft_tokenizer *sft_tokenizer_load_file(const char *path, sft_err *err) {
    json_t *root = sft_json_load_file(path, err);
    if (!root) return NULL;
    sft_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        json_decref(root);
        sft_errf(err, "out of memory");
        return NULL;
    }
    int rc = load_json(tok, root, err);
    json_decref(root);
    if (rc) {
        sft_err_prefix(err, "%s", path);
        sft_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* A special token in tokenizer_config.json: a string or {"content": ...}. */
static int config_token(const json_t *cfg, const char *key, char **out, const char *path, sft_err *err) {
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return sft_errf(err, "%s: %s: expected a string or {\"content\": string}", path, key);
    *out = strdup(json_string_value(v));
    return *out ? 0 : sft_errf(err, "out of memory");
}

static int load_config(sft_tokenizer *tok, const char *dir, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "chat_template.jinja", err)) return -1;
    if (sft_file_exists(path)) {
        size_t len;
        if (sft_read_file(path, &tok->chat_template, &len, err)) return -1;
    }
    if (sft_path_join(path, sizeof path, dir, "tokenizer_config.json", err)) return -1;
    if (!sft_file_exists(path)) return 0;
    json_t *cfg = sft_json_load_file(path, err);
    if (!cfg) return -1;
    int rc = -1;
    if (!json_is_object(cfg)) {
        sft_errf(err, "%s: expected a JSON object", path);
        goto done;
    }
    if (config_token(cfg, "bos_token", &tok->bos_token, path, err) ||
        config_token(cfg, "eos_token", &tok->eos_token, path, err) ||
        config_token(cfg, "pad_token", &tok->pad_token, path, err) ||
        config_token(cfg, "unk_token", &tok->unk_token, path, err))
        goto done;
    const json_t *tmpl = json_object_get(cfg, "chat_template");
    if (!tok->chat_template && tmpl && !json_is_null(tmpl)) {
        const char *text = NULL;
        if (json_is_string(tmpl))
            text = json_string_value(tmpl);
        else if (json_is_array(tmpl)) {
            /* Named templates: the one called "default" is what apply_chat_template uses. */
            for (size_t i = 0; i < json_array_size(tmpl); i++) {
                const json_t *t = json_array_get(tmpl, i);
                const char *name = json_string_value(json_object_get(t, "name"));
                if (!name || !json_is_string(json_object_get(t, "template"))) {
                    sft_errf(err, "%s: chat_template[%zu]: expected {\"name\": string, \"template\": string}",
                             path, i);
                    goto done;
                }
                if (!strcmp(name, "default")) text = json_string_value(json_object_get(t, "template"));
            }
        } else {
            sft_errf(err, "%s: chat_template: expected a string or a list of {name, template}", path);
            goto done;
        }
        if (text && !(tok->chat_template = strdup(text))) {
            sft_errf(err, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(cfg);
    return rc;
}

sft_tokenizer *sft_tokenizer_load(const char *dir, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "tokenizer.json", err)) return NULL;
    if (!sft_file_exists(path)) {
        sft_errf(err, "%s: no tokenizer.json in this folder (sft reads the fast-tokenizer file)", path);
        return NULL;
    }
    sft_tokenizer *tok = sft_tokenizer_load_file(path, err);
    if (!tok) return NULL;
    if (load_config(tok, dir, err)) {
        sft_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

void sft_tokenizer_free(sft_tokenizer *tok) {
    if (!tok) return;
    tok_bpe_free(&tok->bpe);
    for (size_t i = 0; i < tok->added_count; i++) {
        free(tok->added[i].content);
        free(tok->added[i].normalized_content);
    }
    free(tok->added);
    tok_added_matcher_free(&tok->match_raw);
    tok_added_matcher_free(&tok->match_normalized);
    tok_normalizers_free(tok->normalizers, tok->normalizer_count);
    tok_pretokenizers_free(tok->pretokenizers, tok->pretokenizer_count);
    tok_postprocessors_free(tok->post, tok->post_count);
    tok_decoders_free(tok->decoders, tok->decoder_count);
    if (tok->have_gpt2_regex) tok_regex_free(&tok->gpt2_regex);
    tok_regex_free(&tok->word_char_regex);
    tok_regex_free(&tok->space_char_regex);
    free(tok->added_by_id);
    tok_strmap_free(&tok->added_map);
    tok_strmap_free(&tok->special_set);
    free(tok->bos_token);
    free(tok->eos_token);
    free(tok->pad_token);
    free(tok->unk_token);
    free(tok->chat_template);
    free(tok);
}
