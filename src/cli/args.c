/* args.c: flag parsing for every subcommand (see args.h). */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/suggest.h"

void sft_args_print_help(const char *usage, const sft_arg *table) {
    printf("usage: %s\n", usage);
    if (table && table[0].name) printf("\nflags:\n");
    for (const sft_arg *a = table; a && a->name; a++) {
        const char *value = a->kind == SFT_ARG_BOOL     ? ""
                            : a->kind == SFT_ARG_INT    ? " N"
                            : a->kind == SFT_ARG_DOUBLE ? " X"
                                                        : " VALUE";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", a->name, value);
        printf("  %-28s %s%s\n", left, a->help, a->kind == SFT_ARG_LIST ? " (repeatable)" : "");
    }
    printf("  %-28s %s\n", "--help", "show this help");
}

static const sft_arg *find_flag(const sft_arg *table, const char *name, size_t len) {
    for (const sft_arg *a = table; a && a->name; a++)
        if (strlen(a->name) == len && !strncmp(a->name, name, len)) return a;
    return NULL;
}

static int unknown_flag(const sft_arg *table, const char *name, sft_err *err) {
    const char *names[256];
    size_t n = 0;
    for (const sft_arg *a = table; a && a->name && n < 256; a++) names[n++] = a->name;
    const char *near = sft_suggest(name, names, n);
    if (near) return sft_errf(err, "unknown flag --%s (did you mean --%s?)", name, near);
    return sft_errf(err, "unknown flag --%s (see --help)", name);
}

static int set_value(const sft_arg *a, const char *value, sft_err *err) {
    char *end;
    errno = 0;
    switch (a->kind) {
    case SFT_ARG_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end)
            return sft_errf(err, "--%s expects an integer, got '%s'", a->name, value);
        *(long *)a->dest = v;
        break;
    }
    case SFT_ARG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end)
            return sft_errf(err, "--%s expects a number, got '%s'", a->name, value);
        *(double *)a->dest = v;
        break;
    }
    case SFT_ARG_STRING:
        *(const char **)a->dest = value;
        break;
    case SFT_ARG_LIST: {
        sft_arg_list *list = a->dest;
        if (list->count >= SFT_ARG_LIST_MAX)
            return sft_errf(err, "--%s given more than %d times", a->name, SFT_ARG_LIST_MAX);
        list->items[list->count++] = value;
        break;
    }
    case SFT_ARG_BOOL:
        break;
    }
    if (a->was_set) *a->was_set = 1;
    return 0;
}

int sft_args_parse(int argc, char **argv, const sft_arg *table, const char **positional,
                   int max_positional, int *positional_count, const char *usage, sft_err *err) {
    int npos = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || arg[0] != '-' || !strcmp(arg, "-")) {
            if (npos >= max_positional)
                return sft_errf(err, "unexpected argument '%s' (see --help)", arg);
            positional[npos++] = arg;
            continue;
        }
        if (!strcmp(arg, "--")) {
            only_positional = 1;
            continue;
        }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            sft_args_print_help(usage, table);
            return 1;
        }
        if (arg[1] != '-') return sft_errf(err, "unknown flag %s (flags start with --)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const sft_arg *a = find_flag(table, name, name_len);
        if (!a) {
            char buf[128];
            snprintf(buf, sizeof buf, "%.*s", (int)name_len, name);
            return unknown_flag(table, buf, err);
        }
        if (a->kind == SFT_ARG_BOOL) {
            if (eq) return sft_errf(err, "--%s takes no value", a->name);
            *(int *)a->dest = 1;
            if (a->was_set) *a->was_set = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) return sft_errf(err, "--%s needs a value", a->name);
            value = argv[++i];
        }
        if (set_value(a, value, err)) return -1;
    }
    if (positional_count) *positional_count = npos;
    return 0;
}
