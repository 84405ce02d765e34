/* run_flags.h: the command line of `sft train` (and of the commands that
 * take training flags: sweep, demo) mapped onto the run configuration.
 *
 * The flags are generated from the one table of training keys
 * (train/run_config.h) and parsed by the one flag parser (cli/args.h), so a
 * flag and its YAML key cannot drift apart: `--max-grad-norm 0.5` is
 * `max_grad_norm: 0.5`. `-c FILE` (or `--config FILE`) loads a YAML file
 * first; flags then override it, a list flag (`--data`) replacing the
 * file's whole list. Booleans are `--packing` or `--packing=false`;
 * `--resume` alone means the latest checkpoint of --out. */
#ifndef SFT_CLI_RUN_FLAGS_H
#define SFT_CLI_RUN_FLAGS_H

#include "cli/args.h"
#include "train/run_config.h"

/* `cfg` holds the defaults (sft_run_config_init, plus a command's own
 * presets) on entry. `extra` is an optional table of command-specific flags,
 * NULL-terminated like args.h's; a training key whose flag has the same name
 * is replaced by it (sweep's `--lr a,b,c`). Returns 0, 1 when --help was
 * printed, -1 with err set. Does not call sft_run_config_finish. */
int sft_run_flags_parse(sft_run_config *cfg, int argc, char **argv, const sft_arg *extra, const char *usage,
                        sft_err *err);

/* The help of sft_run_flags_parse: the training keys, then the extra flags. */
void sft_run_flags_print_help(const char *usage, const sft_arg *extra);

#endif
