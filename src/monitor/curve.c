/* curve.c: growing and ordering the series of a training curve (curve.h). */
#include "monitor/curve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sft_curve_init(sft_curve *c) { memset(c, 0, sizeof *c); }

void sft_curve_free(sft_curve *c) {
    free(c->train);
    free(c->eval);
    free(c->notes);
    memset(c, 0, sizeof *c);
}

static int grow(void **items, size_t *cap, size_t count, size_t item_size, sft_err *err) {
    if (count < *cap) return 0;
    size_t new_cap = *cap ? *cap * 2 : 256;
    void *p = realloc(*items, new_cap * item_size);
    if (!p) return sft_errf(err, "out of memory growing a curve to %zu points", new_cap);
    *items = p;
    *cap = new_cap;
    return 0;
}

int sft_curve_add_train(sft_curve *c, const sft_train_point *p, sft_err *err) {
    if (grow((void **)&c->train, &c->train_cap, c->train_count, sizeof *p, err)) return -1;
    c->train[c->train_count++] = *p;
    return 0;
}

int sft_curve_add_eval(sft_curve *c, const sft_eval_point *p, sft_err *err) {
    if (grow((void **)&c->eval, &c->eval_cap, c->eval_count, sizeof *p, err)) return -1;
    c->eval[c->eval_count++] = *p;
    return 0;
}

int sft_curve_add_note(sft_curve *c, const char *kind, int64_t step, const char *records, sft_err *err) {
    if (grow((void **)&c->notes, &c->note_cap, c->note_count, sizeof *c->notes, err)) return -1;
    sft_curve_note *n = &c->notes[c->note_count++];
    snprintf(n->kind, sizeof n->kind, "%s", kind);
    n->step = step;
    snprintf(n->records, sizeof n->records, "%s", records);
    return 0;
}

/* Insertion sort: stable, and the series are almost always already ordered. */
#define SORT_BY_STEP(items, count, type)                                   \
    for (size_t i = 1; i < (count); i++) {                                 \
        type item = (items)[i];                                            \
        size_t j = i;                                                      \
        while (j > 0 && (items)[j - 1].step > item.step) {                 \
            (items)[j] = (items)[j - 1];                                   \
            j--;                                                           \
        }                                                                  \
        (items)[j] = item;                                                 \
    }

void sft_curve_sort(sft_curve *c) {
    SORT_BY_STEP(c->train, c->train_count, sft_train_point);
    SORT_BY_STEP(c->eval, c->eval_count, sft_eval_point);
}

int sft_train_point_clip_known(const sft_train_point *p, double max_grad_norm) {
    if (p->has & SFT_HAS_CLIPPED) return 1;
    if ((p->has & SFT_HAS_GRAD_NORM) && (p->has & SFT_HAS_GRAD_NORM_CLIPPED)) return 1;
    return (p->has & SFT_HAS_GRAD_NORM) && max_grad_norm > 0;
}

int sft_train_point_was_clipped(const sft_train_point *p, double max_grad_norm) {
    if (p->has & SFT_HAS_CLIPPED) return p->clipped;
    if ((p->has & SFT_HAS_GRAD_NORM) && (p->has & SFT_HAS_GRAD_NORM_CLIPPED))
        return p->grad_norm_clipped < p->grad_norm;
    return (p->has & SFT_HAS_GRAD_NORM) && max_grad_norm > 0 && p->grad_norm > max_grad_norm;
}
