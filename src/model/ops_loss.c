/* ops_loss.c: the cross-entropy kernels of ops.h (softmax cross-entropy with
 * ignore index -100, as torch.nn.functional.cross_entropy), written for the
 * memory traffic of a large vocabulary: the logits of a GPT-2 step (B*T x
 * 50257 floats, 206 MB at B*T = 1024) are far larger than the caches, so
 * each pass over them costs a trip to memory.
 *
 * The forward reads each row from memory once: the row is taken in blocks of
 * CE_BLOCK columns, and for each block the maximum and then the sum of
 * exponentials are computed while the block sits in L1, with the sum kept
 * relative to the running maximum and rescaled when a later block raises it
 * (the "online softmax" of Milakov & Gimelshein, arXiv:1805.02867, one
 * rescale per block instead of per element). The backward is one
 * read-write pass. The fused forward-backward computes the loss and the
 * gradient in one pass per row: each row goes to memory and back once.
 * Measured (bench/SPEED.md, bench_loss): with one trip to memory per pass,
 * what remains is the exp's arithmetic, at about 2x the memory floor.
 *
 * Every row is computed by one thread, the same way whichever thread runs it,
 * and the loss is summed over rows in row order: the results do not depend
 * on the thread count. */
#include <math.h>
#include <string.h>

#include "model/ops.h"
#include "model/ops_simd.h"

/* Columns per block (4 KiB): read once from memory for the block's maximum,
 * again from L1 for the exponentials. Measured on the gpt2-124m logits (one
 * thread, CPU time per forward): 256 -> 16.7 ms, 1024 -> 15.1, 2048 -> 16.3,
 * 4096 -> 19.6; the whole row at once (the earlier two-pass form) 29 ms. */
#define CE_BLOCK 1024

/* exp(x) for the terms of a softmax sum, x = logit - running maximum <= 0
 * (or NaN): fast_expf's core without the fixups that a sum does not need.
 * Below -87 it gives exp(-87) = 1.6e-38 instead of 0 (at most V * 1.6e-38
 * next to a sum of at least 1); a NaN stays NaN, so a NaN logit makes the
 * row's loss NaN as the exact formula does. */
static inline float exp_sum_term(float x) {
    float result = fast_expf_clamped(x > -87.0f ? x : -87.0f);
    return x != x ? x : result;
}

/* The largest of z [len]; NaN entries are passed over (the sum catches them). */
static inline float block_max(const float *z, int len) {
    float maxv = -INFINITY;
#pragma omp simd reduction(max : maxv)
    for (int i = 0; i < len; i++)
        maxv = z[i] > maxv ? z[i] : maxv;
    return maxv;
}

/* Everything seen so far is -inf (or NaN): exp(z - max) is undefined there,
 * the terms are 0 for -inf and NaN for NaN. Stores the terms when `out`. */
static float block_terms_all_minus_inf(float *out, const float *z, int len) {
    float sum = 0.0f;
    for (int i = 0; i < len; i++) {
        float term = z[i] == z[i] ? 0.0f : z[i];
        if (out) out[i] = term;
        sum += term;
    }
    return sum;
}

/* Folds one block's maximum into the running (row_max, sum): the sum so far
 * is rescaled to the new maximum (in double, with libm's exp: this happens a
 * few times per row). */
static inline void raise_max(float *row_max, double *sum, float new_max) {
    if (new_max > *row_max) {
        *sum *= exp((double)*row_max - (double)new_max); /* first block: 0 * exp(-inf) = 0 */
        *row_max = new_max;
    }
}

/* log(sum_i exp(z_i)) of one row in one pass over memory. Each block's terms
 * are summed in float (16 lanes, 64 terms each) and the blocks in double. */
SFT_CLONES static float row_log_sum_exp(const float *z, int V) {
    float row_max = -INFINITY;
    double sum = 0.0;
    for (int b0 = 0; b0 < V; b0 += CE_BLOCK) {
        const int len = V - b0 < CE_BLOCK ? V - b0 : CE_BLOCK;
        const float *zb = z + b0;
        raise_max(&row_max, &sum, block_max(zb, len));
        if (row_max == -INFINITY) {
            sum += block_terms_all_minus_inf(NULL, zb, len);
            continue;
        }
        float block_sum = 0.0f;
#pragma omp simd reduction(+ : block_sum)
        for (int i = 0; i < len; i++)
            block_sum += exp_sum_term(zb[i] - row_max);
        sum += block_sum;
    }
    return (float)(row_max + log(sum));
}

double sft_cross_entropy_forward(float *lse, const float *logits, const int32_t *targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        lse[n] = row_log_sum_exp(logits + (size_t)n * V, V);
    /* Serial sum in row order: bitwise the same for every thread count. */
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        if (targets[n] == SFT_IGNORE_INDEX) continue;
        total += (double)lse[n] - logits[(size_t)n * V + targets[n]];
    }
    return total;
}

/* exp(x) for x = logit - lse <= 0 (or NaN: a NaN lse): fast_expf without
 * its overflow branch, which such an x never takes; the same bits. */
static inline float exp_nonpositive(float x) {
    float result = fast_expf_clamped(x > -87.0f ? x : -87.0f);
    result = x < -87.0f ? 0.0f : result;
    return x != x ? x : result;
}

/* z <- softmax(z) * scale, in place, from the row's log-sum-exp. */
SFT_CLONES static void row_softmax_scaled(float *z, float lse, float scale, int V) {
#pragma omp simd
    for (int i = 0; i < V; i++)
        z[i] = exp_nonpositive(z[i] - lse) * scale;
}

void sft_cross_entropy_backward(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                float scale) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * V;
        if (targets[n] == SFT_IGNORE_INDEX) {
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        row_softmax_scaled(z, lse[n], scale, V);
        z[targets[n]] -= scale;
    }
}

/* One row of the fused forward-backward. The first pass stores each term
 * exp(z - block's running max) over the logit while the block is in L1; the
 * second, over the row still in L2 (V floats: 201 KB at V = 50257), scales
 * each block's terms by scale * exp(block max - row max) / sum. Returns the
 * row's log-sum-exp. */
SFT_CLONES static float row_softmax_gradient(float *z, int V, float scale) {
    const int blocks = (V + CE_BLOCK - 1) / CE_BLOCK;
    float block_ref_max[blocks]; /* the running maximum each block's terms are relative to */
    float row_max = -INFINITY;
    double sum = 0.0;
    for (int b = 0; b < blocks; b++) {
        const int b0 = b * CE_BLOCK, len = V - b0 < CE_BLOCK ? V - b0 : CE_BLOCK;
        float *zb = z + b0;
        raise_max(&row_max, &sum, block_max(zb, len));
        block_ref_max[b] = row_max;
        if (row_max == -INFINITY) {
            sum += block_terms_all_minus_inf(zb, zb, len);
            continue;
        }
        float block_sum = 0.0f;
#pragma omp simd reduction(+ : block_sum)
        for (int i = 0; i < len; i++) {
            float x = zb[i] - row_max, term = exp_sum_term(x);
            block_sum += term;
            zb[i] = x < -87.0f ? 0.0f : term; /* the zero the separate backward gives there */
        }
        sum += block_sum;
    }
    for (int b = 0; b < blocks; b++) {
        const int b0 = b * CE_BLOCK, len = V - b0 < CE_BLOCK ? V - b0 : CE_BLOCK;
        float *zb = z + b0;
        const float factor = (float)((double)scale * exp((double)block_ref_max[b] - (double)row_max) / sum);
#pragma omp simd
        for (int i = 0; i < len; i++)
            zb[i] *= factor;
    }
    return (float)(row_max + log(sum));
}

double sft_cross_entropy_forward_backward(float *lse, float *logits, const int32_t *targets, int N, int V,
                                          float scale) {
    /* The target logits are read before the rows are overwritten; the loss
     * is -sum(target logits) + sum(lse), each summed serially in row order. */
    double total = 0.0;
    for (int n = 0; n < N; n++)
        if (targets[n] != SFT_IGNORE_INDEX) total -= logits[(size_t)n * V + targets[n]];
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * V;
        if (targets[n] == SFT_IGNORE_INDEX) {
            memset(z, 0, (size_t)V * sizeof(float));
            lse[n] = NAN;
            continue;
        }
        lse[n] = row_softmax_gradient(z, V, scale);
        z[targets[n]] -= scale;
    }
    for (int n = 0; n < N; n++)
        if (targets[n] != SFT_IGNORE_INDEX) total += lse[n];
    return total;
}
