/* optim.h: the optimizer side of a training step over a flat parameter set
 * (model.h): global gradient norm, clipping exactly as
 * torch.nn.utils.clip_grad_norm_, AdamW exactly as torch.optim.AdamW
 * (decoupled weight decay, bias correction), the two fused into one pass for
 * the trainer, and the learning-rate schedules of transformers'
 * optimization.py. */
#ifndef SFT_TRAIN_OPTIM_H
#define SFT_TRAIN_OPTIM_H

#include <stddef.h>

#include "io/err.h"
#include "model/model.h"

/* L2 norm of every gradient of the set together (double accumulation, in a
 * fixed block order: the same bits for any thread count). */
double sft_grad_norm(const sft_param_set *set);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): coef = max_norm /
 * (norm + 1e-6), clamped to 1, multiplies every gradient. Returns the norm
 * BEFORE clipping (what torch returns and HF logs as grad_norm).
 * max_norm <= 0 disables clipping (the norm is still returned). */
double sft_clip_grad_norm(sft_param_set *set, double max_norm);

/* A run of adjacent elements of the set under one weight-decay rule: the
 * set's tensors, adjacent ones with the same rule merged (the alignment gaps
 * between tensors are left out). */
typedef struct sft_adamw_span {
    size_t lo, hi;
    int decayed; /* ndim >= 2: matrices and embeddings; not biases and norm weights */
} sft_adamw_span;

/* AdamW state: the two moments, each one array mirroring the set, and the
 * set's decay spans, worked out once by sft_adamw_init so that a step
 * allocates nothing. A step must be given the set the state was made for. */
typedef struct sft_adamw {
    double beta1, beta2, eps, weight_decay;
    float *m, *v;
    size_t numel;
    long step; /* completed steps */
    sft_adamw_span *spans;
    int span_count;
} sft_adamw;

int sft_adamw_init(sft_adamw *opt, const sft_param_set *set, double beta1, double beta2, double eps,
                   double weight_decay, sft_err *err);
void sft_adamw_free(sft_adamw *opt);

/* One step of torch.optim.AdamW at learning rate lr, per element:
 *   p -= lr * wd * p                  (wd = 0 for tensors with ndim < 2: biases, norms)
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) */
void sft_adamw_step(sft_adamw *opt, sft_param_set *set, double lr);

/* What one clipped step did. */
typedef struct sft_adamw_step_report {
    double grad_norm;         /* before clipping: what torch's clip_grad_norm_ returns and HF logs */
    double grad_norm_clipped; /* after clipping (grad_norm when clipping did not fire) */
    int clipped;              /* max_grad_norm / (grad_norm + 1e-6) < 1: the gradients were scaled */
    int applied;              /* 0: step skipped, nothing changed (non-finite norm or loss) */
} sft_adamw_step_report;

/* sft_clip_grad_norm(set, max_grad_norm) followed by sft_adamw_step(opt,
 * set, lr), with the same bits in the parameters and moments, in two passes
 * over the set instead of four: the norm (the same blocked sum), then one
 * parallel pass that scales each gradient as it reads it and updates p, m
 * and v. The gradients are only read (they keep their unclipped values).
 * The update is skipped, leaving parameters, moments and the step count
 * untouched, when the norm is not finite or loss_is_finite is 0 (the
 * trainer's non-finite-loss rule); the report is filled either way. */
sft_adamw_step_report sft_adamw_step_clipped(sft_adamw *opt, sft_param_set *set, double lr,
                                             double max_grad_norm, int loss_is_finite);

/* Learning-rate schedules. lr(s), for s = the number of optimizer steps
 * already taken (0 for the first step, as transformers' LambdaLR), with
 * W = warmup_steps, S = total_steps, r = min_lr_ratio:
 *   s < W:    base * s / max(1, W)                          (linear warmup)
 *   else, p = min(1, (s - W) / max(1, S - W)):
 *     cosine:   base * (r + (1 - r) * max(0, 0.5 * (1 + cos(pi * p))))
 *     linear:   base * (r + (1 - r) * max(0, 1 - p))
 *     constant: base
 * With r = 0 these are get_cosine_schedule_with_warmup,
 * get_linear_schedule_with_warmup and get_constant_schedule_with_warmup;
 * with r > 0 cosine is transformers' cosine_with_min_lr (min_lr_rate).
 * The one difference: p is clamped at 1, so a step past S keeps the final lr
 * instead of following the cosine back up. */
typedef enum { SFT_LR_COSINE, SFT_LR_LINEAR, SFT_LR_CONSTANT } sft_lr_kind;

typedef struct sft_lr_schedule {
    sft_lr_kind kind;
    double base_lr;
    long warmup_steps;
    long total_steps;
    double min_lr_ratio;
} sft_lr_schedule;

double sft_lr_at(const sft_lr_schedule *schedule, long step);
/* "cosine", "linear" or "constant"; anything else is an error naming the choices. */
int sft_lr_kind_parse(const char *name, sft_lr_kind *kind, sft_err *err);
const char *sft_lr_kind_name(sft_lr_kind kind);

#endif
