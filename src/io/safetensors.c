/* safetensors.c: the safetensors format (huggingface/safetensors, format.md).
 *
 * Reading maps the file and checks it the way the reference Rust reader
 * (safetensors/src/tensor.rs, SafeTensors::read_metadata + Metadata::validate)
 * does: header length <= 100 MB and inside the file, the header a JSON
 * object of {dtype, shape, data_offsets} entries plus an optional
 * string->string __metadata__, the entries sorted by offsets covering the
 * byte buffer from 0 with no gap and no overlap, each byte size equal to
 * numel * dtype size, and the buffer ending exactly at the last tensor.
 * Beyond the reference, duplicate names are an error (serde silently keeps
 * the last one) and every tensor must be F32, F16 or BF16, the dtypes sft
 * computes with.
 *
 * Writing follows the reference serializer: 8-byte little-endian length,
 * header padded with spaces to a multiple of 8, data in the order given,
 * through the project's atomic writer. */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json.h"

#define SFT_SAFETENSORS_MAX_HEADER 100000000ull

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* Every dtype the reference reader knows, with its size in bits, so that a
 * file holding one sft does not compute with is still validated in full and
 * then rejected by name rather than called corrupt. */
typedef struct dtype_entry {
    const char *name;
    unsigned bits;
    int sft_dtype; /* -1: valid safetensors dtype that sft does not read */
} dtype_entry;

static const dtype_entry known_dtypes[] = {
    {"F32", 32, SFT_DTYPE_F32},  {"F16", 16, SFT_DTYPE_F16}, {"BF16", 16, SFT_DTYPE_BF16},
    {"BOOL", 8, -1},             {"U8", 8, -1},              {"I8", 8, -1},
    {"F8_E5M2", 8, -1},          {"F8_E4M3", 8, -1},         {"F8_E8M0", 8, -1},
    {"I16", 16, -1},             {"U16", 16, -1},            {"I32", 32, -1},
    {"U32", 32, -1},             {"F64", 64, -1},            {"I64", 64, -1},
    {"U64", 64, -1},             {"C64", 64, -1},            {"F4", 4, -1},
    {"F6_E2M3", 6, -1},          {"F6_E3M2", 6, -1},
};
#define N_KNOWN_DTYPES (sizeof known_dtypes / sizeof known_dtypes[0])

/* One mapped file (or a caller's buffer) that tensors point into. */
typedef struct mapped_file {
    sft_mmap map; /* map.data == NULL for a caller-owned buffer */
} mapped_file;

struct sft_safetensors {
    sft_tensor_info *tensors; /* file order: by shard, then by offset */
    size_t count, cap;
    size_t *by_name; /* indices into tensors, sorted by name, for find() */
    mapped_file *files;
    size_t file_count;
};

size_t sft_dtype_size(sft_dtype dtype) {
    return dtype == SFT_DTYPE_F32 ? 4 : 2;
}

const char *sft_dtype_name(sft_dtype dtype) {
    switch (dtype) {
    case SFT_DTYPE_F32: return "F32";
    case SFT_DTYPE_F16: return "F16";
    case SFT_DTYPE_BF16: return "BF16";
    }
    return "?";
}

/* ---- conversions ---------------------------------------------------- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float sft_bf16_to_f32(uint16_t x) {
    return bits_f32((uint32_t)x << 16);
}

/* Round to nearest even on the 16 dropped bits, as torch does; a NaN stays
 * a (quiet) NaN instead of rounding into infinity. */
uint16_t sft_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float sft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in float32 */
        float v = (float)mantissa * 5.9604644775390625e-8f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exponent == 31) return bits_f32(sign | 0x7F800000u | (mantissa << 13)); /* inf, NaN */
    return bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/* IEEE binary16 with round to nearest even, overflow to infinity, gradual
 * underflow to subnormals, NaN kept quiet (the payload's top bits kept). */
uint16_t sft_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs_bits = u & 0x7FFFFFFFu;
    if (abs_bits > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((abs_bits >> 13) & 0x3FFu));
    /* 65520 = 65504 + half an ulp: that and above round to infinity */
    if (abs_bits >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (abs_bits >= 0x38800000u) { /* normal in binary16 (>= 2^-14) */
        uint32_t rounded = abs_bits - (112u << 23) + 0xFFFu + ((abs_bits >> 13) & 1u);
        return (uint16_t)(sign | (rounded >> 13));
    }
    /* subnormal result: value = m * 2^(e-150), in units of 2^-24 that is m >> (126-e) */
    uint32_t exponent = abs_bits >> 23;
    if (exponent < 102) return sign; /* below 2^-25: rounds to zero */
    uint32_t mantissa = (abs_bits & 0x7FFFFFu) | 0x800000u;
    unsigned shift = 126u - exponent; /* 14..24 */
    uint32_t q = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

void sft_tensor_to_f32(const sft_tensor_info *t, float *out) {
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case SFT_DTYPE_F32:
        if (n) memcpy(out, p, n * 4);
        break;
    case SFT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = sft_f16_to_f32(h);
        }
        break;
    case SFT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = sft_bf16_to_f32(h);
        }
        break;
    }
}

/* ---- reading --------------------------------------------------------- */

/* A header entry before validation; offsets in bytes relative to the
 * start of the byte buffer (after the header). */
typedef struct raw_entry {
    const char *name; /* owned by the JSON header */
    const dtype_entry *dtype;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;
} raw_entry;

static int cmp_raw_offsets(const void *a, const void *b) {
    const raw_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* empty tensors sharing an offset: a stable order */
}

static void shape_text(const raw_entry *e, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < e->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)e->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static int read_uint(const json_t *j, uint64_t *out) {
    int64_t v;
    if (!json_is_integer(j) || sft_json_int(j, &v) || v < 0) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_entry(const char *file, const char *name, const json_t *info, raw_entry *e, sft_err *err) {
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!json_is_object(info))
        return sft_errf(err, "%s: tensor '%s': expected an object with dtype, shape and data_offsets", file,
                        name);
    const json_t *dtype = json_object_get(info, "dtype");
    if (!json_is_string(dtype)) return sft_errf(err, "%s: tensor '%s': 'dtype' must be a string", file, name);
    const char *dtype_name = json_string_value(dtype);
    for (size_t i = 0; i < N_KNOWN_DTYPES; i++)
        if (!strcmp(known_dtypes[i].name, dtype_name)) e->dtype = &known_dtypes[i];
    if (!e->dtype)
        return sft_errf(err,
                        "%s: tensor '%s': unknown dtype '%s' (safetensors dtypes: F32, F16, BF16, F64, I64, "
                        "I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E5M2, F8_E4M3, F8_E8M0, F6_E2M3, "
                        "F6_E3M2, F4, C64)",
                        file, name, dtype_name);

    const json_t *shape = json_object_get(info, "shape");
    if (!json_is_array(shape))
        return sft_errf(err, "%s: tensor '%s': 'shape' must be a list of non-negative integers", file, name);
    if (json_array_size(shape) > SFT_MAX_DIMS)
        return sft_errf(err, "%s: tensor '%s': shape has %zu dimensions, sft reads at most %d", file, name,
                        json_array_size(shape), SFT_MAX_DIMS);
    e->ndim = (int)json_array_size(shape);
    e->numel = 1;
    int overflow = 0;
    for (int d = 0; d < e->ndim; d++) {
        uint64_t dim;
        if (read_uint(json_array_get(shape, (size_t)d), &dim))
            return sft_errf(err, "%s: tensor '%s': 'shape' must be a list of non-negative integers", file, name);
        e->shape[d] = (int64_t)dim;
        if (dim && e->numel > UINT64_MAX / dim) overflow = 1;
        e->numel *= dim;
    }
    /* bits, then bytes: the sub-byte dtypes (F4, F6) must fill whole bytes */
    if (overflow || (e->numel && e->numel > UINT64_MAX / e->dtype->bits))
        return sft_errf(err, "%s: tensor '%s': shape overflows the size of a buffer", file, name);

    const json_t *offsets = json_object_get(info, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        read_uint(json_array_get(offsets, 0), &e->begin) || read_uint(json_array_get(offsets, 1), &e->end))
        return sft_errf(err, "%s: tensor '%s': 'data_offsets' must be [begin, end], two non-negative integers",
                        file, name);
    return 0;
}

static int check_metadata(const char *file, const json_t *meta, sft_err *err) {
    if (!json_is_object(meta))
        return sft_errf(err, "%s: '__metadata__' must be an object mapping strings to strings", file);
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)meta, key, value) {
        if (!json_is_string(value))
            return sft_errf(err, "%s: '__metadata__' entry '%s' must be a string", file, key);
    }
    return 0;
}

static int grow_tensors(sft_safetensors *st, size_t extra, sft_err *err) {
    if (st->count + extra <= st->cap) return 0;
    size_t cap = st->cap ? st->cap : 64;
    while (cap < st->count + extra) cap *= 2;
    sft_tensor_info *grown = realloc(st->tensors, cap * sizeof *grown);
    if (!grown) return sft_errf(err, "out of memory");
    st->tensors = grown;
    st->cap = cap;
    return 0;
}

/* Parses and validates one safetensors buffer; appends its tensors (data
 * pointing into buf) to st. `file` names the buffer in errors. */
static int parse_buffer(sft_safetensors *st, const unsigned char *buf, size_t len, const char *file,
                        sft_err *err) {
    if (len == 0)
        return sft_errf(err, "%s: empty file, not a safetensors file (expected an 8-byte header length)", file);
    if (len < 8)
        return sft_errf(err, "%s: truncated: %zu bytes, shorter than the 8-byte header length", file, len);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | buf[i];
    if (header_len > SFT_SAFETENSORS_MAX_HEADER)
        return sft_errf(err, "%s: header length %llu exceeds the safetensors limit of 100000000 bytes", file,
                        (unsigned long long)header_len);
    if (header_len > len - 8)
        return sft_errf(err, "%s: header length %llu runs past the end of the file (%zu bytes after the length)",
                        file, (unsigned long long)header_len, len - 8);

    /* jansson directly, not sft_json_loadb: duplicate names must be caught
     * (JSON_REJECT_DUPLICATES) and offsets read as exact 64-bit integers
     * (no JSON_DECODE_INT_AS_REAL); a NUL inside a name is rejected. */
    json_error_t jerr;
    json_t *header = json_loadb((const char *)buf + 8, (size_t)header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!header) {
        if (!strncmp(jerr.text, "duplicate object key", 20))
            return sft_errf(err, "%s: header lists a tensor name twice (%s)", file, jerr.text);
        return sft_errf(err, "%s: header is not valid JSON (header byte %d): %s", file, jerr.position, jerr.text);
    }
    if (!json_is_object(header)) {
        json_decref(header);
        return sft_errf(err, "%s: header is not a JSON object", file);
    }

    size_t n_entries = json_object_size(header);
    raw_entry *entries = calloc(n_entries ? n_entries : 1, sizeof *entries);
    if (!entries) {
        json_decref(header);
        return sft_errf(err, "%s: out of memory", file);
    }
    size_t count = 0;
    int rc = 0;
    const char *key;
    json_t *value;
    json_object_foreach(header, key, value) {
        if (!strcmp(key, "__metadata__")) {
            if ((rc = check_metadata(file, value, err))) break;
            continue;
        }
        if ((rc = parse_entry(file, key, value, &entries[count], err))) break;
        count++;
    }

    uint64_t data_len = (uint64_t)len - 8 - header_len;
    if (!rc) {
        qsort(entries, count, sizeof *entries, cmp_raw_offsets);
        uint64_t expected_begin = 0;
        for (size_t i = 0; i < count && !rc; i++) {
            raw_entry *e = &entries[i];
            const char *prev = i ? entries[i - 1].name : NULL;
            if (e->end < e->begin)
                rc = sft_errf(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", file,
                              e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
            else if (e->begin < expected_begin)
                rc = sft_errf(err, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s', which ends at %llu",
                              file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, prev,
                              (unsigned long long)expected_begin);
            else if (e->begin > expected_begin && prev)
                rc = sft_errf(err,
                              "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu bytes after tensor "
                              "'%s', which ends at %llu",
                              file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)(e->begin - expected_begin), prev,
                              (unsigned long long)expected_begin);
            else if (e->begin > expected_begin)
                rc = sft_errf(err,
                              "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu bytes at the start "
                              "of the data",
                              file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)e->begin);
            if (rc) break;
            uint64_t bits = e->numel * e->dtype->bits;
            uint64_t held = e->end - e->begin;
            if (bits % 8 || held != bits / 8) {
                char shape[256];
                shape_text(e, shape, sizeof shape);
                if (bits % 8)
                    rc = sft_errf(err, "%s: tensor '%s': shape %s of dtype %s does not fill whole bytes", file,
                                  e->name, shape, e->dtype->name);
                else
                    rc = sft_errf(err,
                                  "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s of "
                                  "dtype %s needs %llu",
                                  file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                                  (unsigned long long)held, shape, e->dtype->name,
                                  (unsigned long long)(bits / 8));
                break;
            }
            if (e->end > data_len) {
                rc = sft_errf(err,
                              "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the file (the data "
                              "buffer holds %llu bytes): the file is truncated",
                              file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)data_len);
                break;
            }
            expected_begin = e->end;
        }
        if (!rc && expected_begin != data_len)
            rc = sft_errf(err, "%s: %llu trailing bytes after the last tensor (the tensors end at byte %llu of a "
                               "%llu-byte data buffer)",
                          file, (unsigned long long)(data_len - expected_begin), (unsigned long long)expected_begin,
                          (unsigned long long)data_len);
    }
    /* Only once the file is known to be sound: refuse dtypes sft does not compute with. */
    for (size_t i = 0; i < count && !rc; i++)
        if (entries[i].dtype->sft_dtype < 0)
            rc = sft_errf(err, "%s: tensor '%s' has dtype %s; sft reads only F32, F16 and BF16 tensors", file,
                          entries[i].name, entries[i].dtype->name);
    if (!rc) rc = grow_tensors(st, count, err);
    for (size_t i = 0; i < count && !rc; i++) {
        raw_entry *e = &entries[i];
        sft_tensor_info *t = &st->tensors[st->count];
        memset(t, 0, sizeof *t);
        t->name = strdup(e->name);
        if (!t->name) {
            rc = sft_errf(err, "%s: out of memory", file);
            break;
        }
        t->dtype = (sft_dtype)e->dtype->sft_dtype;
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->numel = (int64_t)e->numel;
        t->nbytes = (size_t)(e->end - e->begin);
        t->data = buf + 8 + header_len + e->begin;
        st->count++;
    }
    free(entries);
    json_decref(header);
    return rc;
}

static int cmp_name_index(const void *a, const void *b, void *ctx) {
    const sft_tensor_info *tensors = ctx;
    return strcmp(tensors[*(const size_t *)a].name, tensors[*(const size_t *)b].name);
}

/* Builds the by-name index; two tensors of one name (across shards) are an error. */
static int build_name_index(sft_safetensors *st, const char *what, sft_err *err) {
    st->by_name = malloc((st->count ? st->count : 1) * sizeof *st->by_name);
    if (!st->by_name) return sft_errf(err, "%s: out of memory", what);
    for (size_t i = 0; i < st->count; i++) st->by_name[i] = i;
    qsort_r(st->by_name, st->count, sizeof *st->by_name, cmp_name_index, st->tensors);
    for (size_t i = 1; i < st->count; i++)
        if (!strcmp(st->tensors[st->by_name[i]].name, st->tensors[st->by_name[i - 1]].name))
            return sft_errf(err, "%s: tensor '%s' appears twice", what, st->tensors[st->by_name[i]].name);
    return 0;
}

void sft_safetensors_close(sft_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->count; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    for (size_t i = 0; i < st->file_count; i++) sft_mmap_close(&st->files[i].map);
    free(st->files);
    free(st);
}

static int add_mapped_file(sft_safetensors *st, const char *path, sft_mmap *map, sft_err *err) {
    if (sft_mmap_open(path, map, err)) return -1;
    mapped_file *grown = realloc(st->files, (st->file_count + 1) * sizeof *grown);
    if (!grown) {
        sft_mmap_close(map);
        return sft_errf(err, "%s: out of memory", path);
    }
    st->files = grown;
    st->files[st->file_count++].map = *map;
    return 0;
}

sft_safetensors *sft_safetensors_open_buffer(const void *data, size_t len, const char *name, sft_err *err) {
    sft_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        sft_errf(err, "%s: out of memory", name);
        return NULL;
    }
    if (parse_buffer(st, data, len, name, err) || build_name_index(st, name, err)) {
        sft_safetensors_close(st);
        return NULL;
    }
    return st;
}

sft_safetensors *sft_safetensors_open(const char *path, sft_err *err) {
    sft_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        sft_errf(err, "%s: out of memory", path);
        return NULL;
    }
    sft_mmap map;
    if (add_mapped_file(st, path, &map, err) || parse_buffer(st, map.data, map.len, path, err) ||
        build_name_index(st, path, err)) {
        sft_safetensors_close(st);
        return NULL;
    }
    return st;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name from the index is a file beside it: no absolute path, no "..". */
static int shard_name_ok(const char *s) {
    if (!*s || s[0] == '/') return 0;
    for (const char *p = s; *p; p++)
        if (p[0] == '.' && p[1] == '.' && (p == s || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) return 0;
    return 1;
}

/* Reads DIR/model.safetensors.index.json ({"weight_map": {tensor: shard}})
 * and every shard it names, in sorted shard order. Each shard is validated
 * alone; then the index and the shards must agree tensor by tensor. */
static sft_safetensors *open_sharded(const char *dir, const char *index_path, sft_err *err) {
    json_t *index = sft_json_load_file(index_path, err);
    if (!index) return NULL;
    sft_safetensors *st = calloc(1, sizeof *st);
    const char **shards = NULL;
    size_t shard_count = 0;
    int rc = 0;
    const json_t *weight_map = json_is_object(index) ? json_object_get(index, "weight_map") : NULL;
    if (!st) rc = sft_errf(err, "%s: out of memory", index_path);
    else if (!json_is_object(index)) rc = sft_errf(err, "%s: expected a JSON object", index_path);
    else if (!json_is_object(weight_map))
        rc = sft_errf(err, "%s: 'weight_map' must be an object mapping tensor names to shard files", index_path);
    if (!rc) {
        shards = malloc((json_object_size(weight_map) + 1) * sizeof *shards);
        if (!shards) rc = sft_errf(err, "%s: out of memory", index_path);
    }
    const char *tensor_name;
    json_t *shard_value;
    if (!rc) {
        json_object_foreach((json_t *)weight_map, tensor_name, shard_value) {
            if (!json_is_string(shard_value)) {
                rc = sft_errf(err, "%s: weight_map entry '%s' must be a shard file name", index_path, tensor_name);
                break;
            }
            const char *shard = json_string_value(shard_value);
            if (!shard_name_ok(shard)) {
                rc = sft_errf(err, "%s: weight_map entry '%s' names '%s', which is not a file beside the index",
                              index_path, tensor_name, shard);
                break;
            }
            shards[shard_count++] = shard;
        }
    }
    if (!rc && shard_count == 0) rc = sft_errf(err, "%s: 'weight_map' lists no tensors", index_path);
    if (!rc) {
        qsort(shards, shard_count, sizeof *shards, cmp_str_ptr);
        size_t unique = 0;
        for (size_t i = 0; i < shard_count; i++)
            if (!unique || strcmp(shards[unique - 1], shards[i])) shards[unique++] = shards[i];
        shard_count = unique;
    }
    for (size_t s = 0; s < shard_count && !rc; s++) {
        char path[4096];
        if ((rc = sft_path_join(path, sizeof path, dir, shards[s], err))) break;
        size_t first = st->count;
        sft_mmap map;
        if ((rc = add_mapped_file(st, path, &map, err)) || (rc = parse_buffer(st, map.data, map.len, path, err))) {
            sft_err_prefix(err, "%s", index_path);
            break;
        }
        /* every tensor of the shard must be mapped to this shard */
        for (size_t i = first; i < st->count && !rc; i++) {
            const json_t *listed = json_object_get(weight_map, st->tensors[i].name);
            if (!listed)
                rc = sft_errf(err, "%s: shard '%s' holds tensor '%s', which the weight_map does not list",
                              index_path, shards[s], st->tensors[i].name);
            else if (strcmp(json_string_value(listed), shards[s]))
                rc = sft_errf(err, "%s: shard '%s' holds tensor '%s', which the weight_map puts in '%s'",
                              index_path, shards[s], st->tensors[i].name, json_string_value(listed));
        }
    }
    if (!rc) rc = build_name_index(st, index_path, err);
    if (!rc) {
        json_object_foreach((json_t *)weight_map, tensor_name, shard_value) {
            if (!sft_safetensors_find(st, tensor_name)) {
                rc = sft_errf(err, "%s: tensor '%s' is listed in shard '%s', but that shard has no such tensor",
                              index_path, tensor_name, json_string_value(shard_value));
                break;
            }
        }
    }
    free(shards);
    json_decref(index);
    if (rc) {
        sft_safetensors_close(st);
        return NULL;
    }
    return st;
}

sft_safetensors *sft_safetensors_open_dir(const char *dir, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "model.safetensors", err)) return NULL;
    if (sft_file_exists(path)) return sft_safetensors_open(path, err);
    if (sft_path_join(path, sizeof path, dir, "model.safetensors.index.json", err)) return NULL;
    if (sft_file_exists(path)) return open_sharded(dir, path, err);
    sft_errf(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
    return NULL;
}

size_t sft_safetensors_count(const sft_safetensors *st) {
    return st->count;
}

const sft_tensor_info *sft_safetensors_at(const sft_safetensors *st, size_t i) {
    return i < st->count ? &st->tensors[i] : NULL;
}

const sft_tensor_info *sft_safetensors_find(const sft_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sft_tensor_info *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- writing --------------------------------------------------------- */

static int check_outputs(const char *path, const sft_tensor_out *tensors, size_t count, uint64_t *numels,
                         sft_err *err) {
    const char **names = malloc((count ? count : 1) * sizeof *names);
    if (!names) return sft_errf(err, "%s: out of memory", path);
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        const sft_tensor_out *t = &tensors[i];
        if (!t->name || !*t->name) rc = sft_errf(err, "%s: tensor %zu has no name", path, i);
        else if (!strcmp(t->name, "__metadata__"))
            rc = sft_errf(err, "%s: '__metadata__' is reserved and cannot name a tensor", path);
        else if (t->ndim < 0 || t->ndim > SFT_MAX_DIMS)
            rc = sft_errf(err, "%s: tensor '%s': %d dimensions (0 to %d allowed)", path, t->name, t->ndim,
                          SFT_MAX_DIMS);
        if (rc) break;
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim && !rc; d++) {
            if (t->shape[d] < 0)
                rc = sft_errf(err, "%s: tensor '%s': negative dimension %lld", path, t->name,
                              (long long)t->shape[d]);
            else if (t->shape[d] && numel > (UINT64_MAX / 4) / (uint64_t)t->shape[d])
                rc = sft_errf(err, "%s: tensor '%s': shape overflows the size of a buffer", path, t->name);
            else
                numel *= (uint64_t)t->shape[d];
        }
        if (!rc && numel && !t->data) rc = sft_errf(err, "%s: tensor '%s': no data", path, t->name);
        numels[i] = numel;
        names[i] = t->name;
    }
    if (!rc) {
        qsort(names, count, sizeof *names, cmp_str_ptr);
        for (size_t i = 1; i < count && !rc; i++)
            if (!strcmp(names[i], names[i - 1])) rc = sft_errf(err, "%s: tensor '%s' given twice", path, names[i]);
    }
    free(names);
    return rc;
}

/* The header JSON, unpadded; malloc'ed. */
static char *build_header(const sft_tensor_out *tensors, size_t count, const uint64_t *numels, sft_dtype dtype,
                          size_t *header_len) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) return NULL;
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", mem);
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const sft_tensor_out *t = &tensors[i];
        fputc(',', mem);
        sft_json_write_string(mem, t->name, strlen(t->name));
        fprintf(mem, ":{\"dtype\":\"%s\",\"shape\":[", sft_dtype_name(dtype));
        for (int d = 0; d < t->ndim; d++) fprintf(mem, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t end = offset + numels[i] * sft_dtype_size(dtype);
        fprintf(mem, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)end);
        offset = end;
    }
    fputc('}', mem);
    /* spaces up to a multiple of 8, so that the data starts 8-byte aligned */
    long unpadded = ftell(mem);
    for (long i = unpadded; i % 8; i++) fputc(' ', mem);
    if (fclose(mem)) {
        free(text);
        return NULL;
    }
    *header_len = len;
    return text;
}

/* Converts and writes one tensor's data in chunks, so that no full copy of
 * a large tensor is ever made. */
static int write_tensor_data(sft_atomic_file *f, const float *data, uint64_t numel, sft_dtype dtype, sft_err *err) {
    if (dtype == SFT_DTYPE_F32) return sft_atomic_write(f, data, (size_t)numel * 4, err);
    enum { CHUNK = 1 << 16 };
    uint16_t chunk[CHUNK];
    for (uint64_t start = 0; start < numel; start += CHUNK) {
        size_t n = numel - start < CHUNK ? (size_t)(numel - start) : CHUNK;
        for (size_t i = 0; i < n; i++)
            chunk[i] = dtype == SFT_DTYPE_F16 ? sft_f32_to_f16(data[start + i]) : sft_f32_to_bf16(data[start + i]);
        if (sft_atomic_write(f, chunk, n * 2, err)) return -1;
    }
    return 0;
}

int sft_safetensors_write(const char *path, const sft_tensor_out *tensors, size_t count, sft_dtype dtype,
                          sft_err *err) {
    uint64_t *numels = malloc((count ? count : 1) * sizeof *numels);
    if (!numels) return sft_errf(err, "%s: out of memory", path);
    if (check_outputs(path, tensors, count, numels, err)) {
        free(numels);
        return -1;
    }
    size_t header_len = 0;
    char *header = build_header(tensors, count, numels, dtype, &header_len);
    if (!header) {
        free(numels);
        return sft_errf(err, "%s: out of memory building the header", path);
    }
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    int rc = 0;
    sft_atomic_file *f = sft_atomic_open(path, err);
    if (!f) rc = -1;
    if (!rc) rc = sft_atomic_write(f, len_bytes, 8, err);
    if (!rc) rc = sft_atomic_write(f, header, header_len, err);
    for (size_t i = 0; i < count && !rc; i++) rc = write_tensor_data(f, tensors[i].data, numels[i], dtype, err);
    if (f) {
        if (rc) sft_atomic_abort(f);
        else rc = sft_atomic_commit(f, err);
    }
    free(header);
    free(numels);
    return rc;
}
