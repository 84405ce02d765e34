/* test_sweep.c: sft sweep (train/sweep.h) on a tiny Llama model made from
 * the demo tokenizer: a far-too-low, a reasonable and a far-too-high
 * learning rate (the choice, the verdicts, summary.json, best/, the report
 * with its advice); ties to the smaller learning rate; a sweep interrupted
 * in its second trial resumes without touching the first; successive
 * halving; early stopping on a run that overfits (in sft train); bad input.
 *
 * Every training runs in a child process (the sweep forks its trials;
 * the other tests go through sft_fork_call): GNU OpenMP cannot run in a
 * process forked after its parent ran a parallel region, so this process
 * never computes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/pipeline.h"
#include "io/file.h"
#include "io/json.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/session.h"
#include "test.h"
#include "train/dataset.h"
#include "train/sweep.h"
#include "train/trainer.h"

#define DEMO "assets/demo-model"

static const char tiny_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 365, "
    "\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2, \"head_dim\": 8, \"hidden_act\": \"silu\", \"max_position_embeddings\": 256, "
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, \"bos_token_id\": null, "
    "\"eos_token_id\": 364, \"pad_token_id\": 362, \"torch_dtype\": \"float32\"}\n";

static char root_dir[64];

static void remove_root(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", root_dir);
}

static int init_model(void *ctx, void *out, size_t out_size, sft_err *err) {
    (void)out, (void)out_size;
    const char *dir = ctx;
    char config[256], model[256];
    snprintf(config, sizeof config, "%s/tiny.json", dir);
    snprintf(model, sizeof model, "%s/model", dir);
    return sft_model_init_dir(config, DEMO, model, 7, err);
}

/* One shared fixture folder (removed at exit): the tiny model, generated
 * training and validation data, and for early stopping a small training
 * set that a high learning rate memorises. */
static const char *root(void) {
    char *dir = root_dir;
    if (dir[0]) return dir;
    snprintf(dir, sizeof root_dir, "/tmp/sft-test-sweep-XXXXXX");
    if (!mkdtemp(dir)) abort();
    atexit(remove_root);
    char path[256];
    snprintf(path, sizeof path, "%s/cache", dir);
    setenv("SFT_CACHE_DIR", path, 1);
    snprintf(path, sizeof path, "%s/tiny.json", dir);
    FILE *f = fopen(path, "w");
    fputs(tiny_config, f);
    fclose(f);
    sft_err err;
    if (sft_fork_call(init_model, dir, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    sft_generate_options g;
    sft_generate_options_default(&g);
    g.tasks = "reverse_word,uppercase,word_length";
    g.count = 240;
    g.seed = 5;
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    if (sft_data_generate(&g, path, &err)) abort();
    g.count = 60;
    g.seed = 6;
    snprintf(path, sizeof path, "%s/val.jsonl", dir);
    if (sft_data_generate(&g, path, &err)) abort();
    g.tasks = "add";
    g.count = 4;
    g.seed = 7;
    snprintf(path, sizeof path, "%s/few.jsonl", dir);
    if (sft_data_generate(&g, path, &err)) abort();
    g.count = 40;
    g.seed = 8;
    snprintf(path, sizeof path, "%s/few_val.jsonl", dir);
    if (sft_data_generate(&g, path, &err)) abort();
    return dir;
}

static void set(sft_run_config *cfg, const char *key, const char *value) {
    sft_err err;
    const sft_run_key *k = sft_run_key_find(key);
    if (!k || sft_run_config_set_text(cfg, k, value, key, SFT_RUN_FROM_FLAG, &err)) {
        fprintf(stderr, "set %s: %s\n", key, k ? err.msg : "no such key");
        abort();
    }
}

/* A sweep into folder `name` under the root: the tiny model, 40 steps of
 * 8 sequences, an evaluation every 5 steps, one thread. */
static void base_sweep(sft_sweep_config *c, const char *name) {
    const char *r = root();
    char path[256];
    sft_sweep_config_init(c);
    snprintf(path, sizeof path, "%s/model", r);
    set(&c->base, "model", path);
    snprintf(path, sizeof path, "%s/train.jsonl", r);
    set(&c->base, "data", path);
    snprintf(path, sizeof path, "%s/val.jsonl", r);
    set(&c->base, "val_data", path);
    snprintf(path, sizeof path, "%s/%s", r, name);
    set(&c->base, "out", path);
    set(&c->base, "max_steps", "40");
    set(&c->base, "batch_size", "8");
    set(&c->base, "warmup_steps", "2");
    set(&c->base, "eval_every", "5");
    set(&c->base, "save_every", "0");
    set(&c->base, "threads", "1");
}

static char *read_text(const char *path) {
    char *text;
    size_t len;
    sft_err err;
    return sft_read_file(path, &text, &len, &err) ? NULL : text;
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    sft_err err;
    if (sft_read_file(a, &x, &nx, &err)) return 0;
    if (sft_read_file(b, &y, &ny, &err)) {
        free(x);
        return 0;
    }
    int same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

static int has_kind(const sft_sweep_trial *t, const char *kind) {
    for (int k = 0; k < t->kind_count; k++)
        if (!strcmp(t->kinds[k], kind)) return 1;
    return 0;
}

/* The keys of a JSON object, sorted and joined with ','. */
static void keys_of(const json_t *obj, char *out, size_t cap) {
    const char *names[32];
    size_t n = 0;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        (void)value;
        if (n < 32) names[n++] = key;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? "," : "", names[i]);
}

TEST(lr_sweep_picks_the_reasonable_rate_and_flags_the_extremes) {
    sft_sweep_config c;
    base_sweep(&c, "three");
    sft_err err;
    /* 1e-6 barely moves the weights in 40 steps; 1e-2 learns the tasks'
     * format; 30 throws every weight ~30 per step: the loss explodes. */
    CHECK_INT(sft_sweep_set_values(&c, "lr", "1e-6, 0.01, 30", "--lr", &err), 0);
    sft_sweep_result r;
    int rc = sft_sweep_run(&c, NULL, &r, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    CHECK_INT(rc, 0);
    CHECK_INT(r.trial_count, 3);
    CHECK_INT(r.best, 1);
    if (r.trial_count == 3) {
        const sft_sweep_trial *low = &r.trials[0], *mid = &r.trials[1], *high = &r.trials[2];
        CHECK_STR(low->name, "lr-1e-06");
        CHECK_STR(mid->name, "lr-0.01");
        CHECK_STR(high->name, "lr-30");
        CHECK(strcmp(low->verdict, "healthy") != 0);
        CHECK(has_kind(low, "underfitting"));
        CHECK(!low->excluded);
        CHECK_STR(high->verdict, "failing");
        CHECK(has_kind(high, "divergence") || has_kind(high, "non_finite") || has_kind(high, "loss_spike"));
        CHECK(high->excluded);
        CHECK(mid->best_val_loss < low->best_val_loss);
        CHECK_INT(mid->status, SFT_TRIAL_FINISHED);
        /* best/ is the chosen trial's best checkpoint, byte for byte */
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/three/best/model.safetensors", root());
        snprintf(b, sizeof b, "%s/three/trials/lr-0.01/best/model.safetensors", root());
        CHECK(same_file(a, b));
        snprintf(a, sizeof a, "%s/three/best/config.json", root());
        CHECK(sft_file_exists(a));
    }
    /* summary.json: exactly SPEC.md's keys */
    json_t *summary = sft_json_load_file(r.summary_path, &err);
    CHECK(summary != NULL);
    if (summary) {
        char keys[512];
        keys_of(summary, keys, sizeof keys);
        CHECK_STR(keys, "best,metric,trials");
        CHECK_STR(json_string_value(json_object_get(summary, "metric")), "val_loss");
        CHECK_STR(json_string_value(json_object_get(summary, "best")), "lr-0.01");
        json_t *trials = json_object_get(summary, "trials");
        CHECK_INT(json_array_size(trials), 3);
        for (size_t i = 0; i < json_array_size(trials); i++) {
            json_t *t = json_array_get(trials, i);
            keys_of(t, keys, sizeof keys);
            CHECK_STR(keys, "best_step,best_val_loss,final_train_loss,findings,name,params,verdict,wall_s");
            double lr;
            CHECK_INT(sft_json_get_number(json_object_get(t, "params"), "lr", &lr, "params", &err), 0);
            CHECK(json_is_array(json_object_get(t, "findings")));
        }
        double lr;
        sft_json_get_number(json_object_get(json_array_get(trials, 1), "params"), "lr", &lr, "params", &err);
        CHECK_NEAR(lr, 0.01, 0);
        double best_loss;
        CHECK_INT(sft_json_get_number(json_array_get(trials, 1), "best_val_loss", &best_loss, "t", &err), 0);
        if (r.trial_count == 3) CHECK_NEAR(best_loss, r.trials[1].best_val_loss, 0);
    }
    json_decref(summary);
    /* the report: every trial, the choice, the advice, the PNG */
    char *html = read_text(r.report_path);
    CHECK(html != NULL);
    if (html) {
        CHECK(strstr(html, "Best run: <b>lr-0.01</b>") != NULL);
        CHECK(strstr(html, "<h2>Advice</h2>") != NULL);
        CHECK(strstr(html, "excluded: ") != NULL);
        CHECK(strstr(html, ">lr-30</text>") != NULL);
        /* sorted by best validation loss: the chosen trial's row first */
        char *first_row = strstr(html, "<tr class=\"best\">");
        char *low_row = strstr(html, "<td>lr-1e-06</td>");
        CHECK(first_row && low_row && first_row < low_row);
    }
    free(html);
    char png[512];
    snprintf(png, sizeof png, "%s/three/val_loss.png", root());
    CHECK(sft_file_exists(png));
    /* advice: the best rate is inside the range; the high one is excluded; the low one underfits */
    int inside = 0, excluded = 0, underfit = 0;
    for (int k = 0; k < r.advice_count; k++) {
        inside |= strstr(r.advice[k], "lies inside the range") != NULL;
        excluded |= strstr(r.advice[k], "lr-30") != NULL;
        underfit |= strstr(r.advice[k], "Underfitting: lr-1e-06") != NULL;
    }
    CHECK(inside && excluded && underfit);
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&c);
}

TEST(a_tie_goes_to_the_smaller_learning_rate) {
    sft_sweep_config c;
    base_sweep(&c, "tie");
    set(&c.base, "max_steps", "4");
    set(&c.base, "eval_every", "2");
    set(&c.base, "weight_decay", "0");
    sft_err err;
    /* AdamW moves each weight by about lr per step: 1e-12 and 2e-12 are far
     * below float32's resolution of weights near 0.02, so both runs keep the
     * initial weights and their validation losses are equal to the bit. */
    CHECK_INT(sft_sweep_set_values(&c, "lr", "2e-12,1e-12", "--lr", &err), 0);
    sft_sweep_result r;
    CHECK_INT(sft_sweep_run(&c, NULL, &r, &err), 0);
    CHECK_INT(r.trial_count, 2);
    if (r.trial_count == 2) {
        CHECK_NEAR(r.trials[0].best_val_loss, r.trials[1].best_val_loss, 0);
        CHECK_INT(r.best, 1);
        /* the best rate is the lowest tried: extend the range downward */
        CHECK(r.advice_count > 0 && strstr(r.advice[0], "lowest one tried") != NULL);
    }
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&c);
}

static int count_lines(const char *path, const char *needle) {
    char *text = read_text(path);
    int n = 0;
    for (char *p = text; p && (p = strstr(p, needle)); p++) n++;
    free(text);
    return n;
}

TEST(an_interrupted_sweep_resumes_without_rerunning_finished_trials) {
    sft_sweep_config c;
    base_sweep(&c, "resume");
    set(&c.base, "max_steps", "12");
    set(&c.base, "save_every", "4");
    sft_err err;
    CHECK_INT(sft_sweep_set_values(&c, "lr", "0.003,0.01,0.03", "--lr", &err), 0);
    /* The second trial stops after 6 steps as an interruption would. */
    sft_sweep_options o = {.stop_trial = 2, .stop_after_steps = 6};
    sft_sweep_result r;
    CHECK_INT(sft_sweep_run(&c, &o, &r, &err), 0);
    CHECK_INT(r.interrupted, -1);
    CHECK_INT(r.trials[0].status, SFT_TRIAL_FINISHED);
    CHECK_INT(r.trials[1].status, SFT_TRIAL_RUNNING);
    CHECK_INT(r.trials[1].steps, 6);
    CHECK_INT(r.trials[2].status, SFT_TRIAL_PENDING);
    sft_sweep_result_free(&r);
    char first_metrics[512], first_copy[512], second_metrics[512], summary[512];
    snprintf(first_metrics, sizeof first_metrics, "%s/resume/trials/lr-0.003/metrics.jsonl", root());
    snprintf(second_metrics, sizeof second_metrics, "%s/resume/trials/lr-0.01/metrics.jsonl", root());
    snprintf(summary, sizeof summary, "%s/resume/summary.json", root());
    CHECK(!sft_file_exists(summary)); /* no selection from a part of the sweep */
    snprintf(first_copy, sizeof first_copy, "%s/first-metrics.jsonl", root());
    char *before = read_text(first_metrics);
    CHECK(before != NULL);
    if (before) sft_write_file_atomic(first_copy, before, strlen(before), &err);
    free(before);
    struct stat st_before, st_after;
    CHECK_INT(stat(first_metrics, &st_before), 0);

    /* Without resume, the folder is refused. */
    CHECK_INT(sft_sweep_run(&c, NULL, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "already holds a sweep");
    sft_sweep_result_free(&r);
    /* Other values are not the same sweep. */
    sft_sweep_config other;
    base_sweep(&other, "resume");
    set(&other.base, "max_steps", "12");
    set(&other.base, "save_every", "4");
    set(&other.base, "resume", "true");
    CHECK_INT(sft_sweep_set_values(&other, "lr", "0.003,0.01", "--lr", &err), 0);
    CHECK_INT(sft_sweep_run(&other, NULL, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "plans other trials");
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&other);

    /* Nor are other training settings. */
    base_sweep(&other, "resume");
    set(&other.base, "max_steps", "14");
    set(&other.base, "save_every", "4");
    set(&other.base, "resume", "true");
    CHECK_INT(sft_sweep_set_values(&other, "lr", "0.003,0.01,0.03", "--lr", &err), 0);
    CHECK_INT(sft_sweep_run(&other, NULL, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "max_steps differs from the sweep");
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&other);

    set(&c.base, "resume", "true");
    CHECK_INT(sft_sweep_run(&c, NULL, &r, &err), 0);
    CHECK_INT(r.interrupted, 0);
    CHECK(r.resumed);
    CHECK_INT(r.trial_count, 3);
    if (r.trial_count == 3) {
        CHECK(!r.trials[0].ran_now);
        CHECK(r.trials[1].ran_now && r.trials[2].ran_now);
        for (int i = 0; i < 3; i++) CHECK_INT(r.trials[i].status, SFT_TRIAL_FINISHED);
        CHECK_INT(r.trials[1].steps, 12);
    }
    /* the first trial's files are untouched; the second has each step once */
    CHECK(same_file(first_metrics, first_copy));
    CHECK_INT(stat(first_metrics, &st_after), 0);
    CHECK(st_after.st_mtim.tv_sec == st_before.st_mtim.tv_sec && st_after.st_mtim.tv_nsec == st_before.st_mtim.tv_nsec);
    CHECK_INT(count_lines(second_metrics, "\"type\":\"train\""), 12);
    CHECK_INT(count_lines(second_metrics, "\"type\":\"train\",\"step\":6,"), 1);
    CHECK(sft_file_exists(summary));
    CHECK(r.best >= 0);
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&c);
}

TEST(successive_halving_prunes_all_but_the_best_third) {
    sft_sweep_config c;
    base_sweep(&c, "halving");
    set(&c.base, "max_steps", "30");
    sft_err err;
    CHECK_INT(sft_sweep_set_values(&c, "lr", "1e-6,0.003,0.01", "--lr", &err), 0);
    c.prune = SFT_SWEEP_PRUNE_HALVING;
    sft_sweep_result r;
    CHECK_INT(sft_sweep_run(&c, NULL, &r, &err), 0);
    /* 3 trials, factor 3: a rung at 30/3 = 10 steps keeps one */
    int pruned = 0, finished = -1;
    for (int i = 0; i < r.trial_count; i++) {
        if (r.trials[i].status == SFT_TRIAL_PRUNED) {
            pruned++;
            CHECK_INT(r.trials[i].steps, 10);
        }
        if (r.trials[i].status == SFT_TRIAL_FINISHED) finished = i;
    }
    CHECK_INT(pruned, 2);
    CHECK_INT(finished, 2);
    if (finished >= 0) CHECK_INT(r.trials[finished].steps, 30);
    CHECK_INT(r.best, 2);
    sft_sweep_result_free(&r);
    /* pruning needs max_steps */
    set(&c.base, "max_steps", "0");
    CHECK_INT(sft_sweep_config_check(&c, &err), -1);
    CHECK_ERR_HAS(err.msg, "needs max_steps");
    sft_sweep_config_free(&c);
}

/* ------------------------------------------------------ early stopping */

typedef struct {
    int rc;
    sft_train_result res;
    double best_dir_val_loss;
} early_out;

/* The validation loss of a model dir on a data file, as training computes it. */
static int val_loss_of(const char *model_dir, const char *data, double *loss, sft_err *err) {
    sft_session s;
    if (sft_session_open(&s, model_dir, NULL, NULL, 1, err)) return -1;
    sft_encoder enc;
    sft_dataset ds = {0};
    int rc = -1;
    if (sft_encoder_init(&enc, s.tok, s.tmpl, model_dir, err)) goto done;
    sft_dataset_options dopt = {.format = SFT_FORMAT_AUTO, .max_len = 1024};
    if (sft_dataset_load(&ds, &data, 1, &enc, &dopt, err)) goto done;
    int64_t longest = 1, tokens;
    for (size_t i = 0; i < ds.count; i++)
        if (ds.examples[i].len > longest) longest = ds.examples[i].len;
    if (sft_model_plan(s.model, 8, (int)longest, err)) goto done;
    rc = sft_eval_dataset(s.model, &ds, 8, (int32_t)s.model->cfg.pad_token_id, loss, &tokens, err);
done:
    sft_dataset_free(&ds);
    sft_session_close(&s);
    return rc;
}

static int train_overfitting(void *ctx, void *out, size_t out_size, sft_err *err) {
    (void)out_size;
    sft_run_config *cfg = ctx;
    early_out *o = out;
    o->rc = sft_train_run(cfg, NULL, &o->res, err);
    if (o->rc) return -1;
    return val_loss_of(o->res.best_dir, cfg->val_data, &o->best_dir_val_loss, err);
}

TEST(early_stopping_stops_at_the_expected_evaluation_with_best_at_the_minimum) {
    const char *r = root();
    sft_run_config cfg;
    sft_run_config_init(&cfg);
    char path[256];
    snprintf(path, sizeof path, "%s/model", r);
    set(&cfg, "model", path);
    snprintf(path, sizeof path, "%s/few.jsonl", r);
    set(&cfg, "data", path);
    snprintf(path, sizeof path, "%s/few_val.jsonl", r);
    set(&cfg, "val_data", path);
    snprintf(path, sizeof path, "%s/early", r);
    set(&cfg, "out", path);
    /* Four records, the whole set in each step, a high constant rate: the
     * model first learns the answers' form (validation falls), then
     * memorises the four sums (validation rises). */
    set(&cfg, "batch_size", "4");
    set(&cfg, "lr", "0.01");
    set(&cfg, "lr_schedule", "constant");
    set(&cfg, "warmup_steps", "1");
    set(&cfg, "max_steps", "300");
    set(&cfg, "eval_every", "5");
    set(&cfg, "save_every", "0");
    set(&cfg, "early_stopping_patience", "3");
    set(&cfg, "threads", "1");
    sft_err err;
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    early_out o;
    memset(&o, 0, sizeof o);
    int rc = sft_fork_call(train_overfitting, &cfg, &o, sizeof o, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    CHECK_INT(rc, 0);
    CHECK(o.res.stopped_early);
    /* The evaluations from metrics.jsonl: the minimum, then exactly
     * `patience` evaluations without a lower loss, then the stop. */
    snprintf(path, sizeof path, "%s/early/metrics.jsonl", r);
    char *text = read_text(path);
    double val[128];
    int64_t step[128];
    int n = 0;
    for (char *line = text; line && *line && n < 128;) {
        char *nl = strchr(line, '\n');
        if (!nl) break;
        json_t *j = sft_json_loadb_lenient(line, (size_t)(nl - line), path, &err);
        const char *type;
        if (j && !sft_json_get_string(j, "type", &type, path, &err) && !strcmp(type, "eval")) {
            sft_json_get_number(j, "val_loss", &val[n], path, &err);
            sft_json_get_int(j, "step", &step[n], path, &err);
            n++;
        }
        json_decref(j);
        line = nl + 1;
    }
    free(text);
    int best = 0;
    for (int i = 1; i < n; i++)
        if (val[i] < val[best]) best = i;
    CHECK(n >= 5);
    CHECK(best > 0);          /* it improved first ... */
    CHECK_INT(n - 1, best + 3); /* ... and stopped at the third evaluation after its minimum */
    CHECK(step[n - 1] < 300);
    CHECK_INT(o.res.steps, step[n - 1]);
    CHECK_INT(o.res.best_step, step[best]);
    CHECK_NEAR(o.res.best_val_loss, val[best], 1e-12);
    /* best/ holds the weights of that evaluation */
    CHECK_NEAR(o.best_dir_val_loss, val[best], 1e-5 * val[best]);
    sft_run_config_free(&cfg);
}

typedef struct {
    const char *model_dir, *data;
} loss_job;

static int loss_in_child(void *ctx, void *out, size_t out_size, sft_err *err) {
    (void)out_size;
    const loss_job *j = ctx;
    return val_loss_of(j->model_dir, j->data, (double *)out, err);
}

TEST(the_chosen_checkpoint_is_the_trials_best_not_its_last) {
    const char *r = root();
    sft_sweep_config c;
    base_sweep(&c, "overfit");
    char path[256];
    snprintf(path, sizeof path, "%s/few.jsonl", r);
    set(&c.base, "data", path);
    snprintf(path, sizeof path, "%s/few_val.jsonl", r);
    set(&c.base, "val_data", path);
    /* the overfitting run of the early-stopping test, without stopping */
    set(&c.base, "batch_size", "4");
    set(&c.base, "lr_schedule", "constant");
    set(&c.base, "max_steps", "120");
    sft_err err;
    CHECK_INT(sft_sweep_set_values(&c, "lr", "0.01", "--lr", &err), 0);
    sft_sweep_result res;
    CHECK_INT(sft_sweep_run(&c, NULL, &res, &err), 0);
    CHECK_INT(res.best, 0);
    if (res.best == 0) {
        const sft_sweep_trial *t = &res.trials[0];
        CHECK(t->best_step < t->steps); /* the minimum came before the end */
        CHECK(t->final_train_loss < t->best_val_loss);
        loss_job j = {res.best_dir, path};
        double loss = NAN;
        CHECK_INT(sft_fork_call(loss_in_child, &j, &loss, sizeof loss, &err), 0);
        CHECK_NEAR(loss, t->best_val_loss, 1e-5 * t->best_val_loss);
    }
    sft_sweep_result_free(&res);
    sft_sweep_config_free(&c);
}

/* ----------------------------------------------------------- bad input */

TEST(bad_sweeps_are_refused_with_a_clear_error) {
    sft_sweep_config c;
    base_sweep(&c, "bad");
    sft_err err;
    CHECK_INT(sft_sweep_config_check(&c, &err), -1);
    CHECK_ERR_HAS(err.msg, "nothing to sweep");
    CHECK_INT(sft_sweep_set_spec(&c, "batch_sise=4,8", "--sweep", &err), -1);
    CHECK_ERR_HAS(err.msg, "did you mean 'batch_size'");
    CHECK_INT(sft_sweep_set_spec(&c, "batch_size", "--sweep", &err), -1);
    CHECK_ERR_HAS(err.msg, "KEY=V1,V2");
    CHECK_INT(sft_sweep_set_values(&c, "lr", "1e-4,,1e-3", "--lr", &err), -1);
    CHECK_ERR_HAS(err.msg, "comma-separated");
    CHECK_INT(sft_sweep_set_values(&c, "lr", "1e-4,-1", "--lr", &err), -1);
    CHECK_ERR_HAS(err.msg, "must be > 0");
    CHECK_INT(sft_sweep_set_values(&c, "lr", "1e-4,0.0001", "--lr", &err), -1);
    CHECK_ERR_HAS(err.msg, "given twice");
    CHECK_INT(sft_sweep_set_values(&c, "out", "a,b", "--sweep", &err), -1);
    CHECK_ERR_HAS(err.msg, "cannot be swept");
    CHECK_INT(sft_sweep_set_lr_range(&c, "1e-3:1e-5:3", "--lr-range", &err), -1);
    CHECK_ERR_HAS(err.msg, "0 < LO < HI");
    CHECK_INT(sft_sweep_set_lr_range(&c, "1e-5:1e-3", "--lr-range", &err), -1);
    CHECK_ERR_HAS(err.msg, "LO:HI:N");
    /* a log range: 5 values from 1e-5 to 1e-3, 3 significant digits */
    CHECK_INT(sft_sweep_set_lr_range(&c, "1e-5:1e-3:5", "--lr-range", &err), 0);
    CHECK_INT(c.axes[0].values.count, 5);
    CHECK_STR(c.axes[0].values.items[1], "3.16e-05");
    CHECK_STR(c.axes[0].values.items[4], "0.001");
    /* no validation data: nothing to choose by */
    sft_run_config_free(&c.base);
    sft_run_config_init(&c.base);
    char path[256];
    snprintf(path, sizeof path, "%s/model", root());
    set(&c.base, "model", path);
    snprintf(path, sizeof path, "%s/train.jsonl", root());
    set(&c.base, "data", path);
    snprintf(path, sizeof path, "%s/bad", root());
    set(&c.base, "out", path);
    CHECK_INT(sft_sweep_config_check(&c, &err), -1);
    CHECK_ERR_HAS(err.msg, "no validation data");
    CHECK(!sft_dir_exists(path));
    sft_sweep_config_free(&c);
}

TEST(a_sweep_file_holds_training_keys_and_the_sweep) {
    const char *yaml = "model: m\ndata: [d.jsonl]\nval_split: 0.1\nout: s\nlr: [1e-4, 3e-4]\n"
                       "sweep:\n  batch_size: [4, 8]\n  lora_targets: [[q_proj, v_proj], [q_proj]]\nparallel: 2\n"
                       "prune: halving\n";
    sft_err err;
    sft_yaml_doc *doc = sft_yaml_load_string(yaml, strlen(yaml), "sweep.yaml", &err);
    CHECK(doc != NULL);
    sft_sweep_config c;
    sft_sweep_config_init(&c);
    CHECK_INT(sft_sweep_apply_yaml(&c, doc, &err), 0);
    sft_yaml_free(doc);
    CHECK_INT(c.axis_count, 3);
    CHECK_INT(c.parallel, 2);
    CHECK_INT(c.prune, SFT_SWEEP_PRUNE_HALVING);
    CHECK_NEAR(c.base.val_split, 0.1, 0);
    if (c.axis_count == 3) {
        CHECK_STR(c.axes[0].values.items[0], "0.0001");
        CHECK_STR(c.axes[2].values.items[0], "q_proj,v_proj");
    }
    /* the resolved sweep.yaml reads back to the same sweep */
    char *text = sft_sweep_config_to_yaml(&c, &err);
    CHECK(text != NULL);
    sft_sweep_config back;
    sft_sweep_config_init(&back);
    doc = text ? sft_yaml_load_string(text, strlen(text), "sweep.yaml", &err) : NULL;
    CHECK(doc != NULL);
    if (doc) {
        int rc = sft_sweep_apply_yaml(&back, doc, &err);
        if (rc) fprintf(stderr, "  %s\n", err.msg);
        CHECK_INT(rc, 0);
    }
    sft_yaml_free(doc);
    free(text);
    CHECK_INT(back.axis_count, c.axis_count);
    for (int i = 0; i < back.axis_count && i < c.axis_count; i++) {
        CHECK(back.axes[i].key == c.axes[i].key);
        CHECK_INT(back.axes[i].values.count, c.axes[i].values.count);
        for (int j = 0; j < back.axes[i].values.count && j < c.axes[i].values.count; j++)
            CHECK_STR(back.axes[i].values.items[j], c.axes[i].values.items[j]);
    }
    CHECK_INT(back.parallel, 2);
    CHECK(sft_run_config_equal(&back.base, &c.base));
    sft_sweep_config_free(&back);
    sft_sweep_config_free(&c);
    /* an unknown key is named with the nearest one */
    const char *typo = "model: m\nparalel: 2\n";
    doc = sft_yaml_load_string(typo, strlen(typo), "sweep.yaml", &err);
    sft_sweep_config_init(&c);
    CHECK_INT(sft_sweep_apply_yaml(&c, doc, &err), -1);
    CHECK_ERR_HAS(err.msg, "sweep.yaml:2:1: unknown key 'paralel' (did you mean 'parallel'?)");
    sft_yaml_free(doc);
    sft_sweep_config_free(&c);
}
