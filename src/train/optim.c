/* optim.c: gradient norm, clipping, AdamW and learning-rate schedules over a
 * flat parameter set (see optim.h for the formulas, which follow
 * torch.optim.AdamW's single-tensor path, torch.nn.utils.clip_grad_norm_ and
 * transformers/optimization.py).
 *
 * Speed (bench/SPEED.md, "fused optimizer step"): the norm and the update are
 * memory-bound passes over arrays of 124M floats at GPT-2-124M, so they are
 * written to run at the memory bandwidth: the norm's sum advances eight
 * blocks side by side, the update is one parallel region over the whole set
 * (not one per tensor) with its loop vectorised, sqrt and division included
 * (both correctly rounded in SIMD: the same bits as the scalar code). The
 * Makefile compiles this file with -fno-math-errno, without which GCC keeps
 * sqrtf scalar; nothing here reads errno. */
#include "train/optim.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* SFT_CLONES: the kernels below are compiled for AVX-512, AVX2 and the
 * baseline as the model's are, each clone giving the same bits. */
#include "model/ops_simd.h"

/* ------------------------------------------------------------ gradient norm */

/* A fixed number of blocks, each summed in index order in double, and the
 * block sums added in block order: the result does not depend on how many
 * threads computed the partial sums. */
#define NORM_BLOCKS 256
/* Blocks summed side by side by one thread: eight independent chains of
 * additions instead of one, so the sum runs at the memory's speed rather than
 * at one element per double-add latency. Each block's own order is kept. */
#define NORM_LANES 8

/* The sums of squares of NORM_LANES consecutive blocks, from block first. A
 * float's square is exact in double, so only the additions round, in each
 * block's index order. */
SFT_CLONES static void norm_block_group(const float *g, size_t n, size_t block, int first, double *partial) {
    const float *start[NORM_LANES];
    size_t len[NORM_LANES], common = block;
    double sum[NORM_LANES];
    for (int j = 0; j < NORM_LANES; j++) {
        size_t lo = (size_t)(first + j) * block;
        len[j] = lo < n ? (n - lo < block ? n - lo : block) : 0;
        start[j] = g + (lo < n ? lo : 0);
        common = len[j] < common ? len[j] : common;
        sum[j] = 0.0;
    }
    for (size_t i = 0; i < common; i++) {
#pragma GCC unroll 8
        for (int j = 0; j < NORM_LANES; j++) {
            double x = start[j][i];
            sum[j] += x * x;
        }
    }
    /* only the last non-empty block is shorter than the others */
    for (int j = 0; j < NORM_LANES; j++) {
        for (size_t i = common; i < len[j]; i++) {
            double x = start[j][i];
            sum[j] += x * x;
        }
        partial[first + j] = sum[j];
    }
}

/* Fills partial[NORM_BLOCKS]; an orphaned worksharing loop, so it must run
 * inside a parallel region (every thread of it calls this). Ends with the
 * loop's barrier: the partials are complete for every thread. */
static void norm_partials_in_region(const float *g, size_t n, double *partial) {
    size_t block = (n + NORM_BLOCKS - 1) / NORM_BLOCKS;
#pragma omp for schedule(static)
    for (int group = 0; group < NORM_BLOCKS / NORM_LANES; group++)
        norm_block_group(g, n, block, group * NORM_LANES, partial);
}

static double norm_from_partials(const double *partial) {
    double total = 0.0;
    for (int b = 0; b < NORM_BLOCKS; b++)
        total += partial[b];
    return sqrt(total);
}

double sft_grad_norm(const sft_param_set *set) {
    if (!set->grad || !set->numel) return 0.0;
    double partial[NORM_BLOCKS];
#pragma omp parallel
    norm_partials_in_region(set->grad, set->numel, partial);
    return norm_from_partials(partial);
}

/* torch's clip_coef = max_norm / (total_norm + 1e-6); the gradients are
 * scaled only when it is below 1. max_norm <= 0: no clipping (coefficient 1). */
static double clip_coefficient(double norm, double max_norm) {
    return max_norm > 0 ? max_norm / (norm + 1e-6) : 1.0;
}

double sft_clip_grad_norm(sft_param_set *set, double max_norm) {
    double norm = sft_grad_norm(set);
    if (!set->grad) return norm;
    double coef = clip_coefficient(norm, max_norm);
    if (coef < 1.0) {
        float c = (float)coef;
        float *g = set->grad;
        size_t n = set->numel;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            g[i] *= c;
    }
    return norm;
}

/* -------------------------------------------------------------------- AdamW */

int sft_adamw_init(sft_adamw *opt, const sft_param_set *set, double beta1, double beta2, double eps,
                   double weight_decay, sft_err *err) {
    memset(opt, 0, sizeof *opt);
    if (!(beta1 >= 0 && beta1 < 1)) return sft_errf(err, "adam_beta1 %g must be in [0, 1)", beta1);
    if (!(beta2 >= 0 && beta2 < 1)) return sft_errf(err, "adam_beta2 %g must be in [0, 1)", beta2);
    if (!(eps > 0)) return sft_errf(err, "adam_epsilon %g must be positive", eps);
    if (!(weight_decay >= 0)) return sft_errf(err, "weight_decay %g must not be negative", weight_decay);
    opt->beta1 = beta1, opt->beta2 = beta2, opt->eps = eps, opt->weight_decay = weight_decay;
    opt->numel = set->numel;
    opt->m = calloc(set->numel ? set->numel : 1, sizeof(float));
    opt->v = calloc(set->numel ? set->numel : 1, sizeof(float));
    opt->spans = malloc((set->count ? (size_t)set->count : 1) * sizeof *opt->spans);
    if (!opt->m || !opt->v || !opt->spans) {
        sft_adamw_free(opt);
        return sft_errf(err, "out of memory for AdamW moments (%zu parameters)", set->numel);
    }
    /* tensors are laid out in order of registration, each after the last */
    for (int t = 0; t < set->count; t++) {
        const sft_tensor *tensor = &set->tensors[t];
        /* no decay on biases and norm weights (ndim < 2), as the fixtures' and HF's param groups */
        int decayed = tensor->ndim >= 2;
        sft_adamw_span *last = opt->span_count ? &opt->spans[opt->span_count - 1] : NULL;
        if (!tensor->numel) continue;
        if (last && last->hi == tensor->offset && last->decayed == decayed)
            last->hi = tensor->offset + tensor->numel;
        else
            opt->spans[opt->span_count++] = (sft_adamw_span){
                .lo = tensor->offset, .hi = tensor->offset + tensor->numel, .decayed = decayed};
    }
    return 0;
}

void sft_adamw_free(sft_adamw *opt) {
    free(opt->m);
    free(opt->v);
    free(opt->spans);
    opt->m = opt->v = NULL;
    opt->spans = NULL;
    opt->span_count = 0;
}

/* The per-step constants of the update, as floats (what the kernel uses). */
typedef struct adamw_constants {
    float step_size;  /* lr / (1 - beta1^t) */
    float bc2_sqrt;   /* sqrt(1 - beta2^t) */
    float w1, b2, w2; /* 1 - beta1, beta2, 1 - beta2 */
    float eps;
    float decay; /* 1 - lr * weight_decay, for the decayed spans */
} adamw_constants;

static adamw_constants adamw_constants_at(const sft_adamw *opt, long step, double lr) {
    return (adamw_constants){.step_size = (float)(lr / (1.0 - pow(opt->beta1, (double)step))),
                             .bc2_sqrt = (float)sqrt(1.0 - pow(opt->beta2, (double)step)),
                             .w1 = (float)(1.0 - opt->beta1),
                             .b2 = (float)opt->beta2,
                             .w2 = (float)(1.0 - opt->beta2),
                             .eps = (float)opt->eps,
                             .decay = (float)(1.0 - lr * opt->weight_decay)};
}

/* The update of n consecutive elements: the one copy of the AdamW formula.
 * grad_scale is the clip factor (1 when not clipping: g * 1 is g, bit for
 * bit), decay 1 for the spans without weight decay (p * 1 is p). */
SFT_CLONES static void adamw_update(float *restrict p, const float *restrict g, float *restrict m,
                                    float *restrict v, size_t n, float grad_scale, float decay,
                                    adamw_constants k) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        p[i] *= decay;
        m[i] += k.w1 * (gi - m[i]); /* torch's lerp_(grad, 1 - beta1) */
        v[i] = v[i] * k.b2 + k.w2 * gi * gi;
        float denom = sqrtf(v[i]) / k.bc2_sqrt + k.eps;
        p[i] -= k.step_size * m[i] / denom;
    }
}

/* The calling thread's share of one update over the whole set, inside a
 * parallel region: the threads split [0, numel) into contiguous slices of
 * whole 16-float blocks, and each updates the parts of the spans in its
 * slice. One region for the set, where a loop per tensor would open (and
 * wait at the end of) one region per tensor: 148 for GPT-2. */
static void adamw_update_in_region(const sft_adamw *opt, sft_param_set *set, const adamw_constants *k,
                                   float grad_scale) {
    size_t blocks = (opt->numel + 15) / 16, parts = (size_t)omp_get_num_threads();
    size_t part = (size_t)omp_get_thread_num();
    size_t lo = blocks * part / parts * 16, hi = blocks * (part + 1) / parts * 16;
    for (int s = 0; s < opt->span_count; s++) {
        const sft_adamw_span *span = &opt->spans[s];
        size_t a = span->lo > lo ? span->lo : lo, b = span->hi < hi ? span->hi : hi;
        if (a < b)
            adamw_update(set->data + a, set->grad + a, opt->m + a, opt->v + a, b - a, grad_scale,
                         span->decayed ? k->decay : 1.0f, *k);
    }
}

void sft_adamw_step(sft_adamw *opt, sft_param_set *set, double lr) {
    opt->step++;
    const adamw_constants k = adamw_constants_at(opt, opt->step, lr);
#pragma omp parallel
    adamw_update_in_region(opt, set, &k, 1.0f);
}

sft_adamw_step_report sft_adamw_step_clipped(sft_adamw *opt, sft_param_set *set, double lr,
                                             double max_grad_norm, int loss_is_finite) {
    sft_adamw_step_report report = {0};
    if (!set->grad) return report;
    const adamw_constants k = adamw_constants_at(opt, opt->step + 1, lr);
    double partial[NORM_BLOCKS], norm = 0.0, coef = 1.0;
    int apply = 0;
    /* One region: the norm's partial sums (ending at the loop's barrier), one
     * thread decides (clip factor, skip), then every thread updates its slice. */
#pragma omp parallel
    {
        norm_partials_in_region(set->grad, set->numel, partial);
#pragma omp single
        {
            norm = norm_from_partials(partial);
            coef = clip_coefficient(norm, max_grad_norm);
            apply = loss_is_finite && isfinite(norm);
        }
        if (apply) adamw_update_in_region(opt, set, &k, coef < 1.0 ? (float)coef : 1.0f);
    }
    if (apply) opt->step++;
    report.grad_norm = norm;
    report.clipped = coef < 1.0;
    report.grad_norm_clipped = report.clipped ? norm * coef : norm;
    report.applied = apply;
    return report;
}

double sft_lr_at(const sft_lr_schedule *s, long step) {
    if (step < s->warmup_steps)
        return s->base_lr * (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
    long span = s->total_steps - s->warmup_steps;
    double progress = (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
    if (progress > 1.0)
        progress = 1.0; /* past total_steps: stay at the floor (HF's cosine would climb again) */
    double r = s->min_lr_ratio, factor;
    switch (s->kind) {
    case SFT_LR_COSINE:
        factor = fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
        break;
    case SFT_LR_LINEAR:
        factor = fmax(0.0, 1.0 - progress);
        break;
    default:
        return s->base_lr;
    }
    return s->base_lr * (r + (1.0 - r) * factor);
}

int sft_lr_kind_parse(const char *name, sft_lr_kind *kind, sft_err *err) {
    if (!strcmp(name, "cosine"))
        *kind = SFT_LR_COSINE;
    else if (!strcmp(name, "linear"))
        *kind = SFT_LR_LINEAR;
    else if (!strcmp(name, "constant"))
        *kind = SFT_LR_CONSTANT;
    else
        return sft_errf(err, "lr_schedule \"%s\" is not one of cosine, linear, constant", name);
    return 0;
}

const char *sft_lr_kind_name(sft_lr_kind kind) {
    return kind == SFT_LR_COSINE ? "cosine" : kind == SFT_LR_LINEAR ? "linear" : "constant";
}
