/* signals.h: a graceful stop for training on SIGINT (Ctrl-C) and SIGTERM
 * (a scheduler's stop).
 *
 * The first signal only sets a flag: the training loop polls it between
 * optimizer steps, finishes the step, saves a checkpoint and exits with a
 * message, so no work is lost and no file is half-written. A second signal
 * of either kind while the first is pending ends the process at once, with
 * the default action of that signal (the user pressed Ctrl-C twice because
 * they meant it). */
#ifndef SFT_TRAIN_SIGNALS_H
#define SFT_TRAIN_SIGNALS_H

#include "io/err.h"

/* Installs the handlers. `notice` (copied; may be NULL) is written to stderr
 * when the first signal arrives, e.g. "stopping after this step; press
 * Ctrl-C again to abort". The previous handlers are kept for uninstall. */
int sft_signals_install(const char *notice, sft_err *err);
/* Restores the handlers that were there before install. */
void sft_signals_uninstall(void);
/* 0, or the number of the first signal received (SIGINT or SIGTERM). */
int sft_signals_stop_requested(void);
/* Forgets a received signal (the next one is again a "first"). */
void sft_signals_clear(void);

#endif
