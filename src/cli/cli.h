/* cli.h: one entry point per subcommand, each in src/cli/cmd_NAME.c.
 * A command parses its flags (args.h), calls the library, prints, and
 * returns the process exit status; errors are printed once, here at the top,
 * as "sft NAME: message". */
#ifndef SFT_CLI_CLI_H
#define SFT_CLI_CLI_H

#include "io/err.h"

typedef int (*sft_cmd_fn)(int argc, char **argv);

/* Prints "sft CMD: MESSAGE" to stderr and returns the exit status 1. */
int sft_cli_fail(const char *cmd, const sft_err *err);

int sft_cmd_demo(int argc, char **argv);
int sft_cmd_train(int argc, char **argv);
int sft_cmd_sweep(int argc, char **argv);
int sft_cmd_eval(int argc, char **argv);
int sft_cmd_diagnose(int argc, char **argv);
int sft_cmd_report(int argc, char **argv);
int sft_cmd_generate(int argc, char **argv);
int sft_cmd_chat(int argc, char **argv);
int sft_cmd_data(int argc, char **argv);
int sft_cmd_export(int argc, char **argv);
int sft_cmd_init(int argc, char **argv);
int sft_cmd_tokenize(int argc, char **argv);
int sft_cmd_template(int argc, char **argv);
int sft_cmd_parity(int argc, char **argv);

#endif
