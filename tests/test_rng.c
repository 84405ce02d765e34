/* test_rng.c: xoshiro256** / splitmix64 against the published reference
 * outputs, stream independence, exact state round trip, and the
 * distributions of the helpers (bounded, uniform, normal, shuffle). */
#include <math.h>
#include <stdint.h>

#include "test.h"
#include "train/rng.h"

TEST(splitmix64_matches_the_reference_output) {
    /* The first output for state 0 of the reference splitmix64.c. */
    uint64_t state = 0;
    CHECK(sft_splitmix64(&state) == 0xe220a8397b1dcdafULL);
}

TEST(xoshiro256starstar_matches_the_reference_sequence) {
    /* Reference outputs of xoshiro256starstar.c from the state {1, 2, 3, 4},
     * checked against an independent Python implementation of the paper. */
    sft_rng rng = {{1, 2, 3, 4}};
    const uint64_t expected[] = {11520ULL, 0ULL, 1509978240ULL, 1215971899390074240ULL,
                                 1216172134540287360ULL, 607988272756665600ULL};
    for (int i = 0; i < 6; i++) CHECK(sft_rng_next(&rng) == expected[i]);
}

TEST(same_seed_and_stream_give_the_same_sequence) {
    sft_rng a, b;
    sft_rng_seed(&a, 42, SFT_RNG_STREAM_DATA);
    sft_rng_seed(&b, 42, SFT_RNG_STREAM_DATA);
    for (int i = 0; i < 1000; i++) CHECK(sft_rng_next(&a) == sft_rng_next(&b));
}

/* Fraction of equal bits between two streams' outputs: 0.5 for unrelated ones. */
static double bit_agreement(sft_rng *a, sft_rng *b) {
    long same = 0, total = 0;
    for (int i = 0; i < 4096; i++) {
        uint64_t x = sft_rng_next(a) ^ sft_rng_next(b);
        same += 64 - __builtin_popcountll(x);
        total += 64;
    }
    return (double)same / (double)total;
}

TEST(streams_and_seeds_are_unrelated) {
    sft_rng a, b;
    sft_rng_seed(&a, 42, SFT_RNG_STREAM_DATA);
    sft_rng_seed(&b, 42, SFT_RNG_STREAM_DROPOUT);
    /* 262144 bits: the standard deviation of the agreement is 0.001. */
    CHECK_NEAR(bit_agreement(&a, &b), 0.5, 0.006);
    sft_rng_seed(&a, 42, 1);
    sft_rng_seed(&b, 43, 1);
    CHECK_NEAR(bit_agreement(&a, &b), 0.5, 0.006);
    /* (seed, stream) and (seed+1, stream-1) must not coincide. */
    sft_rng_seed(&a, 42, 2);
    sft_rng_seed(&b, 43, 1);
    CHECK(sft_rng_next(&a) != sft_rng_next(&b));
}

TEST(derive_does_not_advance_the_parent_and_depends_on_id) {
    sft_rng parent, copy, c1, c2, c1_again;
    sft_rng_seed(&parent, 7, SFT_RNG_STREAM_DROPOUT);
    copy = parent;
    sft_rng_derive(&parent, 1, &c1);
    sft_rng_derive(&parent, 2, &c2);
    sft_rng_derive(&parent, 1, &c1_again);
    CHECK(memcmp(&parent, &copy, sizeof parent) == 0);
    CHECK(sft_rng_next(&c1) == sft_rng_next(&c1_again));
    CHECK_NEAR(bit_agreement(&c1, &c2), 0.5, 0.006);
}

TEST(state_round_trips_through_hex_exactly) {
    sft_rng rng, restored;
    sft_err err;
    sft_rng_seed(&rng, 123456789, SFT_RNG_STREAM_SAMPLING);
    for (int i = 0; i < 17; i++) sft_rng_next(&rng);
    char hex[SFT_RNG_HEX_CHARS];
    sft_rng_to_hex(&rng, hex);
    CHECK_INT(strlen(hex), 64);
    CHECK_INT(sft_rng_from_hex(&restored, hex, &err), 0);
    for (int i = 0; i < 100; i++) CHECK(sft_rng_next(&rng) == sft_rng_next(&restored));
}

TEST(bad_hex_state_is_rejected) {
    sft_rng rng;
    sft_err err;
    CHECK_INT(sft_rng_from_hex(&rng, "abc", &err), -1);
    CHECK_STR(err.msg, "RNG state must be 64 hex digits, got 3 characters");
    char hex[65];
    memset(hex, '0', 64);
    hex[64] = 0;
    CHECK_INT(sft_rng_from_hex(&rng, hex, &err), -1);
    CHECK_STR(err.msg, "RNG state is all zero (xoshiro256** would stay at zero)");
    hex[10] = 'g';
    CHECK_INT(sft_rng_from_hex(&rng, hex, &err), -1);
    CHECK_STR(err.msg, "RNG state: 'g' at position 11 is not a hex digit");
}

TEST(bounded_integers_are_uniform) {
    sft_rng rng;
    sft_rng_seed(&rng, 1, 99);
    enum { K = 7, N = 70000 };
    long counts[K] = {0};
    for (int i = 0; i < N; i++) {
        uint64_t v = sft_rng_below(&rng, K);
        CHECK(v < K);
        counts[v]++;
    }
    double chi2 = 0, expected = (double)N / K;
    for (int k = 0; k < K; k++) chi2 += (counts[k] - expected) * (counts[k] - expected) / expected;
    /* 6 degrees of freedom: P(chi2 > 22.46) = 0.001. */
    CHECK(chi2 < 22.46);
    /* A bound just above 2^63 rejects almost half the raw draws; it must still terminate and stay in range. */
    uint64_t big = (1ULL << 63) + 12345;
    for (int i = 0; i < 1000; i++) CHECK(sft_rng_below(&rng, big) < big);
    CHECK(sft_rng_below(&rng, 1) == 0);
}

TEST(uniform_floats_stay_in_the_half_open_interval) {
    sft_rng rng;
    sft_rng_seed(&rng, 2, 99);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = sft_rng_uniform(&rng);
        float f = sft_rng_uniform_f32(&rng);
        CHECK(u >= 0 && u < 1);
        CHECK(f >= 0 && f < 1);
        sum += u;
    }
    /* The mean of 1e5 uniforms has standard deviation 0.0009. */
    CHECK_NEAR(sum / 100000, 0.5, 0.005);
    float out[1000];
    sft_rng_fill_uniform(&rng, out, 1000, -0.5f, 0.5f);
    for (int i = 0; i < 1000; i++) CHECK(out[i] >= -0.5f && out[i] < 0.5f);
}

TEST(normal_draws_have_the_right_moments) {
    sft_rng rng;
    sft_rng_seed(&rng, 3, SFT_RNG_STREAM_INIT);
    enum { N = 200001 }; /* odd: the last value comes from a lone pair */
    static float out[N];
    sft_rng_fill_normal(&rng, out, N, 1.0f, 0.02f);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += out[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (out[i] - mean) * (out[i] - mean);
    var /= N - 1;
    /* Standard errors: mean 4.5e-5, std about 3.2e-5. */
    CHECK_NEAR(mean, 1.0, 3e-4);
    CHECK_NEAR(sqrt(var), 0.02, 2e-4);
    CHECK(isfinite(out[N - 1]));
    double z = 0, z4 = 0;
    for (int i = 0; i < 100000; i++) {
        double v = sft_rng_normal(&rng);
        z += v * v;
        z4 += v * v * v * v;
    }
    CHECK_NEAR(z / 100000, 1.0, 0.03);
    CHECK_NEAR(z4 / 100000, 3.0, 0.2); /* kurtosis of a normal */
}

TEST(shuffle_gives_every_permutation_equally_often) {
    sft_rng rng;
    sft_rng_seed(&rng, 4, SFT_RNG_STREAM_DATA);
    /* 3 elements: 6 permutations, 60000 shuffles. */
    long counts[6] = {0};
    for (int t = 0; t < 60000; t++) {
        int64_t p[3];
        sft_rng_permutation(&rng, p, 3);
        int code = (int)(p[0] * 2 + (p[1] > p[2]));
        counts[code]++;
    }
    double chi2 = 0;
    for (int k = 0; k < 6; k++) chi2 += (counts[k] - 10000.0) * (counts[k] - 10000.0) / 10000.0;
    CHECK(chi2 < 20.52); /* 5 degrees of freedom, P = 0.001 */
    /* A shuffle of wide elements keeps every element. */
    struct {
        char pad[300];
        int id;
    } wide[50];
    for (int i = 0; i < 50; i++) wide[i].id = i;
    sft_rng_shuffle(&rng, wide, 50, sizeof wide[0]);
    int seen[50] = {0};
    for (int i = 0; i < 50; i++) seen[wide[i].id]++;
    for (int i = 0; i < 50; i++) CHECK_INT(seen[i], 1);
}
