/* rng.c: xoshiro256** seeded by splitmix64, bounded integers, uniform and
 * normal floats, shuffles, and the hex form of the state (see rng.h). */
#include "train/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

uint64_t sft_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* Fills the four words from a splitmix64 sequence. splitmix64 is a bijection
 * of its counter, so four consecutive outputs are never all zero (the one
 * state xoshiro must avoid). */
static void fill_state(sft_rng *rng, uint64_t key) {
    for (int i = 0; i < 4; i++) rng->s[i] = sft_splitmix64(&key);
}

void sft_rng_seed(sft_rng *rng, uint64_t seed, uint64_t stream) {
    /* The stream id is mixed before it meets the seed, so that (seed, stream)
     * and (seed + 1, stream - 1) do not collide the way a plain sum would. */
    uint64_t mixed_stream = stream;
    uint64_t stream_key = sft_splitmix64(&mixed_stream);
    fill_state(rng, seed ^ stream_key);
}

void sft_rng_derive(const sft_rng *parent, uint64_t id, sft_rng *child) {
    uint64_t key = id;
    for (int i = 0; i < 4; i++) {
        uint64_t word = parent->s[i] ^ key;
        key = sft_splitmix64(&word);
    }
    fill_state(child, key);
}

uint64_t sft_rng_next(sft_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sft_rng_below(sft_rng *rng, uint64_t n) {
    /* The high word of x*n is uniform in [0, n) once the low words that fall
     * in the short first interval (fewer than 2^64 mod n of them) are
     * rejected; the division is only needed when a rejection is possible. */
    unsigned __int128 m = (unsigned __int128)sft_rng_next(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128)sft_rng_next(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double sft_rng_uniform(sft_rng *rng) {
    return (double)(sft_rng_next(rng) >> 11) * 0x1.0p-53;
}

float sft_rng_uniform_f32(sft_rng *rng) {
    return (float)(sft_rng_next(rng) >> 40) * 0x1.0p-24f;
}

/* Box-Muller: u1 in (0, 1] keeps log finite. */
static void normal_pair(sft_rng *rng, double *z0, double *z1) {
    double u1 = 1.0 - sft_rng_uniform(rng);
    double u2 = sft_rng_uniform(rng);
    double r = sqrt(-2.0 * log(u1));
    double theta = 2.0 * M_PI * u2;
    *z0 = r * cos(theta);
    *z1 = r * sin(theta);
}

double sft_rng_normal(sft_rng *rng) {
    double z0, z1;
    normal_pair(rng, &z0, &z1);
    return z0;
}

void sft_rng_fill_normal(sft_rng *rng, float *out, size_t n, float mean, float std) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        double z0, z1;
        normal_pair(rng, &z0, &z1);
        out[i] = (float)(mean + std * z0);
        out[i + 1] = (float)(mean + std * z1);
    }
    if (i < n) out[i] = (float)(mean + std * sft_rng_normal(rng));
}

void sft_rng_fill_uniform(sft_rng *rng, float *out, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        float v = lo + (hi - lo) * sft_rng_uniform_f32(rng);
        /* Rounding of lo + (hi-lo)*u can land on hi; keep the interval open. */
        out[i] = v < hi ? v : nextafterf(hi, lo);
    }
}

void sft_rng_shuffle(sft_rng *rng, void *base, size_t n, size_t size) {
    unsigned char *bytes = base;
    unsigned char tmp[256];
    if (n < 2) return;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)sft_rng_below(rng, (uint64_t)i + 1);
        if (j == i) continue;
        unsigned char *a = bytes + i * size, *b = bytes + j * size;
        /* Swap in chunks so that any element size works without allocation. */
        for (size_t off = 0; off < size; off += sizeof tmp) {
            size_t chunk = size - off < sizeof tmp ? size - off : sizeof tmp;
            memcpy(tmp, a + off, chunk);
            memcpy(a + off, b + off, chunk);
            memcpy(b + off, tmp, chunk);
        }
    }
}

void sft_rng_permutation(sft_rng *rng, int64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (int64_t)i;
    sft_rng_shuffle(rng, out, n, sizeof *out);
}

void sft_rng_to_hex(const sft_rng *rng, char out[SFT_RNG_HEX_CHARS]) {
    for (int i = 0; i < 4; i++) snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)rng->s[i]);
}

int sft_rng_from_hex(sft_rng *rng, const char *hex, sft_err *err) {
    if (strlen(hex) != 64) return sft_errf(err, "RNG state must be 64 hex digits, got %zu characters", strlen(hex));
    uint64_t s[4] = {0};
    for (int i = 0; i < 64; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) return sft_errf(err, "RNG state: '%c' at position %d is not a hex digit", c, i + 1);
        s[i / 16] = (s[i / 16] << 4) | (uint64_t)v;
    }
    if (!(s[0] | s[1] | s[2] | s[3])) return sft_errf(err, "RNG state is all zero (xoshiro256** would stay at zero)");
    memcpy(rng->s, s, sizeof s);
    return 0;
}
