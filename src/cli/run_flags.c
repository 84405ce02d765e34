/* run_flags.c: training flags generated from the run-configuration key
 * table and parsed with args.h (see run_flags.h). */
#include "cli/run_flags.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sft_run_flags_print_help(const char *usage, const sft_arg *extra) {
    sft_run_config_print_help(stdout, usage);
    if (!extra || !extra[0].name) return;
    printf("\nflags of this command:\n");
    for (const sft_arg *a = extra; a->name; a++) {
        const char *value = a->kind == SFT_ARG_BOOL     ? ""
                            : a->kind == SFT_ARG_INT    ? " N"
                            : a->kind == SFT_ARG_DOUBLE ? " X"
                                                        : " VALUE";
        char left[128];
        snprintf(left, sizeof left, "--%s%s", a->name, value);
        printf("  %-30s %s%s\n", left, a->help, a->kind == SFT_ARG_LIST ? " (repeatable)" : "");
    }
}

static int is_extra(const sft_arg *extra, const char *flag) {
    for (const sft_arg *a = extra; a && a->name; a++)
        if (!strcmp(a->name, flag)) return 1;
    return 0;
}

/* The key whose flag is `--NAME` (NAME up to '=' or the end), unless an
 * extra flag of the command takes that name. */
static const sft_run_key *key_of_flag(const char *arg, const sft_arg *extra) {
    if (strncmp(arg, "--", 2)) return NULL;
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    size_t count;
    const sft_run_key *keys = sft_run_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char flag[64];
        sft_run_key_flag_name(&keys[i], flag, sizeof flag);
        if (strlen(flag) == len && !strncmp(flag, name, len)) return is_extra(extra, flag) ? NULL : &keys[i];
    }
    return NULL;
}

typedef struct {
    char **args; /* the rewritten argv handed to sft_args_parse */
    int count;
    char **owned; /* strings this parse allocated */
    int owned_count;
} arg_copy;

static void arg_copy_free(arg_copy *c) {
    for (int i = 0; i < c->owned_count; i++) free(c->owned[i]);
    free(c->owned);
    free(c->args);
}

/* "--packing" -> "--packing=true": args.h's booleans cannot be set back to
 * false, and a file's `packing: true` must be overridable from the command
 * line, so training booleans travel as values. */
static int push_owned(arg_copy *c, const char *a, const char *b, sft_err *err) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (!s) return sft_errf(err, "out of memory");
    snprintf(s, n, "%s%s", a, b);
    c->owned[c->owned_count++] = s;
    c->args[c->count++] = s;
    return 0;
}

int sft_run_flags_parse(sft_run_config *cfg, int argc, char **argv, const sft_arg *extra, const char *usage,
                        sft_err *err) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            sft_run_flags_print_help(usage, extra);
            return 1;
        }
    }
    size_t key_count;
    const sft_run_key *keys = sft_run_keys(&key_count);
    arg_copy c = {0};
    c.args = calloc((size_t)argc + 1, sizeof *c.args);
    c.owned = calloc((size_t)argc + 1, sizeof *c.owned);
    const char *config_path = NULL;
    size_t extra_count = 0;
    for (const sft_arg *a = extra; a && a->name; a++) extra_count++;
    sft_arg *table = calloc(extra_count + key_count + 1, sizeof *table);
    char (*flag_names)[64] = calloc(key_count, sizeof *flag_names);
    const char **raw = calloc(key_count, sizeof *raw);
    sft_arg_list *lists = calloc(key_count, sizeof *lists);
    int *given = calloc(key_count, sizeof *given);
    int rc = -1;
    if (!c.args || !c.owned || !table || !flag_names || !raw || !lists || !given) {
        sft_errf(err, "out of memory");
        goto done;
    }

    /* Pass 1: take out -c/--config, spell booleans and a bare --resume as values. */
    c.args[c.count++] = argv[0];
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional) {
            c.args[c.count++] = argv[i];
            continue;
        }
        if (!strcmp(arg, "--")) only_positional = 1;
        if (!strcmp(arg, "-c") || !strcmp(arg, "--config") || !strncmp(arg, "--config=", 9)) {
            const char *path = arg[1] == 'c' ? NULL : (arg[8] == '=' ? arg + 9 : NULL);
            if (!path) {
                if (i + 1 >= argc) {
                    sft_errf(err, "%s needs a YAML file", arg);
                    goto done;
                }
                path = argv[++i];
            }
            if (config_path) {
                sft_errf(err, "-c/--config given twice ('%s' and '%s'); give one YAML file", config_path, path);
                goto done;
            }
            config_path = path;
            continue;
        }
        const sft_run_key *key = key_of_flag(arg, extra);
        if (key && !strchr(arg, '=')) {
            int next_is_value = i + 1 < argc && argv[i + 1][0] != '-';
            if (key->type == SFT_KEY_BOOL || (key->type == SFT_KEY_RESUME && !next_is_value)) {
                if (push_owned(&c, arg, "=true", err)) goto done;
                continue;
            }
        }
        c.args[c.count++] = argv[i];
    }

    /* The flag table: the command's own flags, then one per training key. */
    size_t n = 0;
    for (size_t i = 0; i < extra_count; i++) table[n++] = extra[i];
    for (size_t i = 0; i < key_count; i++) {
        sft_run_key_flag_name(&keys[i], flag_names[i], sizeof flag_names[i]);
        if (is_extra(extra, flag_names[i])) continue;
        table[n].name = flag_names[i];
        table[n].help = keys[i].help;
        table[n].was_set = &given[i];
        if (keys[i].type == SFT_KEY_LIST) {
            table[n].kind = SFT_ARG_LIST;
            table[n].dest = &lists[i];
        } else {
            table[n].kind = SFT_ARG_STRING;
            table[n].dest = &raw[i];
        }
        n++;
    }

    if (sft_args_parse(c.count, c.args, table, NULL, 0, NULL, usage, err)) goto done;
    if (config_path && sft_run_config_load_yaml(cfg, config_path, err)) goto done;

    for (size_t i = 0; i < key_count; i++) {
        if (!given[i]) continue;
        char where[80];
        snprintf(where, sizeof where, "--%s", flag_names[i]);
        if (keys[i].type == SFT_KEY_LIST) {
            sft_run_config_clear_list(cfg, &keys[i]);
            for (int j = 0; j < lists[i].count; j++)
                if (sft_run_config_set_text(cfg, &keys[i], lists[i].items[j], where, SFT_RUN_FROM_FLAG, err))
                    goto done;
        } else if (sft_run_config_set_text(cfg, &keys[i], raw[i], where, SFT_RUN_FROM_FLAG, err)) {
            goto done;
        }
    }
    rc = 0;
done:
    arg_copy_free(&c);
    free(table);
    free(flag_names);
    free(raw);
    free(lists);
    free(given);
    return rc;
}
