/* test_trainer.c: the training loop (train/trainer.h) on a tiny Llama model
 * made from the demo tokenizer: accumulation invariance, bit-identical
 * resume (full and LoRA with dropout), a crash while a checkpoint is being
 * written, nothing written when a run fails at start, early stopping,
 * non-finite steps, the run folder's files, and exports that reload to the
 * same logits (full, bf16, LoRA merged). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/ops.h"
#include "test.h"
#include "train/checkpoint.h"
#include "train/export.h"
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

/* One shared fixture folder (removed at exit): the tiny model and a dataset. */
static const char *root(void) {
    char *dir = root_dir;
    if (dir[0]) return dir;
    snprintf(dir, sizeof root_dir, "/tmp/sft-test-trainer-XXXXXX");
    if (!mkdtemp(dir)) abort();
    atexit(remove_root);
    char path[256], cache[256];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    setenv("SFT_CACHE_DIR", cache, 1);
    snprintf(path, sizeof path, "%s/tiny.json", dir);
    FILE *f = fopen(path, "w");
    fputs(tiny_config, f);
    fclose(f);
    char model[256];
    snprintf(model, sizeof model, "%s/model", dir);
    sft_err err;
    if (sft_model_init_dir(path, DEMO, model, 7, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    snprintf(path, sizeof path, "%s/data.jsonl", dir);
    f = fopen(path, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"add %d %d\"}, {\"role\": \"assistant\", "
                   "\"content\": \"%d\"}]}\n",
                i, 3 * i % 17, i + 3 * i % 17);
    fclose(f);
    sft_set_threads(1);
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

/* A config for run folder `name` under the root, with test defaults. */
static void base_config(sft_run_config *cfg, const char *name) {
    const char *r = root();
    char path[256];
    sft_run_config_init(cfg);
    snprintf(path, sizeof path, "%s/model", r);
    set(cfg, "model", path);
    snprintf(path, sizeof path, "%s/data.jsonl", r);
    set(cfg, "data", path);
    snprintf(path, sizeof path, "%s/%s", r, name);
    set(cfg, "out", path);
    set(cfg, "lr", "0.003");
    set(cfg, "warmup_steps", "1");
    set(cfg, "max_steps", "6");
    set(cfg, "batch_size", "4");
    set(cfg, "threads", "1");
    set(cfg, "eval_every", "0");
    set(cfg, "save_every", "0");
}

static int finish_and_run(sft_run_config *cfg, const sft_train_options *o, sft_train_result *res, sft_err *err) {
    if (sft_run_config_finish(cfg, err)) return -1;
    return sft_train_run(cfg, o, res, err);
}

typedef struct {
    double loss[64], grad_norm[64], val_loss[64];
    int steps, evals;
} metrics;

static int read_metrics(const char *run, metrics *m) {
    memset(m, 0, sizeof *m);
    char path[512], *text;
    size_t len;
    sft_err err;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    if (sft_read_file(path, &text, &len, &err)) return -1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = sft_json_loadb_lenient(line, strlen(line), path, &err);
        if (!j) return -1;
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && !strcmp(type, "train") && m->steps < 64) {
            sft_json_number(json_object_get(j, "loss"), &m->loss[m->steps]);
            sft_json_number(json_object_get(j, "grad_norm"), &m->grad_norm[m->steps]);
            m->steps++;
        } else if (type && !strcmp(type, "eval") && m->evals < 64) {
            sft_json_number(json_object_get(j, "val_loss"), &m->val_loss[m->evals++]);
        }
        json_decref(j);
    }
    free(text);
    return 0;
}

/* Every tensor of a safetensors file as float32, concatenated in file order. */
static float *read_floats(const char *path, size_t *n) {
    sft_err err;
    sft_safetensors *st = sft_safetensors_open(path, &err);
    if (!st) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    size_t total = 0;
    for (size_t i = 0; i < sft_safetensors_count(st); i++) total += (size_t)sft_safetensors_at(st, i)->numel;
    float *out = malloc(total * sizeof *out);
    size_t at = 0;
    for (size_t i = 0; i < sft_safetensors_count(st); i++) {
        const sft_tensor_info *t = sft_safetensors_at(st, i);
        sft_tensor_to_f32(t, out + at);
        at += (size_t)t->numel;
    }
    sft_safetensors_close(st);
    *n = total;
    return out;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-12 ? fabs(b) : 1e-12); }

TEST(accumulation_split_gives_the_same_losses_norms_and_weights) {
    sft_run_config a, b;
    base_config(&a, "accum-8x1");
    set(&a, "batch_size", "8");
    set(&a, "max_steps", "4");
    base_config(&b, "accum-2x4");
    set(&b, "batch_size", "2");
    set(&b, "grad_accum", "4");
    set(&b, "max_steps", "4");
    sft_train_result ra, rb;
    sft_err err;
    CHECK(!finish_and_run(&a, NULL, &ra, &err));
    CHECK(!finish_and_run(&b, NULL, &rb, &err));
    metrics ma, mb;
    CHECK(!read_metrics(a.out, &ma) && !read_metrics(b.out, &mb));
    CHECK_INT(ma.steps, 4);
    CHECK_INT(mb.steps, 4);
    /* float rounding only: the sums over micro-batches are taken in another order */
    for (int i = 0; i < 4; i++) {
        CHECK(rel(ma.loss[i], mb.loss[i]) < 1e-6);
        CHECK(rel(ma.grad_norm[i], mb.grad_norm[i]) < 1e-5);
    }
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/final/model.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/model.safetensors", b.out);
    size_t na, nb;
    float *wa = read_floats(pa, &na), *wb = read_floats(pb, &nb);
    CHECK(wa && wb && na == nb);
    float worst = 0;
    for (size_t i = 0; wa && wb && i < na; i++)
        if (fabsf(wa[i] - wb[i]) > worst) worst = fabsf(wa[i] - wb[i]);
    CHECK(worst < 1e-5f);
    free(wa), free(wb);
    sft_run_config_free(&a), sft_run_config_free(&b);
}

/* Runs cfg straight, then the same config into another folder stopped
 * after `first` steps and resumed; compares losses and the final weights
 * file bit for bit. */
static void check_resume(sft_run_config *straight, sft_run_config *split, int first, const char *weights) {
    sft_train_result r1, r2, r3;
    sft_err err;
    CHECK(!finish_and_run(straight, NULL, &r1, &err));
    sft_train_options stop = {.stop_after_steps = first};
    if (finish_and_run(split, &stop, &r2, &err)) fprintf(stderr, "  %s\n", err.msg);
    CHECK_INT(r2.interrupted, -1);
    CHECK_INT(r2.steps, first);
    CHECK(!r2.final_dir[0]);
    set(split, "resume", "true");
    if (finish_and_run(split, NULL, &r3, &err)) fprintf(stderr, "  %s\n", err.msg);
    CHECK(r3.resumed);
    CHECK_INT(r3.steps, r1.steps);
    metrics m1, m3;
    CHECK(!read_metrics(straight->out, &m1) && !read_metrics(split->out, &m3));
    CHECK_INT(m3.steps, m1.steps);
    for (int i = 0; i < m1.steps; i++) {
        CHECK(m1.loss[i] == m3.loss[i]);
        CHECK(m1.grad_norm[i] == m3.grad_norm[i]);
    }
    CHECK_INT(m3.evals, m1.evals);
    for (int i = 0; i < m1.evals; i++) CHECK(m1.val_loss[i] == m3.val_loss[i]);
    CHECK(r1.best_val_loss == r3.best_val_loss || (isnan(r1.best_val_loss) && isnan(r3.best_val_loss)));
    CHECK_INT(r1.best_step, r3.best_step);
    char p1[512], p3[512];
    snprintf(p1, sizeof p1, "%s/final/%s", straight->out, weights);
    snprintf(p3, sizeof p3, "%s/final/%s", split->out, weights);
    size_t n1, n3;
    float *w1 = read_floats(p1, &n1), *w3 = read_floats(p3, &n3);
    CHECK(w1 && w3 && n1 == n3 && !memcmp(w1, w3, n1 * sizeof *w1));
    free(w1), free(w3);
}

TEST(resume_continues_bit_identically) {
    sft_run_config a, b;
    base_config(&a, "resume-straight");
    base_config(&b, "resume-split");
    for (sft_run_config *c = &a; c; c = c == &a ? &b : NULL) {
        set(c, "val_split", "0.2");
        set(c, "eval_every", "2");
        set(c, "save_every", "2");
        set(c, "lr_schedule", "cosine");
    }
    check_resume(&a, &b, 3, "model.safetensors");
    sft_run_config_free(&a), sft_run_config_free(&b);
}

TEST(lora_resume_with_dropout_continues_bit_identically) {
    sft_run_config a, b;
    base_config(&a, "lora-straight");
    base_config(&b, "lora-split");
    for (sft_run_config *c = &a; c; c = c == &a ? &b : NULL) {
        set(c, "lora_r", "4");
        set(c, "lora_dropout", "0.1");
        set(c, "lr", "0.01");
        set(c, "val_split", "0.2");
        set(c, "eval_every", "3");
    }
    check_resume(&a, &b, 2, "adapter_model.safetensors");
    char path[512];
    snprintf(path, sizeof path, "%s/final/adapter_config.json", a.out);
    CHECK(sft_file_exists(path));
    snprintf(path, sizeof path, "%s/best/adapter_model.safetensors", a.out);
    CHECK(sft_file_exists(path));
    sft_run_config_free(&a), sft_run_config_free(&b);
}

/* A run killed inside the writing of a checkpoint (checkpoint.h's
 * SFT_TEST_CRASH_AT, in a child process) leaves the previous checkpoint
 * loadable, and --resume then finishes the run exactly as an uninterrupted
 * one. */
TEST(crash_while_saving_a_checkpoint_keeps_the_previous_one) {
    const char *points[] = {"weights", "before_rename"};
    for (size_t p = 0; p < sizeof points / sizeof *points; p++) {
        char name[64];
        snprintf(name, sizeof name, "crash-%s", points[p]);
        sft_run_config c;
        base_config(&c, name);
        set(&c, "save_every", "2");
        pid_t pid = fork();
        if (pid == 0) {
            /* child: the checkpoint of step 2 is written, the one of step 4 crashes */
            sft_train_options first = {.stop_after_steps = 2};
            sft_train_result r;
            sft_err err;
            if (finish_and_run(&c, &first, &r, &err)) _exit(3);
            set(&c, "resume", "true");
            setenv("SFT_TEST_CRASH_AT", points[p], 1);
            finish_and_run(&c, NULL, &r, &err);
            _exit(4); /* not reached: the crash aborts */
        }
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
        char ckpt[1024];
        int64_t step = -1;
        sft_err err;
        CHECK(!sft_checkpoint_latest(c.out, ckpt, sizeof ckpt, &step, &err));
        CHECK_INT(step, 2);
        set(&c, "resume", "true");
        sft_train_result r;
        if (finish_and_run(&c, NULL, &r, &err)) fprintf(stderr, "  %s\n", err.msg);
        CHECK_INT(r.steps, 6);
        /* metrics.jsonl reads as one run: the lines the crashed tail wrote past step 2 were dropped */
        metrics mm;
        CHECK(!read_metrics(c.out, &mm));
        CHECK_INT(mm.steps, 6);
        /* the same weights as the straight run of the same config */
        sft_run_config s;
        base_config(&s, p ? "crash-straight-b" : "crash-straight-a");
        set(&s, "save_every", "2");
        sft_train_result rs;
        CHECK(!finish_and_run(&s, NULL, &rs, &err));
        char p1[512], p2[512];
        snprintf(p1, sizeof p1, "%s/final/model.safetensors", c.out);
        snprintf(p2, sizeof p2, "%s/final/model.safetensors", s.out);
        size_t n1, n2;
        float *w1 = read_floats(p1, &n1), *w2 = read_floats(p2, &n2);
        CHECK(w1 && w2 && n1 == n2 && !memcmp(w1, w2, n1 * sizeof *w1));
        free(w1), free(w2);
        /* keep_checkpoints 3 (default): steps 2, 4, 6 */
        int64_t *steps;
        size_t count;
        CHECK(!sft_checkpoint_list(c.out, &steps, &count, &err));
        CHECK_INT(count, 3);
        free(steps);
        sft_run_config_free(&c), sft_run_config_free(&s);
    }
}

TEST(a_run_that_fails_at_start_writes_nothing) {
    const char *r = root();
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", r);
    FILE *f = fopen(bad, "w");
    fputs("{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\", \"output\": }\n", f);
    fclose(f);
    sft_run_config c;
    base_config(&c, "fails-at-start");
    sft_run_config_clear_list(&c, sft_run_key_find("data"));
    set(&c, "data", bad);
    sft_train_result res;
    sft_err err;
    CHECK(finish_and_run(&c, NULL, &res, &err) == -1);
    char where[300];
    snprintf(where, sizeof where, "%s:2", bad);
    CHECK_ERR_HAS(err.msg, where);
    CHECK(!sft_dir_exists(c.out));
    /* --skip-bad-records: skipped, counted, trained */
    set(&c, "skip_bad_records", "true");
    set(&c, "max_steps", "1");
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    CHECK_INT(res.train_examples, 1);
    /* a model folder that is not one */
    sft_run_config m;
    base_config(&m, "fails-bad-model");
    set(&m, "model", r);
    CHECK(finish_and_run(&m, NULL, &res, &err) == -1);
    CHECK(!sft_dir_exists(m.out));
    /* another run's folder is not overwritten */
    CHECK(finish_and_run(&c, NULL, &res, &err) == -1);
    CHECK_ERR_HAS(err.msg, "already holds a run");
    sft_run_config_free(&c), sft_run_config_free(&m);
}

TEST(early_stopping_stops_and_keeps_the_best) {
    sft_run_config c;
    base_config(&c, "early");
    set(&c, "lr", "1e-12"); /* no real progress: no evaluation improves on the first */
    set(&c, "val_split", "0.2");
    set(&c, "eval_every", "1");
    set(&c, "early_stopping_patience", "2");
    set(&c, "early_stopping_threshold", "0.01");
    set(&c, "max_steps", "20");
    sft_train_result res;
    sft_err err;
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    CHECK(res.stopped_early);
    CHECK_INT(res.steps, 3);
    CHECK(res.best_step >= 1 && res.best_step <= 3);
    CHECK(sft_dir_exists(res.best_dir) && sft_dir_exists(res.final_dir));
    sft_run_config_free(&c);
}

TEST(non_finite_steps_stop_or_are_skipped) {
    sft_run_config c;
    base_config(&c, "nonfinite-stop");
    set(&c, "lr", "1e30"); /* AdamW's first step moves every weight by ~lr: the next loss overflows */
    set(&c, "max_grad_norm", "0");
    set(&c, "max_steps", "4");
    sft_train_result res;
    sft_err err;
    CHECK(finish_and_run(&c, NULL, &res, &err) == -1);
    CHECK_ERR_HAS(err.msg, "not finite");
    sft_run_config_free(&c);
    base_config(&c, "nonfinite-skip");
    set(&c, "lr", "1e30");
    set(&c, "max_grad_norm", "0");
    set(&c, "max_steps", "4");
    set(&c, "on_nonfinite", "skip");
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    CHECK(res.skipped_steps >= 1);
    sft_run_config_free(&c);
}

TEST(run_folder_holds_run_yaml_manifest_metrics_and_diagnosis) {
    sft_run_config c;
    base_config(&c, "files");
    set(&c, "val_split", "0.2");
    set(&c, "eval_every", "3");
    set(&c, "packing", "true");
    set(&c, "max_len", "128");
    sft_train_result res;
    sft_err err;
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    CHECK(res.packing_efficiency > 0.5 && res.packing_efficiency <= 1.0);
    const char *files[] = {"run.yaml", "manifest.json", "metrics.jsonl", "diagnosis.json", "final/config.json",
                           "final/model.safetensors", "final/tokenizer.json", "final/generation_config.json",
                           "final/chat_template.jinja", "best/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", c.out, files[i]);
        if (!sft_file_exists(path)) fprintf(stderr, "  missing %s\n", files[i]);
        CHECK(sft_file_exists(path));
    }
    /* run.yaml reloads to the same configuration */
    char path[512];
    snprintf(path, sizeof path, "%s/run.yaml", c.out);
    sft_run_config again;
    sft_run_config_init(&again);
    CHECK(!sft_run_config_load_yaml(&again, path, &err));
    CHECK(sft_run_config_equal(&again, &c));
    /* metrics.jsonl: SPEC's fields */
    snprintf(path, sizeof path, "%s/metrics.jsonl", c.out);
    char *text;
    size_t len;
    CHECK(!sft_read_file(path, &text, &len, &err));
    const char *train_keys[] = {"step", "epoch", "loss", "grad_norm", "grad_norm_clipped", "clipped", "lr",
                                "tokens", "tokens_per_s", "elapsed_s"};
    int trains = 0, evals = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = sft_json_loadb_lenient(line, strlen(line), path, &err);
        const char *type = json_string_value(json_object_get(j, "type"));
        if (!strcmp(type, "train")) {
            trains++;
            for (size_t k = 0; k < sizeof train_keys / sizeof *train_keys; k++)
                CHECK(json_object_get(j, train_keys[k]) != NULL);
        } else if (!strcmp(type, "eval")) {
            evals++;
            CHECK(json_object_get(j, "val_loss") && json_object_get(j, "val_tokens"));
        }
        json_decref(j);
    }
    free(text);
    CHECK_INT(trains, 6);
    CHECK_INT(evals, 2);
    sft_run_config_free(&again);
    sft_run_config_free(&c);
}

/* Logits of a model dir (with an optional unmerged adapter) on one batch. */
static float *logits_of(const char *dir, const char *adapter, size_t *n) {
    sft_err err;
    sft_model *m = sft_model_load(dir, &err);
    if (!m) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    if (adapter && sft_lora_load(m, adapter, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        sft_model_free(m);
        return NULL;
    }
    int32_t tokens[12], targets[12], pos[12], seq[12];
    for (int i = 0; i < 12; i++) tokens[i] = (i * 37 + 5) % 360, targets[i] = -100, pos[i] = i, seq[i] = 0;
    sft_batch b = {.B = 1, .T = 12, .tokens = tokens, .targets = targets, .pos = pos, .seq = seq};
    double loss;
    float *out = NULL;
    if (!sft_model_plan(m, 1, 12, &err) && !sft_model_forward(m, &b, &loss, &err)) {
        *n = (size_t)12 * m->cfg.vocab_size;
        out = malloc(*n * sizeof *out);
        memcpy(out, m->logits, *n * sizeof *out);
    }
    sft_model_free(m);
    return out;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > worst) worst = fabsf(a[i] - b[i]);
    return worst;
}

TEST(exports_reload_to_the_same_logits) {
    sft_run_config c;
    base_config(&c, "export-full");
    set(&c, "max_steps", "2");
    sft_train_result res;
    sft_err err;
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    size_t n1 = 0, n2 = 0, n3 = 0;
    float *ckpt = logits_of(res.last_checkpoint, NULL, &n1);
    float *final = logits_of(res.final_dir, NULL, &n2);
    CHECK(ckpt && final && n1 == n2 && !memcmp(ckpt, final, n1 * sizeof *ckpt));
    /* sft export CKPT --out DIR: the same; --save-dtype bfloat16: close, and config.json says so */
    char out[512];
    snprintf(out, sizeof out, "%s/exported", c.out);
    sft_export_request req = {.checkpoint = res.last_checkpoint, .out_dir = out, .dtype = -1};
    CHECK(!sft_export_checkpoint(&req, &err));
    float *exported = logits_of(out, NULL, &n3);
    CHECK(exported && n3 == n1 && !memcmp(exported, ckpt, n1 * sizeof *ckpt));
    free(exported);
    req.dtype = SFT_DTYPE_BF16;
    CHECK(!sft_export_checkpoint(&req, &err));
    sft_model_config cfg;
    CHECK(!sft_config_load(out, &cfg, &err));
    CHECK_STR(cfg.dtype, "bfloat16");
    CHECK_INT(cfg.vocab_size, 365);
    exported = logits_of(out, NULL, &n3);
    CHECK(exported && n3 == n1 && max_diff(exported, ckpt, n1) < 0.05f);
    free(exported), free(ckpt), free(final);
    sft_run_config_free(&c);

    /* LoRA: the adapter export on its base, and the merged export, give the same logits */
    base_config(&c, "export-lora");
    set(&c, "max_steps", "2");
    set(&c, "lora_r", "4");
    set(&c, "lr", "0.05");
    CHECK(!finish_and_run(&c, NULL, &res, &err));
    float *adapter = logits_of(c.model, res.final_dir, &n1);
    float *base = logits_of(c.model, NULL, &n3);
    CHECK(adapter && base && max_diff(adapter, base, n1) > 1e-4f); /* the adapter changed something */
    snprintf(out, sizeof out, "%s/merged", c.out);
    sft_export_request merge = {.checkpoint = res.last_checkpoint, .out_dir = out, .merge = 1, .dtype = -1};
    if (sft_export_checkpoint(&merge, &err)) fprintf(stderr, "  %s\n", err.msg);
    float *merged = logits_of(out, NULL, &n2);
    CHECK(merged && n2 == n1 && max_diff(merged, adapter, n1) < 1e-5f);
    free(adapter), free(base), free(merged);
    sft_run_config_free(&c);
}

/* chat_template.jinja is the template training rendered with: the model's
 * own text when it is that template, else the family's built-in text, which
 * detects back to the same renderer. */
TEST(exported_chat_template_is_the_one_used_in_training) {
    sft_err err;
    sft_tokenizer *demo = sft_tokenizer_load(DEMO, &err);
    sft_tokenizer *llama3 = sft_tokenizer_load("tests/fixtures/hf/models/llama3-tiny", &err);
    CHECK(demo && llama3);
    if (!demo || !llama3) return;
    const char *note;
    sft_chat_template *t = sft_chat_template_for_tokenizer(demo, "chatml", &err);
    CHECK(sft_export_template_text(demo, t, &note) == sft_tokenizer_chat_template(demo));
    sft_chat_template_free(t);
    const char *names[] = {"chatml", "qwen2.5", "alpaca", "llama3"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        t = sft_chat_template_for_tokenizer(demo, names[i], &err);
        if (!t) continue; /* a family the demo tokenizer cannot serve (no bos_token) */
        const char *text = sft_export_template_text(demo, t, &note);
        CHECK(text != NULL);
        sft_chat_template *back = text ? sft_chat_template_new(NULL, text, NULL, "<|im_end|>", &err) : NULL;
        CHECK(back && !strcmp(sft_chat_template_name(back), names[i]));
        sft_chat_template_free(back);
        sft_chat_template_free(t);
    }
    t = sft_chat_template_for_tokenizer(llama3, "chatml", &err);
    const char *text = t ? sft_export_template_text(llama3, t, &note) : NULL;
    CHECK(text && strstr(text, "<|im_start|>"));
    sft_chat_template_free(t);
    /* a renderer that differs from the model's own template (llama3.1 on the
     * llama3 tokenizer) exports its own Jinja text, which detects back to it */
    t = sft_chat_template_for_tokenizer(llama3, "llama3.1", &err);
    text = t ? sft_export_template_text(llama3, t, &note) : NULL;
    CHECK(text && strstr(text, "Cutting Knowledge Date"));
    sft_chat_template *back = text ? sft_chat_template_new(NULL, text, "<|begin_of_text|>", "<|eot_id|>", &err) : NULL;
    CHECK(back && !strcmp(sft_chat_template_name(back), "llama3.1"));
    sft_chat_template_free(back);
    sft_chat_template_free(t);
    sft_tokenizer_free(demo);
    sft_tokenizer_free(llama3);
}

/* --val-data: the whole file is the validation set; a resume whose data no
 * longer matches the checkpoint's position is refused, naming why. */
TEST(val_data_file_and_resume_with_other_data_is_refused) {
    sft_run_config c;
    base_config(&c, "val-data");
    set(&c, "val_data", c.data.items[0]);
    set(&c, "eval_every", "2");
    sft_train_options stop = {.stop_after_steps = 2};
    sft_train_result res;
    sft_err err;
    CHECK(!finish_and_run(&c, &stop, &res, &err));
    CHECK_INT(res.val_examples, 40);
    CHECK(isfinite(res.best_val_loss));
    set(&c, "resume", "true");
    set(&c, "packing", "true");
    CHECK(finish_and_run(&c, NULL, &res, &err) == -1);
    CHECK_ERR_HAS(err.msg, "items per epoch");
    sft_run_config_free(&c);
}

/* The diagnosis thresholds are training keys (clip_min_excess: here) and
 * reach the live diagnosis: the same run, clipped on every step far below
 * its norm, is warned about with the defaults and not with a threshold that
 * asks for a 10^6 x excess. */
TEST(diagnosis_thresholds_from_the_run_config_reach_the_live_diagnosis) {
    const char *excess[] = {NULL, "1000000"};
    char verdicts[2][16];
    for (int i = 0; i < 2; i++) {
        sft_run_config c;
        base_config(&c, i ? "thresholds-set" : "thresholds-default");
        set(&c, "max_steps", "12");
        set(&c, "max_grad_norm", "0.001");
        if (excess[i]) set(&c, "clip_min_excess", excess[i]);
        sft_train_result res;
        sft_err err;
        CHECK(!finish_and_run(&c, NULL, &res, &err));
        snprintf(verdicts[i], sizeof verdicts[i], "%s", res.verdict);
        int clipping = 0;
        for (int k = 0; k < res.finding_count; k++) clipping |= !strcmp(res.finding_kinds[k], "frequent_clipping");
        CHECK(clipping);
        /* run.yaml keeps the threshold, so the run can be repeated as it was */
        char path[512], *text = NULL;
        size_t len;
        snprintf(path, sizeof path, "%s/run.yaml", c.out);
        CHECK(!sft_read_file(path, &text, &len, &err));
        CHECK(text && strstr(text, i ? "clip_min_excess: 1000000\n" : "clip_min_excess: 1.5\n"));
        free(text);
        sft_run_config_free(&c);
    }
    CHECK_STR(verdicts[0], "warning");
    CHECK_STR(verdicts[1], "healthy");
}

/* samples.jsonl: at each evaluation, greedy answers to the same few
 * validation prompts (report.h's format), shown by report.html; none with
 * samples_per_eval 0. */
TEST(evaluations_write_sample_generations_for_the_report) {
    for (int enabled = 1; enabled >= 0; enabled--) {
        sft_run_config c;
        base_config(&c, enabled ? "samples" : "samples-off");
        set(&c, "val_split", "0.25");
        set(&c, "eval_every", "3");
        set(&c, "samples_per_eval", enabled ? "2" : "0");
        set(&c, "sample_max_new_tokens", "5");
        sft_train_result res;
        sft_err err;
        CHECK(!finish_and_run(&c, NULL, &res, &err));
        char path[512], *text = NULL;
        size_t len;
        snprintf(path, sizeof path, "%s/samples.jsonl", c.out);
        if (!enabled) {
            CHECK(!sft_file_exists(path));
            sft_run_config_free(&c);
            continue;
        }
        CHECK(!sft_read_file(path, &text, &len, &err));
        int lines = 0, at_step[2] = {0, 0};
        char first_prompts[2][64] = {"", ""};
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
            json_t *j = sft_json_loadb(line, strlen(line), path, &err);
            CHECK(j != NULL);
            if (!j) continue;
            int64_t step;
            CHECK(!sft_json_get_int(j, "step", &step, path, &err));
            const char *prompt = json_string_value(json_object_get(j, "prompt"));
            const char *reference = json_string_value(json_object_get(j, "reference"));
            CHECK(json_is_string(json_object_get(j, "output")));
            /* the records are {"user": "add I J", "assistant": "I+J"} */
            int a, b, sum;
            CHECK(prompt && sscanf(prompt, "add %d %d", &a, &b) == 2);
            CHECK(reference && sscanf(reference, "%d", &sum) == 1 && sum == a + b);
            CHECK(step == 3 || step == 6);
            int k = step == 3 ? 0 : 1;
            /* the same prompts at every evaluation, in the same order */
            if (k == 0 && at_step[0] < 2) snprintf(first_prompts[at_step[0]], 64, "%s", prompt ? prompt : "");
            if (k == 1 && at_step[1] < 2) CHECK_STR(prompt, first_prompts[at_step[1]]);
            at_step[k]++;
            json_decref(j);
        }
        CHECK_INT(lines, 4);
        CHECK(strcmp(first_prompts[0], first_prompts[1]) != 0);
        free(text);
        snprintf(path, sizeof path, "%s/report.html", c.out);
        CHECK(!sft_read_file(path, &text, &len, &err));
        CHECK(text && strstr(text, "Sample generations") && strstr(text, first_prompts[0]));
        free(text);
        sft_run_config_free(&c);
    }
}
