/* checkpoint.c: crash-safe checkpoint folders, trainer_state.json, listing,
 * resume lookup, pruning, and atomic replacement of whole folders (see
 * checkpoint.h for the layout and the guarantees). */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"

const char *const sft_checkpoint_crash_points[] = {
    "begin",        /* the temporary folder exists, empty */
    "weights",      /* weights written */
    "optimizer",    /* optimizer moments written */
    "files",        /* extra files written */
    "state",        /* trainer_state.json written, nothing synced yet */
    "before_rename", /* everything synced, not yet in place */
    "after_aside",  /* (rename-aside path) the old folder moved away, the new not yet in place */
    "after_rename", /* the new folder in place, the old one not yet removed */
    NULL,
};

static void crash_point(const char *name) {
    const char *at = getenv("SFT_TEST_CRASH_AT");
    if (at && !strcmp(at, name)) abort();
}

static const char *const rng_names[SFT_CKPT_RNG_COUNT] = {NULL, "data", "val_split", "dropout", "init", "sampling"};

/* ---------- folders ---------- */

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) ? -1 : 0;
}

/* rm -rf; a missing path is fine. */
static int remove_tree(const char *path, sft_err *err) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : sft_err_errno(err, path);
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS)) return sft_err_errno(err, path);
    return 0;
}

static int fsync_path(const char *path, int is_dir) {
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int fsync_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type == FTW_F && S_ISREG(st->st_mode)) return fsync_path(path, 0);
    if (type == FTW_DP || type == FTW_D) return fsync_path(path, 1);
    return 0;
}

/* fsync of every file and folder under path (folders after their content). */
static int fsync_tree(const char *path, sft_err *err) {
    if (nftw(path, fsync_entry, 16, FTW_DEPTH | FTW_PHYS)) return sft_err_errno(err, path);
    return 0;
}

/* parent and base name of a path ("runs/a/best" -> "runs/a", "best"). */
static int split_path(const char *path, char *parent, size_t parent_cap, char *base, size_t base_cap,
                      sft_err *err) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t slash = len;
    while (slash > 0 && path[slash - 1] != '/') slash--;
    size_t base_len = len - slash;
    if (base_len == 0 || base_len >= base_cap) return sft_errf(err, "bad folder path '%s'", path);
    memcpy(base, path + slash, base_len);
    base[base_len] = 0;
    const char *p = slash == 0 ? "." : path;
    size_t plen = slash == 0 ? 1 : (slash > 1 ? slash - 1 : 1);
    if (plen >= parent_cap) return sft_errf(err, "path too long: %s", path);
    memcpy(parent, p, plen);
    parent[plen] = 0;
    return 0;
}

/* PARENT/.BASE.KIND-PID */
static int side_path(const char *final_dir, const char *kind, char *out, size_t cap, sft_err *err) {
    char parent[4096], base[1024];
    if (split_path(final_dir, parent, sizeof parent, base, sizeof base, err)) return -1;
    int n = snprintf(out, cap, "%s/.%s.%s-%ld", parent, base, kind, (long)getpid());
    if (n < 0 || (size_t)n >= cap) return sft_errf(err, "path too long: %s", final_dir);
    return 0;
}

static int recover_parent(const char *parent, const char *only_base, sft_err *err);

int sft_dir_begin(const char *final_dir, char *tmp_dir, size_t cap, sft_err *err) {
    char parent[4096], base[1024];
    if (split_path(final_dir, parent, sizeof parent, base, sizeof base, err)) return -1;
    if (sft_mkdir_p(parent, err)) return -1;
    /* A crash of an earlier writer may have left final_dir renamed aside:
     * put it back before deciding whether this is a replacement. */
    if (recover_parent(parent, base, err)) return -1;
    if (side_path(final_dir, "tmp", tmp_dir, cap, err)) return -1;
    if (remove_tree(tmp_dir, err)) return -1;
    if (mkdir(tmp_dir, 0777)) return sft_err_errno(err, tmp_dir);
    return 0;
}

void sft_dir_abort(const char *tmp_dir) {
    sft_err ignored;
    remove_tree(tmp_dir, &ignored);
}

static int fsync_parent_of(const char *path, sft_err *err) {
    char parent[4096], base[1024];
    if (split_path(path, parent, sizeof parent, base, sizeof base, err)) return -1;
    if (fsync_path(parent, 1)) return sft_err_errno(err, parent);
    return 0;
}

int sft_dir_commit(const char *tmp_dir, const char *final_dir, sft_err *err) {
    if (fsync_tree(tmp_dir, err)) return -1;
    crash_point("before_rename");
    struct stat st;
    if (lstat(final_dir, &st)) {
        if (errno != ENOENT) return sft_err_errno(err, final_dir);
        if (rename(tmp_dir, final_dir)) return sft_err_errno(err, final_dir);
        if (fsync_parent_of(final_dir, err)) return -1;
        crash_point("after_rename");
        return 0;
    }
    /* Replacing: swap the two names in one step where the file system can,
     * so that final_dir names a complete folder at every instant. */
    const char *no_exchange = getenv("SFT_TEST_NO_RENAME_EXCHANGE");
    if (!(no_exchange && *no_exchange == '1')) {
        if (renameat2(AT_FDCWD, tmp_dir, AT_FDCWD, final_dir, RENAME_EXCHANGE) == 0) {
            if (fsync_parent_of(final_dir, err)) return -1;
            crash_point("after_rename");
            /* tmp_dir now holds the old content. */
            return remove_tree(tmp_dir, err);
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return sft_err_errno(err, final_dir);
    }
    /* Rename aside: for an instant final_dir is missing, and
     * sft_dir_recover puts the aside folder back if a crash falls there. */
    char aside[4200];
    if (side_path(final_dir, "old", aside, sizeof aside, err)) return -1;
    if (remove_tree(aside, err)) return -1;
    if (rename(final_dir, aside)) return sft_err_errno(err, final_dir);
    crash_point("after_aside");
    if (rename(tmp_dir, final_dir)) {
        int saved = errno;
        rename(aside, final_dir);
        errno = saved;
        return sft_err_errno(err, final_dir);
    }
    if (fsync_parent_of(final_dir, err)) return -1;
    crash_point("after_rename");
    return remove_tree(aside, err);
}

/* Parses ".BASE.KIND-PID"; returns the kind's index in kinds or -1, base into out. */
static int side_name(const char *name, char *base, size_t cap) {
    static const char *const kinds[] = {".tmp-", ".old-", ".trash-"};
    if (name[0] != '.') return -1;
    for (int k = 0; k < 3; k++) {
        const char *at = strstr(name + 1, kinds[k]);
        if (!at) continue;
        const char *pid = at + strlen(kinds[k]);
        if (!*pid || strspn(pid, "0123456789") != strlen(pid)) continue;
        size_t len = (size_t)(at - (name + 1));
        if (len == 0 || len >= cap) continue;
        memcpy(base, name + 1, len);
        base[len] = 0;
        return k;
    }
    return -1;
}

/* Cleans up after crashed writes in `parent`: temporary and trash folders
 * are removed, a folder renamed aside is put back when its final name is
 * missing (else removed). only_base limits it to one final name. */
static int recover_parent(const char *parent, const char *only_base, sft_err *err) {
    DIR *d = opendir(parent);
    if (!d) return errno == ENOENT ? 0 : sft_err_errno(err, parent);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        char base[1024], path[4600], final[4600];
        int kind = side_name(e->d_name, base, sizeof base);
        if (kind < 0 || (only_base && strcmp(base, only_base))) continue;
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        snprintf(final, sizeof final, "%s/%s", parent, base);
        struct stat st;
        if (kind == 1 && lstat(final, &st) && errno == ENOENT) {
            if (rename(path, final)) rc = sft_err_errno(err, path);
            else if (fsync_path(parent, 1)) rc = sft_err_errno(err, parent);
        } else {
            rc = remove_tree(path, err);
        }
    }
    closedir(d);
    return rc;
}

int sft_dir_recover(const char *final_dir, sft_err *err) {
    char parent[4096], base[1024];
    if (split_path(final_dir, parent, sizeof parent, base, sizeof base, err)) return -1;
    return recover_parent(parent, base, err);
}

/* ---------- trainer_state.json ---------- */

void sft_trainer_state_init(sft_trainer_state *state, uint64_t seed) {
    memset(state, 0, sizeof *state);
    state->best_step = -1;
    state->best_val_loss = NAN;
    for (int s = 1; s < SFT_CKPT_RNG_COUNT; s++) sft_rng_seed(&state->rng[s], seed, (uint64_t)s);
}

void sft_trainer_state_free(sft_trainer_state *state) {
    json_decref(state->extra);
    state->extra = NULL;
}

static const char *const state_keys[] = {"format",      "version",       "global_step",   "epoch",
                                         "epoch_index", "data_cursor",   "max_steps",     "adam_step",
                                         "tokens_seen", "skipped_steps", "elapsed_s",     "best_global_step",
                                         "best_metric", "evals_without_improvement", "rng", "weights_file",
                                         NULL};

static int is_state_key(const char *key) {
    for (const char *const *k = state_keys; *k; k++)
        if (!strcmp(*k, key)) return 1;
    return 0;
}

#define STATE_FORMAT "sft-trainer-state"
#define STATE_VERSION 1

/* json_object_set_new that reports failure (NULL value, out of memory). */
static int put(json_t *obj, const char *key, json_t *value) {
    return value && !json_object_set_new(obj, key, value) ? 0 : -1;
}

static json_t *real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *state_to_object(const sft_trainer_state *state, const char *weights_file, sft_err *err) {
    json_t *root = json_object(), *rng = json_object();
    if (!root || !rng) goto oom;
    int bad = 0;
    bad |= put(root, "format", json_string(STATE_FORMAT));
    bad |= put(root, "version", json_integer(STATE_VERSION));
    bad |= put(root, "global_step", json_integer(state->step));
    bad |= put(root, "epoch", json_real(isfinite(state->epoch) ? state->epoch : 0));
    bad |= put(root, "epoch_index", json_integer(state->epoch_index));
    bad |= put(root, "data_cursor", json_integer(state->data_cursor));
    bad |= put(root, "max_steps", json_integer(state->max_steps));
    bad |= put(root, "adam_step", json_integer(state->adam_step));
    bad |= put(root, "tokens_seen", json_integer(state->tokens_seen));
    bad |= put(root, "skipped_steps", json_integer(state->skipped_steps));
    bad |= put(root, "elapsed_s", json_real(isfinite(state->elapsed_s) ? state->elapsed_s : 0));
    bad |= put(root, "best_global_step", state->best_step >= 0 ? json_integer(state->best_step) : json_null());
    bad |= put(root, "best_metric", real_or_null(state->best_val_loss));
    bad |= put(root, "evals_without_improvement", json_integer(state->evals_without_improvement));
    for (int s = 1; s < SFT_CKPT_RNG_COUNT; s++) {
        char hex[SFT_RNG_HEX_CHARS];
        sft_rng_to_hex(&state->rng[s], hex);
        bad |= put(rng, rng_names[s], json_string(hex));
    }
    json_incref(rng);
    bad |= put(root, "rng", rng);
    json_decref(rng);
    if (weights_file) bad |= put(root, "weights_file", json_string(weights_file));
    if (bad) goto oom;
    if (state->extra) {
        if (!json_is_object(state->extra)) {
            json_decref(root);
            sft_errf(err, "trainer state: extra fields must be a JSON object");
            return NULL;
        }
        const char *key;
        json_t *value;
        json_object_foreach(state->extra, key, value) {
            if (is_state_key(key)) {
                json_decref(root);
                sft_errf(err, "trainer state: extra field '%s' has the name of a built-in field", key);
                return NULL;
            }
            if (json_object_set(root, key, value)) goto oom;
        }
    }
    return root;
oom:
    json_decref(root);
    json_decref(rng);
    sft_errf(err, "out of memory");
    return NULL;
}

static char *state_to_json(const sft_trainer_state *state, const char *weights_file, sft_err *err) {
    json_t *root = state_to_object(state, weights_file, err);
    if (!root) return NULL;
    /* 17 significant digits: every double reads back to the same bits. */
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    size_t n = strlen(text);
    char *with_newline = realloc(text, n + 2);
    if (!with_newline) {
        free(text);
        sft_errf(err, "out of memory");
        return NULL;
    }
    with_newline[n] = '\n';
    with_newline[n + 1] = 0;
    return with_newline;
}

char *sft_trainer_state_to_json(const sft_trainer_state *state, sft_err *err) {
    return state_to_json(state, NULL, err);
}

static int get_nonneg_int(const json_t *root, const char *key, int64_t *out, const char *name, sft_err *err) {
    if (sft_json_get_int(root, key, out, name, err)) return -1;
    if (*out < 0) return sft_errf(err, "%s: '%s' must be >= 0, got %lld", name, key, (long long)*out);
    return 0;
}

int sft_trainer_state_from_json(sft_trainer_state *state, const char *text, size_t len, const char *name,
                                sft_err *err) {
    sft_trainer_state_init(state, 0);
    json_t *root = sft_json_loadb(text, len, name, err);
    if (!root) return -1;
    int rc = -1;
    const char *format;
    int64_t version;
    if (!json_is_object(root)) {
        sft_errf(err, "%s: expected a JSON object", name);
        goto done;
    }
    if (sft_json_get_string(root, "format", &format, name, err)) goto done;
    if (strcmp(format, STATE_FORMAT)) {
        sft_errf(err, "%s: 'format' is '%s', expected '%s'", name, format, STATE_FORMAT);
        goto done;
    }
    if (sft_json_get_int(root, "version", &version, name, err)) goto done;
    if (version != STATE_VERSION) {
        sft_errf(err, "%s: trainer state version %lld; this sft reads version %d", name, (long long)version,
                 STATE_VERSION);
        goto done;
    }
    if (get_nonneg_int(root, "global_step", &state->step, name, err) ||
        sft_json_get_number(root, "epoch", &state->epoch, name, err) ||
        get_nonneg_int(root, "epoch_index", &state->epoch_index, name, err) ||
        get_nonneg_int(root, "data_cursor", &state->data_cursor, name, err) ||
        get_nonneg_int(root, "max_steps", &state->max_steps, name, err) ||
        get_nonneg_int(root, "adam_step", &state->adam_step, name, err) ||
        get_nonneg_int(root, "tokens_seen", &state->tokens_seen, name, err) ||
        get_nonneg_int(root, "skipped_steps", &state->skipped_steps, name, err) ||
        sft_json_get_number(root, "elapsed_s", &state->elapsed_s, name, err) ||
        get_nonneg_int(root, "evals_without_improvement", &state->evals_without_improvement, name, err))
        goto done;
    const json_t *best_step = json_object_get(root, "best_global_step");
    const json_t *best_metric = json_object_get(root, "best_metric");
    if (!best_step || !best_metric) {
        sft_errf(err, "%s: missing '%s'", name, best_step ? "best_metric" : "best_global_step");
        goto done;
    }
    if (json_is_null(best_step) != json_is_null(best_metric)) {
        sft_errf(err, "%s: 'best_global_step' and 'best_metric' must both be null or both be set", name);
        goto done;
    }
    if (!json_is_null(best_step)) {
        if (get_nonneg_int(root, "best_global_step", &state->best_step, name, err) ||
            sft_json_get_number(root, "best_metric", &state->best_val_loss, name, err))
            goto done;
    }
    const json_t *rng = json_object_get(root, "rng");
    if (!json_is_object(rng)) {
        sft_errf(err, "%s: 'rng' must be an object of RNG states", name);
        goto done;
    }
    for (int s = 1; s < SFT_CKPT_RNG_COUNT; s++) {
        const char *hex;
        char ctx[512];
        snprintf(ctx, sizeof ctx, "%s: rng", name);
        if (sft_json_get_string(rng, rng_names[s], &hex, ctx, err)) goto done;
        if (sft_rng_from_hex(&state->rng[s], hex, err)) {
            sft_err_prefix(err, "%s: rng '%s'", name, rng_names[s]);
            goto done;
        }
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (is_state_key(key)) continue;
        if (!state->extra && !(state->extra = json_object())) {
            sft_errf(err, "out of memory");
            goto done;
        }
        if (json_object_set(state->extra, key, value)) {
            sft_errf(err, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    if (rc) sft_trainer_state_free(state);
    return rc;
}

/* ---------- tensors ---------- */

static int check_views(const sft_ckpt_tensors *t, sft_err *err) {
    for (size_t i = 0; i < t->count; i++) {
        const sft_ckpt_view *v = &t->views[i];
        if (!v->name || !*v->name) return sft_errf(err, "checkpoint: tensor %zu has no name", i);
        if (v->ndim < 0 || v->ndim > SFT_MAX_DIMS)
            return sft_errf(err, "checkpoint: tensor '%s' has %d dimensions", v->name, v->ndim);
        size_t numel = 1;
        for (int d = 0; d < v->ndim; d++) {
            if (v->shape[d] < 0) return sft_errf(err, "checkpoint: tensor '%s' has a negative dimension", v->name);
            numel *= (size_t)v->shape[d];
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t->views[j].name, v->name))
                return sft_errf(err, "checkpoint: two tensors are named '%s'", v->name);
        if (v->offset > t->numel || numel > t->numel - v->offset)
            return sft_errf(err, "checkpoint: tensor '%s' (offset %zu, %zu values) lies outside the %zu-value buffer",
                            v->name, v->offset, numel, t->numel);
    }
    return 0;
}

/* Writes, for each part p and view, bases[p][view] named prefixes[p] + name,
 * as float32, into one file. The tensors point into the caller's buffers:
 * nothing is copied (the moments of a large model are gigabytes). */
static int write_tensors(const char *path, const sft_ckpt_tensors *t, int parts, const float *const *bases,
                         const char *const *prefixes, sft_err *err) {
    size_t total = (size_t)parts * t->count;
    sft_tensor_out *out = calloc(total ? total : 1, sizeof *out);
    char **names = calloc(total ? total : 1, sizeof *names);
    int rc = -1;
    if (!out || !names) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (int p = 0; p < parts; p++) {
        for (size_t i = 0; i < t->count; i++) {
            const sft_ckpt_view *v = &t->views[i];
            size_t k = (size_t)p * t->count + i;
            size_t n = strlen(prefixes[p]) + strlen(v->name) + 1;
            if (!(names[k] = malloc(n))) {
                sft_errf(err, "out of memory");
                goto done;
            }
            snprintf(names[k], n, "%s%s", prefixes[p], v->name);
            out[k].name = names[k];
            out[k].ndim = v->ndim;
            memcpy(out[k].shape, v->shape, sizeof out[k].shape);
            out[k].data = bases[p] + v->offset;
        }
    }
    rc = sft_safetensors_write(path, out, total, SFT_DTYPE_F32, err);
done:
    if (names)
        for (size_t k = 0; k < total; k++) free(names[k]);
    free(names);
    free(out);
    return rc;
}

/* Fills base[view] from the tensors named prefix + name in path; when
 * strict, every tensor of the file must be one of them. */
static int read_tensors(const char *path, const sft_ckpt_tensors *t, float *base, const char *prefix, int strict,
                        sft_err *err) {
    sft_safetensors *st = sft_safetensors_open(path, err);
    if (!st) return -1;
    int rc = -1;
    size_t prefix_len = strlen(prefix);
    for (size_t i = 0; i < t->count; i++) {
        const sft_ckpt_view *v = &t->views[i];
        char name[1024];
        snprintf(name, sizeof name, "%s%s", prefix, v->name);
        const sft_tensor_info *info = sft_safetensors_find(st, name);
        if (!info) {
            sft_errf(err, "%s: tensor '%s' is missing", path, name);
            goto done;
        }
        int same = info->ndim == v->ndim;
        for (int d = 0; same && d < v->ndim; d++) same = info->shape[d] == v->shape[d];
        if (!same) {
            char want[256] = "", got[256] = "";
            size_t a = 0, b = 0;
            for (int d = 0; d < v->ndim; d++)
                a += (size_t)snprintf(want + a, sizeof want - a, "%s%lld", d ? ", " : "", (long long)v->shape[d]);
            for (int d = 0; d < info->ndim; d++)
                b += (size_t)snprintf(got + b, sizeof got - b, "%s%lld", d ? ", " : "", (long long)info->shape[d]);
            sft_errf(err, "%s: tensor '%s' has shape [%s], expected [%s]", path, name, got, want);
            goto done;
        }
        sft_tensor_to_f32(info, base + v->offset);
    }
    for (size_t i = 0; strict && i < sft_safetensors_count(st); i++) {
        const char *name = sft_safetensors_at(st, i)->name;
        int known = 0;
        if (!strncmp(name, prefix, prefix_len))
            for (size_t j = 0; j < t->count && !known; j++) known = !strcmp(name + prefix_len, t->views[j].name);
        if (!known) {
            sft_errf(err, "%s: tensor '%s' is not one of this model's %zu trainable tensors (a different model or "
                          "LoRA configuration?)",
                     path, name, t->count);
            goto done;
        }
    }
    rc = 0;
done:
    sft_safetensors_close(st);
    return rc;
}

/* ---------- save / load ---------- */

static int checkpoints_dir(const char *run_dir, char *out, size_t cap, sft_err *err) {
    return sft_path_join(out, cap, run_dir, "checkpoints", err);
}

static int write_extra_file(const char *dir, const sft_ckpt_file *file, sft_err *err) {
    if (!file->name || !*file->name || strchr(file->name, '/'))
        return sft_errf(err, "checkpoint: bad extra file name '%s'", file->name ? file->name : "(null)");
    char path[4600];
    if (sft_path_join(path, sizeof path, dir, file->name, err)) return -1;
    if (file->data) return sft_write_file_atomic(path, file->data, file->len, err);
    if (!file->src_path) return sft_errf(err, "checkpoint: extra file '%s' has neither data nor a source", file->name);
    char *data;
    size_t len;
    if (sft_read_file(file->src_path, &data, &len, err)) return -1;
    int rc = sft_write_file_atomic(path, data, len, err);
    free(data);
    return rc;
}

int sft_checkpoint_save(const char *run_dir, const sft_ckpt_save *save, char *saved_dir, size_t cap, sft_err *err) {
    const sft_ckpt_tensors *t = save->tensors;
    const char *weights_name = save->weights_name ? save->weights_name : "model.safetensors";
    if (!t || !t->params || !save->state) return sft_errf(err, "checkpoint: nothing to save");
    if (save->state->step < 0) return sft_errf(err, "checkpoint: negative step %lld", (long long)save->state->step);
    if ((t->adam_m == NULL) != (t->adam_v == NULL))
        return sft_errf(err, "checkpoint: both AdamW moments or neither must be given");
    if (check_views(t, err)) return -1;
    if (!*weights_name || strchr(weights_name, '/'))
        return sft_errf(err, "checkpoint: bad weights file name '%s'", weights_name);

    char ckdir[4096], final_dir[4200], tmp[4400], path[4600];
    if (checkpoints_dir(run_dir, ckdir, sizeof ckdir, err)) return -1;
    if (sft_mkdir_p(ckdir, err)) return -1;
    if (recover_parent(ckdir, NULL, err)) return -1;
    snprintf(final_dir, sizeof final_dir, "%s/step-%lld", ckdir, (long long)save->state->step);
    if (sft_dir_begin(final_dir, tmp, sizeof tmp, err)) return -1;
    crash_point("begin");

    const float *weights_base[] = {t->params};
    const char *const weights_prefix[] = {""};
    if (sft_path_join(path, sizeof path, tmp, weights_name, err) ||
        write_tensors(path, t, 1, weights_base, weights_prefix, err))
        goto fail;
    crash_point("weights");
    if (t->adam_m) {
        /* Both moments in one file, named as torch's AdamW state keys. */
        const float *moment_base[] = {t->adam_m, t->adam_v};
        const char *const moment_prefix[] = {"exp_avg/", "exp_avg_sq/"};
        if (sft_path_join(path, sizeof path, tmp, "optimizer.safetensors", err) ||
            write_tensors(path, t, 2, moment_base, moment_prefix, err))
            goto fail;
    }
    crash_point("optimizer");
    for (size_t i = 0; i < save->file_count; i++)
        if (write_extra_file(tmp, &save->files[i], err)) goto fail;
    crash_point("files");
    char *state_text = state_to_json(save->state, weights_name, err);
    if (!state_text) goto fail;
    if (sft_path_join(path, sizeof path, tmp, "trainer_state.json", err)) {
        free(state_text);
        goto fail;
    }
    int rc = sft_write_file_atomic(path, state_text, strlen(state_text), err);
    free(state_text);
    if (rc) goto fail;
    crash_point("state");
    if (sft_dir_commit(tmp, final_dir, err)) goto fail;
    if (saved_dir && cap) snprintf(saved_dir, cap, "%s", final_dir);
    return 0;
fail:
    sft_err_prefix(err, "saving checkpoint %s", final_dir);
    sft_dir_abort(tmp);
    return -1;
}

/* Reads trainer_state.json of a folder (and the weights file name it records). */
static int read_state(const char *ckpt_dir, sft_trainer_state *state, char *weights_file, size_t cap,
                      sft_err *err) {
    char path[4600];
    if (sft_path_join(path, sizeof path, ckpt_dir, "trainer_state.json", err)) return -1;
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    int rc = sft_trainer_state_from_json(state, text, len, path, err);
    if (!rc && weights_file) {
        json_t *root = sft_json_loadb(text, len, path, err);
        const char *name = NULL;
        if (root) sft_json_get_string_opt(root, "weights_file", &name, path, err);
        snprintf(weights_file, cap, "%s", name ? name : "model.safetensors");
        json_decref(root);
    }
    free(text);
    return rc;
}

int sft_checkpoint_load(const char *ckpt_dir, const sft_ckpt_tensors *tensors, const char *weights_name,
                        sft_trainer_state *state, sft_err *err) {
    if (check_views(tensors, err)) return -1;
    char recorded[256];
    if (read_state(ckpt_dir, state, recorded, sizeof recorded, err)) return -1;
    /* Without a name, the weights file the checkpoint itself records. */
    if (!weights_name) weights_name = recorded;
    char path[4600];
    if (strchr(weights_name, '/')) {
        sft_errf(err, "%s: bad weights file name '%s'", ckpt_dir, weights_name);
        goto fail;
    }
    if (sft_path_join(path, sizeof path, ckpt_dir, weights_name, err) ||
        read_tensors(path, tensors, tensors->params, "", 1, err))
        goto fail;
    if (tensors->adam_m || tensors->adam_v) {
        if (!tensors->adam_m || !tensors->adam_v) {
            sft_errf(err, "checkpoint: both AdamW moments or neither must be given");
            goto fail;
        }
        if (sft_path_join(path, sizeof path, ckpt_dir, "optimizer.safetensors", err)) goto fail;
        sft_safetensors *st = sft_safetensors_open(path, err);
        if (!st) goto fail;
        size_t expected = 2 * tensors->count, found = sft_safetensors_count(st);
        sft_safetensors_close(st);
        if (found != expected) {
            sft_errf(err, "%s: %zu tensors, expected %zu (exp_avg and exp_avg_sq of %zu tensors)", path, found,
                     expected, tensors->count);
            goto fail;
        }
        /* With the count equal to 2n and all 2n names found, no tensor is foreign. */
        if (read_tensors(path, tensors, tensors->adam_m, "exp_avg/", 0, err) ||
            read_tensors(path, tensors, tensors->adam_v, "exp_avg_sq/", 0, err))
            goto fail;
    }
    return 0;
fail:
    sft_trainer_state_free(state);
    return -1;
}

/* ---------- listing, resume, pruning ---------- */

/* "step-N" with N decimal digits only; -1 otherwise. */
static int64_t parse_step_name(const char *name) {
    if (strncmp(name, "step-", 5)) return -1;
    const char *digits = name + 5;
    size_t n = strlen(digits);
    if (n == 0 || n > 18 || strspn(digits, "0123456789") != n) return -1;
    if (n > 1 && digits[0] == '0') return -1;
    return strtoll(digits, NULL, 10);
}

/* A folder is a usable checkpoint when its trainer_state.json reads, names
 * the folder's step, and the weights file it records exists. */
static int checkpoint_is_valid(const char *ckpt_dir, int64_t step) {
    sft_trainer_state state;
    sft_err ignored;
    char weights[256], path[4600];
    if (read_state(ckpt_dir, &state, weights, sizeof weights, &ignored)) return 0;
    int ok = state.step == step;
    sft_trainer_state_free(&state);
    if (!ok || strchr(weights, '/')) return 0;
    if (sft_path_join(path, sizeof path, ckpt_dir, weights, &ignored)) return 0;
    return sft_file_exists(path);
}

static int compare_steps(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int sft_checkpoint_list(const char *run_dir, int64_t **steps, size_t *count, sft_err *err) {
    *steps = NULL;
    *count = 0;
    char ckdir[4096];
    if (checkpoints_dir(run_dir, ckdir, sizeof ckdir, err)) return -1;
    if (recover_parent(ckdir, NULL, err)) return -1;
    DIR *d = opendir(ckdir);
    if (!d) return errno == ENOENT ? 0 : sft_err_errno(err, ckdir);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step = parse_step_name(e->d_name);
        if (step < 0) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", ckdir, e->d_name);
        if (!checkpoint_is_valid(path, step)) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *grown = realloc(*steps, cap * sizeof *grown);
            if (!grown) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                *count = 0;
                return sft_errf(err, "out of memory");
            }
            *steps = grown;
        }
        (*steps)[(*count)++] = step;
    }
    closedir(d);
    if (*count) qsort(*steps, *count, sizeof **steps, compare_steps);
    return 0;
}

int sft_checkpoint_latest(const char *run_dir, char *ckpt_dir, size_t cap, int64_t *step, sft_err *err) {
    int64_t *steps;
    size_t count;
    if (sft_checkpoint_list(run_dir, &steps, &count, err)) return -1;
    if (count == 0) return 1;
    int64_t last = steps[count - 1];
    free(steps);
    if (step) *step = last;
    int n = snprintf(ckpt_dir, cap, "%s/checkpoints/step-%lld", run_dir, (long long)last);
    if (n < 0 || (size_t)n >= cap) return sft_errf(err, "path too long: %s", run_dir);
    return 0;
}

int sft_checkpoint_resolve(const char *path, char *ckpt_dir, size_t cap, sft_err *err) {
    char state_path[4600];
    if (sft_path_join(state_path, sizeof state_path, path, "trainer_state.json", err)) return -1;
    if (sft_file_exists(state_path)) {
        /* A checkpoint folder named directly: it must be complete. */
        sft_trainer_state state;
        char weights[256], weights_path[4600];
        if (read_state(path, &state, weights, sizeof weights, err)) return -1;
        sft_trainer_state_free(&state);
        if (strchr(weights, '/')) return sft_errf(err, "%s: bad weights file name '%s'", path, weights);
        if (sft_path_join(weights_path, sizeof weights_path, path, weights, err)) return -1;
        if (!sft_file_exists(weights_path))
            return sft_errf(err, "%s: not a complete checkpoint (%s is missing)", path, weights);
        int n = snprintf(ckpt_dir, cap, "%s", path);
        if (n < 0 || (size_t)n >= cap) return sft_errf(err, "path too long: %s", path);
        return 0;
    }
    if (!sft_dir_exists(path)) return sft_errf(err, "%s: no such run or checkpoint folder to resume from", path);
    int rc = sft_checkpoint_latest(path, ckpt_dir, cap, NULL, err);
    if (rc == 1)
        return sft_errf(err, "%s: no checkpoint to resume from (no complete checkpoints/step-N inside)", path);
    return rc;
}

int sft_checkpoint_prune(const char *run_dir, int64_t keep_last, int64_t best_step, sft_err *err) {
    int64_t *steps;
    size_t count;
    if (sft_checkpoint_list(run_dir, &steps, &count, err)) return -1;
    char ckdir[4096];
    if (checkpoints_dir(run_dir, ckdir, sizeof ckdir, err)) {
        free(steps);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        int64_t step = steps[i];
        int recent = keep_last <= 0 || (int64_t)(count - i) <= keep_last;
        if (recent || step == best_step) continue;
        /* Rename first: a deletion cut short leaves a trash name, never a
         * half-empty step-N that would look like a checkpoint. */
        char path[4200], trash[4400];
        snprintf(path, sizeof path, "%s/step-%lld", ckdir, (long long)step);
        if (side_path(path, "trash", trash, sizeof trash, err)) {
            rc = -1;
            break;
        }
        if (rename(path, trash)) {
            rc = sft_err_errno(err, path);
            break;
        }
        if (fsync_path(ckdir, 1)) rc = sft_err_errno(err, ckdir);
        if (!rc) rc = remove_tree(trash, err);
    }
    free(steps);
    return rc;
}
