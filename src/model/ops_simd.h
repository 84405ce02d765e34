/* ops_simd.h: internal helpers shared by the CPU kernels (ops.c, ops_loss.c):
 * an exp that vectorises, the target_clones attribute that compiles a
 * kernel for AVX-512, AVX2 and the baseline, and the split of an elementwise
 * range over the OpenMP threads. Not a public interface: include it only
 * from src/model's kernel files. */
#ifndef SFT_MODEL_OPS_SIMD_H
#define SFT_MODEL_OPS_SIMD_H

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

/* exp(x) for float x, written so that loops over it vectorise (libm's expf
 * and tanhf are calls, which keep a loop scalar: 10 ns per GELU element).
 * Cody-Waite reduction x = n ln2 + r with |r| <= ln2/2, Cephes' degree-6
 * polynomial for exp(r) (about 1 ulp), and 2^n built in the exponent bits.
 * The polynomial runs on the input clamped to [-87, 88], so that 2^n stays a
 * normal number (and the conversion to int is defined): fast_expf_clamped
 * is that core, for callers whose input is already in range. No rounding
 * function is called: adding and subtracting 1.5 * 2^23 rounds to the
 * nearest integer (no -ffast-math here, so the compiler keeps both). */
static inline float fast_expf_clamped(float xc) {
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float z = r * r;
    float poly = 1.9875691500e-4f;
    poly = poly * r + 1.3981999507e-3f;
    poly = poly * r + 8.3334519073e-3f;
    poly = poly * r + 4.1665795894e-2f;
    poly = poly * r + 1.6666665459e-1f;
    poly = poly * r + 5.0000001201e-1f;
    float e = poly * z + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return e * scale.f;
}

/* exp(x) for any x: below -87 the result is 0 (exp(-87) = 1.6e-38: nothing
 * next to the 1 it is added to in a sigmoid or a softmax sum), above 88
 * infinity, and a NaN stays NaN (the clamp runs on a NaN-free copy). */
static inline float fast_expf(float x) {
    float xc = x > -87.0f ? (x < 88.0f ? x : 88.0f) : -87.0f;
    float result = fast_expf_clamped(xc);
    result = x < -87.0f ? 0.0f : result;
    result = x > 88.0f ? INFINITY : result;
    return x != x ? x : result;
}

/* One thread's slice of a kernel: compiled for AVX-512, AVX2 and the
 * baseline, the best one picked at load time (GCC's target_clones), so the
 * default build stays portable. The clones compute the same IEEE operations
 * in the same order (no contraction into FMA in ISO C mode), so the results
 * are the same bits whichever clone runs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SFT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SFT_CLONES
#endif

/* The threads split [0, n) into contiguous slices of whole 16-float blocks. */
#define SFT_ELEMENTWISE(range_fn, n, ...)                                                                    \
    do {                                                                                                     \
        _Pragma("omp parallel") {                                                                            \
            size_t blocks_ = ((n) + 15) / 16, parts_ = (size_t)omp_get_num_threads();                        \
            size_t part_ = (size_t)omp_get_thread_num();                                                     \
            size_t lo_ = blocks_ * part_ / parts_ * 16, hi_ = blocks_ * (part_ + 1) / parts_ * 16;           \
            if (hi_ > (n)) hi_ = (n);                                                                        \
            if (lo_ < hi_) range_fn(__VA_ARGS__, lo_, hi_);                                                  \
        }                                                                                                    \
    } while (0)

#endif
