/* args.h: the one command-line flag parser of the CLI.
 *
 * A command describes its flags in a table; sft_args_parse fills the
 * destinations, collects positional arguments, prints --help from the table,
 * and rejects unknown flags with the nearest valid name. Flags are written
 * `--name value` or `--name=value`; `--flag` alone for booleans. */
#ifndef SFT_CLI_ARGS_H
#define SFT_CLI_ARGS_H

#include <stddef.h>

#include "io/err.h"

typedef enum {
    SFT_ARG_BOOL,   /* int*: set to 1 */
    SFT_ARG_INT,    /* long*: */
    SFT_ARG_DOUBLE, /* double*: */
    SFT_ARG_STRING, /* const char**: points into argv */
    SFT_ARG_LIST,   /* sft_arg_list*: repeatable, values appended */
} sft_arg_kind;

#define SFT_ARG_LIST_MAX 64
typedef struct {
    const char *items[SFT_ARG_LIST_MAX];
    int count;
} sft_arg_list;

typedef struct {
    const char *name; /* without the leading "--"; NULL ends the table */
    sft_arg_kind kind;
    void *dest;
    const char *help;
    int *was_set; /* optional: set to 1 when given on the command line */
} sft_arg;

/* Parses argv[1..] (argv[0] is the command name). Positional arguments go to
 * `positional` (up to max_positional). Returns 0, 1 when --help was printed,
 * or -1 with err set. `usage` is the one-line synopsis printed by --help. */
int sft_args_parse(int argc, char **argv, const sft_arg *table, const char **positional,
                   int max_positional, int *positional_count, const char *usage, sft_err *err);

void sft_args_print_help(const char *usage, const sft_arg *table);

#endif
