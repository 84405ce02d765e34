/* signals.c: SIGINT/SIGTERM as a polled stop flag; a second one ends the
 * process (see signals.h). Only async-signal-safe calls in the handler:
 * write, sigaction, raise. */
#include "train/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;
static char notice_text[512];
static size_t notice_len;
static struct sigaction previous_int, previous_term;
static int installed;

static void on_signal(int sig) {
    if (stop_signal) {
        /* Second signal: die now, by that signal, as if no handler were set.
         * The signal is blocked while this handler runs, so it is delivered
         * the moment the handler returns. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    if (notice_len) {
        ssize_t ignored = write(STDERR_FILENO, notice_text, notice_len);
        (void)ignored;
    }
}

int sft_signals_install(const char *notice, sft_err *err) {
    notice_len = 0;
    if (notice) {
        size_t n = strlen(notice);
        if (n > sizeof notice_text - 2) n = sizeof notice_text - 2;
        memcpy(notice_text, notice, n);
        /* The notice interrupts a progress line: start on a fresh line. */
        notice_text[n] = '\n';
        notice_len = n + 1;
    }
    stop_signal = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* Restart interrupted reads and writes: the loop keeps working until it
     * reaches the end of the step and looks at the flag. */
    sa.sa_flags = SA_RESTART;
    struct sigaction old_int, old_term;
    if (sigaction(SIGINT, &sa, &old_int)) return sft_err_errno(err, "installing the SIGINT handler");
    if (sigaction(SIGTERM, &sa, &old_term)) {
        sigaction(SIGINT, &old_int, NULL);
        return sft_err_errno(err, "installing the SIGTERM handler");
    }
    if (!installed) {
        previous_int = old_int;
        previous_term = old_term;
        installed = 1;
    }
    return 0;
}

void sft_signals_uninstall(void) {
    if (!installed) return;
    sigaction(SIGINT, &previous_int, NULL);
    sigaction(SIGTERM, &previous_term, NULL);
    installed = 0;
}

int sft_signals_stop_requested(void) {
    return stop_signal;
}

void sft_signals_clear(void) {
    stop_signal = 0;
}
