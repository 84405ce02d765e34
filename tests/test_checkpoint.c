/* test_checkpoint.c: checkpoints: exact save/load of weights, AdamW moments
 * and trainer state; a crash at every point of a save (in a child process,
 * through the SFT_TEST_CRASH_AT hook) leaves the previous checkpoint
 * loadable and resumable; listing, latest, pruning with the best kept; and
 * atomic replacement of best/ and final/. */
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "test.h"
#include "train/checkpoint.h"

/* A small model: three tensors in one flat buffer of 26 floats, with a gap
 * at 15 as aligned layouts have (gaps are not saved). */
static const sft_ckpt_view views[] = {
    {"model.layers.0.w", 2, {4, 3}, 0},
    {"model.layers.0.b", 1, {3}, 12},
    {"model.embed", 2, {5, 2}, 16},
};
#define NUMEL 26
#define NVIEWS 3

typedef struct {
    float params[NUMEL], m[NUMEL], v[NUMEL];
} buffers;

/* Distinct values per version, including ones whose bits matter (a
 * denormal, -0, values that are not short decimals). */
static void fill(buffers *b, int version) {
    for (int i = 0; i < NUMEL; i++) {
        b->params[i] = (float)version + (float)i / 7.0f;
        b->m[i] = -(float)version * 1e-3f / (float)(i + 1);
        b->v[i] = (float)version * 1e-8f * (float)(i + 3);
    }
    b->params[5] = 1e-40f;
    b->m[7] = -0.0f;
}

/* Equal on every value a view covers, bit for bit. */
static int same_values(const float *a, const float *b) {
    for (int i = 0; i < NVIEWS; i++) {
        size_t n = 1;
        for (int d = 0; d < views[i].ndim; d++) n *= (size_t)views[i].shape[d];
        if (memcmp(a + views[i].offset, b + views[i].offset, n * sizeof *a)) return 0;
    }
    return 1;
}

static int same_buffers(const buffers *a, const buffers *b) {
    return same_values(a->params, b->params) && same_values(a->m, b->m) && same_values(a->v, b->v);
}

static sft_ckpt_tensors tensors_of(buffers *b) {
    sft_ckpt_tensors t = {views, NVIEWS, b->params, b->m, b->v, NUMEL};
    return t;
}

static void state_of(sft_trainer_state *state, int64_t step, int version) {
    sft_trainer_state_init(state, 42);
    state->step = step;
    state->epoch = (double)step / 3.0;
    state->epoch_index = step / 3;
    state->data_cursor = step % 3 * 8 + version;
    state->max_steps = 100;
    state->adam_step = step;
    state->tokens_seen = 1000 * step;
    state->elapsed_s = 0.1 * (double)step;
    for (int i = 0; i < version; i++) sft_rng_next(&state->rng[SFT_RNG_STREAM_DATA]);
}

static int save(const char *run, int64_t step, int version, sft_err *err) {
    buffers b;
    fill(&b, version);
    sft_ckpt_tensors t = tensors_of(&b);
    sft_trainer_state state;
    state_of(&state, step, version);
    char config[64];
    snprintf(config, sizeof config, "{\"version\": %d}\n", version);
    sft_ckpt_file files[] = {{"config.json", config, strlen(config), NULL}};
    sft_ckpt_save s = {&t, NULL, files, 1, &state};
    int rc = sft_checkpoint_save(run, &s, NULL, 0, err);
    sft_trainer_state_free(&state);
    return rc;
}

/* Loads ckpt_dir and checks that it holds exactly (step, version). */
static int loads_as(const char *ckpt_dir, int64_t step, int version) {
    buffers got, want;
    memset(&got, 0, sizeof got);
    fill(&want, version);
    sft_ckpt_tensors t = tensors_of(&got);
    sft_trainer_state state, want_state;
    sft_err err;
    if (sft_checkpoint_load(ckpt_dir, &t, NULL, &state, &err)) {
        fprintf(stderr, "  load %s: %s\n", ckpt_dir, err.msg);
        return 0;
    }
    state_of(&want_state, step, version);
    int ok = same_buffers(&got, &want) && state.step == step && state.data_cursor == want_state.data_cursor &&
             !memcmp(state.rng, want_state.rng, sizeof state.rng);
    sft_trainer_state_free(&state);
    sft_trainer_state_free(&want_state);
    char path[512], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", ckpt_dir);
    if (sft_read_file(path, &text, &len, &err)) return 0;
    char expected[64];
    snprintf(expected, sizeof expected, "{\"version\": %d}\n", version);
    ok = ok && !strcmp(text, expected);
    free(text);
    return ok;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *new_run_dir(char *buf, size_t cap) {
    /* tmpfs when there is one: the crash tests kill processes, not machines,
     * so fsync adds nothing to what they check, only seconds. */
    snprintf(buf, cap, "%s/sft-test-ckpt-XXXXXX", sft_dir_exists("/dev/shm") ? "/dev/shm" : "/tmp");
    return mkdtemp(buf);
}

/* Entries of a folder whose names start with '.' (leftovers of writes). */
static int hidden_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

TEST(save_then_load_restores_everything_bit_exactly) {
    char run[64];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    buffers b;
    fill(&b, 3);
    sft_ckpt_tensors t = tensors_of(&b);
    sft_trainer_state state;
    state_of(&state, 12, 3);
    state.best_step = 10;
    state.best_val_loss = 1.2345678901234567;
    state.evals_without_improvement = 2;
    state.skipped_steps = 1;
    state.extra = json_pack("{s:f, s:s}", "last_lr", 1.0 / 3.0, "note", "from the loop");
    char saved[512];
    sft_ckpt_save s = {&t, NULL, NULL, 0, &state};
    CHECK_INT(sft_checkpoint_save(run, &s, saved, sizeof saved, &err), 0);
    char expected[512];
    snprintf(expected, sizeof expected, "%s/checkpoints/step-12", run);
    CHECK_STR(saved, expected);

    buffers got;
    memset(&got, 0, sizeof got);
    sft_ckpt_tensors into = tensors_of(&got);
    sft_trainer_state loaded;
    CHECK_INT(sft_checkpoint_load(saved, &into, NULL, &loaded, &err), 0);
    CHECK(same_buffers(&got, &b));
    CHECK_INT(loaded.step, 12);
    CHECK(loaded.epoch == state.epoch);
    CHECK(loaded.elapsed_s == state.elapsed_s);
    CHECK(loaded.best_val_loss == 1.2345678901234567); /* exactly, not to 6 digits */
    CHECK_INT(loaded.best_step, 10);
    CHECK_INT(loaded.evals_without_improvement, 2);
    CHECK_INT(loaded.skipped_steps, 1);
    CHECK_INT(loaded.tokens_seen, 12000);
    CHECK(memcmp(loaded.rng, state.rng, sizeof state.rng) == 0);
    /* The restored RNG continues the same sequence. */
    CHECK(sft_rng_next(&loaded.rng[SFT_RNG_STREAM_DATA]) == sft_rng_next(&state.rng[SFT_RNG_STREAM_DATA]));
    CHECK(loaded.extra != NULL);
    double last_lr = 0;
    CHECK_INT(sft_json_number(json_object_get(loaded.extra, "last_lr"), &last_lr), 0);
    CHECK(last_lr == 1.0 / 3.0);
    CHECK_STR(json_string_value(json_object_get(loaded.extra, "note")), "from the loop");
    sft_trainer_state_free(&loaded);
    sft_trainer_state_free(&state);

    /* Weights only (no moments), e.g. for evaluation. */
    memset(&got, 0, sizeof got);
    sft_ckpt_tensors weights_only = {views, NVIEWS, got.params, NULL, NULL, NUMEL};
    CHECK_INT(sft_checkpoint_load(saved, &weights_only, NULL, &loaded, &err), 0);
    CHECK(same_values(got.params, b.params));
    sft_trainer_state_free(&loaded);
    remove_tree(run);
}

TEST(fresh_state_has_no_best_and_seeded_streams) {
    sft_trainer_state a, b;
    sft_trainer_state_init(&a, 7);
    sft_trainer_state_init(&b, 7);
    CHECK_INT(a.best_step, -1);
    CHECK(isnan(a.best_val_loss));
    CHECK(memcmp(a.rng, b.rng, sizeof a.rng) == 0);
    CHECK(sft_rng_next(&a.rng[SFT_RNG_STREAM_DATA]) != sft_rng_next(&a.rng[SFT_RNG_STREAM_DROPOUT]));
    sft_err err;
    char *text = sft_trainer_state_to_json(&a, &err);
    CHECK_ERR_HAS(text, "\"best_metric\": null");
    CHECK_ERR_HAS(text, "\"global_step\": 0");
    sft_trainer_state back;
    CHECK_INT(sft_trainer_state_from_json(&back, text, strlen(text), "trainer_state.json", &err), 0);
    CHECK_INT(back.best_step, -1);
    CHECK(isnan(back.best_val_loss));
    free(text);
}

static const char *state_error(const char *text) {
    static sft_err err;
    sft_trainer_state state;
    err.msg[0] = 0;
    if (!sft_trainer_state_from_json(&state, text, strlen(text), "ts.json", &err)) {
        sft_trainer_state_free(&state);
        err.msg[0] = 0;
    }
    return err.msg;
}

TEST(bad_trainer_state_is_reported_with_the_file_and_field) {
    sft_trainer_state state;
    sft_trainer_state_init(&state, 1);
    sft_err err;
    char *good = sft_trainer_state_to_json(&state, &err);
    CHECK_STR(state_error(good), "");
    CHECK_STR(state_error("[1]"), "ts.json: expected a JSON object");
    CHECK_STR(state_error("{\"format\": \"hf\"}"), "ts.json: 'format' is 'hf', expected 'sft-trainer-state'");
    CHECK_STR(state_error("{\"format\": \"sft-trainer-state\", \"version\": 9}"),
              "ts.json: trainer state version 9; this sft reads version 1");
    char *broken = strdup(good);
    char *at = strstr(broken, "\"global_step\": 0");
    memcpy(at, "\"global_step\":-1", 16);
    CHECK_STR(state_error(broken), "ts.json: 'global_step' must be >= 0, got -1");
    free(broken);
    broken = strdup(good);
    at = strstr(broken, "\"data\": \"");
    at[9] = 'z';
    CHECK_ERR_HAS(state_error(broken), "ts.json: rng 'data': RNG state: 'z' at position 1 is not a hex digit");
    free(broken);
    CHECK_ERR_HAS(state_error("{\"format\": \"sft-trainer-state\""), "ts.json:1:");
    free(good);
    /* An extra field may not shadow a built-in one. */
    state.extra = json_pack("{s:i}", "global_step", 5);
    CHECK(sft_trainer_state_to_json(&state, &err) == NULL);
    CHECK_STR(err.msg, "trainer state: extra field 'global_step' has the name of a built-in field");
    sft_trainer_state_free(&state);
}

/* Runs a save in a child that aborts at `point`; returns 1 when the child
 * died there, 0 when the save ran to completion without reaching it. */
static int save_crashing_at(const char *run, int64_t step, int version, const char *point, int no_exchange) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        setenv("SFT_TEST_CRASH_AT", point, 1);
        if (no_exchange) setenv("SFT_TEST_NO_RENAME_EXCHANGE", "1", 1);
        sft_err err;
        _exit(save(run, step, version, &err) ? 2 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) return 1;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return 0;
}

/* The points after which the new folder is in place. */
static int new_is_in_place(const char *point) {
    return !strcmp(point, "after_rename");
}

TEST(crash_while_writing_a_new_step_keeps_the_previous_one) {
    for (int no_exchange = 0; no_exchange <= 1; no_exchange++) {
        for (const char *const *point = sft_checkpoint_crash_points; *point; point++) {
            char run[64], ckdir[128], step2[160], latest[512];
            CHECK(new_run_dir(run, sizeof run) != NULL);
            snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
            snprintf(step2, sizeof step2, "%s/step-2", ckdir);
            sft_err err;
            CHECK_INT(save(run, 1, 1, &err), 0);
            int crashed = save_crashing_at(run, 2, 2, *point, no_exchange);
            int expect_new = !crashed || new_is_in_place(*point);
            if (!expect_new) CHECK(!sft_dir_exists(step2)); /* no half-written step-2 under its name */
            int64_t step = -1;
            CHECK_INT(sft_checkpoint_latest(run, latest, sizeof latest, &step, &err), 0);
            CHECK_INT(step, expect_new ? 2 : 1);
            CHECK(loads_as(latest, step, (int)step));
            CHECK_INT(hidden_entries(ckdir), 0); /* the crash's leftovers are gone */
            /* --resume RUN finds it, and training can go on saving. */
            char resume[512];
            CHECK_INT(sft_checkpoint_resolve(run, resume, sizeof resume, &err), 0);
            CHECK_STR(resume, latest);
            CHECK_INT(save(run, 3, 3, &err), 0);
            CHECK_INT(sft_checkpoint_latest(run, latest, sizeof latest, &step, &err), 0);
            CHECK_INT(step, 3);
            if (sft_test_failures) fprintf(stderr, "  (crash point %s, no_exchange %d)\n", *point, no_exchange);
            remove_tree(run);
        }
    }
}

TEST(crash_while_replacing_a_step_leaves_old_or_new_never_neither) {
    for (int no_exchange = 0; no_exchange <= 1; no_exchange++) {
        for (const char *const *point = sft_checkpoint_crash_points; *point; point++) {
            char run[64], ckdir[128], step1[160];
            CHECK(new_run_dir(run, sizeof run) != NULL);
            snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
            snprintf(step1, sizeof step1, "%s/step-1", ckdir);
            sft_err err;
            CHECK_INT(save(run, 1, 1, &err), 0);
            int crashed = save_crashing_at(run, 1, 7, *point, no_exchange);
            int64_t *steps = NULL;
            size_t count = 0;
            CHECK_INT(sft_checkpoint_list(run, &steps, &count, &err), 0); /* recovers first */
            CHECK_INT(count, 1);
            free(steps);
            int version = !crashed || new_is_in_place(*point) ? 7 : 1;
            CHECK(loads_as(step1, 1, version));
            CHECK_INT(hidden_entries(ckdir), 0);
            if (sft_test_failures) fprintf(stderr, "  (crash point %s, no_exchange %d)\n", *point, no_exchange);
            remove_tree(run);
        }
    }
}

TEST(every_crash_point_is_reached) {
    /* A point the writer never reaches would make the crash tests vacuous.
     * after_aside exists only when replacing without RENAME_EXCHANGE. */
    for (const char *const *point = sft_checkpoint_crash_points; *point; point++) {
        char run[64];
        CHECK(new_run_dir(run, sizeof run) != NULL);
        sft_err err;
        CHECK_INT(save(run, 1, 1, &err), 0);
        CHECK_INT(save_crashing_at(run, 1, 2, *point, 1), 1);
        remove_tree(run);
    }
}

TEST(prune_keeps_the_last_n_and_the_best) {
    char run[64];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    for (int s = 1; s <= 6; s++) CHECK_INT(save(run, s * 10, s, &err), 0);
    CHECK_INT(sft_checkpoint_prune(run, 2, 20, &err), 0);
    int64_t *steps;
    size_t count;
    CHECK_INT(sft_checkpoint_list(run, &steps, &count, &err), 0);
    CHECK_INT(count, 3);
    if (count == 3) {
        CHECK_INT(steps[0], 20);
        CHECK_INT(steps[1], 50);
        CHECK_INT(steps[2], 60);
    }
    free(steps);
    /* keep 0 keeps everything; best -1 is "no best yet". */
    CHECK_INT(sft_checkpoint_prune(run, 0, -1, &err), 0);
    CHECK_INT(sft_checkpoint_list(run, &steps, &count, &err), 0);
    CHECK_INT(count, 3);
    free(steps);
    CHECK_INT(sft_checkpoint_prune(run, 1, -1, &err), 0);
    CHECK_INT(sft_checkpoint_list(run, &steps, &count, &err), 0);
    CHECK_INT(count, 1);
    if (count == 1) CHECK_INT(steps[0], 60);
    free(steps);
    char ckdir[128];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
    CHECK_INT(hidden_entries(ckdir), 0);
    remove_tree(run);
}

TEST(listing_ignores_folders_that_are_not_complete_checkpoints) {
    char run[64], path[256];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    CHECK_INT(save(run, 5, 5, &err), 0);
    /* A step-9 without a readable state, a step-8 whose state names another
     * step, a step-7 without weights, and names that are not steps. */
    snprintf(path, sizeof path, "%s/checkpoints/step-9", run);
    sft_mkdir_p(path, &err);
    snprintf(path, sizeof path, "%s/checkpoints/step-9/trainer_state.json", run);
    sft_write_file_atomic(path, "{", 1, &err);
    CHECK_INT(save(run, 8, 8, &err), 0);
    CHECK_INT(save(run, 7, 7, &err), 0);
    char *state5;
    size_t len;
    snprintf(path, sizeof path, "%s/checkpoints/step-5/trainer_state.json", run);
    CHECK_INT(sft_read_file(path, &state5, &len, &err), 0);
    snprintf(path, sizeof path, "%s/checkpoints/step-8/trainer_state.json", run);
    CHECK_INT(sft_write_file_atomic(path, state5, len, &err), 0);
    free(state5);
    snprintf(path, sizeof path, "%s/checkpoints/step-7/model.safetensors", run);
    CHECK_INT(unlink(path), 0);
    snprintf(path, sizeof path, "%s/checkpoints/step-010", run);
    CHECK_INT(sft_mkdir_p(path, &err), 0);
    snprintf(path, sizeof path, "%s/checkpoints/notes", run);
    CHECK_INT(sft_mkdir_p(path, &err), 0);
    int64_t *steps;
    size_t count;
    CHECK_INT(sft_checkpoint_list(run, &steps, &count, &err), 0);
    CHECK_INT(count, 1);
    if (count) CHECK_INT(steps[0], 5);
    free(steps);
    char latest[512];
    int64_t step;
    CHECK_INT(sft_checkpoint_latest(run, latest, sizeof latest, &step, &err), 0);
    CHECK_INT(step, 5);
    /* Pruning never deletes what it does not recognise. */
    CHECK_INT(sft_checkpoint_prune(run, 1, -1, &err), 0);
    snprintf(path, sizeof path, "%s/checkpoints/step-9", run);
    CHECK(sft_dir_exists(path));
    remove_tree(run);
}

TEST(resume_path_is_a_run_or_a_checkpoint_folder) {
    char run[64], out[512], path[256];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    CHECK_INT(sft_checkpoint_resolve(run, out, sizeof out, &err), -1);
    snprintf(path, sizeof path, "%s: no checkpoint to resume from (no complete checkpoints/step-N inside)", run);
    CHECK_STR(err.msg, path);
    CHECK_INT(sft_checkpoint_latest(run, out, sizeof out, NULL, &err), 1);
    CHECK_INT(save(run, 4, 4, &err), 0);
    CHECK_INT(save(run, 8, 8, &err), 0);
    snprintf(path, sizeof path, "%s/checkpoints/step-4", run);
    CHECK_INT(sft_checkpoint_resolve(path, out, sizeof out, &err), 0);
    CHECK_STR(out, path);
    CHECK_INT(sft_checkpoint_resolve(run, out, sizeof out, &err), 0);
    snprintf(path, sizeof path, "%s/checkpoints/step-8", run);
    CHECK_STR(out, path);
    CHECK_INT(sft_checkpoint_resolve("/nonexistent/run", out, sizeof out, &err), -1);
    CHECK_STR(err.msg, "/nonexistent/run: no such run or checkpoint folder to resume from");
    remove_tree(run);
}

TEST(loading_into_a_different_model_names_the_tensor) {
    char run[64], ckpt[256];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    CHECK_INT(save(run, 1, 1, &err), 0);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/step-1", run);
    buffers b;
    sft_trainer_state state;
    char expected[512];

    sft_ckpt_view reshaped[NVIEWS];
    memcpy(reshaped, views, sizeof reshaped);
    reshaped[0].shape[0] = 3, reshaped[0].shape[1] = 4;
    sft_ckpt_tensors t = {reshaped, NVIEWS, b.params, NULL, NULL, NUMEL};
    CHECK_INT(sft_checkpoint_load(ckpt, &t, NULL, &state, &err), -1);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors: tensor 'model.layers.0.w' has shape [4, 3], expected [3, 4]", ckpt);
    CHECK_STR(err.msg, expected);

    sft_ckpt_view renamed[NVIEWS];
    memcpy(renamed, views, sizeof renamed);
    renamed[2].name = "model.embed_tokens";
    t.views = renamed;
    CHECK_INT(sft_checkpoint_load(ckpt, &t, NULL, &state, &err), -1);
    snprintf(expected, sizeof expected, "%s/model.safetensors: tensor 'model.embed_tokens' is missing", ckpt);
    CHECK_STR(err.msg, expected);

    t.views = views;
    t.count = 2; /* the checkpoint holds a tensor this model lacks */
    CHECK_INT(sft_checkpoint_load(ckpt, &t, NULL, &state, &err), -1);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors: tensor 'model.embed' is not one of this model's 2 trainable tensors (a "
             "different model or LoRA configuration?)",
             ckpt);
    CHECK_STR(err.msg, expected);

    sft_ckpt_view outside[NVIEWS];
    memcpy(outside, views, sizeof outside);
    outside[2].offset = 20;
    t.views = outside;
    t.count = NVIEWS;
    CHECK_INT(sft_checkpoint_load(ckpt, &t, NULL, &state, &err), -1);
    CHECK_STR(err.msg, "checkpoint: tensor 'model.embed' (offset 20, 10 values) lies outside the 26-value buffer");

    sft_ckpt_view twice[NVIEWS];
    memcpy(twice, views, sizeof twice);
    twice[1].name = twice[0].name;
    t.views = twice;
    CHECK_INT(sft_checkpoint_load(ckpt, &t, NULL, &state, &err), -1);
    CHECK_STR(err.msg, "checkpoint: two tensors are named 'model.layers.0.w'");
    remove_tree(run);
}

TEST(a_failed_save_leaves_nothing_behind) {
    char run[64], ckdir[128];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
    sft_err err;
    buffers b;
    fill(&b, 1);
    sft_ckpt_tensors t = tensors_of(&b);
    sft_trainer_state state;
    state_of(&state, 3, 1);
    sft_ckpt_file files[] = {{"tokenizer.json", NULL, 0, "/nonexistent/tokenizer.json"}};
    sft_ckpt_save s = {&t, NULL, files, 1, &state};
    CHECK_INT(sft_checkpoint_save(run, &s, NULL, 0, &err), -1);
    CHECK_ERR_HAS(err.msg, "saving checkpoint");
    CHECK_ERR_HAS(err.msg, "/nonexistent/tokenizer.json");
    CHECK_INT(hidden_entries(ckdir), 0);
    char step3[160];
    snprintf(step3, sizeof step3, "%s/step-3", ckdir);
    CHECK(!sft_dir_exists(step3));
    sft_trainer_state_free(&state);
    remove_tree(run);
}

TEST(adapter_checkpoints_use_their_own_weights_name) {
    char run[64], ckpt[512];
    CHECK(new_run_dir(run, sizeof run) != NULL);
    sft_err err;
    buffers b, got;
    fill(&b, 2);
    memset(&got, 0, sizeof got);
    sft_ckpt_tensors t = tensors_of(&b);
    sft_trainer_state state, loaded;
    state_of(&state, 6, 2);
    sft_ckpt_save s = {&t, "adapter_model.safetensors", NULL, 0, &state};
    CHECK_INT(sft_checkpoint_save(run, &s, ckpt, sizeof ckpt, &err), 0);
    int64_t step;
    char latest[512];
    CHECK_INT(sft_checkpoint_latest(run, latest, sizeof latest, &step, &err), 0); /* valid without model.safetensors */
    CHECK_INT(step, 6);
    sft_ckpt_tensors into = tensors_of(&got);
    CHECK_INT(sft_checkpoint_load(ckpt, &into, "adapter_model.safetensors", &loaded, &err), 0);
    CHECK(same_buffers(&got, &b));
    sft_trainer_state_free(&loaded);
    memset(&got, 0, sizeof got);
    CHECK_INT(sft_checkpoint_load(ckpt, &into, NULL, &loaded, &err), 0); /* the name it recorded */
    CHECK(same_buffers(&got, &b));
    sft_trainer_state_free(&loaded);
    sft_trainer_state_free(&state);
    remove_tree(run);
}

/* best/ and final/: write a new folder, swap it in, the old one gone. */
static int write_export(const char *final_dir, const char *content, const char *crash_point, int no_exchange) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        if (crash_point) setenv("SFT_TEST_CRASH_AT", crash_point, 1);
        if (no_exchange) setenv("SFT_TEST_NO_RENAME_EXCHANGE", "1", 1);
        sft_err err;
        char tmp[512], path[600];
        if (sft_dir_begin(final_dir, tmp, sizeof tmp, &err)) _exit(2);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        if (sft_write_file_atomic(path, content, strlen(content), &err)) _exit(3);
        _exit(sft_dir_commit(tmp, final_dir, &err) ? 4 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? 1 : WEXITSTATUS(status) ? -1 : 0;
}

static int export_holds(const char *final_dir, const char *content) {
    char path[600], *text;
    size_t len;
    sft_err err;
    snprintf(path, sizeof path, "%s/config.json", final_dir);
    if (sft_read_file(path, &text, &len, &err)) return 0;
    int same = !strcmp(text, content);
    free(text);
    return same;
}

TEST(best_and_final_folders_are_replaced_atomically) {
    for (int no_exchange = 0; no_exchange <= 1; no_exchange++) {
        char run[64], best[128];
        CHECK(new_run_dir(run, sizeof run) != NULL);
        snprintf(best, sizeof best, "%s/best", run);
        CHECK_INT(write_export(best, "old", NULL, no_exchange), 0);
        CHECK(export_holds(best, "old"));
        CHECK_INT(write_export(best, "new", NULL, no_exchange), 0);
        CHECK(export_holds(best, "new"));
        CHECK_INT(hidden_entries(run), 0);
        /* A crash in the middle of a replacement: after recovery best/ is
         * the old or the new folder, whole. */
        const char *points[] = {"before_rename", "after_aside", "after_rename"};
        for (int i = 0; i < 3; i++) {
            char content[32];
            snprintf(content, sizeof content, "v%d", i);
            int before_ok = export_holds(best, "new") || export_holds(best, "v0") || export_holds(best, "v1");
            CHECK(before_ok);
            int crashed = write_export(best, content, points[i], no_exchange);
            sft_err err;
            CHECK_INT(sft_dir_recover(best, &err), 0);
            CHECK_INT(hidden_entries(run), 0);
            int after_new = export_holds(best, content);
            if (crashed == 1 && strcmp(points[i], "after_rename"))
                CHECK(!after_new && sft_dir_exists(best));
            else
                CHECK(after_new);
        }
        remove_tree(run);
    }
}
