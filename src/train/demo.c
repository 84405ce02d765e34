/* demo.c: `sft demo` (see demo.h): generated data with held-out prompts,
 * a small model from scratch, exact-match accuracy before and after, and
 * a three-learning-rate sweep as the training. The model work before and
 * after the sweep runs in child processes (sft_fork_call), so that this
 * process never starts OpenMP threads before the sweep forks its trials. */
#include "train/demo.h"

#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/pipeline.h"
#include "io/file.h"
#include "io/json.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/session.h"
#include "monitor/curve.h"
#include "monitor/readers.h"
#include "train/sweep.h"

/* The recipe, tuned so that on two idle cores the whole demo takes about
 * three minutes and the chosen run ends with a validation loss far below
 * half its first value and most held-out answers right (README, "Demo").
 * Operands up to 20 keep the arithmetic learnable by a 0.9M-parameter
 * model in that time. */
#define DEMO_RECORDS 16000
#define DEMO_VAL_RECORDS 150
#define DEMO_HELDOUT_PER_TASK 20
#define DEMO_MAX_NUMBER 20
#define DEMO_MAX_STEPS 2000
#define DEMO_BATCH 16
#define DEMO_EVAL_EVERY 50
#define DEMO_WARMUP 30
static const char *const demo_lrs = "0.0003,0.001,0.003";

void sft_demo_options_default(sft_demo_options *o) {
    memset(o, 0, sizeof *o);
    o->out_dir = "runs/demo";
    o->assets_dir = "assets/demo-model";
    o->progress = 1;
    o->seed = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(const sft_demo_options *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const sft_demo_options *o, const char *fmt, ...) {
    if (!o->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->log, fmt, ap);
    va_end(ap);
    fflush(o->log);
}

/* ------------------------------------------------------------ the folder */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* An earlier demo's folder is replaced (only the names a demo writes);
 * any other non-empty folder is refused. */
static int prepare_out(const char *out, sft_err *err) {
    if (!sft_dir_exists(out)) return sft_mkdir_p(out, err);
    char marker[4200];
    if (sft_path_join(marker, sizeof marker, out, "demo.json", err)) return -1;
    DIR *d = opendir(out);
    if (!d) return sft_err_errno(err, out);
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    if (empty) return 0;
    if (!sft_file_exists(marker))
        return sft_errf(err, "%s is not empty and holds no earlier demo (demo.json): choose another --out", out);
    static const char *const names[] = {"demo.json", "data", "model", "sweep"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[4200];
        if (sft_path_join(path, sizeof path, out, names[i], err)) return -1;
        if ((sft_dir_exists(path) || sft_file_exists(path)) && nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS))
            return sft_err_errno(err, path);
    }
    return 0;
}

/* ------------------------------------------------------------------ data */

typedef struct heldout_set {
    char (*prompt)[160];
    char (*answer)[64];
    int *task;
    int count;
} heldout_set;

static int heldout_has(const heldout_set *h, const char *prompt, size_t len) {
    for (int i = 0; i < h->count; i++)
        if (strlen(h->prompt[i]) == len && !memcmp(h->prompt[i], prompt, len)) return 1;
    return 0;
}

/* Copies the records of `from` whose user prompt is not held out into `to`
 * (line by line: generated records are one JSON object a line). */
static int drop_heldout(const char *from, const char *to, const heldout_set *h, int64_t *kept, int64_t *dropped,
                        sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(from, &text, &len, err)) return -1;
    char *out = malloc(len + 1);
    if (!out) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    size_t used = 0;
    size_t line_no = 0;
    int rc = 0;
    *kept = *dropped = 0;
    for (char *line = text; line < text + len && !rc;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        line_no++;
        json_t *j = sft_json_loadb(line, n, from, err);
        json_t *first = j ? json_array_get(json_object_get(j, "messages"), 0) : NULL;
        const char *prompt = first ? json_string_value(json_object_get(first, "content")) : NULL;
        if (!prompt) {
            rc = j ? sft_errf(err, "%s:%zu: a generated record without messages[0].content", from, line_no) : -1;
        } else if (heldout_has(h, prompt, strlen(prompt))) {
            (*dropped)++;
        } else {
            memcpy(out + used, line, n);
            used += n;
            out[used++] = '\n';
            (*kept)++;
        }
        json_decref(j);
        line = nl ? nl + 1 : text + len;
    }
    if (!rc) rc = sft_write_file_atomic(to, out, used, err);
    free(out);
    free(text);
    if (!rc) unlink(from);
    return rc;
}

static int write_heldout(const char *path, const heldout_set *h, sft_err *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    for (int i = 0; i < h->count; i++) {
        fprintf(f, "{\"task\":\"%s\",\"answer\":", sft_generate_task_names[h->task[i]]);
        sft_json_write_string(f, h->answer[i], strlen(h->answer[i]));
        fputs(",\"messages\":[{\"role\":\"user\",\"content\":", f);
        sft_json_write_string(f, h->prompt[i], strlen(h->prompt[i]));
        fputs("},{\"role\":\"assistant\",\"content\":", f);
        sft_json_write_string(f, h->answer[i], strlen(h->answer[i]));
        fputs("}]}\n", f);
    }
    if (fclose(f)) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

/* ------------------------------------------------- work in child processes */

typedef struct {
    const char *config, *tokenizer, *out;
    uint64_t seed;
} init_job;

static int init_in_child(void *ctx, void *out, size_t out_size, sft_err *err) {
    (void)out, (void)out_size;
    const init_job *j = ctx;
    return sft_model_init_dir(j->config, j->tokenizer, j->out, j->seed, err);
}

typedef struct {
    const char *model_dir;
    const heldout_set *h;
    int threads;
} accuracy_job;

typedef struct {
    int correct[SFT_DEMO_MAX_TASKS];
    int64_t parameters;
} accuracy_out;

/* Trims ASCII white space at both ends into [*a, *b). */
static void trim(const char *s, size_t len, size_t *a, size_t *b) {
    *a = 0, *b = len;
    while (*a < *b && isspace((unsigned char)s[*a])) (*a)++;
    while (*b > *a && isspace((unsigned char)s[*b - 1])) (*b)--;
}

/* Greedy generation for every held-out prompt; exact match with the
 * answer, surrounding white space ignored (as sft eval --generate). */
static int accuracy_in_child(void *ctx, void *out, size_t out_size, sft_err *err) {
    (void)out_size;
    const accuracy_job *j = ctx;
    accuracy_out *a = out;
    memset(a, 0, sizeof *a);
    sft_set_threads(j->threads);
    sft_session s;
    if (sft_session_open(&s, j->model_dir, NULL, NULL, 1, err)) return -1;
    a->parameters = (int64_t)s.model->weights.numel;
    sft_sampling greedy = {.greedy = 1};
    int rc = 0;
    for (int i = 0; i < j->h->count && !rc; i++) {
        sft_chat_message m = {SFT_ROLE_USER, j->h->prompt[i], strlen(j->h->prompt[i])};
        char *text = NULL;
        int n;
        /* an answer is at most ~14 tokens; a few more tell a run-on apart */
        rc = sft_session_generate(&s, &m, 1, NULL, 24, &greedy, &text, &n, err);
        if (rc) break;
        size_t a0, a1, b0, b1;
        const char *ref = j->h->answer[i];
        trim(text, strlen(text), &a0, &a1);
        trim(ref, strlen(ref), &b0, &b1);
        if (a1 - a0 == b1 - b0 && !memcmp(text + a0, ref + b0, a1 - a0)) a->correct[j->h->task[i]]++;
        free(text);
    }
    sft_session_close(&s);
    return rc;
}

/* ---------------------------------------------------------------- demo */

static int count_tasks(void) {
    int n = 0;
    while (sft_generate_task_names[n] && n < SFT_DEMO_MAX_TASKS) n++;
    return n;
}

static void print_accuracy(const sft_demo_options *o, const char *label, const sft_demo_result *r,
                           const int *correct, int total) {
    say(o, "%s: %d/%d = %.1f%% exact match (greedy)\n", label, total, r->heldout,
        r->heldout ? 100.0 * total / r->heldout : 0.0);
    (void)correct;
}

int sft_demo_run(const sft_demo_options *opts, sft_demo_result *r, sft_err *err) {
    sft_demo_options o;
    sft_demo_options_default(&o);
    if (opts) {
        o = *opts;
        if (!o.out_dir) o.out_dir = "runs/demo";
        if (!o.assets_dir) o.assets_dir = "assets/demo-model";
    }
    memset(r, 0, sizeof *r);
    double start = now_s();
    int64_t records = o.records > 0 ? o.records : DEMO_RECORDS;
    int64_t max_steps = o.max_steps > 0 ? o.max_steps : DEMO_MAX_STEPS;
    int64_t eval_every = max_steps / 20 > 0 ? (max_steps / 20 < DEMO_EVAL_EVERY ? max_steps / 20 : DEMO_EVAL_EVERY) : 1;
    char config[4200], tok_config[4200];
    if (sft_path_join(config, sizeof config, o.assets_dir, "config.json", err) ||
        sft_path_join(tok_config, sizeof tok_config, o.assets_dir, "tokenizer.json", err))
        return -1;
    if (!sft_file_exists(config) || !sft_file_exists(tok_config))
        return sft_errf(err, "%s: the demo's model files (config.json, tokenizer.json) are missing; run sft demo from "
                             "the repository's root or give --assets DIR",
                        o.assets_dir);
    if (prepare_out(o.out_dir, err)) return -1;
    char data_dir[4200], model_dir[4200], sweep_dir[4200], train[4300], val[4300], heldout_path[4300], tmp[4300];
    if (sft_path_join(data_dir, sizeof data_dir, o.out_dir, "data", err) ||
        sft_path_join(model_dir, sizeof model_dir, o.out_dir, "model", err) ||
        sft_path_join(sweep_dir, sizeof sweep_dir, o.out_dir, "sweep", err) || sft_mkdir_p(data_dir, err))
        return -1;
    snprintf(train, sizeof train, "%s/train.jsonl", data_dir);
    snprintf(val, sizeof val, "%s/val.jsonl", data_dir);
    snprintf(heldout_path, sizeof heldout_path, "%s/heldout.jsonl", data_dir);

    /* 1. data: held-out prompts first (their own seed), then training and
     * validation records without any prompt that is held out */
    r->task_count = count_tasks();
    heldout_set h = {0};
    int per_task = DEMO_HELDOUT_PER_TASK, cap = per_task * r->task_count;
    h.prompt = calloc((size_t)cap, sizeof *h.prompt);
    h.answer = calloc((size_t)cap, sizeof *h.answer);
    h.task = calloc((size_t)cap, sizeof *h.task);
    int rc = -1;
    if (!h.prompt || !h.answer || !h.task) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (int t = 0; t < r->task_count; t++) {
        snprintf(r->task_names[t], sizeof r->task_names[t], "%s", sft_generate_task_names[t]);
        /* distinct prompts only: a repeated one would count twice */
        for (uint64_t index = 0; r->heldout_per_task[t] < per_task && index < 10000; index++) {
            char prompt[160], answer[64];
            if (sft_generate_one(sft_generate_task_names[t], o.seed + 1000, index, DEMO_MAX_NUMBER, prompt,
                                 sizeof prompt, answer, sizeof answer, err))
                goto done;
            if (heldout_has(&h, prompt, strlen(prompt))) continue;
            snprintf(h.prompt[h.count], sizeof h.prompt[0], "%s", prompt);
            snprintf(h.answer[h.count], sizeof h.answer[0], "%s", answer);
            h.task[h.count++] = t;
            r->heldout_per_task[t]++;
        }
    }
    r->heldout = h.count;
    sft_generate_options g;
    sft_generate_options_default(&g);
    g.max_number = DEMO_MAX_NUMBER;
    g.count = records;
    g.seed = o.seed;
    int64_t dropped_val;
    snprintf(tmp, sizeof tmp, "%s/train.all.jsonl", data_dir);
    if (sft_data_generate(&g, tmp, err) || drop_heldout(tmp, train, &h, &r->train_records, &r->dropped_heldout, err))
        goto done;
    g.count = DEMO_VAL_RECORDS;
    g.seed = o.seed + 1;
    snprintf(tmp, sizeof tmp, "%s/val.all.jsonl", data_dir);
    if (sft_data_generate(&g, tmp, err) || drop_heldout(tmp, val, &h, &r->val_records, &dropped_val, err)) goto done;
    r->dropped_heldout += dropped_val;
    if (write_heldout(heldout_path, &h, err)) goto done;
    say(&o, "data: %lld training and %lld validation records of %d tasks (operands up to %d), %d held-out prompts "
            "(%lld records with a held-out prompt left out) in %s\n",
        (long long)r->train_records, (long long)r->val_records, r->task_count, DEMO_MAX_NUMBER, r->heldout,
        (long long)r->dropped_heldout, data_dir);

    /* 2. the model, from scratch */
    init_job ij = {.config = config, .tokenizer = o.assets_dir, .out = model_dir, .seed = o.seed};
    if (sft_fork_call(init_in_child, &ij, NULL, 0, err)) goto done;

    /* 3. accuracy before */
    /* every core this process may run on (taskset, a container's cpuset), not every core of the machine */
    cpu_set_t cpus;
    int threads = o.threads > 0 ? (int)o.threads
                                : (sched_getaffinity(0, sizeof cpus, &cpus) ? (int)sysconf(_SC_NPROCESSORS_ONLN)
                                                                            : CPU_COUNT(&cpus));
    if (threads < 1) threads = 1;
    accuracy_job aj = {.model_dir = model_dir, .h = &h, .threads = 1};
    accuracy_out before;
    if (sft_fork_call(accuracy_in_child, &aj, &before, sizeof before, err)) goto done;
    say(&o, "model: a Llama-family model of %.2fM parameters from %s, initialised at random (seed %llu) in %s\n",
        (double)before.parameters / 1e6, config, (unsigned long long)o.seed, model_dir);
    for (int t = 0; t < r->task_count; t++) r->correct_before[t] = before.correct[t], r->total_before += before.correct[t];
    r->accuracy_before = r->heldout ? (double)r->total_before / r->heldout : 0;
    print_accuracy(&o, "accuracy before training", r, r->correct_before, r->total_before);

    /* 4. the training: a sweep of three learning rates side by side */
    sft_sweep_config sc;
    sft_sweep_config_init(&sc);
    sft_sweep_result sr;
    memset(&sr, 0, sizeof sr);
    char text[64];
    const sft_run_key *k;
#define SET(key, value)                                                                                             \
    k = sft_run_key_find(key);                                                                                      \
    if (sft_run_config_set_text(&sc.base, k, value, key, SFT_RUN_FROM_FLAG, err)) goto sweep_done;
    SET("model", model_dir);
    SET("data", train);
    SET("val_data", val);
    SET("out", sweep_dir);
    snprintf(text, sizeof text, "%lld", (long long)max_steps);
    SET("max_steps", text);
    snprintf(text, sizeof text, "%d", DEMO_BATCH);
    SET("batch_size", text);
    snprintf(text, sizeof text, "%d", DEMO_WARMUP < max_steps / 10 ? DEMO_WARMUP : (int)(max_steps / 10 + 1));
    SET("warmup_steps", text);
    snprintf(text, sizeof text, "%lld", (long long)eval_every);
    SET("eval_every", text);
    snprintf(text, sizeof text, "%lld", (long long)(eval_every * 4));
    SET("save_every", text);
    SET("keep_checkpoints", "1");
    snprintf(text, sizeof text, "%d", threads);
    SET("threads", text);
    snprintf(text, sizeof text, "%llu", (unsigned long long)o.seed);
    SET("seed", text);
#undef SET
    if (sft_sweep_set_values(&sc, "lr", demo_lrs, "demo", err)) goto sweep_done;
    sc.parallel = 3;
    say(&o, "training: %lld steps of %d sequences at each of the learning rates %s, side by side\n",
        (long long)max_steps, DEMO_BATCH, demo_lrs);
    sft_sweep_options so = {.log = o.log, .progress = o.progress, .handle_signals = 1, .program_version = "0.1.0",
                            .command_line = "sft demo"};
    if (sft_sweep_run(&sc, &so, &sr, err)) goto sweep_done;
    if (sr.interrupted) {
        sft_errf(err, "interrupted; the sweep can be continued with: sft sweep --out %s --resume", sweep_dir);
        goto sweep_done;
    }
    if (sr.best < 0) {
        sft_errf(err, "no learning rate of the demo's sweep trained without failing (see %s)", sr.report_path);
        goto sweep_done;
    }
    {
        const sft_sweep_trial *b = &sr.trials[sr.best];
        snprintf(r->chosen_trial, sizeof r->chosen_trial, "%s", b->name);
        r->chosen_lr = b->lr;
        r->best_val_loss = b->best_val_loss;
        r->best_step = b->best_step;
        snprintf(r->sweep_dir, sizeof r->sweep_dir, "%s", sr.sweep_dir);
        snprintf(r->report_path, sizeof r->report_path, "%s", sr.report_path);
        snprintf(r->best_dir, sizeof r->best_dir, "%s", sr.best_dir);
        snprintf(r->trial_report_path, sizeof r->trial_report_path, "%s/trials/%s/report.html", sweep_dir, b->name);
        /* the chosen run's first and last validation losses */
        char run[4400];
        snprintf(run, sizeof run, "%s/trials/%s", sweep_dir, b->name);
        sft_curve curve;
        sft_curve_init(&curve);
        if (sft_curve_read(run, &curve, err)) {
            sft_curve_free(&curve);
            goto sweep_done;
        }
        if (curve.eval_count) {
            r->first_val_loss = curve.eval[0].val_loss, r->first_val_step = curve.eval[0].step;
            r->last_val_loss = curve.eval[curve.eval_count - 1].val_loss;
            r->last_val_step = curve.eval[curve.eval_count - 1].step;
        }
        sft_curve_free(&curve);
    }
    rc = 0;
sweep_done:
    sft_sweep_result_free(&sr);
    sft_sweep_config_free(&sc);
    if (rc) goto done;
    rc = -1;

    /* 5. accuracy after, with the chosen best checkpoint */
    aj.model_dir = r->best_dir;
    aj.threads = threads;
    accuracy_out after;
    if (sft_fork_call(accuracy_in_child, &aj, &after, sizeof after, err)) goto done;
    for (int t = 0; t < r->task_count; t++) r->correct_after[t] = after.correct[t], r->total_after += after.correct[t];
    r->accuracy_after = r->heldout ? (double)r->total_after / r->heldout : 0;
    r->wall_s = now_s() - start;

    /* demo.json */
    {
        char *json = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&json, &len);
        if (!f) {
            sft_errf(err, "out of memory");
            goto done;
        }
        fprintf(f, "{\"chosen_trial\": \"%s\", \"chosen_lr\": %.17g,\n", r->chosen_trial, r->chosen_lr);
        fprintf(f, " \"val_loss\": {\"first\": %.17g, \"first_step\": %lld, \"last\": %.17g, \"last_step\": %lld, "
                   "\"best\": %.17g, \"best_step\": %lld},\n",
                r->first_val_loss, (long long)r->first_val_step, r->last_val_loss, (long long)r->last_val_step,
                r->best_val_loss, (long long)r->best_step);
        fprintf(f, " \"accuracy\": {\"heldout\": %d, \"before\": %d, \"after\": %d, \"per_task\": {", r->heldout,
                r->total_before, r->total_after);
        for (int t = 0; t < r->task_count; t++)
            fprintf(f, "%s\"%s\": {\"heldout\": %d, \"before\": %d, \"after\": %d}", t ? ", " : "", r->task_names[t],
                    r->heldout_per_task[t], r->correct_before[t], r->correct_after[t]);
        fprintf(f, "}},\n \"train_records\": %lld, \"val_records\": %lld, \"wall_s\": %.3f, \"threads\": %d}\n",
                (long long)r->train_records, (long long)r->val_records, r->wall_s, threads);
        fclose(f);
        char path[4300];
        snprintf(path, sizeof path, "%s/demo.json", o.out_dir);
        int wrc = json ? sft_write_file_atomic(path, json, len, err) : sft_errf(err, "out of memory");
        free(json);
        if (wrc) goto done;
    }
    rc = 0;
done:
    free(h.prompt);
    free(h.answer);
    free(h.task);
    return rc;
}
