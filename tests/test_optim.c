/* test_optim.c: AdamW against a hand computation of torch.optim.AdamW,
 * clipping against torch.nn.utils.clip_grad_norm_'s formula, and the
 * learning-rate schedules against transformers' formulas at chosen steps. */
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "test.h"
#include "train/optim.h"

/* A set with a 2-D weight [2, 2] (decayed) and a 1-D bias [3] (not decayed). */
static sft_param_set two_tensors(void) {
    sft_param_set set = {0};
    sft_err err;
    sft_param_set_add(&set, "w", 2, 2, 2, &err);
    sft_param_set_add(&set, "b", 1, 3, 0, &err);
    sft_param_set_alloc(&set, 1, &err);
    return set;
}

TEST(adamw_two_steps_match_a_hand_computation_with_decay_only_on_matrices) {
    sft_param_set set = two_tensors();
    const sft_tensor *w = sft_param_set_find(&set, "w"), *b = sft_param_set_find(&set, "b");
    float p0[7] = {0.5f, -1.0f, 2.0f, 0.25f, 0.1f, -0.2f, 0.3f};
    float g1[7] = {0.1f, -0.3f, 0.0f, 2.0f, 1.0f, -0.5f, 0.02f};
    float g2[7] = {-0.2f, 0.1f, 0.5f, 1.0f, 0.0f, 0.3f, -0.04f};
    float *p[7], *g[7];
    for (int i = 0; i < 4; i++)
        p[i] = set.data + w->offset + i, g[i] = set.grad + w->offset + i;
    for (int i = 0; i < 3; i++)
        p[4 + i] = set.data + b->offset + i, g[4 + i] = set.grad + b->offset + i;
    for (int i = 0; i < 7; i++)
        *p[i] = p0[i];
    sft_adamw opt;
    sft_err err;
    const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    CHECK(sft_adamw_init(&opt, &set, b1, b2, eps, wd, &err) == 0);
    double want[7], m[7] = {0}, v[7] = {0};
    for (int i = 0; i < 7; i++)
        want[i] = p0[i];
    for (int step = 1; step <= 2; step++) {
        const float *gs = step == 1 ? g1 : g2;
        for (int i = 0; i < 7; i++)
            *g[i] = gs[i];
        sft_adamw_step(&opt, &set, lr);
        for (int i = 0; i < 7; i++) {
            double decay = i < 4 ? wd : 0.0; /* the bias (ndim 1) is not decayed */
            want[i] *= 1 - lr * decay;
            m[i] = b1 * m[i] + (1 - b1) * gs[i];
            v[i] = b2 * v[i] + (1 - b2) * gs[i] * gs[i];
            double mhat_step = lr / (1 - pow(b1, step));
            want[i] -= mhat_step * m[i] / (sqrt(v[i]) / sqrt(1 - pow(b2, step)) + eps);
        }
        for (int i = 0; i < 7; i++)
            CHECK_NEAR(*p[i], want[i], 1e-6);
    }
    CHECK_INT(opt.step, 2);
    sft_adamw_free(&opt);
    sft_param_set_free(&set);
}

TEST(adamw_rejects_invalid_hyperparameters) {
    sft_param_set set = two_tensors();
    sft_adamw opt;
    sft_err err = {0};
    CHECK(sft_adamw_init(&opt, &set, 1.0, 0.95, 1e-8, 0.1, &err) == -1);
    CHECK_ERR_HAS(err.msg, "adam_beta1");
    CHECK(sft_adamw_init(&opt, &set, 0.9, 0.95, 0, 0.1, &err) == -1);
    CHECK_ERR_HAS(err.msg, "adam_epsilon");
    sft_param_set_free(&set);
}

TEST(clipping_scales_by_max_norm_over_norm_plus_1e6_and_returns_the_preclip_norm) {
    sft_param_set set = two_tensors();
    float g[7] = {3, 0, 0, 0, 4, 0, 0}; /* norm 5 */
    for (int i = 0; i < 4; i++)
        set.grad[sft_param_set_find(&set, "w")->offset + i] = g[i];
    for (int i = 0; i < 3; i++)
        set.grad[sft_param_set_find(&set, "b")->offset + i] = g[4 + i];
    CHECK_NEAR(sft_grad_norm(&set), 5.0, 1e-12);
    CHECK_NEAR(sft_clip_grad_norm(&set, 1.0), 5.0, 1e-12);
    double coef = 1.0 / (5.0 + 1e-6);
    CHECK_NEAR(set.grad[sft_param_set_find(&set, "w")->offset], 3 * coef, 1e-7);
    CHECK_NEAR(set.grad[sft_param_set_find(&set, "b")->offset], 4 * coef, 1e-7);
    /* below the threshold nothing changes; max_norm 0 disables clipping */
    double before = sft_grad_norm(&set);
    CHECK_NEAR(sft_clip_grad_norm(&set, 10.0), before, 1e-12);
    CHECK_NEAR(sft_grad_norm(&set), before, 1e-12);
    set.grad[sft_param_set_find(&set, "w")->offset] = 100;
    double big = sft_grad_norm(&set);
    CHECK_NEAR(sft_clip_grad_norm(&set, 0.0), big, 1e-12);
    CHECK_NEAR(sft_grad_norm(&set), big, 1e-12);
    sft_param_set_free(&set);
}

TEST(cosine_schedule_matches_get_cosine_schedule_with_warmup) {
    sft_lr_schedule s = {SFT_LR_COSINE, 1e-3, 10, 110, 0.0};
    CHECK_NEAR(sft_lr_at(&s, 0), 0.0, 1e-15);   /* HF's first step has lr 0 with warmup */
    CHECK_NEAR(sft_lr_at(&s, 5), 5e-4, 1e-15);  /* linear warmup */
    CHECK_NEAR(sft_lr_at(&s, 10), 1e-3, 1e-15); /* peak */
    CHECK_NEAR(sft_lr_at(&s, 60), 5e-4, 1e-12); /* half-way: 0.5 * (1 + cos(pi/2)) */
    CHECK_NEAR(sft_lr_at(&s, 35), 1e-3 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-15);
    CHECK_NEAR(sft_lr_at(&s, 110), 0.0, 1e-15);
    CHECK_NEAR(sft_lr_at(&s, 200), 0.0, 1e-15); /* past the end: clamped at 0 */
}

TEST(min_lr_ratio_raises_the_floor_of_cosine_and_linear) {
    sft_lr_schedule c = {SFT_LR_COSINE, 1e-3, 0, 100, 0.1};
    CHECK_NEAR(sft_lr_at(&c, 0), 1e-3, 1e-15);
    CHECK_NEAR(sft_lr_at(&c, 50), 1e-3 * (0.1 + 0.9 * 0.5), 1e-12);
    CHECK_NEAR(sft_lr_at(&c, 100), 1e-4, 1e-15);
    sft_lr_schedule l = {SFT_LR_LINEAR, 2e-3, 4, 104, 0.0};
    CHECK_NEAR(sft_lr_at(&l, 2), 1e-3, 1e-15);
    CHECK_NEAR(sft_lr_at(&l, 54), 1e-3, 1e-15); /* get_linear_schedule_with_warmup: (104 - 54) / 100 */
    CHECK_NEAR(sft_lr_at(&l, 104), 0.0, 1e-15);
    l.min_lr_ratio = 0.25;
    CHECK_NEAR(sft_lr_at(&l, 104), 5e-4, 1e-15);
    sft_lr_schedule k = {SFT_LR_CONSTANT, 3e-4, 3, 100, 0.5};
    CHECK_NEAR(sft_lr_at(&k, 1), 1e-4, 1e-15);
    CHECK_NEAR(sft_lr_at(&k, 99), 3e-4, 1e-15);
}

TEST(schedule_names_parse_and_unknown_ones_are_errors) {
    sft_lr_kind kind;
    sft_err err = {0};
    CHECK(sft_lr_kind_parse("linear", &kind, &err) == 0 && kind == SFT_LR_LINEAR);
    CHECK(sft_lr_kind_parse("cosine", &kind, &err) == 0 && kind == SFT_LR_COSINE);
    CHECK(sft_lr_kind_parse("cosin", &kind, &err) == -1);
    CHECK_ERR_HAS(err.msg, "cosine, linear, constant");
    CHECK_STR(sft_lr_kind_name(SFT_LR_CONSTANT), "constant");
}
