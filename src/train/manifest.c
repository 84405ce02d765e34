/* manifest.c: content hashes of model dirs and data files, manifest.json,
 * and the tokenized-data cache key (see manifest.h). */
#include "train/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"

static const char *const tokenizer_files[] = {
    "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",    "vocab.json",              "merges.txt",
    "tokenizer.model",     NULL,
};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int is_weights_file(const char *name) {
    return !strcmp(name, "config.json") || ends_with(name, ".safetensors") ||
           ends_with(name, ".safetensors.index.json");
}

static int is_tokenizer_file(const char *name) {
    for (const char *const *t = tokenizer_files; *t; t++)
        if (!strcmp(*t, name)) return 1;
    return 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sft_model_dir_hashes(const char *dir, sft_hash128 *weights, sft_hash128 *tokenizer, json_t **files,
                         sft_err *err) {
    if (files) *files = NULL;
    DIR *d = opendir(dir);
    if (!d) return sft_err_errno(err, dir);
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_weights_file(e->d_name) && !is_tokenizer_file(e->d_name)) continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) goto oom;
            names = grown;
        }
        if (!(names[count] = strdup(e->d_name))) goto oom;
        count++;
    }
    qsort(names, count, sizeof *names, compare_names);
    sft_hasher *hw = sft_hasher_new(err), *ht = sft_hasher_new(err);
    json_t *listing = json_object();
    int have_weights = 0, have_tokenizer = 0;
    if (!hw || !ht || !listing) {
        sft_hasher_free(hw);
        sft_hasher_free(ht);
        json_decref(listing);
        goto oom;
    }
    for (size_t i = 0; i < count; i++) {
        char path[4600], hex[SFT_HASH_HEX_CHARS];
        sft_hash128 h;
        if (sft_path_join(path, sizeof path, dir, names[i], err) || sft_hash_file(path, &h, err)) {
            sft_hasher_free(hw);
            sft_hasher_free(ht);
            json_decref(listing);
            goto done;
        }
        sft_hasher *into = is_tokenizer_file(names[i]) ? ht : hw;
        if (into == ht) have_tokenizer = 1;
        else if (strcmp(names[i], "config.json")) have_weights = 1;
        sft_hasher_add_str(into, names[i]);
        sft_hasher_add_hash(into, h);
        sft_hash_hex(h, hex);
        json_object_set_new(listing, names[i], json_string(hex));
    }
    *weights = sft_hasher_digest(hw);
    *tokenizer = sft_hasher_digest(ht);
    sft_hasher_free(hw);
    sft_hasher_free(ht);
    if (!have_weights || !have_tokenizer) {
        json_decref(listing);
        sft_errf(err, "%s: not a model dir (no %s found)", dir,
                 have_weights ? "tokenizer file" : "*.safetensors weights");
        goto done;
    }
    if (files)
        *files = listing;
    else
        json_decref(listing);
    rc = 0;
    goto done;
oom:
    sft_errf(err, "out of memory");
done:
    closedir(d);
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return rc;
}

/* {"path": P, "bytes": N, "hash": H} for one data file. */
static json_t *data_entry(const char *path, sft_err *err) {
    sft_hash128 h;
    if (sft_hash_file(path, &h, err)) return NULL;
    struct stat st;
    if (stat(path, &st)) {
        sft_err_errno(err, path);
        return NULL;
    }
    char hex[SFT_HASH_HEX_CHARS];
    sft_hash_hex(h, hex);
    json_t *entry = json_pack("{s:s, s:I, s:s}", "path", path, "bytes", (json_int_t)st.st_size, "hash", hex);
    if (!entry) sft_errf(err, "out of memory");
    return entry;
}

int sft_manifest_write(const char *path, const sft_manifest *m, sft_err *err) {
    sft_hash128 weights, tokenizer;
    json_t *files = NULL, *root = NULL, *data = NULL, *val = NULL, *command = NULL;
    char *text = NULL;
    int rc = -1;
    if (sft_model_dir_hashes(m->model_dir, &weights, &tokenizer, &files, err)) goto done;
    char weights_hex[SFT_HASH_HEX_CHARS], tokenizer_hex[SFT_HASH_HEX_CHARS];
    sft_hash_hex(weights, weights_hex);
    sft_hash_hex(tokenizer, tokenizer_hex);
    if (!(data = json_array())) goto oom;
    for (size_t i = 0; i < m->data_count; i++) {
        json_t *entry = data_entry(m->data_files[i], err);
        if (!entry || json_array_append_new(data, entry)) goto done;
    }
    if (m->val_data && !(val = data_entry(m->val_data, err))) goto done;
    char host[256] = "unknown";
    if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = 0;
    char when[64];
    struct tm utc;
    gmtime_r(&m->start_time, &utc);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
    if (!(command = m->command_line ? json_string(m->command_line) : json_null()) || (!val && !(val = json_null())))
        goto oom;
    /* "O" everywhere: root takes its own references; ours are dropped at the end. */
    root = json_pack("{s:s, s:s, s:O, s:s, s:I, s:s, s:I, s:i, s:s, s:{s:s, s:s, s:s, s:O}, s:O, s:O}",
                     "program", "sft", "version", m->program_version ? m->program_version : "unknown", "command",
                     command, "start_time", when,
                     "start_unix", (json_int_t)m->start_time, "host", host, "seed", (json_int_t)m->seed,
                     "threads", m->threads, "hash_algorithm", "xxh3-128", "model", "path", m->model_dir,
                     "weights_hash", weights_hex, "tokenizer_hash", tokenizer_hex, "files", files, "data", data,
                     "val_data", val);
    if (!root) goto oom;
    if (m->extra) {
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)m->extra, key, value) {
            if (json_object_get(root, key)) {
                sft_errf(err, "manifest: extra field '%s' has the name of a built-in field", key);
                goto done;
            }
            if (json_object_set(root, key, value)) goto oom;
        }
    }
    if (!(text = json_dumps(root, JSON_INDENT(2)))) goto oom;
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (!with_newline) goto oom;
    text = with_newline;
    text[len] = '\n';
    text[len + 1] = 0;
    rc = sft_write_file_atomic(path, text, len + 1, err);
    goto done;
oom:
    sft_errf(err, "out of memory");
done:
    free(text);
    json_decref(root);
    json_decref(files);
    json_decref(data);
    json_decref(val);
    json_decref(command);
    if (rc) sft_err_prefix(err, "writing %s", path);
    return rc;
}

int sft_tokenized_cache_key(const sft_tokenized_key_input *in, sft_hash128 *key, sft_err *err) {
    sft_hasher *h = sft_hasher_new(err);
    if (!h) return -1;
    /* A format version first: a change in how sft tokenizes must change every key. */
    sft_hasher_add_str(h, "sft-tokenized-v1");
    sft_hasher_add_u64(h, in->data_count);
    for (size_t i = 0; i < in->data_count; i++) {
        if (sft_hasher_add_file(h, in->data_files[i], err)) {
            sft_hasher_free(h);
            return -1;
        }
    }
    sft_hasher_add_hash(h, in->tokenizer_hash);
    sft_hasher_add_str(h, in->template_text);
    sft_hasher_add_u64(h, (uint64_t)in->max_len);
    sft_hasher_add_str(h, in->options);
    *key = sft_hasher_digest(h);
    sft_hasher_free(h);
    return 0;
}
