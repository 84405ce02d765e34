/* rng.h: the project's pseudo-random generator: xoshiro256** (Blackman and
 * Vigna, "Scrambled Linear Pseudorandom Number Generators", ACM TOMS 2021),
 * seeded through splitmix64 (Steele, Lea and Flood, "Fast Splittable
 * Pseudorandom Number Generators", OOPSLA 2014), as the paper recommends.
 *
 * Each use of randomness gets its own stream, seeded from (run seed, stream
 * id): the data order does not change when dropout is switched on, and a
 * resumed run restores each stream exactly from its 256-bit state, which is
 * written as 64 hex digits (JSON numbers cannot carry 64-bit integers
 * exactly). Everything here is deterministic across runs and machines that
 * share the libm (normal draws use log/cos/sin). */
#ifndef SFT_TRAIN_RNG_H
#define SFT_TRAIN_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef struct sft_rng {
    uint64_t s[4];
} sft_rng;

/* The streams of a training run (ids are part of the checkpoint format). */
typedef enum {
    SFT_RNG_STREAM_DATA = 1,      /* shuffling the training records each epoch */
    SFT_RNG_STREAM_VAL_SPLIT = 2, /* choosing the held-out validation records */
    SFT_RNG_STREAM_DROPOUT = 3,   /* dropout masks (LoRA dropout) */
    SFT_RNG_STREAM_INIT = 4,      /* weight initialisation (sft init, LoRA A) */
    SFT_RNG_STREAM_SAMPLING = 5,  /* generation (temperature, top-k, top-p) */
} sft_rng_stream;

/* The splitmix64 step: advances *state and returns the next output. */
uint64_t sft_splitmix64(uint64_t *state);

/* Seeds `rng` for (seed, stream); different pairs give unrelated sequences. */
void sft_rng_seed(sft_rng *rng, uint64_t seed, uint64_t stream);
/* A child generator for `id` derived from the parent's current state without
 * advancing it: e.g. one dropout stream per (step, layer), the same whatever
 * thread draws it. */
void sft_rng_derive(const sft_rng *parent, uint64_t id, sft_rng *child);

uint64_t sft_rng_next(sft_rng *rng);
/* Uniform in [0, n) without modulo bias (Lemire, "Fast Random Integer
 * Generation in an Interval", ACM TOMACS 2019); n must be > 0. */
uint64_t sft_rng_below(sft_rng *rng, uint64_t n);
/* Uniform in [0, 1) with 53 (double) or 24 (float) random bits. */
double sft_rng_uniform(sft_rng *rng);
float sft_rng_uniform_f32(sft_rng *rng);
/* A standard normal draw (Box-Muller; uses two uniforms, keeps no cache so
 * the state stays four words). */
double sft_rng_normal(sft_rng *rng);
/* out[i] = mean + std * N(0, 1), both values of each Box-Muller pair used. */
void sft_rng_fill_normal(sft_rng *rng, float *out, size_t n, float mean, float std);
/* out[i] uniform in [lo, hi). */
void sft_rng_fill_uniform(sft_rng *rng, float *out, size_t n, float lo, float hi);
/* Fisher-Yates shuffle of n elements of `size` bytes (Knuth, TAOCP 3.4.2 P). */
void sft_rng_shuffle(sft_rng *rng, void *base, size_t n, size_t size);
/* out[0..n) = a uniformly random permutation of 0..n-1. */
void sft_rng_permutation(sft_rng *rng, int64_t *out, size_t n);

/* The state as 64 lowercase hex digits (+ NUL), and back. */
#define SFT_RNG_HEX_CHARS 65
void sft_rng_to_hex(const sft_rng *rng, char out[SFT_RNG_HEX_CHARS]);
int sft_rng_from_hex(sft_rng *rng, const char *hex, sft_err *err);

#endif
