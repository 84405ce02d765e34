/* test_optim.c: AdamW against a hand computation of torch.optim.AdamW,
 * clipping against torch.nn.utils.clip_grad_norm_'s formula, the fused
 * clip + AdamW step bit for bit against the two-pass sequence it replaces
 * (written out here as the reference), and the learning-rate schedules
 * against transformers' formulas at chosen steps. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
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

/* ---- the fused step against the two-pass reference ---- */

/* The reference: the optimizer as it was before the fused pass, one plain
 * loop each, single-threaded: the gradient norm as 256 blocks each summed in
 * order in double, the clip as a separate scaling pass over the gradients,
 * then AdamW tensor by tensor. */
#define REF_NORM_BLOCKS 256

static double ref_grad_norm(const float *g, size_t n) {
    size_t block = (n + REF_NORM_BLOCKS - 1) / REF_NORM_BLOCKS;
    double total = 0.0;
    for (int b = 0; b < REF_NORM_BLOCKS; b++) {
        size_t lo = (size_t)b * block, hi = lo + block < n ? lo + block : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++)
            s += (double)g[i] * g[i];
        total += s;
    }
    return sqrt(total);
}

typedef struct ref_adamw {
    float *m, *v;
    long step;
} ref_adamw;

/* sft_clip_grad_norm then sft_adamw_step as the trainer called them; returns
 * the pre-clip norm, leaves the clipped gradients in g, and skips the update
 * as the trainer did (non-finite loss or norm). */
static double ref_clip_and_step(ref_adamw *opt, const sft_param_set *set, float *g, double lr,
                                double max_norm, double beta1, double beta2, double eps, double wd,
                                int loss_is_finite) {
    size_t n = set->numel;
    double norm = ref_grad_norm(g, n);
    double coef = max_norm > 0 ? max_norm / (norm + 1e-6) : 1.0;
    if (max_norm > 0 && coef < 1.0)
        for (size_t i = 0; i < n; i++)
            g[i] *= (float)coef;
    if (!loss_is_finite || !isfinite(norm)) return norm;
    opt->step++;
    const float step_size = (float)(lr / (1.0 - pow(beta1, (double)opt->step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)opt->step));
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2), e = (float)eps;
    for (int t = 0; t < set->count; t++) {
        const sft_tensor *tensor = &set->tensors[t];
        const float decay = tensor->ndim >= 2 ? (float)(1.0 - lr * wd) : 1.0f;
        float *p = set->data + tensor->offset, *gt = g + tensor->offset;
        float *m = opt->m + tensor->offset, *v = opt->v + tensor->offset;
        for (size_t i = 0; i < tensor->numel; i++) {
            float gi = gt[i];
            p[i] *= decay;
            m[i] += w1 * (gi - m[i]);
            v[i] = v[i] * b2 + w2 * gi * gi;
            float denom = sqrtf(v[i]) / bc2_sqrt + e;
            p[i] -= step_size * m[i] / denom;
        }
    }
    return norm;
}

static uint64_t lcg_state;
static float lcg_uniform(void) { /* in [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg_state >> 40) / (double)(1ull << 23) - 1.0);
}

/* Odd sizes (tails shorter than a vector, one block of the norm longer than
 * the others), decayed (ndim 2) and not decayed (ndim 1) tensors, adjacent
 * ones with the same rule (merged into one span) and alignment gaps. */
static sft_param_set odd_sized_set(void) {
    sft_param_set set = {0};
    sft_err err;
    sft_param_set_add(&set, "bias1", 1, 1, 0, &err);
    sft_param_set_add(&set, "w15", 2, 3, 5, &err);
    sft_param_set_add(&set, "norm17", 1, 17, 0, &err);
    sft_param_set_add(&set, "w16a", 2, 4, 4, &err);
    sft_param_set_add(&set, "w16b", 2, 2, 8, &err); /* starts where w16a ends: one span with it and big */
    sft_param_set_add(&set, "big", 2, 1000003, 1, &err);
    sft_param_set_add(&set, "bias33", 1, 33, 0, &err);
    sft_param_set_alloc(&set, 1, &err);
    return set;
}

static int is_gap(const sft_param_set *set, size_t i) {
    for (int t = 0; t < set->count; t++)
        if (i >= set->tensors[t].offset && i < set->tensors[t].offset + set->tensors[t].numel) return 0;
    return 1;
}

/* Gradients of one step: random, scaled by magnitude (the norm is about
 * 577 * magnitude), zero in the alignment gaps as the model leaves them. */
static void fill_gradients(const sft_param_set *set, float *g, float magnitude) {
    for (size_t i = 0; i < set->numel; i++)
        g[i] = is_gap(set, i) ? 0.0f : magnitude * lcg_uniform();
}

/* Runs `steps` steps of the fused step and of the reference from the same
 * start at the given thread count; returns the number of elements (of p, m,
 * v, over all steps) and norms whose bits differ. */
static long fused_vs_reference(int threads, double max_norm, const float *magnitudes, int steps) {
    sft_param_set fused = odd_sized_set(), ref = odd_sized_set();
    size_t n = fused.numel;
    float *ref_g = malloc(n * sizeof(float)), *g_before = malloc(n * sizeof(float));
    sft_adamw opt;
    sft_err err;
    const double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, wd = 0.1;
    if (!ref_g || !g_before || sft_adamw_init(&opt, &fused, beta1, beta2, eps, wd, &err)) abort();
    ref_adamw ref_opt = {calloc(n, sizeof(float)), calloc(n, sizeof(float)), 0};
    lcg_state = 42;
    for (size_t i = 0; i < n; i++) {
        /* the gaps hold a sentinel: the step must not write outside the tensors */
        fused.data[i] = ref.data[i] = is_gap(&fused, i) ? 1234.5f : lcg_uniform();
    }
    long differing = 0;
    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
    for (int s = 0; s < steps; s++) {
        fill_gradients(&fused, fused.grad, magnitudes[s]);
        memcpy(ref_g, fused.grad, n * sizeof(float));
        memcpy(g_before, fused.grad, n * sizeof(float));
        double lr = 1e-3 * (s + 1);
        sft_adamw_step_report r = sft_adamw_step_clipped(&opt, &fused, lr, max_norm, 1);
        double want = ref_clip_and_step(&ref_opt, &ref, ref_g, lr, max_norm, beta1, beta2, eps, wd, 1);
        differing += memcmp(&r.grad_norm, &want, sizeof want) != 0;
        double coef = max_norm > 0 ? max_norm / (want + 1e-6) : 1.0;
        differing += r.clipped != (coef < 1.0) || r.applied != 1;
        differing += r.grad_norm_clipped != (coef < 1.0 ? want * coef : want);
        for (size_t i = 0; i < n; i++) {
            differing += memcmp(&fused.data[i], &ref.data[i], sizeof(float)) != 0;
            differing += memcmp(&opt.m[i], &ref_opt.m[i], sizeof(float)) != 0;
            differing += memcmp(&opt.v[i], &ref_opt.v[i], sizeof(float)) != 0;
        }
        /* the fused step reads the gradients without writing them */
        differing += memcmp(fused.grad, g_before, n * sizeof(float)) != 0;
    }
    differing += opt.step != ref_opt.step;
    for (size_t i = 0; i < n; i++)
        if (is_gap(&fused, i)) differing += fused.data[i] != 1234.5f || opt.m[i] != 0 || opt.v[i] != 0;
    omp_set_num_threads(saved_threads);
    free(ref_opt.m), free(ref_opt.v), free(ref_g), free(g_before);
    sft_adamw_free(&opt);
    sft_param_set_free(&fused);
    sft_param_set_free(&ref);
    return differing;
}

TEST(fused_step_is_bit_identical_to_clip_then_adamw_with_and_without_clipping_on_1_and_2_threads) {
    /* the norm is about 577 x magnitude: max_norm 1 clips the steps of
     * magnitude 0.1 and 1e-2 but not 1e-4; max_norm 0 never clips */
    const float magnitudes[3] = {0.1f, 1e-4f, 1e-2f};
    for (int threads = 1; threads <= 2; threads++) {
        CHECK_INT(fused_vs_reference(threads, 1.0, magnitudes, 3), 0);
        CHECK_INT(fused_vs_reference(threads, 0.0, magnitudes, 3), 0);
        CHECK_INT(fused_vs_reference(threads, 1e9, magnitudes, 2), 0);
    }
}

TEST(fused_step_decay_spans_merge_adjacent_tensors_with_the_same_rule_and_skip_the_gaps) {
    sft_param_set set = odd_sized_set();
    sft_adamw opt;
    sft_err err;
    CHECK(sft_adamw_init(&opt, &set, 0.9, 0.95, 1e-8, 0.1, &err) == 0);
    /* bias1 | w15 | norm17 | w16a + w16b + big (each starts where the last
     * ends) | bias33; w15 ends at 16 + 15, norm17 starts at 32 */
    CHECK_INT(opt.span_count, 5);
    const sft_tensor *a = sft_param_set_find(&set, "w16a"), *big = sft_param_set_find(&set, "big");
    const sft_tensor *w15 = sft_param_set_find(&set, "w15");
    CHECK_INT(opt.spans[1].lo, w15->offset);
    CHECK_INT(opt.spans[1].hi, w15->offset + 15);
    CHECK_INT(opt.spans[3].lo, a->offset);
    CHECK_INT(opt.spans[3].hi, big->offset + big->numel);
    CHECK(opt.spans[1].decayed && opt.spans[3].decayed);
    CHECK(!opt.spans[0].decayed && !opt.spans[2].decayed && !opt.spans[4].decayed);
    sft_adamw_free(&opt);
    sft_param_set_free(&set);
}

TEST(two_pass_api_matches_the_fused_step) {
    /* sft_clip_grad_norm + sft_adamw_step (the parity checker's and the
     * step benchmark's sequence) and the fused step give the same bits */
    sft_param_set a = odd_sized_set(), b = odd_sized_set();
    sft_adamw opt_a, opt_b;
    sft_err err;
    CHECK(sft_adamw_init(&opt_a, &a, 0.9, 0.999, 1e-8, 0.01, &err) == 0);
    CHECK(sft_adamw_init(&opt_b, &b, 0.9, 0.999, 1e-8, 0.01, &err) == 0);
    lcg_state = 7;
    for (int s = 0; s < 3; s++) {
        fill_gradients(&a, a.grad, s == 1 ? 1e-4f : 0.05f);
        memcpy(b.grad, a.grad, a.numel * sizeof(float));
        double norm_a = sft_clip_grad_norm(&a, 1.0);
        sft_adamw_step(&opt_a, &a, 3e-4);
        sft_adamw_step_report r = sft_adamw_step_clipped(&opt_b, &b, 3e-4, 1.0, 1);
        CHECK(norm_a == r.grad_norm);
        CHECK(memcmp(a.data, b.data, a.numel * sizeof(float)) == 0);
        CHECK(memcmp(opt_a.m, opt_b.m, a.numel * sizeof(float)) == 0);
        CHECK(memcmp(opt_a.v, opt_b.v, a.numel * sizeof(float)) == 0);
    }
    CHECK_INT(opt_a.step, 3);
    CHECK_INT(opt_b.step, 3);
    sft_adamw_free(&opt_a), sft_adamw_free(&opt_b);
    sft_param_set_free(&a), sft_param_set_free(&b);
}

TEST(grad_norm_has_the_same_bits_for_any_thread_count) {
    sft_param_set set = odd_sized_set();
    lcg_state = 3;
    fill_gradients(&set, set.grad, 1.0f);
    double want = ref_grad_norm(set.grad, set.numel);
    int saved_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        double norm = sft_grad_norm(&set);
        CHECK(memcmp(&norm, &want, sizeof norm) == 0);
    }
    omp_set_num_threads(saved_threads);
    /* fewer elements than blocks: most blocks are empty */
    sft_param_set tiny = two_tensors();
    tiny.grad[0] = 3, tiny.grad[16] = 4; /* w[0], b[0] */
    CHECK(sft_grad_norm(&tiny) == 5.0);
    sft_param_set_free(&tiny);
    sft_param_set_free(&set);
}

TEST(fused_step_skips_the_update_on_a_non_finite_loss_or_norm) {
    sft_param_set set = odd_sized_set();
    sft_adamw opt;
    sft_err err;
    CHECK(sft_adamw_init(&opt, &set, 0.9, 0.95, 1e-8, 0.1, &err) == 0);
    lcg_state = 11;
    for (size_t i = 0; i < set.numel; i++)
        set.data[i] = lcg_uniform();
    fill_gradients(&set, set.grad, 0.01f);
    sft_adamw_step_report r = sft_adamw_step_clipped(&opt, &set, 1e-3, 1.0, 1);
    CHECK(r.applied);
    size_t bytes = set.numel * sizeof(float);
    float *p = malloc(bytes), *m = malloc(bytes), *v = malloc(bytes);
    memcpy(p, set.data, bytes), memcpy(m, opt.m, bytes), memcpy(v, opt.v, bytes);
    /* a non-finite loss: the norm is still reported, nothing changes */
    r = sft_adamw_step_clipped(&opt, &set, 1e-3, 1.0, 0);
    CHECK(!r.applied && isfinite(r.grad_norm) && r.grad_norm > 0);
    /* a NaN gradient (so a NaN norm), with the loss finite */
    set.grad[sft_param_set_find(&set, "big")->offset + 500000] = NAN;
    r = sft_adamw_step_clipped(&opt, &set, 1e-3, 1.0, 1);
    CHECK(!r.applied && isnan(r.grad_norm));
    set.grad[sft_param_set_find(&set, "big")->offset + 500000] = INFINITY;
    r = sft_adamw_step_clipped(&opt, &set, 1e-3, 0.0, 1);
    CHECK(!r.applied && isinf(r.grad_norm));
    CHECK(memcmp(p, set.data, bytes) == 0 && memcmp(m, opt.m, bytes) == 0 && memcmp(v, opt.v, bytes) == 0);
    CHECK_INT(opt.step, 1);
    free(p), free(m), free(v);
    sft_adamw_free(&opt);
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
