/* sweep.c: `sft sweep` (see sweep.h): the sweep configuration (flags and
 * YAML over the one training key table), the plan of trials, their runs in
 * child processes (one after another or N at a time), successive-halving
 * pruning, resume from sweep.json, the selection by minimal validation
 * loss, SWEEP/best/, summary.json and the comparison report with advice. */
#include "train/sweep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "io/suggest.h"
#include "monitor/report.h"
#include "train/checkpoint.h"
#include "train/signals.h"
#include "train/trainer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The shortest decimal that reads back as the same double. */
static void format_number(double v, char *out, size_t cap) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, cap, "%.*g", precision, v);
        if (strtod(out, NULL) == v) return;
    }
}

static int list_push(sft_str_list *list, const char *text, sft_err *err) {
    char **grown = realloc(list->items, (size_t)(list->count + 1) * sizeof *grown);
    if (!grown) return sft_errf(err, "out of memory");
    list->items = grown;
    if (!(list->items[list->count] = strdup(text))) return sft_errf(err, "out of memory");
    list->count++;
    return 0;
}

static void list_free(sft_str_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* ------------------------------------------------------- configuration */

const char *const sft_sweep_file_keys[] = {"sweep", "lr_range", "parallel", "prune", "prune_factor", NULL};
static const char *const prune_names[] = {"none", "halving", NULL};

void sft_sweep_config_init(sft_sweep_config *c) {
    memset(c, 0, sizeof *c);
    sft_run_config_init(&c->base);
    c->parallel = 1;
    c->prune = SFT_SWEEP_PRUNE_NONE;
    /* Hyperband's eta: keep a third at each rung (Li et al. 2018). */
    c->prune_factor = 3;
}

void sft_sweep_config_free(sft_sweep_config *c) {
    sft_run_config_free(&c->base);
    for (int i = 0; i < c->axis_count; i++) list_free(&c->axes[i].values);
    c->axis_count = 0;
}

static sft_sweep_axis *axis_for(sft_sweep_config *c, const char *key_name, const char *where, sft_err *err) {
    const sft_run_key *key = sft_run_key_find(key_name);
    if (!key) {
        size_t count;
        const sft_run_key *keys = sft_run_keys(&count);
        const char *names[SFT_RUN_KEY_MAX];
        for (size_t i = 0; i < count; i++) names[i] = keys[i].name;
        const char *near = sft_suggest(key_name, names, count);
        if (near) sft_errf(err, "%s: '%s' is not a training key (did you mean '%s'?)", where, key_name, near);
        else sft_errf(err, "%s: '%s' is not a training key (see sft train --help)", where, key_name);
        return NULL;
    }
    if (!strcmp(key->name, "out") || !strcmp(key->name, "resume") || !strcmp(key->name, "threads")) {
        sft_errf(err, "%s: %s cannot be swept (the sweep sets it for each trial)", where, key->name);
        return NULL;
    }
    for (int i = 0; i < c->axis_count; i++)
        if (c->axes[i].key == key) {
            list_free(&c->axes[i].values); /* given again: the later values replace the earlier */
            return &c->axes[i];
        }
    if (c->axis_count == SFT_SWEEP_MAX_AXES) {
        sft_errf(err, "%s: at most %d keys can be swept", where, SFT_SWEEP_MAX_AXES);
        return NULL;
    }
    sft_sweep_axis *a = &c->axes[c->axis_count++];
    memset(a, 0, sizeof *a);
    a->key = key;
    return a;
}

/* One value of an axis, checked against the key's type and range, kept in
 * its canonical spelling (the one run.yaml writes) so that 1e-4 and 0.0001
 * are one value. */
static int axis_add(sft_sweep_axis *a, const char *text, const char *where, sft_err *err) {
    sft_run_config scratch;
    sft_run_config_init(&scratch);
    char canonical[1024];
    int rc = -1;
    if (a->key->type == SFT_KEY_LIST) sft_run_config_clear_list(&scratch, a->key);
    if (sft_run_config_set_text(&scratch, a->key, text, where, SFT_RUN_FROM_FLAG, err)) goto done;
    if (a->key->type == SFT_KEY_LIST || a->key->type == SFT_KEY_STRING)
        snprintf(canonical, sizeof canonical, "%s", text);
    else
        sft_run_config_format_value(&scratch, a->key, canonical, sizeof canonical);
    if (a->key->type == SFT_KEY_NUMBER && strstr(canonical, "e+")) {
        /* 30, not 3e+01: whole numbers read better in folder names */
        double v = *(const double *)((const char *)&scratch + a->key->offset);
        if (v == floor(v) && v < 1e15) snprintf(canonical, sizeof canonical, "%.0f", v);
    }
    for (int i = 0; i < a->values.count; i++)
        if (!strcmp(a->values.items[i], canonical)) {
            sft_errf(err, "%s: the value %s of %s is given twice", where, canonical, a->key->name);
            goto done;
        }
    rc = list_push(&a->values, canonical, err);
done:
    sft_run_config_free(&scratch);
    return rc;
}

int sft_sweep_set_values(sft_sweep_config *c, const char *key, const char *comma_list, const char *where,
                         sft_err *err) {
    sft_sweep_axis *a = axis_for(c, key, where, err);
    if (!a) return -1;
    const char *p = comma_list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (!len) return sft_errf(err, "%s expects comma-separated values of %s, got '%s'", where, key, comma_list);
        char item[1024];
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        if (axis_add(a, item, where, err)) return -1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

int sft_sweep_set_spec(sft_sweep_config *c, const char *spec, const char *where, sft_err *err) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return sft_errf(err, "%s expects KEY=V1,V2,... (e.g. batch_size=4,8), got '%s'", where, spec);
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(eq - spec), spec);
    for (char *k = key; *k; k++)
        if (*k == '-') *k = '_'; /* --sweep max-grad-norm=... names the flag */
    return sft_sweep_set_values(c, key, eq + 1, where, err);
}

int sft_sweep_set_lr_range(sft_sweep_config *c, const char *range, const char *where, sft_err *err) {
    char lo_text[64], hi_text[64], n_text[32];
    const char *a = strchr(range, ':'), *b = a ? strchr(a + 1, ':') : NULL;
    if (!a || !b || (size_t)(a - range) >= sizeof lo_text || (size_t)(b - a - 1) >= sizeof hi_text ||
        strlen(b + 1) >= sizeof n_text)
        return sft_errf(err, "%s expects LO:HI:N (e.g. 1e-5:1e-3:5), got '%s'", where, range);
    snprintf(lo_text, sizeof lo_text, "%.*s", (int)(a - range), range);
    snprintf(hi_text, sizeof hi_text, "%.*s", (int)(b - a - 1), a + 1);
    snprintf(n_text, sizeof n_text, "%s", b + 1);
    double lo, hi;
    int64_t n;
    if (sft_yaml_scalar_number(lo_text, &lo) || sft_yaml_scalar_number(hi_text, &hi) || sft_yaml_scalar_int(n_text, &n))
        return sft_errf(err, "%s expects LO:HI:N with numbers LO, HI and a count N, got '%s'", where, range);
    if (!(lo > 0) || !(hi > lo) || !isfinite(hi))
        return sft_errf(err, "%s: the range must have 0 < LO < HI, got '%s'", where, range);
    if (n < 2 || n > 64) return sft_errf(err, "%s: N must be between 2 and 64, got %lld", where, (long long)n);
    sft_sweep_axis *axis = axis_for(c, "lr", where, err);
    if (!axis) return -1;
    for (int64_t i = 0; i < n; i++) {
        double v = exp(log(lo) + (double)i * (log(hi) - log(lo)) / (double)(n - 1));
        char text[64];
        snprintf(text, sizeof text, "%.3g", v); /* 3 significant digits: names and run.yaml stay readable */
        if (axis_add(axis, text, where, err)) return -1;
    }
    return 0;
}

/* The text of a YAML value as a flag would give it: a scalar as is, a list
 * of scalars joined with commas (one value of a list key). */
static int node_text(const sft_yaml_node *n, char *out, size_t cap) {
    if (n->kind == SFT_YAML_SCALAR) {
        if ((size_t)snprintf(out, cap, "%s", n->value) >= cap) return -1;
        return 0;
    }
    if (n->kind != SFT_YAML_SEQUENCE) return -1;
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < n->count; i++) {
        if (n->items[i]->kind != SFT_YAML_SCALAR) return -1;
        used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s", i ? "," : "", n->items[i]->value);
        if (used >= cap) return -1;
    }
    return 0;
}

static int axis_from_yaml(sft_sweep_config *c, const char *key, const sft_yaml_node *v, const char *file,
                          sft_err *err) {
    char where[1200];
    snprintf(where, sizeof where, "%s:%d:%d: sweep: %s", file, v->line, v->column, key);
    if (v->kind == SFT_YAML_SCALAR) return sft_sweep_set_values(c, key, v->value, where, err);
    if (v->kind != SFT_YAML_SEQUENCE || v->count == 0)
        return sft_errf(err, "%s expects a list of values, got a %s", where,
                        v->kind == SFT_YAML_SEQUENCE ? "an empty list" : sft_yaml_kind_name(v->kind));
    sft_sweep_axis *a = axis_for(c, key, where, err);
    if (!a) return -1;
    for (size_t i = 0; i < v->count; i++) {
        char text[2048], item_where[1300];
        snprintf(item_where, sizeof item_where, "%s:%d:%d: sweep: %s[%zu]", file, v->items[i]->line,
                 v->items[i]->column, key, i);
        if (node_text(v->items[i], text, sizeof text))
            return sft_errf(err, "%s expects a value (or a list of names for a list key)", item_where);
        if (axis_add(a, text, item_where, err)) return -1;
    }
    return 0;
}

int sft_sweep_apply_yaml(sft_sweep_config *c, const sft_yaml_doc *doc, sft_err *err) {
    const sft_yaml_node *root = sft_yaml_root(doc);
    const char *file = sft_yaml_name(doc);
    if (!root) return 0;
    if (root->kind != SFT_YAML_MAPPING)
        return sft_errf(err, "%s:%d:%d: expected a mapping of training and sweep keys, got a %s", file, root->line,
                        root->column, sft_yaml_kind_name(root->kind));
    /* The training keys go to the base run through the one key table; the
     * sweep's own keys and `lr:` given as a list are taken out here. */
    sft_yaml_node train = *root;
    train.keys = calloc(root->count ? root->count : 1, sizeof *train.keys);
    train.items = calloc(root->count ? root->count : 1, sizeof *train.items);
    if (!train.keys || !train.items) {
        free(train.keys);
        free(train.items);
        return sft_errf(err, "out of memory");
    }
    train.count = 0;
    int rc = -1;
    for (size_t i = 0; i < root->count; i++) {
        const sft_yaml_node *k = root->keys[i], *v = root->items[i];
        char where[1200];
        snprintf(where, sizeof where, "%s:%d:%d: %s", file, v->line, v->column, k->value);
        if (!strcmp(k->value, "lr") && v->kind == SFT_YAML_SEQUENCE) {
            if (axis_from_yaml(c, "lr", v, file, err)) goto done;
        } else if (!strcmp(k->value, "sweep")) {
            if (v->kind != SFT_YAML_MAPPING) {
                sft_errf(err, "%s expects a mapping of training keys to lists of values (lr: [1e-5, 1e-4])", where);
                goto done;
            }
            for (size_t j = 0; j < v->count; j++)
                if (axis_from_yaml(c, v->keys[j]->value, v->items[j], file, err)) goto done;
        } else if (!strcmp(k->value, "lr_range")) {
            if (v->kind != SFT_YAML_SCALAR || sft_sweep_set_lr_range(c, v->value, where, err)) {
                if (v->kind != SFT_YAML_SCALAR) sft_errf(err, "%s expects LO:HI:N", where);
                goto done;
            }
        } else if (!strcmp(k->value, "parallel") || !strcmp(k->value, "prune_factor")) {
            int64_t n;
            int is_parallel = k->value[1] == 'a';
            if (v->kind != SFT_YAML_SCALAR || sft_yaml_scalar_int(v->value, &n) || n < (is_parallel ? 1 : 2) ||
                n > 4096) {
                sft_errf(err, "%s expects an integer >= %d", where, is_parallel ? 1 : 2);
                goto done;
            }
            if (is_parallel) c->parallel = n;
            else c->prune_factor = n;
        } else if (!strcmp(k->value, "prune")) {
            int b, found = -1;
            if (v->kind == SFT_YAML_SCALAR && !sft_yaml_scalar_bool(v->value, &b)) found = b;
            for (int p = 0; found < 0 && v->kind == SFT_YAML_SCALAR && prune_names[p]; p++)
                if (!strcmp(prune_names[p], v->value)) found = p;
            if (found < 0) {
                sft_errf(err, "%s expects none or halving", where);
                goto done;
            }
            c->prune = found;
        } else if (sft_run_key_find(k->value)) {
            train.keys[train.count] = root->keys[i];
            train.items[train.count++] = root->items[i];
        } else {
            size_t count;
            const sft_run_key *keys = sft_run_keys(&count);
            const char *names[SFT_RUN_KEY_MAX + 8];
            size_t n = 0;
            for (size_t j = 0; j < count; j++) names[n++] = keys[j].name;
            for (int j = 0; sft_sweep_file_keys[j]; j++) names[n++] = sft_sweep_file_keys[j];
            const char *near = sft_suggest(k->value, names, n);
            if (near)
                sft_errf(err, "%s:%d:%d: unknown key '%s' (did you mean '%s'?)", file, k->line, k->column, k->value,
                         near);
            else
                sft_errf(err, "%s:%d:%d: unknown key '%s' (see sft sweep --help)", file, k->line, k->column,
                         k->value);
            goto done;
        }
    }
    rc = train.count ? sft_run_config_apply_mapping(&c->base, &train, file, err) : 0;
done:
    free(train.keys);
    free(train.items);
    return rc;
}

int sft_sweep_load_yaml(sft_sweep_config *c, const char *path, sft_err *err) {
    sft_yaml_doc *doc = sft_yaml_load_file(path, err);
    if (!doc) return -1;
    int rc = sft_sweep_apply_yaml(c, doc, err);
    sft_yaml_free(doc);
    return rc;
}

char *sft_sweep_config_to_yaml(const sft_sweep_config *c, sft_err *err) {
    sft_run_config base;
    if (sft_run_config_copy(&base, &c->base, err)) return NULL;
    free(base.resume);
    base.resume = NULL;
    char *train = sft_run_config_to_yaml(&base, err);
    sft_run_config_free(&base);
    if (!train) return NULL;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) {
        free(train);
        sft_errf(err, "out of memory");
        return NULL;
    }
    fputs("# sft sweep configuration, fully resolved: the base run's keys, then the sweep.\n"
          "# Re-run it with: sft sweep -c sweep.yaml   (continue it with --resume)\n",
          f);
    /* The base run's file minus its own two header lines. */
    const char *body = train;
    for (int skip = 0; skip < 2 && strchr(body, '\n'); skip++) body = strchr(body, '\n') + 1;
    fputs(body, f);
    fputs("\n# --- sweep ---\n# trials: every combination of these values (the first key varies slowest)\nsweep:\n", f);
    for (int i = 0; i < c->axis_count; i++) {
        fprintf(f, "  %s:\n", c->axes[i].key->name);
        for (int j = 0; j < c->axes[i].values.count; j++) {
            const char *v = c->axes[i].values.items[j];
            size_t need = sft_yaml_quote(NULL, 0, v) + 1;
            char *q = malloc(need);
            if (!q) break;
            sft_yaml_quote(q, need, v);
            sft_run_key_type type = c->axes[i].key->type;
            if (type == SFT_KEY_LIST) fprintf(f, "    - [%s]\n", q);
            else if (type == SFT_KEY_STRING) fprintf(f, "    - %s\n", q);
            else fprintf(f, "    - %s\n", v); /* canonical numbers, booleans and names read back as such */
            free(q);
        }
    }
    fprintf(f, "# trials at a time (the threads are split between them)\nparallel: %lld\n", (long long)c->parallel);
    fprintf(f, "# pruning: none, or halving (successive halving; needs max_steps and eval_every)\nprune: %s\n",
            prune_names[c->prune]);
    fprintf(f, "# halving keeps 1/prune_factor of the trials at each rung\nprune_factor: %lld\n",
            (long long)c->prune_factor);
    free(train);
    if (fclose(f)) {
        free(out);
        sft_errf(err, "out of memory");
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- plan */

typedef struct planned_trial {
    char name[160];
    char params_json[1024];
    sft_run_config cfg; /* finished, out = SWEEP/trials/NAME */
} planned_trial;

static size_t trial_count_of(const sft_sweep_config *c) {
    size_t n = 1;
    for (int i = 0; i < c->axis_count; i++) {
        n *= (size_t)c->axes[i].values.count;
        if (n > SFT_SWEEP_MAX_TRIALS) return SFT_SWEEP_MAX_TRIALS + 1;
    }
    return n;
}

/* A value as a piece of a folder name: letters, digits, '.', '+', '-';
 * a list's items joined with '+'. */
static void name_piece(const char *value, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = value; *p && o + 1 < cap; p++) {
        char ch = *p;
        if (ch == ' ' || ch == '[' || ch == ']' || ch == '"' || ch == '\'') continue;
        if (ch == ',') ch = '+';
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                   ch == '-' || ch == '+'))
            ch = '_';
        out[o++] = ch;
    }
    out[o] = 0;
}

static void json_value_of(FILE *f, const sft_run_config *cfg, const sft_run_key *key) {
    char text[1024];
    const char *base = (const char *)cfg;
    switch (key->type) {
    case SFT_KEY_INT:
        fprintf(f, "%lld", (long long)*(const int64_t *)(base + key->offset));
        break;
    case SFT_KEY_NUMBER:
        format_number(*(const double *)(base + key->offset), text, sizeof text);
        fputs(text, f);
        break;
    case SFT_KEY_BOOL:
        fputs(*(const int *)(base + key->offset) ? "true" : "false", f);
        break;
    case SFT_KEY_CHOICE: {
        const char *s = key->choices[*(const int *)(base + key->offset)];
        sft_json_write_string(f, s, strlen(s));
        break;
    }
    case SFT_KEY_LIST: {
        const sft_str_list *l = (const sft_str_list *)(base + key->offset);
        fputc('[', f);
        for (int i = 0; i < l->count; i++) {
            if (i) fputs(", ", f);
            sft_json_write_string(f, l->items[i], strlen(l->items[i]));
        }
        fputc(']', f);
        break;
    }
    default: {
        const char *s = *(char *const *)(base + key->offset);
        if (s) sft_json_write_string(f, s, strlen(s));
        else fputs("null", f);
    }
    }
}

static void plan_free(planned_trial *p, int n) {
    for (int i = 0; p && i < n; i++) sft_run_config_free(&p[i].cfg);
    free(p);
}

/* Every trial's configuration, finished, with its name and params. */
static int plan_trials(const sft_sweep_config *c, const char *sweep_dir, int64_t threads_per_trial,
                       planned_trial **out, int *count, sft_err *err) {
    size_t n = trial_count_of(c);
    if (n > SFT_SWEEP_MAX_TRIALS)
        return sft_errf(err, "the sweep has more than %d trials; sweep fewer values", SFT_SWEEP_MAX_TRIALS);
    planned_trial *p = calloc(n, sizeof *p);
    if (!p) return sft_errf(err, "out of memory");
    int made = 0;
    const sft_run_key *lr_key = sft_run_key_find("lr");
    for (size_t t = 0; t < n; t++) {
        planned_trial *pt = &p[t];
        if (sft_run_config_copy(&pt->cfg, &c->base, err)) goto fail;
        made++;
        free(pt->cfg.resume);
        pt->cfg.resume = NULL;
        size_t rest = t, used = 0;
        size_t stride[SFT_SWEEP_MAX_AXES];
        for (int a = c->axis_count - 1, s = 1; a >= 0; a--) {
            stride[a] = (size_t)s;
            s *= c->axes[a].values.count;
        }
        for (int a = 0; a < c->axis_count; a++) {
            const sft_sweep_axis *ax = &c->axes[a];
            size_t vi = rest / stride[a];
            rest %= stride[a];
            const char *value = ax->values.items[vi];
            char where[160];
            snprintf(where, sizeof where, "sweep value %s=%s", ax->key->name, value);
            if (ax->key->type == SFT_KEY_LIST) sft_run_config_clear_list(&pt->cfg, ax->key);
            if (sft_run_config_set_text(&pt->cfg, ax->key, value, where, SFT_RUN_FROM_FLAG, err)) goto fail;
            char piece[120];
            name_piece(value, piece, sizeof piece);
            used += (size_t)snprintf(pt->name + used, used < sizeof pt->name ? sizeof pt->name - used : 0, "%s%s-%s",
                                     a ? "_" : "", ax->key->name, piece);
        }
        if (used >= sizeof pt->name) pt->name[sizeof pt->name - 1] = 0;
        /* Two values that map to one name (paths differing in '/'): number them. */
        for (size_t u = 0; u < t; u++)
            if (!strcmp(p[u].name, pt->name)) {
                char suffix[16];
                snprintf(suffix, sizeof suffix, "-%zu", t + 1);
                size_t len = strlen(pt->name);
                if (len + strlen(suffix) >= sizeof pt->name) len = sizeof pt->name - 1 - strlen(suffix);
                snprintf(pt->name + len, sizeof pt->name - len, "%s", suffix);
                break;
            }
        char dir[4300];
        if (snprintf(dir, sizeof dir, "%s/trials/%s", sweep_dir, pt->name) >= (int)sizeof dir) {
            sft_errf(err, "%s: the sweep folder's path is too long", sweep_dir);
            goto fail;
        }
        char threads[32];
        snprintf(threads, sizeof threads, "%lld", (long long)threads_per_trial);
        if (sft_run_config_set_text(&pt->cfg, sft_run_key_find("out"), dir, "out", SFT_RUN_FROM_FLAG, err) ||
            sft_run_config_set_text(&pt->cfg, sft_run_key_find("threads"), threads, "threads", SFT_RUN_FROM_FLAG, err))
            goto fail;
        if (sft_run_config_finish(&pt->cfg, err)) {
            sft_err_prefix(err, "trial %s", pt->name);
            goto fail;
        }
        if (!pt->cfg.val_data && !(pt->cfg.val_split > 0)) {
            sft_errf(err, "trial %s has no validation data: a sweep chooses by validation loss; give --val-data FILE "
                          "or --val-split FRACTION",
                     pt->name);
            goto fail;
        }
        /* params: lr first (always), then the other swept keys */
        char *json = NULL;
        size_t json_len = 0;
        FILE *f = open_memstream(&json, &json_len);
        if (!f) {
            sft_errf(err, "out of memory");
            goto fail;
        }
        fputs("{\"lr\": ", f);
        json_value_of(f, &pt->cfg, lr_key);
        for (int a = 0; a < c->axis_count; a++) {
            if (c->axes[a].key == lr_key) continue;
            fprintf(f, ", \"%s\": ", c->axes[a].key->name);
            json_value_of(f, &pt->cfg, c->axes[a].key);
        }
        fputc('}', f);
        fclose(f);
        if (!json || json_len >= sizeof pt->params_json) {
            free(json);
            sft_errf(err, "trial %s: its parameters are too long to record", pt->name);
            goto fail;
        }
        memcpy(pt->params_json, json, json_len + 1);
        free(json);
    }
    *out = p;
    *count = (int)n;
    return 0;
fail:
    plan_free(p, made);
    return -1;
}

int sft_sweep_config_check(const sft_sweep_config *c, sft_err *err) {
    if (c->axis_count == 0)
        return sft_errf(err, "nothing to sweep: give --lr a,b,c, --lr-range LO:HI:N or --sweep KEY=V1,V2 (or sweep: "
                             "in the YAML file)");
    if (c->parallel < 1) return sft_errf(err, "parallel must be at least 1");
    if (!c->base.out) return sft_errf(err, "no sweep folder given: --out DIR (or out: in the YAML file)");
    planned_trial *p;
    int n;
    if (plan_trials(c, c->base.out, 1, &p, &n, err)) return -1;
    int rc = 0;
    if (c->prune == SFT_SWEEP_PRUNE_HALVING) {
        if (c->prune_factor < 2) rc = sft_errf(err, "prune_factor must be at least 2");
        for (int i = 0; !rc && i < n; i++) {
            if (p[i].cfg.max_steps <= 0)
                rc = sft_errf(err, "pruning by halving needs max_steps (the rungs are fractions of it); trial %s has "
                                   "none",
                              p[i].name);
            else if (p[i].cfg.eval_every <= 0)
                rc = sft_errf(err, "pruning by halving compares validation losses at each rung: set eval_every");
            else if (p[i].cfg.early_stopping_patience > 0)
                rc = sft_errf(err, "pruning and early stopping both stop trials early; use one of them");
        }
    }
    plan_free(p, n);
    return rc;
}

/* ------------------------------------------------------ child processes */

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *data, size_t len) {
    char *p = data;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static void describe_exit(int status, char *out, size_t cap) {
    if (WIFSIGNALED(status))
        snprintf(out, cap, "its process was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "its process exited with status %d without a result", WEXITSTATUS(status));
}

typedef struct {
    int rc;
    sft_err err;
} child_header;

int sft_fork_call(sft_child_fn fn, void *ctx, void *out, size_t out_size, sft_err *err) {
    int fds[2];
    if (pipe(fds)) return sft_err_errno(err, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return sft_err_errno(err, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        child_header h;
        memset(&h, 0, sizeof h);
        h.rc = fn(ctx, out, out_size, &h.err);
        fflush(NULL);
        int failed = write_all(fds[1], &h, sizeof h) || (out_size && write_all(fds[1], out, out_size));
        _exit(failed ? 3 : 0);
    }
    close(fds[1]);
    child_header h;
    int got = !read_all(fds[0], &h, sizeof h) && (!out_size || !read_all(fds[0], out, out_size));
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!got) {
        char why[160];
        describe_exit(status, why, sizeof why);
        return sft_errf(err, "the child process gave no result: %s", why);
    }
    if (h.rc) *err = h.err;
    return h.rc;
}

/* ---------------------------------------------------------------- state */

typedef struct sweep_run {
    const sft_sweep_config *c;
    const sft_sweep_options *o;
    sft_sweep_result *r;
    planned_trial *plan;
    int n;
    char dir[4096];
    int rung, rung_count;
    int64_t budgets[16]; /* per rung; 0: to the end */
    int parallel;
    int64_t threads_per_trial;
    pid_t parent;
    int shown_lines; /* lines of the live display on a terminal (erased before any message) */
} sweep_run;

const char *sft_trial_status_name(int status) {
    static const char *const names[] = {"pending", "running", "finished", "pruned", "failed"};
    return status >= 0 && status <= SFT_TRIAL_FAILED ? names[status] : "?";
}

static int status_parse(const char *name) {
    for (int s = 0; s <= SFT_TRIAL_FAILED; s++)
        if (!strcmp(name, sft_trial_status_name(s))) return s;
    return -1;
}

static void json_number_or_null(FILE *f, double v) {
    char text[64];
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    format_number(v, text, sizeof text);
    fputs(text, f);
}

static int save_state(sweep_run *s, sft_err *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    fprintf(f, "{\"version\": 1, \"rung\": %d, \"trials\": [\n", s->rung);
    for (int i = 0; i < s->n; i++) {
        const sft_sweep_trial *t = &s->r->trials[i];
        fputs("  {\"name\": ", f);
        sft_json_write_string(f, t->name, strlen(t->name));
        fprintf(f, ", \"params\": %s, \"status\": \"%s\", \"steps\": %lld, \"total_steps\": %lld, \"wall_s\": ",
                t->params_json, sft_trial_status_name(t->status), (long long)t->steps, (long long)t->total_steps);
        json_number_or_null(f, t->wall_s);
        fputs(", \"best_val_loss\": ", f);
        json_number_or_null(f, t->best_val_loss);
        fprintf(f, ", \"best_step\": %lld, \"first_val_loss\": ", (long long)t->best_step);
        json_number_or_null(f, t->first_val_loss);
        fputs(", \"final_train_loss\": ", f);
        json_number_or_null(f, t->final_train_loss);
        fprintf(f, ", \"verdict\": \"%s\", \"findings\": [", t->verdict);
        for (int k = 0; k < t->kind_count; k++) fprintf(f, "%s\"%s\"", k ? ", " : "", t->kinds[k]);
        fprintf(f, "], \"stopped_early\": %s, \"error\": ", t->stopped_early ? "true" : "false");
        sft_json_write_string(f, t->error, strlen(t->error));
        fprintf(f, "}%s\n", i + 1 < s->n ? "," : "");
    }
    fputs("]}\n", f);
    if (fclose(f)) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    char path[4200];
    int rc = sft_path_join(path, sizeof path, s->dir, "sweep.json", err);
    if (!rc) rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

/* The recorded state of one trial (sweep.json's trials[i], name aside). */
static int parse_trial(const json_t *t, sft_sweep_trial *st, const char *ctx, sft_err *err) {
    const char *status, *verdict, *error = "";
    int64_t steps, total, best_step;
    if (sft_json_get_string(t, "status", &status, ctx, err) || sft_json_get_int(t, "steps", &steps, ctx, err) ||
        sft_json_get_int(t, "total_steps", &total, ctx, err) || sft_json_get_int(t, "best_step", &best_step, ctx, err) ||
        sft_json_get_string(t, "verdict", &verdict, ctx, err) || sft_json_get_string_opt(t, "error", &error, ctx, err))
        return -1;
    if ((st->status = status_parse(status)) < 0) return sft_errf(err, "%s: unknown status '%s'", ctx, status);
    st->steps = steps, st->total_steps = total, st->best_step = best_step;
    double v;
    st->wall_s = sft_json_number(json_object_get(t, "wall_s"), &v) ? 0 : v;
    st->best_val_loss = sft_json_number(json_object_get(t, "best_val_loss"), &v) ? NAN : v;
    st->first_val_loss = sft_json_number(json_object_get(t, "first_val_loss"), &v) ? NAN : v;
    st->final_train_loss = sft_json_number(json_object_get(t, "final_train_loss"), &v) ? NAN : v;
    snprintf(st->verdict, sizeof st->verdict, "%s", verdict);
    snprintf(st->error, sizeof st->error, "%s", error ? error : "");
    int b = 0;
    if (sft_json_get_bool_opt(t, "stopped_early", &b, ctx, err)) return -1;
    st->stopped_early = b;
    json_t *kinds = json_object_get(t, "findings");
    st->kind_count = 0;
    for (size_t k = 0; json_is_array(kinds) && k < json_array_size(kinds) && st->kind_count < SFT_SWEEP_MAX_KINDS; k++)
        if (json_is_string(json_array_get(kinds, k)))
            snprintf(st->kinds[st->kind_count++], 32, "%s", json_string_value(json_array_get(kinds, k)));
    return 0;
}

/* Reads sweep.json of an earlier call into the trials (matched by name). */
static int load_state(sweep_run *s, sft_err *err) {
    char path[4200];
    if (sft_path_join(path, sizeof path, s->dir, "sweep.json", err)) return -1;
    json_t *root = sft_json_load_file(path, err);
    if (!root) return -1;
    int rc = -1;
    int64_t rung = 0;
    json_t *trials = json_object_get(root, "trials");
    if (sft_json_get_int(root, "rung", &rung, path, err)) goto done;
    if (!json_is_array(trials)) {
        sft_errf(err, "%s: \"trials\" must be a list", path);
        goto done;
    }
    if ((int)json_array_size(trials) != s->n) goto mismatch;
    for (int i = 0; i < s->n; i++) {
        json_t *t = json_array_get(trials, (size_t)i);
        sft_sweep_trial *st = &s->r->trials[i];
        const char *name;
        char ctx[4300];
        snprintf(ctx, sizeof ctx, "%s: trials[%d]", path, i);
        if (sft_json_get_string(t, "name", &name, ctx, err)) goto done;
        if (strcmp(name, st->name)) goto mismatch;
        /* The same values: compare the recorded params with the planned ones. */
        json_t *planned = json_loads(st->params_json, JSON_DECODE_INT_AS_REAL, NULL);
        int same = planned && json_equal(planned, json_object_get(t, "params"));
        json_decref(planned);
        if (!same) goto mismatch;
        if (parse_trial(t, st, ctx, err)) goto done;
    }
    s->rung = (int)rung;
    rc = 0;
    goto done;
mismatch:
    sft_errf(err,
             "%s: the sweep there plans other trials than this command (different keys or values); resume it with the "
             "same sweep, e.g. sft sweep -c %s/sweep.yaml --resume",
             path, s->dir);
done:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- running */

/* rm -rf of a trial folder that holds only the start of a run (no checkpoint). */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path, sft_err *err) {
    if (!sft_dir_exists(path) && !sft_file_exists(path)) return 0;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS)) return sft_err_errno(err, path);
    return 0;
}

typedef struct {
    int rc;
    sft_err err;
    sft_train_result res;
} trial_message;

typedef struct {
    int index;
    pid_t pid;
    int fd;
    int hook; /* stopped by the test hook, not by a rung */
    double started;
} running_trial;

static void trial_child(sweep_run *s, int index, int64_t stop_after, int fd) {
    /* Its own process group: a Ctrl-C at the terminal reaches the sweep,
     * which stops each trial once (a second signal would kill it); and a
     * trial stops (saving a checkpoint) when the sweep dies. */
    setpgid(0, 0);
    sft_signals_uninstall();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != s->parent) raise(SIGTERM);
    const sft_sweep_options *o = s->o;
    planned_trial *pt = &s->plan[index];
    FILE *log = NULL;
    int own_log = 0;
    if (s->parallel == 1) {
        log = o->log;
    } else {
        char path[4300];
        sft_err ignored;
        snprintf(path, sizeof path, "%s/train.log", pt->cfg.out);
        if (!sft_mkdir_p(pt->cfg.out, &ignored) && (log = fopen(path, "a"))) own_log = 1;
    }
    sft_train_options to = {.log = log,
                            .progress = s->parallel == 1 ? o->progress : 0,
                            .stop_after_steps = stop_after,
                            .handle_signals = 1,
                            .program_version = o->program_version,
                            .command_line = o->command_line};
    trial_message m;
    memset(&m, 0, sizeof m);
    m.rc = sft_train_run(&pt->cfg, &to, &m.res, &m.err);
    if (own_log) fclose(log);
    fflush(NULL);
    _exit(write_all(fd, &m, sizeof m) ? 3 : 0);
}

static void say(sweep_run *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(sweep_run *s, const char *fmt, ...) {
    FILE *log = s->o->log;
    if (!log) return;
    if (s->shown_lines) { /* erase the live display: up to its first line, clear to the end */
        fprintf(log, "\033[%dA\r\033[J", s->shown_lines);
        s->shown_lines = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fflush(log);
}

/* Starts trial `index` for at most stop_after steps (0: to the end). */
static int start_trial(sweep_run *s, int index, int64_t stop_after, int hook, running_trial *rt, sft_err *err) {
    planned_trial *pt = &s->plan[index];
    sft_sweep_trial *t = &s->r->trials[index];
    /* Continue from its checkpoint; a folder without one holds only the
     * start of a run that was killed: start over. */
    char ckpt[4300];
    int64_t ckpt_step = 0;
    free(pt->cfg.resume);
    pt->cfg.resume = NULL;
    int latest = sft_dir_exists(pt->cfg.out) ? sft_checkpoint_latest(pt->cfg.out, ckpt, sizeof ckpt, &ckpt_step, err)
                                             : 1;
    if (latest < 0) return sft_err_prefix(err, "trial %s", pt->name);
    if (latest == 0) {
        if (!(pt->cfg.resume = strdup(SFT_RUN_RESUME_LATEST))) return sft_errf(err, "out of memory");
    } else if (remove_tree(pt->cfg.out, err)) {
        return -1;
    }
    t->status = SFT_TRIAL_RUNNING;
    t->ran_now = 1;
    if (save_state(s, err)) return -1;
    say(s, "trial %d/%d %s: %s (%lld thread%s)%s\n", index + 1, s->n, pt->name,
        latest == 0 ? "continuing from its checkpoint" : "starting", (long long)s->threads_per_trial,
        s->threads_per_trial == 1 ? "" : "s", s->parallel > 1 ? "; log in its train.log" : "");
    int fds[2];
    if (pipe(fds)) return sft_err_errno(err, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return sft_err_errno(err, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        trial_child(s, index, stop_after, fds[1]);
    }
    close(fds[1]);
    *rt = (running_trial){.index = index, .pid = pid, .fd = fds[0], .hook = hook, .started = now_s()};
    return 0;
}

static int has_kind(const sft_sweep_trial *t, const char *kind) {
    for (int k = 0; k < t->kind_count; k++)
        if (!strcmp(t->kinds[k], kind)) return 1;
    return 0;
}

/* The verdict and finding kinds of the trial's diagnosis.json: the run's
 * final whole-run diagnosis (written when its monitor closes), which may
 * hold findings the live one had not raised yet (underfitting is judged on
 * the whole curve). Kept as they are when the file is missing. */
static void read_diagnosis(const char *run_dir, sft_sweep_trial *t) {
    char path[4300];
    sft_err ignored;
    snprintf(path, sizeof path, "%s/diagnosis.json", run_dir);
    json_t *d = sft_file_exists(path) ? sft_json_load_file(path, &ignored) : NULL;
    const char *verdict;
    json_t *findings = d ? json_object_get(d, "findings") : NULL;
    if (!d || sft_json_get_string(d, "verdict", &verdict, path, &ignored) || !json_is_array(findings)) {
        json_decref(d);
        return;
    }
    snprintf(t->verdict, sizeof t->verdict, "%s", verdict);
    t->kind_count = 0;
    for (size_t i = 0; i < json_array_size(findings) && t->kind_count < SFT_SWEEP_MAX_KINDS; i++) {
        const char *kind;
        if (sft_json_get_string(json_array_get(findings, i), "kind", &kind, path, &ignored)) continue;
        int seen = 0;
        for (int k = 0; k < t->kind_count; k++) seen |= !strcmp(t->kinds[k], kind);
        if (!seen) snprintf(t->kinds[t->kind_count++], 32, "%s", kind);
    }
    json_decref(d);
}

/* A trial's process ended: its result into the state. Returns 1 when the
 * sweep must stop (an interruption), -1 with err when it must fail (a
 * trial that could not start: bad data or model, the same for all). */
static int finish_trial(sweep_run *s, running_trial *rt, int status, int stopping, sft_err *err) {
    sft_sweep_trial *t = &s->r->trials[rt->index];
    trial_message m;
    int got = !read_all(rt->fd, &m, sizeof m);
    close(rt->fd);
    t->wall_s += now_s() - rt->started;
    if (!got) {
        char why[200];
        describe_exit(status, why, sizeof why);
        if (stopping && WIFSIGNALED(status)) return 1; /* stopped twice: it resumes from its checkpoint */
        t->status = SFT_TRIAL_FAILED;
        snprintf(t->error, sizeof t->error, "%s", why);
        say(s, "trial %s failed: %s\n", t->name, why);
        return 0;
    }
    const sft_train_result *res = &m.res;
    if (m.rc && res->steps == 0) {
        t->status = SFT_TRIAL_PENDING;
        *err = m.err;
        return sft_err_prefix(err, "trial %s", t->name);
    }
    t->steps = res->steps;
    t->total_steps = res->total_steps;
    if (isfinite(res->best_val_loss)) t->best_val_loss = res->best_val_loss, t->best_step = res->best_step;
    if (!isfinite(t->first_val_loss)) t->first_val_loss = res->first_val_loss;
    t->final_train_loss = res->final_train_loss;
    t->stopped_early = res->stopped_early;
    snprintf(t->verdict, sizeof t->verdict, "%s", res->verdict);
    t->kind_count = 0;
    for (int k = 0; k < res->finding_count && k < SFT_SWEEP_MAX_KINDS; k++)
        snprintf(t->kinds[t->kind_count++], 32, "%s", res->finding_kinds[k]);
    read_diagnosis(s->plan[rt->index].cfg.out, t);
    if (m.rc) {
        t->status = SFT_TRIAL_FAILED;
        snprintf(t->error, sizeof t->error, "%.500s", m.err.msg);
        say(s, "trial %s failed at step %lld: %s\n", t->name, (long long)res->steps, m.err.msg);
        return 0;
    }
    if (res->interrupted) {
        t->status = SFT_TRIAL_RUNNING;
        if (res->interrupted > 0 || rt->hook) {
            say(s, "trial %s stopped at step %lld of %lld (checkpoint saved)\n", t->name, (long long)res->steps,
                (long long)res->total_steps);
            return 1;
        }
        return 0; /* reached its rung's budget */
    }
    t->status = SFT_TRIAL_FINISHED;
    char best[64] = "no evaluation";
    if (isfinite(t->best_val_loss))
        snprintf(best, sizeof best, "best val loss %.4f at step %lld", t->best_val_loss, (long long)t->best_step);
    say(s, "trial %s finished: %lld steps in %.1f s%s, %s, %s", t->name, (long long)t->steps, t->wall_s,
        t->stopped_early ? " (stopped early)" : "", best, t->verdict);
    for (int k = 0; k < t->kind_count; k++) say(s, "%s%s", k ? ", " : " (", t->kinds[k]);
    say(s, "%s\n", t->kind_count ? ")" : "");
    return 0;
}

/* The last train and eval records of a running trial's metrics.jsonl. */
static void trial_progress(const char *run_dir, char *out, size_t cap, double *fraction) {
    char path[4300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "rb");
    out[0] = 0;
    if (!f) return;
    char buf[16384];
    long size = fseek(f, 0, SEEK_END) ? 0 : ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    size_t n = fseek(f, from, SEEK_SET) ? 0 : fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int64_t step = -1;
    double loss = NAN, val = NAN;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) break; /* being written */
        sft_err ignored;
        json_t *j = sft_json_loadb_lenient(line, (size_t)(nl - line), path, &ignored);
        const char *type;
        if (j && !sft_json_get_string(j, "type", &type, path, &ignored)) {
            double v;
            int64_t st;
            if (!strcmp(type, "train") && !sft_json_get_int(j, "step", &st, path, &ignored)) {
                step = st;
                loss = sft_json_number(json_object_get(j, "loss"), &v) ? NAN : v;
            } else if (!strcmp(type, "eval")) {
                val = sft_json_number(json_object_get(j, "val_loss"), &v) ? NAN : v;
            }
        }
        json_decref(j);
        line = nl + 1;
    }
    if (step < 0) return;
    int64_t total = 0;
    snprintf(path, sizeof path, "%s/manifest.json", run_dir);
    sft_err ignored;
    json_t *man = sft_file_exists(path) ? sft_json_load_file(path, &ignored) : NULL;
    if (man) sft_json_get_int(man, "total_steps", &total, path, &ignored);
    json_decref(man);
    if (total > 0) *fraction = (double)step / (double)total;
    int used = snprintf(out, cap, "step %lld", (long long)step);
    if (total > 0 && used > 0 && (size_t)used < cap) used += snprintf(out + used, cap - used, "/%lld", (long long)total);
    if (used > 0 && (size_t)used < cap) used += snprintf(out + used, cap - used, " loss %.3f", loss);
    if (isfinite(val) && used > 0 && (size_t)used < cap) snprintf(out + used, cap - used, " val %.3f", val);
}

/* The live display: on a terminal one line per running trial under a
 * header with the time left, redrawn in place; in a log one line. */
static void show_progress(sweep_run *s, const running_trial *running, int count, int terminal) {
    FILE *log = s->o->log;
    if (!log) return;
    int done = 0;
    for (int i = 0; i < s->n; i++) done += s->r->trials[i].status >= SFT_TRIAL_FINISHED;
    char lines[65][448]; /* name (< 160) and progress (< 256) fit */
    double eta = 0;
    int n = 1;
    for (int i = 0; i < count && n < 65; i++, n++) {
        char p[256];
        double fraction = 0;
        trial_progress(s->plan[running[i].index].cfg.out, p, sizeof p, &fraction);
        double elapsed = now_s() - running[i].started;
        if (fraction > 0.01 && elapsed * (1 - fraction) / fraction > eta) eta = elapsed * (1 - fraction) / fraction;
        snprintf(lines[n], sizeof lines[n], "  %-24s %s", s->plan[running[i].index].name, p[0] ? p : "starting");
    }
    int used = snprintf(lines[0], sizeof lines[0], "sweep: %d/%d trials done, %d running", done, s->n, count);
    if (eta > 0 && used > 0)
        snprintf(lines[0] + used, sizeof lines[0] - (size_t)used, ", about %d:%02d left for them", (int)eta / 60,
                 (int)eta % 60);
    if (!terminal) {
        fputs(lines[0], log);
        for (int i = 1; i < n; i++) fprintf(log, " |%s", lines[i] + 1);
        fputc('\n', log);
        fflush(log);
        return;
    }
    struct winsize ws;
    int width = ioctl(fileno(log), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 100;
    if (s->shown_lines) fprintf(log, "\033[%dA", s->shown_lines);
    for (int i = 0; i < n; i++) {
        if ((int)strlen(lines[i]) > width - 1) lines[i][width - 1] = 0;
        fprintf(log, "\r\033[K%s\n", lines[i]);
    }
    s->shown_lines = n;
    fflush(log);
}

/* Runs every trial in `queue` (indices) to step `budget` (0: the end), at
 * most s->parallel at a time. Returns 0, 1 when interrupted, -1 on error. */
static int run_queue(sweep_run *s, const int *queue, int queued, int64_t budget, sft_err *err) {
    running_trial running[64];
    int count = 0, next = 0, stop = 0, fatal = 0, forwarded = 0;
    int terminal = s->o->log && s->o->progress && isatty(fileno(s->o->log));
    int show = s->o->log && s->o->progress && s->parallel > 1;
    double last_show = 0, show_every = terminal ? 1.0 : 30.0;
    sft_err first_err;
    while (next < queued || count > 0) {
        int sig = s->o->handle_signals ? sft_signals_stop_requested() : 0;
        if (sig && !stop) {
            stop = sig;
            say(s, "sweep: stopping: each running trial saves a checkpoint (resume with --resume)\n");
        }
        if ((stop || fatal) && !forwarded) {
            for (int i = 0; i < count; i++) kill(running[i].pid, SIGTERM);
            forwarded = 1;
        }
        while (!stop && !fatal && next < queued && count < s->parallel) {
            int index = queue[next++];
            sft_sweep_trial *t = &s->r->trials[index];
            int64_t stop_after = 0, hook = 0;
            if (budget > 0) stop_after = budget - t->steps;
            if (s->o->stop_trial == index + 1 && s->o->stop_after_steps > 0) {
                stop_after = s->o->stop_after_steps;
                hook = 1;
            }
            if (start_trial(s, index, stop_after, (int)hook, &running[count], err)) {
                fatal = 1;
                first_err = *err;
                break;
            }
            count++;
        }
        if (count == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno != EINTR && errno != ECHILD) {
            sft_err_errno(err, "waitpid");
            return -1;
        }
        if (pid <= 0) {
            if (show && now_s() - last_show >= show_every) {
                show_progress(s, running, count, terminal);
                last_show = now_s();
            }
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        for (int i = 0; i < count; i++) {
            if (running[i].pid != pid) continue;
            sft_err trial_err;
            int rc = finish_trial(s, &running[i], status, stop != 0, &trial_err);
            if (rc < 0 && !fatal) {
                fatal = 1;
                first_err = trial_err;
            } else if (rc > 0 && !stop) {
                stop = -1;
            }
            running[i] = running[--count];
            if (save_state(s, err)) return -1;
            break;
        }
    }
    if (fatal) {
        *err = first_err;
        return -1;
    }
    if (stop) s->r->interrupted = stop;
    return stop ? 1 : 0;
}

/* Successive halving's rungs: budgets max_steps / factor^k, rounded up to
 * a multiple of eval_every so that each rung ends with an evaluation; as
 * many rungs as it takes to halve the trials down to one. */
static void plan_rungs(sweep_run *s) {
    s->rung_count = 1;
    s->budgets[0] = 0;
    if (s->c->prune != SFT_SWEEP_PRUNE_HALVING || s->n < 2) return;
    int64_t factor = s->c->prune_factor, max_steps = s->plan[0].cfg.max_steps, every = s->plan[0].cfg.eval_every;
    int rungs = 1;
    for (int64_t left = s->n; left > 1 && rungs < 15; left = (left + factor - 1) / factor) rungs++;
    int64_t divisor = 1;
    for (int r = 1; r < rungs; r++) divisor *= factor;
    int made = 0;
    for (int r = 0; r < rungs; r++, divisor /= factor) {
        int64_t b = (max_steps + divisor - 1) / divisor;
        b = (b + every - 1) / every * every;
        if (b >= max_steps || r == rungs - 1) b = 0; /* to the end */
        if (made && s->budgets[made - 1] == b) continue;
        if (made && b > 0 && s->budgets[made - 1] >= b) continue;
        s->budgets[made++] = b;
        if (b == 0) break;
    }
    s->rung_count = made;
}

/* At the end of a rung: keep the best 1/factor (by best validation loss
 * so far; failed and non-finite trials last), prune the rest. */
static void prune_rung(sweep_run *s, int64_t budget) {
    int order[SFT_SWEEP_MAX_TRIALS], alive = 0;
    for (int i = 0; i < s->n; i++) {
        int st = s->r->trials[i].status;
        if (st == SFT_TRIAL_RUNNING || st == SFT_TRIAL_PENDING) order[alive++] = i;
    }
    /* insertion sort by best validation loss (NaN last), ties to the earlier */
    for (int i = 1; i < alive; i++) {
        int v = order[i], j = i - 1;
        double lv = s->r->trials[v].best_val_loss;
        while (j >= 0) {
            double lj = s->r->trials[order[j]].best_val_loss;
            int worse = isnan(lj) ? !isnan(lv) : (!isnan(lv) && lv < lj);
            if (!worse) break;
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    int keep = (int)((alive + s->c->prune_factor - 1) / s->c->prune_factor);
    if (keep < 1) keep = 1;
    for (int i = keep; i < alive; i++) {
        sft_sweep_trial *t = &s->r->trials[order[i]];
        t->status = SFT_TRIAL_PRUNED;
        say(s, "trial %s pruned at step %lld (best val loss %.4f; rung budget %lld steps)\n", t->name,
            (long long)t->steps, t->best_val_loss, (long long)budget);
    }
}

/* ------------------------------------------------------------ selection */

static void mark_exclusions(sft_sweep_result *r) {
    for (int i = 0; i < r->trial_count; i++) {
        sft_sweep_trial *t = &r->trials[i];
        t->excluded = 1;
        if (t->status == SFT_TRIAL_FAILED)
            snprintf(t->why_excluded, sizeof t->why_excluded, "%s",
                     has_kind(t, "non_finite") ? "non-finite loss" : "failed");
        else if (has_kind(t, "non_finite"))
            snprintf(t->why_excluded, sizeof t->why_excluded, "non-finite loss");
        else if (has_kind(t, "divergence"))
            snprintf(t->why_excluded, sizeof t->why_excluded, "diverged");
        else if (!isfinite(t->best_val_loss))
            snprintf(t->why_excluded, sizeof t->why_excluded, "no validation loss");
        else if (t->status == SFT_TRIAL_PENDING || t->status == SFT_TRIAL_RUNNING)
            snprintf(t->why_excluded, sizeof t->why_excluded, "not finished");
        else
            t->excluded = 0;
    }
}

/* Minimal best validation loss; a tie (1e-9 relative) goes to the smaller
 * learning rate, then to the earlier trial. */
static int select_best(const sft_sweep_result *r) {
    int best = -1;
    for (int i = 0; i < r->trial_count; i++) {
        const sft_sweep_trial *t = &r->trials[i];
        if (t->excluded) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        const sft_sweep_trial *b = &r->trials[best];
        double tol = 1e-9 * fmax(fabs(t->best_val_loss), fabs(b->best_val_loss));
        if (t->best_val_loss < b->best_val_loss - tol) best = i;
        else if (fabs(t->best_val_loss - b->best_val_loss) <= tol && t->lr < b->lr) best = i;
    }
    return best;
}

static void add_advice(sft_sweep_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_advice(sft_sweep_result *r, const char *fmt, ...) {
    if (r->advice_count >= SFT_SWEEP_MAX_ADVICE) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->advice[r->advice_count++], sizeof r->advice[0], fmt, ap);
    va_end(ap);
}

/* Names of the trials with `pred`, joined with ", ". */
static void names_where(const sft_sweep_result *r, int (*pred)(const sft_sweep_trial *), char *out, size_t cap) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < r->trial_count; i++)
        if (pred(&r->trials[i]) && used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? ", " : "", r->trials[i].name);
}
static int is_unstable(const sft_sweep_trial *t) { return t->excluded && t->status != SFT_TRIAL_PENDING; }
static int is_underfit(const sft_sweep_trial *t) { return !t->excluded && has_kind(t, "underfitting"); }
static int is_pruned(const sft_sweep_trial *t) { return t->status == SFT_TRIAL_PRUNED; }

/* The advice in words (sweep.h; the report shows it above the table). */
static void make_advice(sft_sweep_result *r) {
    char lr_text[64], other[64], names[1024];
    int best = r->best;
    double lr_lo = INFINITY, lr_hi = -INFINITY;
    int distinct = 0;
    for (int i = 0; i < r->trial_count; i++) {
        double lr = r->trials[i].lr;
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= r->trials[j].lr == lr;
        if (!seen) distinct++;
        lr_lo = fmin(lr_lo, lr), lr_hi = fmax(lr_hi, lr);
    }
    if (best < 0) {
        add_advice(r, "No trial qualified: every one failed, diverged or went non-finite (or none was evaluated). "
                      "Lower the learning rates (start 10x below the smallest tried), check the data, tokenizer and "
                      "template, and keep gradient clipping on.");
        return;
    }
    const sft_sweep_trial *b = &r->trials[best];
    format_number(b->lr, lr_text, sizeof lr_text);
    if (distinct >= 2 && b->lr == lr_lo) {
        format_number(b->lr / 10, other, sizeof other);
        add_advice(r, "The best learning rate, %s, is the lowest one tried: the optimum may lie below the range. "
                      "Extend it downward (down to %s) before trusting this choice.",
                   lr_text, other);
    } else if (distinct >= 2 && b->lr == lr_hi) {
        format_number(b->lr * 10, other, sizeof other);
        add_advice(r, "The best learning rate, %s, is the highest one tried: the optimum may lie above the range. "
                      "Extend it upward (up to %s), watching for divergence.",
                   lr_text, other);
    } else if (distinct >= 3) {
        char lo[64], hi[64];
        format_number(lr_lo, lo, sizeof lo);
        format_number(lr_hi, hi, sizeof hi);
        add_advice(r, "The best learning rate, %s, lies inside the range tried (%s to %s): the range brackets the "
                      "optimum.",
                   lr_text, lo, hi);
    }
    int second = -1;
    for (int i = 0; i < r->trial_count; i++)
        if (i != best && !r->trials[i].excluded &&
            (second < 0 || r->trials[i].best_val_loss < r->trials[second].best_val_loss))
            second = i;
    if (second >= 0) {
        const sft_sweep_trial *s2 = &r->trials[second];
        double gap = (s2->best_val_loss - b->best_val_loss) / fabs(b->best_val_loss);
        /* 1%: below it two validation losses of one data set are within the
         * spread that another seed gives. */
        if (gap < 0.01) {
            const sft_sweep_trial *lower = s2->lr < b->lr ? s2 : b;
            if (lower == b)
                add_advice(r, "The two best trials, %s (%.4f) and %s (%.4f), are within %.2f%% of each other, about "
                              "the noise of a validation loss; the chosen one has the lower learning rate, the safer "
                              "of the two.",
                           b->name, b->best_val_loss, s2->name, s2->best_val_loss, 100 * gap);
            else
                add_advice(r, "The two best trials, %s (%.4f) and %s (%.4f), are within %.2f%% of each other, about "
                              "the noise of a validation loss: prefer the lower learning rate, %s, which is the safer "
                              "choice (its best checkpoint is in trials/%s/best).",
                           b->name, b->best_val_loss, s2->name, s2->best_val_loss, 100 * gap, lower->name,
                           lower->name);
        }
    }
    names_where(r, is_unstable, names, sizeof names);
    if (names[0])
        add_advice(r, "Excluded (diverged, non-finite or failed): %s. Learning rates that high are too high for this "
                      "model and data; keep them out of the next sweep.",
                   names);
    names_where(r, is_underfit, names, sizeof names);
    if (names[0])
        add_advice(r, "Underfitting: %s. The loss barely fell or was still falling steadily: the learning rate is too "
                      "low for this number of steps.",
                   names);
    if (has_kind(b, "overfitting"))
        add_advice(r, "The chosen trial overfit after step %lld: best/ holds that step's checkpoint, not the last; "
                      "fewer steps or --early-stopping-patience would save the time after it.",
                   (long long)b->best_step);
    else if (b->status == SFT_TRIAL_FINISHED && !b->stopped_early && b->best_step == b->steps && b->steps > 0)
        add_advice(r, "The chosen trial was still improving at its last evaluation (step %lld): more steps may lower "
                      "the validation loss further.",
                   (long long)b->best_step);
    names_where(r, is_pruned, names, sizeof names);
    if (names[0])
        add_advice(r, "Pruned by successive halving: %s. Their curves stop at their rung; they were behind the "
                      "survivors at that point.",
                   names);
}

/* ------------------------------------------------------------- outputs */

/* SWEEP/best/ = the chosen trial's best/ (a flat folder of files), put in
 * place atomically (checkpoint.h's folder replacement). */
static int copy_best(const char *trial_best, const char *sweep_best, sft_err *err) {
    char tmp[4300];
    if (sft_dir_recover(sweep_best, err) || sft_dir_begin(sweep_best, tmp, sizeof tmp, err)) return -1;
    DIR *d = opendir(trial_best);
    if (!d) {
        sft_dir_abort(tmp);
        return sft_err_errno(err, trial_best);
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char from[4400], to[4400];
        if (sft_path_join(from, sizeof from, trial_best, e->d_name, err) ||
            sft_path_join(to, sizeof to, tmp, e->d_name, err)) {
            rc = -1;
            break;
        }
        if (sft_file_exists(from)) rc = sft_copy_file(from, to, err);
    }
    closedir(d);
    if (rc) {
        sft_dir_abort(tmp);
        return -1;
    }
    return sft_dir_commit(tmp, sweep_best, err);
}

static int write_summary(sweep_run *s, sft_err *err) {
    sft_sweep_result *r = s->r;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    fputs("{\"metric\": \"val_loss\", \"best\": ", f);
    if (r->best >= 0) sft_json_write_string(f, r->trials[r->best].name, strlen(r->trials[r->best].name));
    else fputs("null", f);
    fputs(", \"trials\": [\n", f);
    for (int i = 0; i < r->trial_count; i++) {
        const sft_sweep_trial *t = &r->trials[i];
        fputs("  {\"name\": ", f);
        sft_json_write_string(f, t->name, strlen(t->name));
        fprintf(f, ", \"params\": %s, \"best_val_loss\": ", t->params_json);
        json_number_or_null(f, t->best_val_loss);
        if (t->best_step >= 0 && isfinite(t->best_val_loss)) fprintf(f, ", \"best_step\": %lld", (long long)t->best_step);
        else fputs(", \"best_step\": null", f);
        fputs(", \"final_train_loss\": ", f);
        json_number_or_null(f, t->final_train_loss);
        fprintf(f, ", \"verdict\": \"%s\", \"findings\": [", t->status == SFT_TRIAL_PENDING ? "none" : t->verdict);
        for (int k = 0; k < t->kind_count; k++) fprintf(f, "%s\"%s\"", k ? ", " : "", t->kinds[k]);
        fputs("], \"wall_s\": ", f);
        json_number_or_null(f, t->wall_s);
        fprintf(f, "}%s\n", i + 1 < r->trial_count ? "," : "");
    }
    fputs("]}\n", f);
    if (fclose(f)) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    int rc = sft_path_join(r->summary_path, sizeof r->summary_path, s->dir, "summary.json", err);
    if (!rc) rc = sft_write_file_atomic(r->summary_path, text, len, err);
    free(text);
    return rc;
}

static int write_report(sweep_run *s, const char *out_html, sft_err *err) {
    sft_sweep_result *r = s->r;
    char dirs[SFT_SWEEP_MAX_TRIALS][4400];
    sft_report_run runs[SFT_SWEEP_MAX_TRIALS];
    char status[SFT_SWEEP_MAX_TRIALS][160];
    const char *status_ptr[SFT_SWEEP_MAX_TRIALS];
    const char *advice[SFT_SWEEP_MAX_ADVICE];
    size_t n = 0;
    for (int i = 0; i < r->trial_count; i++) {
        const sft_sweep_trial *t = &r->trials[i];
        char metrics[4500];
        snprintf(dirs[n], sizeof dirs[n], "%s/trials/%s", s->dir, t->name);
        snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dirs[n]);
        if (!sft_file_exists(metrics)) continue; /* never started */
        runs[n] = (sft_report_run){.name = t->name, .path = dirs[n]};
        if (i == r->best) snprintf(status[n], sizeof status[n], "chosen (best/ = its step %lld)", (long long)t->best_step);
        else if (t->excluded) snprintf(status[n], sizeof status[n], "excluded: %s", t->why_excluded);
        else if (t->status == SFT_TRIAL_PRUNED) snprintf(status[n], sizeof status[n], "pruned at step %lld", (long long)t->steps);
        else if (t->stopped_early) snprintf(status[n], sizeof status[n], "stopped early at step %lld", (long long)t->steps);
        else snprintf(status[n], sizeof status[n], "%s", sft_trial_status_name(t->status));
        status_ptr[n] = status[n];
        n++;
    }
    if (n == 0) return 0;
    for (int k = 0; k < r->advice_count; k++) advice[k] = r->advice[k];
    char title[300];
    snprintf(title, sizeof title, "sft sweep: %d trials", r->trial_count);
    sft_report_compare_options ro = {.title = title,
                                     .png = 1,
                                     .chosen = r->best >= 0 ? r->trials[r->best].name : "",
                                     .sort_by_val_loss = 1,
                                     .status = status_ptr,
                                     .advice = advice,
                                     .advice_count = (size_t)r->advice_count};
    if (out_html) snprintf(r->report_path, sizeof r->report_path, "%s", out_html);
    else if (sft_path_join(r->report_path, sizeof r->report_path, s->dir, "report.html", err)) return -1;
    return sft_report_compare_write_opts(runs, n, &ro, r->report_path, err);
}

/* A resumed sweep must train its trials as it began them: every training
 * key of its sweep.yaml must be the same (threads, out and resume aside). */
static int same_base_as_before(const sft_sweep_config *c, const char *dir, sft_err *err) {
    char path[4200];
    if (sft_path_join(path, sizeof path, dir, "sweep.yaml", err)) return -1;
    if (!sft_file_exists(path)) return 0; /* written at the start; a sweep killed before it has no trial yet */
    sft_sweep_config before;
    sft_sweep_config_init(&before);
    int rc = sft_sweep_load_yaml(&before, path, err);
    if (!rc) {
        sft_run_config now;
        rc = sft_run_config_copy(&now, &c->base, err);
        if (!rc) {
            now.threads = before.base.threads;
            free(now.out), free(now.resume);
            now.out = before.base.out ? strdup(before.base.out) : NULL;
            now.resume = NULL;
            free(before.base.resume);
            before.base.resume = NULL;
            const char *key = sft_run_config_first_difference(&before.base, &now);
            if (key)
                rc = sft_errf(err,
                              "--resume: %s differs from the sweep in %s (%s); continue it with the same settings: "
                              "sft sweep --out %s --resume reads them",
                              key, dir, path, dir);
            sft_run_config_free(&now);
        }
    }
    sft_sweep_config_free(&before);
    return rc;
}

/* ---------------------------------------------------------------- sweep */

int sft_sweep_run(const sft_sweep_config *c, const sft_sweep_options *o, sft_sweep_result *r, sft_err *err) {
    static const sft_sweep_options quiet = {0};
    if (!o) o = &quiet;
    memset(r, 0, sizeof *r);
    r->best = -1;
    double start = now_s();
    if (sft_sweep_config_check(c, err)) return -1;
    const char *resume = c->base.resume;
    if (resume && strcmp(resume, SFT_RUN_RESUME_LATEST)) {
        char a[4096], b[4096];
        if (!realpath(resume, a) || !realpath(c->base.out, b) || strcmp(a, b))
            return sft_errf(err, "--resume continues the sweep in --out (%s); give --resume alone, not '%s'",
                            c->base.out, resume);
    }
    sweep_run s = {.c = c, .o = o, .r = r, .parent = getpid()};
    snprintf(s.dir, sizeof s.dir, "%s", c->base.out);
    /* Threads: all of them for one trial at a time, split for several. */
    int64_t threads = c->base.threads;
    if (threads == 0) {
        /* the cores this process may use (taskset, cpusets), else all online */
        cpu_set_t cpus;
        long cores = sched_getaffinity(0, sizeof cpus, &cpus) ? sysconf(_SC_NPROCESSORS_ONLN) : CPU_COUNT(&cpus);
        threads = cores > 0 ? cores : 1;
    }
    size_t planned = trial_count_of(c);
    s.parallel = (int)(c->parallel < (int64_t)planned ? c->parallel : (int64_t)planned);
    if (s.parallel > 64) s.parallel = 64;
    s.threads_per_trial = threads / s.parallel > 0 ? threads / s.parallel : 1;
    if (plan_trials(c, s.dir, s.threads_per_trial, &s.plan, &s.n, err)) return -1;
    int rc = -1, lock_fd = -1, signals = 0;
    r->trial_count = s.n;
    r->trials = calloc((size_t)s.n, sizeof *r->trials);
    if (!r->trials) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < s.n; i++) {
        sft_sweep_trial *t = &r->trials[i];
        snprintf(t->name, sizeof t->name, "%s", s.plan[i].name);
        snprintf(t->params_json, sizeof t->params_json, "%s", s.plan[i].params_json);
        t->lr = s.plan[i].cfg.lr;
        t->best_val_loss = t->first_val_loss = t->final_train_loss = NAN;
        t->best_step = -1;
        snprintf(t->verdict, sizeof t->verdict, "none");
    }
    plan_rungs(&s);

    /* The folder: a new sweep, or the one to resume; one process at a time. */
    char path[4300];
    if (sft_path_join(path, sizeof path, s.dir, "sweep.json", err)) goto done;
    int exists = sft_file_exists(path);
    if (!resume && exists) {
        sft_errf(err, "%s already holds a sweep (sweep.json): continue it with --resume, or choose another --out",
                 s.dir);
        goto done;
    }
    if (resume && !exists) {
        sft_errf(err, "--resume: %s holds no sweep to continue (no sweep.json)", s.dir);
        goto done;
    }
    if (!resume && sft_dir_exists(s.dir)) {
        char trials[4300];
        if (sft_path_join(trials, sizeof trials, s.dir, "trials", err)) goto done;
        if (sft_dir_exists(trials)) {
            sft_errf(err, "%s already holds trials/: choose another --out", s.dir);
            goto done;
        }
    }
    if (sft_mkdir_p(s.dir, err)) goto done;
    if (realpath(s.dir, r->sweep_dir) == NULL) snprintf(r->sweep_dir, sizeof r->sweep_dir, "%s", s.dir);
    if (sft_path_join(path, sizeof path, s.dir, ".sweep.lock", err)) goto done;
    lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) {
        sft_err_errno(err, path);
        goto done;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB)) {
        sft_errf(err, "%s: another sft sweep is running in this folder (or one of its trials still is)", s.dir);
        goto done;
    }
    if (resume) {
        if (load_state(&s, err) || same_base_as_before(c, s.dir, err)) goto done;
        r->resumed = 1;
    }
    char *yaml = sft_sweep_config_to_yaml(c, err);
    if (!yaml) goto done;
    int yaml_rc = sft_path_join(path, sizeof path, s.dir, "sweep.yaml", err);
    if (!yaml_rc) yaml_rc = sft_write_file_atomic(path, yaml, strlen(yaml), err);
    free(yaml);
    if (yaml_rc || save_state(&s, err)) goto done;
    if (o->handle_signals) {
        if (sft_signals_install(NULL, err)) goto done;
        signals = 1;
    }
    {
        int done_count = 0;
        for (int i = 0; i < s.n; i++) done_count += r->trials[i].status >= SFT_TRIAL_FINISHED;
        say(&s, "sweep: %d trials in %s, %d at a time with %lld thread%s each%s", s.n, s.dir, s.parallel,
            (long long)s.threads_per_trial, s.threads_per_trial == 1 ? "" : "s",
            s.rung_count > 1 ? ", pruned by successive halving at steps" : "");
        for (int k = 0; s.rung_count > 1 && k < s.rung_count - 1; k++) say(&s, " %lld", (long long)s.budgets[k]);
        say(&s, "\n");
        if (resume) say(&s, "sweep: resuming; %d of %d trials are done and will not run again\n", done_count, s.n);
    }
    for (; s.rung < s.rung_count; s.rung++) {
        int64_t budget = s.budgets[s.rung];
        int queue[SFT_SWEEP_MAX_TRIALS], queued = 0;
        for (int i = 0; i < s.n; i++) {
            const sft_sweep_trial *t = &r->trials[i];
            if (t->status != SFT_TRIAL_PENDING && t->status != SFT_TRIAL_RUNNING) continue;
            if (budget > 0 && t->steps >= budget) continue;
            queue[queued++] = i;
        }
        int q = run_queue(&s, queue, queued, budget, err);
        if (q < 0) {
            sft_err save_err;
            save_state(&s, &save_err);
            goto done;
        }
        if (q > 0) break;
        if (s.rung + 1 < s.rung_count) {
            prune_rung(&s, budget);
            s.rung++;
            if (save_state(&s, err)) goto done;
            s.rung--;
        }
    }
    if (save_state(&s, err)) goto done;
    if (r->interrupted) {
        rc = 0;
        goto done;
    }
    mark_exclusions(r);
    r->best = select_best(r);
    make_advice(r);
    if (r->best >= 0) {
        char trial_best[4400];
        snprintf(trial_best, sizeof trial_best, "%s/best", s.plan[r->best].cfg.out);
        if (sft_path_join(r->best_dir, sizeof r->best_dir, s.dir, "best", err)) goto done;
        if (!sft_dir_exists(trial_best)) {
            sft_errf(err, "trial %s has no best/ folder (%s)", r->trials[r->best].name, trial_best);
            goto done;
        }
        if (copy_best(trial_best, r->best_dir, err)) goto done;
    }
    if (write_summary(&s, err)) goto done;
    if (write_report(&s, NULL, err)) {
        /* The sweep's results stand without the page: say it, do not fail. */
        say(&s, "sweep: report not written: %s\n", err->msg);
        r->report_path[0] = 0;
    }
    rc = 0;
done:
    if (signals) sft_signals_uninstall();
    if (lock_fd >= 0) close(lock_fd);
    plan_free(s.plan, s.n);
    r->wall_s = now_s() - start;
    return rc;
}

int sft_sweep_report(const char *sweep_dir, const char *out_html, char *html_path, size_t cap, sft_err *err) {
    sft_sweep_result r;
    memset(&r, 0, sizeof r);
    r.best = -1;
    sweep_run s = {.r = &r};
    snprintf(s.dir, sizeof s.dir, "%s", sweep_dir);
    char path[4200];
    if (sft_path_join(path, sizeof path, sweep_dir, "sweep.json", err)) return -1;
    json_t *root = sft_json_load_file(path, err);
    if (!root) return -1;
    json_t *trials = json_object_get(root, "trials");
    int rc = -1;
    if (!json_is_array(trials) || json_array_size(trials) > SFT_SWEEP_MAX_TRIALS) {
        sft_errf(err, "%s: \"trials\" must be a list of at most %d trials", path, SFT_SWEEP_MAX_TRIALS);
        goto done;
    }
    r.trial_count = s.n = (int)json_array_size(trials);
    if (!(r.trials = calloc(r.trial_count ? (size_t)r.trial_count : 1, sizeof *r.trials))) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < r.trial_count; i++) {
        json_t *t = json_array_get(trials, (size_t)i);
        char ctx[4300];
        const char *name;
        snprintf(ctx, sizeof ctx, "%s: trials[%d]", path, i);
        if (sft_json_get_string(t, "name", &name, ctx, err) || parse_trial(t, &r.trials[i], ctx, err) ||
            sft_json_get_number(json_object_get(t, "params"), "lr", &r.trials[i].lr, ctx, err))
            goto done;
        snprintf(r.trials[i].name, sizeof r.trials[i].name, "%s", name);
    }
    mark_exclusions(&r);
    r.best = select_best(&r);
    make_advice(&r);
    rc = write_report(&s, out_html, err);
    if (!rc && html_path) snprintf(html_path, cap, "%s", r.report_path);
done:
    json_decref(root);
    sft_sweep_result_free(&r);
    return rc;
}

void sft_sweep_result_free(sft_sweep_result *r) {
    free(r->trials);
    r->trials = NULL;
    r->trial_count = 0;
}
