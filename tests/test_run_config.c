/* test_run_config.c: the training configuration: defaults, YAML (through
 * libyaml), flags generated from the same key table, precedence, every
 * error message, the checks of combinations, and the resolved run.yaml
 * round trip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/run_flags.h"
#include "io/file.h"
#include "io/yaml.h"
#include "test.h"
#include "train/run_config.h"

/* Loads YAML text named "run.yaml" into a default config; returns rc. */
static int load_text(sft_run_config *cfg, const char *text, sft_err *err) {
    sft_run_config_init(cfg);
    sft_yaml_doc *doc = sft_yaml_load_string(text, strlen(text), "run.yaml", err);
    if (!doc) return -1;
    int rc = sft_run_config_apply_yaml(cfg, doc, err);
    sft_yaml_free(doc);
    return rc;
}

/* The error message of loading `text`, or "" when it loaded. */
static const char *yaml_error(const char *text) {
    static sft_err err;
    sft_run_config cfg;
    err.msg[0] = 0;
    if (!load_text(&cfg, text, &err)) err.msg[0] = 0;
    sft_run_config_free(&cfg);
    return err.msg;
}

/* Parses flags (argv without the program name) into a default config. */
static int parse_flags(sft_run_config *cfg, const char *const *args, sft_err *err) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "train";
    for (; args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    sft_run_config_init(cfg);
    return sft_run_flags_parse(cfg, argc, argv, NULL, "sft train [-c run.yaml] [flags]", err);
}

static const char *flag_error(const char *const *args) {
    static sft_err err;
    sft_run_config cfg;
    err.msg[0] = 0;
    if (parse_flags(&cfg, args, &err) == 0) err.msg[0] = 0;
    sft_run_config_free(&cfg);
    return err.msg;
}

static const char *finish_error(const char *text) {
    static sft_err err;
    sft_run_config cfg;
    err.msg[0] = 0;
    if (load_text(&cfg, text, &err) == 0 && sft_run_config_finish(&cfg, &err) == 0) err.msg[0] = 0;
    sft_run_config_free(&cfg);
    return err.msg;
}

static char *temp_dir(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sft-test-rc-XXXXXX");
    return mkdtemp(path);
}

#define REQUIRED "model: m\ndata: d.jsonl\nout: o\n"

TEST(defaults_are_the_documented_ones) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, REQUIRED, &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    CHECK_INT(cfg.max_len, 1024);
    CHECK_INT(cfg.batch_size, 8);
    CHECK_INT(cfg.grad_accum, 1);
    CHECK_NEAR(cfg.epochs, 3, 0);
    CHECK_NEAR(cfg.lr, 2e-5, 0); /* full fine-tuning */
    CHECK_INT(cfg.lr_schedule, SFT_RUN_SCHEDULE_LINEAR);
    CHECK_NEAR(cfg.warmup_ratio, 0.03, 0);
    CHECK_NEAR(cfg.max_grad_norm, 1.0, 0);
    CHECK_NEAR(cfg.adam_beta1, 0.9, 0);
    CHECK_NEAR(cfg.adam_beta2, 0.999, 0);
    CHECK_NEAR(cfg.adam_eps, 1e-8, 0);
    CHECK_NEAR(cfg.weight_decay, 0, 0);
    CHECK_INT(cfg.seed, 42);
    CHECK_INT(cfg.format, SFT_RUN_FORMAT_AUTO);
    CHECK_STR(cfg.template_name, "auto");
    CHECK_INT(cfg.overlong, SFT_RUN_OVERLONG_TRUNCATE);
    CHECK_INT(cfg.on_nonfinite, SFT_RUN_NONFINITE_STOP);
    CHECK_INT(cfg.save_dtype, SFT_RUN_SAVE_AUTO);
    CHECK_INT(cfg.lora_r, 0);
    CHECK_INT(cfg.packing, 0);
    CHECK_INT(cfg.train_on_prompt, 0);
    CHECK(cfg.resume == NULL);
    CHECK(sft_run_config_resume_dir(&cfg) == NULL);
    CHECK(cfg.threads >= 1); /* 0 resolved to the number of cores */
    sft_run_config_free(&cfg);
}

TEST(lora_runs_default_to_a_tenfold_learning_rate) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, REQUIRED "lora_r: 8\n", &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    CHECK_NEAR(cfg.lr, 2e-4, 0);
    sft_run_config_free(&cfg);
    /* An explicit lr always wins. */
    CHECK_INT(load_text(&cfg, REQUIRED "lora_r: 8\nlr: 1e-3\n", &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    CHECK_NEAR(cfg.lr, 1e-3, 0);
    sft_run_config_free(&cfg);
}

TEST(yaml_sets_every_kind_of_value) {
    sft_run_config cfg;
    sft_err err;
    const char *text = "# a comment\n"
                       "model: models/llama\n"
                       "data:\n  - a.jsonl\n  - 'b c.json'\n"
                       "val_split: 0.1\n"
                       "format: sharegpt\n"
                       "template: chatml\n"
                       "max_len: 512\n"
                       "packing: yes\n"
                       "lr: 2e-5\n" /* PyYAML would read this as a string; we read a number */
                       "lr_schedule: cosine\n"
                       "lora_r: 16\n"
                       "lora_targets: [q_proj, v_proj]\n"
                       "overlong: drop\n"
                       "resume: true\n"
                       "out: runs/x\n";
    CHECK_INT(load_text(&cfg, text, &err), 0);
    CHECK_STR(cfg.model, "models/llama");
    CHECK_INT(cfg.data.count, 2);
    CHECK_STR(cfg.data.items[1], "b c.json");
    CHECK_NEAR(cfg.val_split, 0.1, 0);
    CHECK_INT(cfg.format, SFT_RUN_FORMAT_SHAREGPT);
    CHECK_STR(cfg.template_name, "chatml");
    CHECK_INT(cfg.max_len, 512);
    CHECK_INT(cfg.packing, 1);
    CHECK_NEAR(cfg.lr, 2e-5, 0);
    CHECK_INT(cfg.lr_schedule, SFT_RUN_SCHEDULE_COSINE);
    CHECK_INT(cfg.lora_targets.count, 2);
    CHECK_STR(cfg.lora_targets.items[0], "q_proj");
    CHECK_INT(cfg.overlong, SFT_RUN_OVERLONG_DROP);
    CHECK_STR(sft_run_config_resume_dir(&cfg), "runs/x"); /* resume: true = the latest of out */
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    sft_run_config_free(&cfg);
}

TEST(yaml_scalar_list_is_one_item_and_lora_targets_split_at_commas) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, "data: one,two.jsonl\nlora_targets: q_proj, k_proj,v_proj\n", &err), 0);
    CHECK_INT(cfg.data.count, 1); /* a file name may hold a comma */
    CHECK_STR(cfg.data.items[0], "one,two.jsonl");
    CHECK_INT(cfg.lora_targets.count, 3);
    CHECK_STR(cfg.lora_targets.items[1], "k_proj");
    sft_run_config_free(&cfg);
}

TEST(yaml_null_resets_a_key_to_its_default) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, "template: ~\nval_data:\nmax_len: null\n", &err), 0);
    CHECK_STR(cfg.template_name, "auto");
    CHECK(cfg.val_data == NULL);
    CHECK_INT(cfg.max_len, 1024);
    sft_run_config_free(&cfg);
    /* Quoted, "null" is a name like any other. */
    CHECK_INT(load_text(&cfg, "template: \"null\"\n", &err), 0);
    CHECK_STR(cfg.template_name, "null");
    sft_run_config_free(&cfg);
}

TEST(empty_yaml_file_changes_nothing) {
    CHECK_STR(yaml_error(""), "");
    CHECK_STR(yaml_error("# only a comment\n"), "");
}

TEST(unknown_yaml_key_suggests_the_nearest) {
    CHECK_STR(yaml_error("model: m\nmax_grad_nrom: 1\n"),
              "run.yaml:2:1: unknown key 'max_grad_nrom' (did you mean 'max_grad_norm'?)");
    CHECK_STR(yaml_error("max-len: 10\n"), "run.yaml:1:1: unknown key 'max-len' (did you mean 'max_len'?)");
    CHECK_STR(yaml_error("learning_rate: 1\n"), "run.yaml:1:1: unknown key 'learning_rate' (see sft train --help)");
}

TEST(wrong_yaml_types_name_key_and_expected_type) {
    CHECK_STR(yaml_error("lr: fast\n"), "run.yaml:1:5: lr expects a number, got 'fast'");
    CHECK_STR(yaml_error("batch_size: 2.5\n"), "run.yaml:1:13: batch_size expects an integer, got '2.5'");
    CHECK_STR(yaml_error("packing: maybe\n"), "run.yaml:1:10: packing expects true or false, got 'maybe'");
    CHECK_STR(yaml_error("lr_schedule: cosin\n"),
              "run.yaml:1:14: lr_schedule expects one of linear|cosine|constant, got 'cosin' (did you mean 'cosine'?)");
    CHECK_STR(yaml_error("format: csv\n"),
              "run.yaml:1:9: format expects one of auto|alpaca|sharegpt|messages|prompt-completion|text, got 'csv'");
    CHECK_STR(yaml_error("lr: [1, 2]\n"), "run.yaml:1:5: lr expects a number, got a list");
    CHECK_STR(yaml_error("model:\n  path: x\n"), "run.yaml:2:3: model expects a string, got a mapping");
    CHECK_STR(yaml_error("data: {a: 1}\n"),
              "run.yaml:1:7: data expects a file path or a list of file paths, got a mapping");
    CHECK_STR(yaml_error("data:\n  - a.jsonl\n  - [b]\n"), "run.yaml:3:5: data[1] expects a string, got list");
    CHECK_STR(yaml_error("data:\n  - a.jsonl\n  -\n"), "run.yaml:3:4: data[1] expects a string, got null");
    CHECK_STR(yaml_error("seed: 99999999999999999999\n"),
              "run.yaml:1:7: seed expects an integer, got '99999999999999999999'");
    CHECK_STR(yaml_error("lr: .nan\n"), "run.yaml:1:5: lr must be a finite number, got '.nan'");
    CHECK_STR(yaml_error("lora_targets: q_proj,,v_proj\n"),
              "run.yaml:1:15: lora_targets expects comma-separated names, got 'q_proj,,v_proj'");
    CHECK_STR(yaml_error("model: ''\n"), "run.yaml:1:8: model must not be empty");
}

TEST(out_of_range_values_say_the_range) {
    CHECK_STR(yaml_error("batch_size: 0\n"), "run.yaml:1:13: batch_size must be >= 1, got 0");
    CHECK_STR(yaml_error("lr: -1\n"), "run.yaml:1:5: lr must be > 0, got -1");
    CHECK_STR(yaml_error("lr: 0\n"), "run.yaml:1:5: lr must be > 0, got 0");
    CHECK_STR(yaml_error("val_split: 1\n"), "run.yaml:1:12: val_split must be in [0, 1), got 1");
    CHECK_STR(yaml_error("adam_beta2: 1.5\n"), "run.yaml:1:13: adam_beta2 must be in [0, 1), got 1.5");
    CHECK_STR(yaml_error("max_len: 1\n"), "run.yaml:1:10: max_len must be >= 2, got 1");
    CHECK_STR(yaml_error("max_grad_norm: -0.5\n"), "run.yaml:1:16: max_grad_norm must be >= 0, got -0.5");
    CHECK_STR(yaml_error("grad_accum: -2\n"), "run.yaml:1:13: grad_accum must be >= 1, got -2");
    CHECK_STR(yaml_error("threads: 100000\n"), "run.yaml:1:10: threads must be <= 4096, got 100000");
}

TEST(yaml_syntax_errors_give_file_line_column) {
    CHECK_STR(yaml_error("model: m\ndata: [a, b\nout: o\n"),
              "run.yaml:3:4: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence started "
              "at line 2)");
    CHECK_STR(yaml_error("\tlr: 1\n"),
              "run.yaml:1:1: invalid YAML: found character that cannot start any token (a tab: YAML indents with "
              "spaces) (while scanning for the next token started at line 1)");
    CHECK_STR(yaml_error("lr: *nope\n"), "run.yaml:1:5: invalid YAML: found undefined alias");
    CHECK_STR(yaml_error("lr: 1\nlr: 2\n"), "run.yaml:2:1: duplicate key 'lr' (first given at line 1)");
    CHECK_STR(yaml_error("- a\n- b\n"),
              "run.yaml:1:1: expected a mapping of training keys (key: value lines), got a list");
    CHECK_STR(yaml_error("lr: 1\n---\nlr: 2\n"),
              "run.yaml:2:1: a second YAML document; one configuration per file expected");
    CHECK_STR(yaml_error("model: m\n  bad indent: x\n"),
              "run.yaml:2:13: invalid YAML: mapping values are not allowed in this context");
}

TEST(yaml_aliases_resolve) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, "val_data: &v held.jsonl\ndata: [*v]\n", &err), 0);
    CHECK_STR(cfg.data.items[0], "held.jsonl");
    sft_run_config_free(&cfg);
}

TEST(missing_yaml_file_names_it) {
    sft_run_config cfg;
    sft_err err;
    sft_run_config_init(&cfg);
    CHECK_INT(sft_run_config_load_yaml(&cfg, "/nonexistent/run.yaml", &err), -1);
    CHECK_ERR_HAS(err.msg, "/nonexistent/run.yaml");
    sft_run_config_free(&cfg);
}

TEST(flags_set_keys_with_dashes) {
    sft_run_config cfg;
    sft_err err;
    const char *args[] = {"--model", "m", "--data", "a.jsonl", "--data=b.jsonl", "--max-grad-norm", "0.5",
                          "--lora-r", "8", "--lora-targets", "q_proj,v_proj", "--packing", "--train-on-prompt",
                          "--out", "runs/r", "--lr-schedule=cosine", "--val-split", "0.05", NULL};
    CHECK_INT(parse_flags(&cfg, args, &err), 0);
    CHECK_STR(cfg.model, "m");
    CHECK_INT(cfg.data.count, 2);
    CHECK_STR(cfg.data.items[1], "b.jsonl");
    CHECK_NEAR(cfg.max_grad_norm, 0.5, 0);
    CHECK_INT(cfg.lora_r, 8);
    CHECK_INT(cfg.lora_targets.count, 2);
    CHECK_INT(cfg.packing, 1);
    CHECK_INT(cfg.train_on_prompt, 1);
    CHECK_INT(cfg.lr_schedule, SFT_RUN_SCHEDULE_COSINE);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    sft_run_config_free(&cfg);
}

TEST(flags_override_the_yaml_file) {
    char *dir = temp_dir();
    CHECK(dir != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/run.yaml", dir);
    const char *yaml = "model: m\ndata: [a.jsonl, b.jsonl]\nout: o\nlr: 1e-4\npacking: true\nmax_len: 256\n";
    sft_err err;
    CHECK_INT(sft_write_file_atomic(path, yaml, strlen(yaml), &err), 0);
    sft_run_config cfg;
    const char *args[] = {"-c", path, "--lr", "3e-4", "--packing=false", "--data", "c.jsonl", NULL};
    CHECK_INT(parse_flags(&cfg, args, &err), 0);
    CHECK_NEAR(cfg.lr, 3e-4, 0);
    CHECK_INT(cfg.packing, 0);
    CHECK_INT(cfg.max_len, 256); /* from the file, not overridden */
    CHECK_INT(cfg.data.count, 1); /* a list flag replaces the file's list */
    CHECK_STR(cfg.data.items[0], "c.jsonl");
    CHECK_INT(cfg.origin[sft_run_key_find("lr") - sft_run_keys(&(size_t){0})], SFT_RUN_FROM_FLAG);
    CHECK_INT(cfg.origin[sft_run_key_find("max_len") - sft_run_keys(&(size_t){0})], SFT_RUN_FROM_FILE);
    sft_run_config_free(&cfg);
    /* The flag wins wherever it stands relative to -c. */
    const char *before[] = {"--lr", "3e-4", "--config", path, NULL};
    CHECK_INT(parse_flags(&cfg, before, &err), 0);
    CHECK_NEAR(cfg.lr, 3e-4, 0);
    sft_run_config_free(&cfg);
    const char *eq[] = {"--config=" "/nonexistent.yaml", NULL};
    CHECK_INT(parse_flags(&cfg, eq, &err), -1);
    CHECK_ERR_HAS(err.msg, "/nonexistent.yaml");
    sft_run_config_free(&cfg);
    unlink(path);
    rmdir(dir);
}

TEST(resume_flag_takes_an_optional_folder) {
    sft_run_config cfg;
    sft_err err;
    const char *bare[] = {"--out", "runs/a", "--resume", "--lr", "1e-4", NULL};
    CHECK_INT(parse_flags(&cfg, bare, &err), 0);
    CHECK_STR(sft_run_config_resume_dir(&cfg), "runs/a");
    CHECK_NEAR(cfg.lr, 1e-4, 0);
    sft_run_config_free(&cfg);
    const char *last[] = {"--out", "runs/a", "--resume", NULL};
    CHECK_INT(parse_flags(&cfg, last, &err), 0);
    CHECK_STR(sft_run_config_resume_dir(&cfg), "runs/a");
    sft_run_config_free(&cfg);
    const char *dir[] = {"--out", "runs/b", "--resume", "runs/a/checkpoints/step-20", NULL};
    CHECK_INT(parse_flags(&cfg, dir, &err), 0);
    CHECK_STR(sft_run_config_resume_dir(&cfg), "runs/a/checkpoints/step-20");
    sft_run_config_free(&cfg);
}

TEST(flag_errors_are_exact) {
    const char *unknown[] = {"--max-grad-nrom", "1", NULL};
    CHECK_STR(flag_error(unknown), "unknown flag --max-grad-nrom (did you mean --max-grad-norm?)");
    const char *underscore[] = {"--max_len", "1", NULL};
    CHECK_STR(flag_error(underscore), "unknown flag --max_len (did you mean --max-len?)");
    const char *type[] = {"--lr", "abc", NULL};
    CHECK_STR(flag_error(type), "--lr expects a number, got 'abc'");
    const char *range[] = {"--batch-size", "0", NULL};
    CHECK_STR(flag_error(range), "--batch-size must be >= 1, got 0");
    const char *choice[] = {"--on-nonfinite", "ignore", NULL};
    CHECK_STR(flag_error(choice), "--on-nonfinite expects one of stop|skip, got 'ignore'");
    const char *boolean[] = {"--packing=perhaps", NULL};
    CHECK_STR(flag_error(boolean), "--packing expects true or false, got 'perhaps'");
    const char *missing[] = {"--lr", NULL};
    CHECK_STR(flag_error(missing), "--lr needs a value");
    const char *positional[] = {"extra", NULL};
    CHECK_STR(flag_error(positional), "unexpected argument 'extra' (see --help)");
    const char *twice[] = {"-c", "a.yaml", "-c", "b.yaml", NULL};
    CHECK_STR(flag_error(twice), "-c/--config given twice ('a.yaml' and 'b.yaml'); give one YAML file");
    const char *nofile[] = {"-c", NULL};
    CHECK_STR(flag_error(nofile), "-c needs a YAML file");
}

TEST(combinations_are_checked) {
    CHECK_STR(finish_error("data: d\nout: o\n"), "no model given: --model DIR (or model: in the YAML file)");
    CHECK_STR(finish_error("model: m\nout: o\n"),
              "no training data given: --data FILE (repeatable; or data: in the YAML file)");
    CHECK_STR(finish_error("model: m\ndata: d\n"), "no run folder given: --out DIR (or out: in the YAML file)");
    CHECK_STR(finish_error(REQUIRED "val_data: v.jsonl\nval_split: 0.1\n"),
              "val_data and val_split are both set; give one of them (val_data: v.jsonl, val_split: 0.1)");
    CHECK_STR(finish_error(REQUIRED "warmup_steps: 10\nwarmup_ratio: 0.1\n"),
              "warmup_steps and warmup_ratio are both set; give one of them (warmup_steps: 10, warmup_ratio: 0.1)");
    CHECK_STR(finish_error(REQUIRED "early_stopping_patience: 3\n"),
              "early_stopping_patience needs validation data (val_data or val_split)");
    CHECK_STR(finish_error(REQUIRED "early_stopping_patience: 3\nval_split: 0.1\neval_every: 0\n"),
              "early_stopping_patience counts evaluations, but eval_every is 0 (only a final one)");
    CHECK_STR(finish_error(REQUIRED "lora_targets: [q_proj]\n"),
              "lora_targets is set but lora_r is 0 (full fine-tuning); set lora_r to use LoRA");
    CHECK_STR(finish_error(REQUIRED "early_stopping_patience: 3\nval_split: 0.1\n"), "");
}

TEST(warmup_steps_replace_the_default_ratio) {
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, REQUIRED "warmup_steps: 10\n", &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    CHECK_INT(cfg.warmup_steps, 10);
    CHECK_NEAR(cfg.warmup_ratio, 0, 0); /* the resolved run.yaml says what the run does */
    sft_run_config_free(&cfg);
}

/* A value of the right type for each key, different from its default. */
static const char *sample_value(const sft_run_key *key) {
    if (!strcmp(key->name, "val_split")) return "0.25";
    if (!strcmp(key->name, "template")) return "llama3";
    if (!strcmp(key->name, "resume")) return "runs/old";
    switch (key->type) {
    case SFT_KEY_STRING:
        return "some/path";
    case SFT_KEY_LIST:
        return "x.jsonl";
    case SFT_KEY_INT:
        return "7";
    case SFT_KEY_NUMBER: {
        /* 0.5 is some keys' default (clip_fraction): then another value */
        sft_run_config defaults;
        sft_run_config_init(&defaults);
        char value[64];
        sft_run_config_format_value(&defaults, key, value, sizeof value);
        sft_run_config_free(&defaults);
        return strcmp(value, "0.5") ? "0.5" : "0.625";
    }
    case SFT_KEY_BOOL:
        return "true";
    case SFT_KEY_CHOICE:
        return key->choices[1];
    case SFT_KEY_RESUME:
        return "runs/old";
    }
    return "";
}

/* Every key of the table is a YAML key and a flag with the same effect:
 * the property that keeps the two from drifting apart. */
TEST(every_key_is_both_a_flag_and_a_yaml_key_with_the_same_effect) {
    size_t count;
    const sft_run_key *keys = sft_run_keys(&count);
    CHECK(count >= 40);
    for (size_t i = 0; i < count; i++) {
        const sft_run_key *key = &keys[i];
        char flag[80], yaml[256];
        char flag_name[64];
        sft_run_key_flag_name(key, flag_name, sizeof flag_name);
        snprintf(flag, sizeof flag, "--%s=%s", flag_name, sample_value(key));
        snprintf(yaml, sizeof yaml, "%s: %s\n", key->name, sample_value(key));
        sft_run_config from_flag, from_yaml, defaults;
        sft_err err;
        const char *args[] = {flag, NULL};
        int rc_flag = parse_flags(&from_flag, args, &err);
        if (rc_flag) fprintf(stderr, "  key %s: %s\n", key->name, err.msg);
        int rc_yaml = load_text(&from_yaml, yaml, &err);
        if (rc_yaml) fprintf(stderr, "  key %s: %s\n", key->name, err.msg);
        CHECK_INT(rc_flag, 0);
        CHECK_INT(rc_yaml, 0);
        sft_run_config_init(&defaults);
        CHECK(sft_run_config_equal(&from_flag, &from_yaml));
        const char *diff = sft_run_config_first_difference(&defaults, &from_flag);
        CHECK(diff != NULL && !strcmp(diff, key->name));
        CHECK(key->help && strlen(key->help) > 10);
        sft_run_config_free(&from_flag);
        sft_run_config_free(&from_yaml);
        sft_run_config_free(&defaults);
    }
}

TEST(help_lists_every_flag_with_its_default) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sft_run_config_print_help(f, "sft train [-c run.yaml] [flags]");
    fclose(f);
    size_t count;
    const sft_run_key *keys = sft_run_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char flag[80];
        snprintf(flag, sizeof flag, "--");
        sft_run_key_flag_name(&keys[i], flag + 2, sizeof flag - 2);
        CHECK_ERR_HAS(text, flag);
        CHECK_ERR_HAS(text, keys[i].help);
    }
    CHECK_ERR_HAS(text, "--max-grad-norm X");
    CHECK_ERR_HAS(text, "(default: 1)");
    CHECK_ERR_HAS(text, "--lr-schedule linear|cosine|constant");
    CHECK_ERR_HAS(text, "(default: 2e-05, or 0.0002 with LoRA)");
    CHECK_ERR_HAS(text, "-c, --config FILE");
    free(text);
}

TEST(resolved_yaml_reloads_to_an_identical_config) {
    sft_run_config cfg, again;
    sft_err err;
    const char *text = "model: \"models/my model: v2\"\n"
                       "data: [\"true\", \"123\", \"-dash.jsonl\", \"quote\\\"d.jsonl\", \"tab\\tand\\nnewline\", "
                       "\"# not a comment\", 'caf\xc3\xa9.jsonl', \"~\", \"null\", \"[x]\", "
                       /* YAML 1.1 line breaks and non-printables (found by fuzz_run_config) */
                       "\"nel\\Nls\\Lps\\Pesc\\e\\x80bom\\uFEFF\"]\n"
                       "val_data: \"0.5\"\n"
                       "template: ./templates/my.jinja\n"
                       "lr: 3.3333333333333335e-05\n"
                       "epochs: 0.1\n"
                       "min_lr_ratio: 0.1\n"
                       "lora_r: 8\nlora_alpha: 32\nlora_targets: [q_proj, o_proj]\n"
                       "seed: 9007199254740993\n" /* above 2^53: kept exactly as an integer */
                       "resume: \"yes\"\n"        /* a folder called yes */
                       "out: 'runs/it''s'\n";
    CHECK_INT(load_text(&cfg, text, &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    CHECK_STR(cfg.resume, "yes");
    char *yaml = sft_run_config_to_yaml(&cfg, &err);
    CHECK(yaml != NULL);
    CHECK_INT(load_text(&again, yaml, &err), 0);
    CHECK_INT(sft_run_config_finish(&again, &err), 0);
    const char *diff = sft_run_config_first_difference(&cfg, &again);
    if (diff) fprintf(stderr, "  differs at %s\n%s\n", diff, yaml);
    CHECK(diff == NULL);
    CHECK_INT(again.seed, 9007199254740993LL);
    CHECK_STR(again.data.items[4], "tab\tand\nnewline");
    CHECK_STR(again.data.items[10], "nel\xc2\x85ls\xe2\x80\xa8ps\xe2\x80\xa9" "esc\x1b\xc2\x80" "bom\xef\xbb\xbf");
    free(yaml);
    sft_run_config_free(&again);

    /* The same through a file, written atomically. */
    char *dir = temp_dir();
    char path[128];
    snprintf(path, sizeof path, "%s/run.yaml", dir);
    CHECK_INT(sft_run_config_write_yaml(&cfg, path, &err), 0);
    sft_run_config_init(&again);
    CHECK_INT(sft_run_config_load_yaml(&again, path, &err), 0);
    CHECK_INT(sft_run_config_finish(&again, &err), 0);
    CHECK(sft_run_config_equal(&cfg, &again));
    sft_run_config_free(&again);
    sft_run_config_free(&cfg);
    unlink(path);
    rmdir(dir);
}

TEST(resolved_defaults_reload_identically) {
    sft_run_config cfg, again;
    sft_err err;
    CHECK_INT(load_text(&cfg, REQUIRED, &err), 0);
    CHECK_INT(sft_run_config_finish(&cfg, &err), 0);
    char *yaml = sft_run_config_to_yaml(&cfg, &err);
    CHECK_ERR_HAS(yaml, "\nlr: 2e-05\n");
    CHECK_ERR_HAS(yaml, "\nlora_targets: []\n");
    CHECK_ERR_HAS(yaml, "\nresume: false\n");
    CHECK_ERR_HAS(yaml, "\nval_data: null\n");
    CHECK_INT(load_text(&again, yaml, &err), 0);
    CHECK_INT(sft_run_config_finish(&again, &err), 0);
    CHECK(sft_run_config_equal(&cfg, &again));
    free(yaml);
    sft_run_config_free(&cfg);
    sft_run_config_free(&again);
}

TEST(copy_is_deep) {
    sft_run_config cfg, copy;
    sft_err err;
    CHECK_INT(load_text(&cfg, REQUIRED "lora_r: 4\nlora_targets: [a, b]\n", &err), 0);
    CHECK_INT(sft_run_config_copy(&copy, &cfg, &err), 0);
    CHECK(sft_run_config_equal(&cfg, &copy));
    CHECK(copy.model != cfg.model);
    sft_run_config_free(&cfg);
    CHECK_STR(copy.lora_targets.items[1], "b");
    sft_run_config_free(&copy);
}

TEST(yaml_scalar_typing_rules) {
    int64_t i;
    double d;
    int b;
    CHECK_INT(sft_yaml_scalar_int("-12", &i), 0);
    CHECK_INT(i, -12);
    CHECK_INT(sft_yaml_scalar_int("1_000", &i), -1);
    CHECK_INT(sft_yaml_scalar_int("0x10", &i), -1);
    CHECK_INT(sft_yaml_scalar_number(".5", &d), 0);
    CHECK_NEAR(d, 0.5, 0);
    CHECK_INT(sft_yaml_scalar_number("inf", &d), -1); /* YAML spells it .inf */
    CHECK_INT(sft_yaml_scalar_number("-.inf", &d), 0);
    CHECK(isinf(d) && d < 0);
    CHECK_INT(sft_yaml_scalar_number("1e400", &d), -1);
    CHECK_INT(sft_yaml_scalar_bool("Off", &b), 0);
    CHECK_INT(b, 0);
    CHECK_INT(sft_yaml_scalar_bool("truthy", &b), -1);
    char out[64];
    sft_yaml_quote(out, sizeof out, "plain/path.jsonl");
    CHECK_STR(out, "plain/path.jsonl");
    sft_yaml_quote(out, sizeof out, "no");
    CHECK_STR(out, "\"no\"");
    sft_yaml_quote(out, sizeof out, "a\"b");
    CHECK_STR(out, "\"a\\\"b\"");
}

TEST(a_command_flag_replaces_the_key_of_the_same_name) {
    /* sft sweep takes --lr a,b,c itself; the training key lr then stays as the file or default has it. */
    const char *lr_list = NULL;
    int dry_run = 0;
    const sft_arg extra[] = {
        {"lr", SFT_ARG_STRING, &lr_list, "learning rates to try, comma-separated", NULL},
        {"dry-run", SFT_ARG_BOOL, &dry_run, "print the trials only", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    char *argv[] = {"sweep", "--lr", "1e-4,3e-4", "--dry-run", "--batch-size", "4", NULL};
    sft_run_config cfg;
    sft_err err;
    sft_run_config_init(&cfg);
    CHECK_INT(sft_run_flags_parse(&cfg, 6, argv, extra, "sft sweep [flags]", &err), 0);
    CHECK_STR(lr_list, "1e-4,3e-4");
    CHECK_INT(dry_run, 1);
    CHECK_INT(cfg.batch_size, 4);
    CHECK(isnan(cfg.lr)); /* untouched: still the automatic default */
    sft_run_config_free(&cfg);
}

/* Every diagnosis threshold of the monitor's table is a training key (one
 * list of names: diagnose.h's), set by YAML and flag alike, range-checked,
 * and written to run.yaml. */
TEST(diagnosis_thresholds_are_training_keys) {
    size_t param_count, key_count;
    const sft_diagnose_param *params = sft_diagnose_params(&param_count);
    sft_run_keys(&key_count);
    CHECK(param_count >= 20);
    for (size_t i = 0; i < param_count; i++) {
        const sft_run_key *key = sft_run_key_find(params[i].name);
        CHECK(key != NULL);
        if (key) CHECK_INT(key->type, params[i].is_int ? SFT_KEY_INT : SFT_KEY_NUMBER);
    }
    sft_run_config cfg;
    sft_err err;
    CHECK_INT(load_text(&cfg, "spike_sigma: 4.5\nclip_window: 20\n", &err), 0);
    CHECK_NEAR(cfg.diagnose.spike_sigma, 4.5, 0);
    CHECK_INT(cfg.diagnose.clip_window, 20);
    CHECK_NEAR(cfg.diagnose.divergence_rise, 0.2, 0); /* the others keep their defaults */
    char *yaml = sft_run_config_to_yaml(&cfg, &err);
    CHECK(yaml && strstr(yaml, "\nspike_sigma: 4.5\n") && strstr(yaml, "\nclip_window: 20\n"));
    free(yaml);
    sft_run_config_free(&cfg);
    const char *args[] = {"--grad-spike-ratio", "20", NULL};
    CHECK_INT(parse_flags(&cfg, args, &err), 0);
    CHECK_NEAR(cfg.diagnose.grad_spike_ratio, 20, 0);
    sft_run_config_free(&cfg);
    CHECK_ERR_HAS(yaml_error("clip_window: 0\n"), "clip_window must be >= 1");
    CHECK_ERR_HAS(yaml_error("spike_sigma: -1\n"), "spike_sigma must be > 0");
    CHECK_ERR_HAS(yaml_error("spike_sigmaa: 3\n"), "did you mean 'spike_sigma'");
}
