/* optim.c: gradient norm, clipping, AdamW and learning-rate schedules over a
 * flat parameter set (see optim.h for the formulas, which follow
 * torch.optim.AdamW's single-tensor path, torch.nn.utils.clip_grad_norm_ and
 * transformers/optimization.py). */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A fixed number of blocks, summed in order: the result does not depend on
 * how many threads computed the partial sums. */
#define NORM_BLOCKS 256

double sft_grad_norm(const sft_param_set *set) {
    if (!set->grad || !set->numel) return 0.0;
    double partial[NORM_BLOCKS];
    size_t n = set->numel, block = (n + NORM_BLOCKS - 1) / NORM_BLOCKS;
    const float *g = set->grad;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < NORM_BLOCKS; b++) {
        size_t lo = (size_t)b * block, hi = lo + block < n ? lo + block : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++)
            s += (double)g[i] * g[i];
        partial[b] = s;
    }
    double total = 0.0;
    for (int b = 0; b < NORM_BLOCKS; b++)
        total += partial[b];
    return sqrt(total);
}

double sft_clip_grad_norm(sft_param_set *set, double max_norm) {
    double norm = sft_grad_norm(set);
    if (max_norm <= 0 || !set->grad) return norm;
    double coef = max_norm / (norm + 1e-6);
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
    if (!opt->m || !opt->v) {
        sft_adamw_free(opt);
        return sft_errf(err, "out of memory for AdamW moments (%zu parameters)", set->numel);
    }
    return 0;
}

void sft_adamw_free(sft_adamw *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

void sft_adamw_step(sft_adamw *opt, sft_param_set *set, double lr) {
    opt->step++;
    const double bias_correction1 = 1.0 - pow(opt->beta1, (double)opt->step);
    const double bias_correction2 = 1.0 - pow(opt->beta2, (double)opt->step);
    const float step_size = (float)(lr / bias_correction1);
    const float bc2_sqrt = (float)sqrt(bias_correction2);
    const float w1 = (float)(1.0 - opt->beta1), b2 = (float)opt->beta2, w2 = (float)(1.0 - opt->beta2);
    const float eps = (float)opt->eps;
    for (int t = 0; t < set->count; t++) {
        const sft_tensor *tensor = &set->tensors[t];
        /* no decay on biases and norm weights (ndim < 2), as the fixtures' and HF's param groups */
        const float decay = tensor->ndim >= 2 ? (float)(1.0 - lr * opt->weight_decay) : 1.0f;
        float *p = set->data + tensor->offset, *g = set->grad + tensor->offset;
        float *m = opt->m + tensor->offset, *v = opt->v + tensor->offset;
        size_t n = tensor->numel;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            p[i] *= decay;
            m[i] += w1 * (gi - m[i]); /* torch's lerp_(grad, 1 - beta1) */
            v[i] = v[i] * b2 + w2 * gi * gi;
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            p[i] -= step_size * m[i] / denom;
        }
    }
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
