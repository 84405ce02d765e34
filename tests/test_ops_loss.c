/* test_ops_loss.c: the cross-entropy kernels of ops_loss.c against a float64
 * reference written here from the formulas: lse = max + log(sum exp(z - max)),
 * loss = lse - z[target], dloss/dz = scale * (softmax(z) - onehot(target)).
 * test_ops.c checks the formula by finite differences on one small block;
 * these tests cover what the blocked, one-pass form adds: rows of many
 * blocks with the maximum in any of them (the running sum rescaled), the
 * fused forward-backward, non-finite logits, and independence from the
 * thread count.
 * Tolerances: each exponential is good to about 1 ulp (fast_expf) and the
 * rounding of z - max to about ulp(30) / 2 = 1e-6 relative for logits of
 * magnitude 30, so the gradient is held to 4e-6 of the largest value; lse
 * adds a float sum per block of 1024 terms, so it is held to 2e-7 relative
 * (measured: at most 1.1e-7 at V = 50257, logits at scale 20). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "test.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *random_logits(int N, int V, double scale) {
    float *z = malloc(sizeof(float) * (size_t)N * V);
    for (size_t i = 0; i < (size_t)N * V; i++)
        z[i] = (float)(urand() * scale);
    return z;
}

static double ref_lse(const float *z, int V) {
    double mx = -INFINITY, s = 0.0;
    for (int i = 0; i < V; i++)
        mx = fmax(mx, z[i]);
    for (int i = 0; i < V; i++)
        s += exp((double)z[i] - mx);
    return mx + log(s);
}

/* Largest |got - want| over the rows' gradients, relative to the largest |want|. */
static double grad_rel_error(const float *grad, const float *z, const int32_t *targets, int N, int V,
                             double scale) {
    double worst = 0.0, largest = 0.0;
    for (int n = 0; n < N; n++) {
        const float *zr = z + (size_t)n * V;
        double lse = targets[n] == SFT_IGNORE_INDEX ? 0.0 : ref_lse(zr, V);
        for (int i = 0; i < V; i++) {
            double want = 0.0;
            if (targets[n] != SFT_IGNORE_INDEX) want = scale * (exp((double)zr[i] - lse) - (i == targets[n]));
            largest = fmax(largest, fabs(want));
            worst = fmax(worst, fabs(grad[(size_t)n * V + i] - want));
        }
    }
    return worst / largest;
}

/* Rows of several blocks (1024 columns each) with the row's maximum planted
 * in the first, a middle and the last (partial) block, and one row whose
 * values rise steadily so that every block raises the running maximum. */
enum { MN = 5, MV = 3000 };
static float *multiblock_logits(void) {
    float *z = random_logits(MN, MV, 30.0);
    z[0 * MV + 3] = 60.0f;       /* row 0: maximum in the first block */
    z[1 * MV + 1500] = 60.0f;    /* row 1: in the middle block */
    z[2 * MV + MV - 1] = 60.0f;  /* row 2: the last column of the partial block */
    for (int i = 0; i < MV; i++) /* row 3: every block raises the maximum */
        z[3 * MV + i] = -40.0f + 0.03f * (float)i;
    return z; /* row 4: random */
}

TEST(log_sum_exp_over_many_blocks_matches_float64) {
    float *z = multiblock_logits();
    int32_t targets[MN] = {3, 1500, SFT_IGNORE_INDEX, 2999, 17};
    float lse[MN];
    double sum = sft_cross_entropy_forward(lse, z, targets, MN, MV);
    double want_sum = 0.0;
    for (int n = 0; n < MN; n++) {
        double want = ref_lse(z + (size_t)n * MV, MV);
        CHECK_NEAR(lse[n], want, 2e-7 * fabs(want));
        if (targets[n] != SFT_IGNORE_INDEX) want_sum += want - z[(size_t)n * MV + targets[n]];
    }
    CHECK_NEAR(sum, want_sum, 1e-6 * fabs(want_sum));
    free(z);
}

TEST(log_sum_exp_of_a_gpt2_sized_row_matches_float64) {
    /* one block of 50257 is 49 blocks and a partial one: the shape of the gpt2 lm_head */
    enum { V = 50257 };
    float *z = random_logits(2, V, 20.0);
    int32_t targets[2] = {0, V - 1};
    float lse[2];
    sft_cross_entropy_forward(lse, z, targets, 2, V);
    for (int n = 0; n < 2; n++) {
        double want = ref_lse(z + (size_t)n * V, V);
        CHECK_NEAR(lse[n], want, 2e-7 * fabs(want));
    }
    free(z);
}

TEST(backward_over_many_blocks_gives_scaled_softmax_minus_onehot) {
    float *z = multiblock_logits(), *grad = malloc(sizeof(float) * MN * MV);
    int32_t targets[MN] = {3, SFT_IGNORE_INDEX, 2999, 0, 1024};
    float lse[MN];
    const float scale = 0.25f;
    sft_cross_entropy_forward(lse, z, targets, MN, MV);
    memcpy(grad, z, sizeof(float) * MN * MV);
    sft_cross_entropy_backward(grad, lse, targets, MN, MV, scale);
    CHECK(grad_rel_error(grad, z, targets, MN, MV, scale) < 4e-6);
    for (int i = 0; i < MV; i++) /* the ignored row: exact zeros */
        if (grad[MV + i] != 0.0f) {
            CHECK(grad[MV + i] == 0.0f);
            break;
        }
    free(grad);
    free(z);
}

TEST(fused_forward_backward_matches_the_separate_pair) {
    float *z = multiblock_logits(), *sep = malloc(sizeof(float) * MN * MV),
          *fused = malloc(sizeof(float) * MN * MV);
    int32_t targets[MN] = {3, SFT_IGNORE_INDEX, 2999, 0, 1024};
    float lse_sep[MN], lse_fused[MN];
    const float scale = 1.0f / 3.0f;
    memcpy(sep, z, sizeof(float) * MN * MV);
    memcpy(fused, z, sizeof(float) * MN * MV);
    double sum_sep = sft_cross_entropy_forward(lse_sep, sep, targets, MN, MV);
    sft_cross_entropy_backward(sep, lse_sep, targets, MN, MV, scale);
    double sum_fused = sft_cross_entropy_forward_backward(lse_fused, fused, targets, MN, MV, scale);
    CHECK_NEAR(sum_fused, sum_sep, 1e-12 * fabs(sum_sep)); /* the same lse, summed in another order */
    for (int n = 0; n < MN; n++) {
        if (targets[n] == SFT_IGNORE_INDEX)
            CHECK(isnan(lse_fused[n]));
        else
            CHECK(lse_fused[n] == lse_sep[n]);
    }
    CHECK(grad_rel_error(fused, z, targets, MN, MV, scale) < 4e-6);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)MN * MV; i++)
        worst = fmax(worst, fabs(fused[i] - sep[i]));
    CHECK(worst <= 4e-6 * scale); /* within a few float ulps of the largest gradient (scale) */
    free(fused);
    free(sep);
    free(z);
}

/* Runs the forward, the backward and the fused pair with `threads` threads. */
typedef struct {
    float lse[7], lse_fused[7];
    double sum, sum_fused;
    float *grad, *grad_fused;
} ce_run;
static ce_run run_with_threads(const float *z, const int32_t *targets, int N, int V, int threads) {
    ce_run r;
    size_t n = (size_t)N * V;
    r.grad = malloc(sizeof(float) * n);
    r.grad_fused = malloc(sizeof(float) * n);
    memcpy(r.grad, z, sizeof(float) * n);
    memcpy(r.grad_fused, z, sizeof(float) * n);
    int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    r.sum = sft_cross_entropy_forward(r.lse, r.grad, targets, N, V);
    sft_cross_entropy_backward(r.grad, r.lse, targets, N, V, 0.125f);
    r.sum_fused = sft_cross_entropy_forward_backward(r.lse_fused, r.grad_fused, targets, N, V, 0.125f);
    omp_set_num_threads(keep);
    return r;
}

TEST(results_are_the_same_bits_for_any_thread_count) {
    enum { N = 7, V = 2500 };
    float *z = random_logits(N, V, 25.0);
    int32_t targets[N] = {1, 2, SFT_IGNORE_INDEX, 2499, 1024, 1023, 7};
    ce_run one = run_with_threads(z, targets, N, V, 1);
    for (int threads = 2; threads <= 3; threads++) {
        ce_run r = run_with_threads(z, targets, N, V, threads);
        CHECK(r.sum == one.sum && r.sum_fused == one.sum_fused);
        CHECK(!memcmp(r.lse, one.lse, sizeof r.lse));
        CHECK(!memcmp(r.lse_fused, one.lse_fused, sizeof r.lse_fused)); /* NaN bits of the ignored row too */
        CHECK(!memcmp(r.grad, one.grad, sizeof(float) * N * V));
        CHECK(!memcmp(r.grad_fused, one.grad_fused, sizeof(float) * N * V));
        free(r.grad);
        free(r.grad_fused);
    }
    free(one.grad);
    free(one.grad_fused);
    free(z);
}

TEST(minus_infinity_logits_before_the_maximum_do_not_poison_the_row) {
    /* The first two blocks are all -inf (a masked vocabulary range): exp(z - max)
     * is undefined while the running maximum is itself -inf; they add nothing. */
    enum { V = 3000 };
    float z[V], grad[V];
    for (int i = 0; i < V; i++)
        z[i] = i < 2048 ? -INFINITY : (float)(urand() * 10.0);
    int32_t target = 2500;
    float lse, lse_fused;
    double sum = sft_cross_entropy_forward(&lse, z, &target, 1, V);
    CHECK_NEAR(lse, ref_lse(z, V), 2e-7 * fabs(ref_lse(z, V)));
    CHECK(isfinite(sum));
    memcpy(grad, z, sizeof z);
    double sum_fused = sft_cross_entropy_forward_backward(&lse_fused, grad, &target, 1, V, 1.0f);
    CHECK(lse_fused == lse && isfinite(sum_fused));
    CHECK(grad[0] == 0.0f && grad[2047] == 0.0f && isfinite(grad[2048]));
    memcpy(grad, z, sizeof z);
    sft_cross_entropy_backward(grad, &lse, &target, 1, V, 1.0f);
    CHECK(grad[0] == 0.0f && grad[2047] == 0.0f && isfinite(grad[2048]));
    /* ... but a NaN among them still makes the loss NaN */
    z[5] = NAN;
    CHECK(isnan(sft_cross_entropy_forward(&lse, z, &target, 1, V)));
    memcpy(grad, z, sizeof z);
    CHECK(isnan(sft_cross_entropy_forward_backward(&lse, grad, &target, 1, V, 1.0f)));
}

TEST(a_nan_or_infinite_logit_makes_the_loss_non_finite) {
    enum { V = 2100 };
    int32_t target = 5;
    float z[V], lse;
    for (int where = 0; where < V; where += 1037) { /* in the first, second and third block */
        for (int i = 0; i < V; i++)
            z[i] = (float)(urand() * 10.0);
        z[where] = NAN;
        CHECK(isnan(sft_cross_entropy_forward(&lse, z, &target, 1, V)));
        CHECK(isnan(sft_cross_entropy_forward_backward(&lse, z, &target, 1, V, 1.0f)));
        for (int i = 0; i < V; i++)
            z[i] = (float)(urand() * 10.0);
        z[where] = INFINITY;
        CHECK(!isfinite(sft_cross_entropy_forward(&lse, z, &target, 1, V)));
        CHECK(!isfinite(sft_cross_entropy_forward_backward(&lse, z, &target, 1, V, 1.0f)));
    }
}

TEST(logits_far_below_the_maximum_get_an_exact_zero_gradient) {
    /* exp(-100) underflows a float: the separate backward gives 0 there, and
     * so must the fused form (not the 1.6e-38 floor its sum term uses) */
    enum { V = 1500 };
    float z[V], sep[V], fused[V], lse;
    for (int i = 0; i < V; i++)
        z[i] = i % 3 ? -100.0f : (float)urand();
    int32_t target = 3;
    memcpy(sep, z, sizeof z);
    memcpy(fused, z, sizeof z);
    sft_cross_entropy_forward(&lse, sep, &target, 1, V);
    sft_cross_entropy_backward(sep, &lse, &target, 1, V, 0.5f);
    sft_cross_entropy_forward_backward(&lse, fused, &target, 1, V, 0.5f);
    int zeros_sep = 0, zeros_fused = 0;
    for (int i = 0; i < V; i++)
        if (i % 3) zeros_sep += sep[i] == 0.0f, zeros_fused += fused[i] == 0.0f;
    CHECK_INT(zeros_sep, V - V / 3);
    CHECK_INT(zeros_fused, V - V / 3);
}

/* The fused gradient by central differences of the float64 loss, on a
 * small case (the formula itself, as test_ops.c does for the pair). */
enum { FN = 3, FV = 40 };
static double fused_ref_loss(const double *z, const int32_t *targets, double scale) {
    double total = 0.0;
    for (int n = 0; n < FN; n++) {
        if (targets[n] == SFT_IGNORE_INDEX) continue;
        const double *zr = z + n * FV;
        double mx = -INFINITY, s = 0.0;
        for (int i = 0; i < FV; i++)
            mx = fmax(mx, zr[i]);
        for (int i = 0; i < FV; i++)
            s += exp(zr[i] - mx);
        total += mx + log(s) - zr[targets[n]];
    }
    return total * scale;
}

TEST(fused_gradient_matches_float64_finite_differences) {
    float *zf = random_logits(FN, FV, 8.0), lse[FN];
    double z[FN * FV];
    int32_t targets[FN] = {39, SFT_IGNORE_INDEX, 0};
    const double scale = 0.5;
    for (int i = 0; i < FN * FV; i++)
        z[i] = zf[i];
    double sum = sft_cross_entropy_forward_backward(lse, zf, targets, FN, FV, (float)scale);
    CHECK_NEAR(sum * scale, fused_ref_loss(z, targets, scale), 1e-5);
    double worst = 0.0;
    for (int i = 0; i < FN * FV; i++) {
        double keep = z[i], h = 1e-6;
        z[i] = keep + h;
        double lp = fused_ref_loss(z, targets, scale);
        z[i] = keep - h;
        double lm = fused_ref_loss(z, targets, scale);
        z[i] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - zf[i]));
    }
    CHECK(worst < 1e-4 * scale + 1e-6);
    free(zf);
}
