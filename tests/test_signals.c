/* test_signals.c: the first SIGINT/SIGTERM sets the stop flag and the
 * process goes on; a second one ends it by that signal. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "train/signals.h"

TEST(first_sigint_sets_the_flag_and_the_process_goes_on) {
    sft_err err;
    CHECK_INT(sft_signals_install(NULL, &err), 0);
    CHECK_INT(sft_signals_stop_requested(), 0);
    raise(SIGINT);
    CHECK_INT(sft_signals_stop_requested(), SIGINT);
    sft_signals_clear();
    CHECK_INT(sft_signals_stop_requested(), 0);
    sft_signals_uninstall();
}

TEST(sigterm_also_asks_for_a_graceful_stop) {
    sft_err err;
    CHECK_INT(sft_signals_install(NULL, &err), 0);
    raise(SIGTERM);
    CHECK_INT(sft_signals_stop_requested(), SIGTERM);
    sft_signals_uninstall();
}

/* Runs `signals` raises in a child with the handlers installed; returns the wait status. */
static int child_status(int first, int second) {
    pid_t pid = fork();
    if (pid == 0) {
        sft_err err;
        /* The notice goes to stderr of the child; keep test output quiet. */
        if (sft_signals_install(NULL, &err)) _exit(3);
        raise(first);
        if (!sft_signals_stop_requested()) _exit(4);
        if (second) raise(second);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

TEST(second_signal_ends_the_process_at_once) {
    int status = child_status(SIGINT, SIGINT);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK_INT(WTERMSIG(status), SIGINT);
    status = child_status(SIGINT, SIGTERM);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK_INT(WTERMSIG(status), SIGTERM);
    /* One signal alone: the child finishes normally. */
    status = child_status(SIGINT, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(uninstall_restores_the_previous_handler) {
    sft_err err;
    struct sigaction ignore, now;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &ignore, NULL);
    CHECK_INT(sft_signals_install("stopping", &err), 0);
    sft_signals_uninstall();
    sigaction(SIGTERM, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);
    ignore.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &ignore, NULL);
}
