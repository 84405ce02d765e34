/* parity.c: counting and printing parity checks (see parity.h). */
#include "io/parity.h"

#include <math.h>
#include <stdarg.h>

void sft_parity_line(sft_parity *p, int ok, const char *fmt, ...) {
    p->checks++;
    if (!ok) p->failures++;
    if (ok && !p->verbose) return;
    fputs(ok ? "ok   " : "FAIL ", p->out);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}

int sft_parity_close(double a, double b, double rel, double floor) {
    double scale = fabs(b) > floor ? fabs(b) : floor;
    return fabs(a - b) <= rel * scale;
}
