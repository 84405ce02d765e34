/* test_dataset.c: training data to batches (train/dataset.h): every record
 * format, assistant masks equal to transformers' on the fixtures, one BOS,
 * truncation and drop counts, the tokenized cache (hit, damage, key),
 * malformed lines, the seeded split, padding and packing (positions, seq
 * ids, and a packed record's logits independent of its row-mates). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "model/model.h"
#include "model/ops.h"
#include "test.h"
#include "train/dataset.h"

#define DEMO "assets/demo-model"
#define FIXTURES "tests/fixtures/hf"

static char made[16][64];
static int made_count;

static void remove_made(void) {
    for (int i = 0; i < made_count; i++) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", made[i]);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", made[i]);
    }
}

/* A fresh folder, removed at exit. */
static char *tmpdir(void) {
    if (made_count == 16) abort();
    char *dir = made[made_count++];
    snprintf(dir, 64, "/tmp/sft-test-dataset-XXXXXX");
    if (!mkdtemp(dir)) abort();
    if (made_count == 1) atexit(remove_made);
    return dir;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

typedef struct {
    sft_tokenizer *tok;
    sft_chat_template *tmpl;
    sft_encoder enc;
} demo_env;

static int demo_open(demo_env *d, const char *dir, const char *template_name) {
    sft_err err;
    memset(d, 0, sizeof *d);
    d->tok = sft_tokenizer_load(dir, &err);
    if (!d->tok) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    d->tmpl = sft_chat_template_for_tokenizer(d->tok, template_name, &err);
    if (!d->tmpl) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    if (sft_encoder_init(&d->enc, d->tok, d->tmpl, dir, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void demo_close(demo_env *d) {
    sft_chat_template_free(d->tmpl);
    sft_tokenizer_free(d->tok);
}

static sft_dataset_options opts_nocache(int64_t max_len) {
    sft_dataset_options o = {.format = SFT_FORMAT_AUTO, .max_len = max_len, .cache_dir = ""};
    return o;
}

/* The same conversation (system?, user, assistant) in every chat format
 * gives the same tokens and targets; text records are raw text + EOS with
 * loss on every token. */
TEST(every_format_gives_the_same_examples) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir(), path[5][256];
    const char *names[5] = {"alpaca.jsonl", "sharegpt.json", "messages.jsonl", "pc.jsonl", "text.jsonl"};
    const char *bodies[5] = {
        "{\"instruction\": \"add 1 2\", \"output\": \"3\"}\n{\"instruction\": \"add\", \"input\": \"4 5\", "
        "\"output\": \"9\"}\n",
        "[{\"conversations\": [{\"from\": \"human\", \"value\": \"add 1 2\"}, {\"from\": \"gpt\", \"value\": "
        "\"3\"}]},\n {\"conversations\": [{\"from\": \"human\", \"value\": \"add\\n\\n4 5\"}, {\"from\": \"gpt\", "
        "\"value\": \"9\"}]}]\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"add 1 2\"}, {\"role\": \"assistant\", \"content\": "
        "\"3\"}]}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"add\\n\\n4 5\"}, {\"role\": \"assistant\", "
        "\"content\": \"9\"}]}\n",
        "{\"prompt\": \"add 1 2\", \"completion\": \"3\"}\n{\"prompt\": \"add\\n\\n4 5\", \"completion\": \"9\"}\n",
        "{\"text\": \"add 1 2 = 3\"}\n",
    };
    sft_data_format expect[5] = {SFT_FORMAT_ALPACA, SFT_FORMAT_SHAREGPT, SFT_FORMAT_MESSAGES,
                                 SFT_FORMAT_PROMPT_COMPLETION, SFT_FORMAT_TEXT};
    sft_dataset ds[5];
    sft_err err;
    for (int i = 0; i < 5; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
        write_text(path[i], bodies[i]);
        const char *p = path[i];
        sft_dataset_options o = opts_nocache(64);
        if (sft_dataset_load(&ds[i], &p, 1, &d.enc, &o, &err)) {
            fprintf(stderr, "  %s: %s\n", names[i], err.msg);
            CHECK(0);
            return;
        }
        CHECK_INT(ds[i].files[0].format, expect[i]);
    }
    for (int i = 0; i < 4; i++) {
        CHECK_INT(ds[i].count, 2);
        CHECK_INT(ds[i].token_count, ds[2].token_count);
        if (ds[i].token_count == ds[2].token_count) {
            CHECK(!memcmp(ds[i].ids, ds[2].ids, ds[2].token_count * sizeof(int32_t)));
            CHECK(!memcmp(ds[i].targets, ds[2].targets, ds[2].token_count * sizeof(int32_t)));
        }
        CHECK_INT(ds[i].examples[1].line, i == 1 ? 2 : i == 2 ? 3 : 2); /* blank line in messages.jsonl */
    }
    /* Chat records: loss on "3<|im_end|>" only (2 tokens at least). */
    const sft_example *e = &ds[2].examples[0];
    int32_t eos = d.enc.eos_id;
    CHECK(eos >= 0);
    int saw_eos_target = 0;
    for (int i = 0; i < e->len; i++) saw_eos_target |= ds[2].targets[e->offset + i] == eos;
    CHECK(saw_eos_target);
    CHECK(e->supervised < e->len / 2);
    /* Text: every next token is a target, the last one EOS. */
    const sft_example *t = &ds[4].examples[0];
    CHECK_INT(t->supervised, t->len - 1);
    CHECK_INT(ds[4].ids[t->offset + t->len - 1], eos);
    CHECK_INT(ds[4].targets[t->offset + t->len - 2], eos);
    for (int i = 0; i < 5; i++) sft_dataset_free(&ds[i]);
    demo_close(&d);
}

/* Loads the fixture chats of one tokenizer and compares ids and masks. */
static void check_masks(const char *dir, const json_t *chats, const char *what) {
    demo_env d;
    char full[512];
    snprintf(full, sizeof full, FIXTURES "/%s", dir);
    if (demo_open(&d, full, NULL)) {
        CHECK(0);
        return;
    }
    sft_encoded e = {0};
    size_t i;
    json_t *chat;
    int checked = 0;
    json_array_foreach(chats, i, chat) {
        json_t *msgs = json_object_get(chat, "messages");
        json_t *ids = json_object_get(chat, "ids"), *mask = json_object_get(chat, "assistant_mask");
        if (!msgs || !ids || !mask) continue;
        json_t *obj = json_pack("{s:O}", "messages", msgs);
        sft_record rec;
        sft_record_init(&rec);
        sft_err err;
        if (sft_record_from_json(&rec, obj, SFT_FORMAT_MESSAGES, 1, "fixture", &err) ||
            sft_encode_record(&d.enc, &rec, 0, &e, &err)) {
            fprintf(stderr, "  %s %s chat %zu: %s\n", what, dir, i, err.msg);
            CHECK(0);
            sft_record_free(&rec);
            continue;
        }
        int same = e.count == json_array_size(ids) && e.count == json_array_size(mask);
        for (size_t k = 0; same && k < e.count; k++) {
            int64_t id, m;
            sft_json_int(json_array_get(ids, k), &id);
            sft_json_int(json_array_get(mask, k), &m);
            same = e.ids[k] == id && e.mask[k] == m;
        }
        if (!same) fprintf(stderr, "  %s %s chat %zu: ids or mask differ\n", what, dir, i);
        CHECK(same);
        checked++;
        sft_record_free(&rec);
    }
    CHECK(checked > 0);
    sft_encoded_free(&e);
    demo_close(&d);
}

/* The training mask is transformers' assistant mask (end-of-turn included),
 * and the ids are apply_chat_template's: exactly one BOS for Llama 2/3. */
TEST(masks_equal_the_fixtures_assistant_masks) {
    sft_err err;
    json_t *ref = sft_json_load_file(FIXTURES "/reference.json", &err);
    CHECK(ref != NULL);
    if (!ref) return;
    const char *key;
    json_t *entry;
    int tokenizers = 0;
    json_object_foreach(ref, key, entry) {
        if (strncmp(key, "tokenizer_", 10)) continue;
        check_masks(json_string_value(json_object_get(entry, "dir")), json_object_get(entry, "chat"), key);
        tokenizers++;
    }
    CHECK_INT(tokenizers, 4);
    json_decref(ref);
    /* the real-text corpus: 60 conversations per tokenizer */
    char *text;
    size_t len;
    if (sft_read_file_maybe_gz(FIXTURES "/corpus/reference_corpus.json.gz", &text, &len, &err)) {
        CHECK(0);
        return;
    }
    json_t *corpus = sft_json_loadb(text, len, "corpus", &err);
    free(text);
    CHECK(corpus != NULL);
    json_object_foreach(json_object_get(corpus, "tokenizers"), key, entry)
        check_masks(json_string_value(json_object_get(entry, "dir")), json_object_get(entry, "chat"), key);
    json_decref(corpus);
}

TEST(one_bos_when_the_tokenizer_adds_one) {
    demo_env d;
    if (demo_open(&d, FIXTURES "/models/llama3-tiny", NULL)) {
        CHECK(0);
        return;
    }
    CHECK(d.enc.add_bos);
    const char *texts[] = {"{\"text\": \"hello world\"}", "{\"text\": \"<|begin_of_text|>hello world\"}",
                           "{\"text\": \"<|begin_of_text|><|begin_of_text|>hello world\"}"};
    size_t counts[3];
    for (int i = 0; i < 3; i++) {
        sft_err err;
        json_t *j = sft_json_loadb(texts[i], strlen(texts[i]), "t", &err);
        sft_record rec;
        sft_record_init(&rec);
        sft_encoded e = {0};
        CHECK(!sft_record_from_json(&rec, j, SFT_FORMAT_TEXT, 0, "t", &err));
        CHECK(!sft_encode_record(&d.enc, &rec, 0, &e, &err));
        CHECK_INT(e.ids[0], d.enc.bos_id);
        CHECK(e.ids[1] != d.enc.bos_id);
        CHECK_INT(e.ids[e.count - 1], d.enc.eos_id);
        counts[i] = e.count;
        sft_encoded_free(&e);
        sft_record_free(&rec);
    }
    CHECK_INT(counts[1], counts[0]);
    CHECK_INT(counts[2], counts[0]);
    demo_close(&d);
}

TEST(overlong_records_are_truncated_or_dropped_and_counted) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir(), path[256];
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    /* a short record, a long answer, and a long prompt whose answer falls past max_len */
    write_text(path,
               "{\"instruction\": \"add 1 2\", \"output\": \"3\"}\n"
               "{\"instruction\": \"add 1 2\", \"output\": \"3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3\"}\n"
               "{\"instruction\": \"add 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9\", \"output\": \"3\"}\n");
    const char *p = path;
    sft_err err;
    sft_dataset ds;
    /* max_len = the first record's length: it fits exactly, the others do not */
    sft_dataset_options o = opts_nocache(1000);
    CHECK(!sft_dataset_load(&ds, &p, 1, &d.enc, &o, &err));
    int32_t first_len = ds.examples[0].len;
    CHECK(ds.examples[1].len > first_len && ds.examples[2].len > first_len);
    sft_dataset_free(&ds);
    o.max_len = first_len;
    CHECK(!sft_dataset_load(&ds, &p, 1, &d.enc, &o, &err));
    CHECK_INT(ds.stats.records, 3);
    CHECK_INT(ds.stats.truncated, 2);
    CHECK_INT(ds.stats.dropped_unsupervised, 1);
    CHECK_INT(ds.count, 2);
    for (size_t i = 0; i < ds.count; i++) CHECK(ds.examples[i].len <= first_len);
    CHECK_INT(ds.examples[1].line, 2);
    sft_dataset_free(&ds);
    o.drop_overlong = 1;
    CHECK(!sft_dataset_load(&ds, &p, 1, &d.enc, &o, &err));
    CHECK_INT(ds.stats.dropped_overlong, 2);
    CHECK_INT(ds.stats.truncated, 0);
    CHECK_INT(ds.count, 1);
    sft_dataset_free(&ds);
    /* --train-on-prompt: the prompt tokens are targets too */
    o = opts_nocache(64);
    sft_dataset a, b;
    CHECK(!sft_dataset_load(&a, &p, 1, &d.enc, &o, &err));
    o.train_on_prompt = 1;
    CHECK(!sft_dataset_load(&b, &p, 1, &d.enc, &o, &err));
    CHECK_INT(b.examples[0].supervised, b.examples[0].len - 1);
    CHECK(a.examples[0].supervised < b.examples[0].supervised);
    sft_dataset_free(&a);
    sft_dataset_free(&b);
    demo_close(&d);
}

TEST(malformed_line_is_fatal_with_file_and_line_or_skipped_and_counted) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir(), path[256];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    write_text(path, "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\", \"output\": \n"
                     "{\"instruction\": \"c\", \"output\": \"d\"}\n");
    const char *p = path;
    sft_err err;
    sft_dataset ds;
    sft_dataset_options o = opts_nocache(64);
    CHECK(sft_dataset_load(&ds, &p, 1, &d.enc, &o, &err) == -1);
    char where[300];
    snprintf(where, sizeof where, "%s:2", path);
    CHECK_ERR_HAS(err.msg, where);
    o.skip_bad = 1;
    CHECK(!sft_dataset_load(&ds, &p, 1, &d.enc, &o, &err));
    CHECK_INT(ds.count, 2);
    CHECK_INT(ds.stats.skipped_bad, 1);
    CHECK_ERR_HAS(ds.stats.first_skip, where);
    sft_dataset_free(&ds);
    demo_close(&d);
}

TEST(cache_is_hit_rebuilt_when_damaged_and_keyed_by_options) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir(), path[256], cache[256];
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    write_text(path, "{\"instruction\": \"add 1 2\", \"output\": \"3\"}\n{\"instruction\": \"add 3 4\", \"output\": "
                     "\"7\"}\n");
    const char *p = path;
    sft_err err;
    sft_dataset a, b, c;
    sft_dataset_options o = {.max_len = 64, .cache_dir = cache};
    CHECK(!sft_dataset_load(&a, &p, 1, &d.enc, &o, &err));
    CHECK(!a.cache_hit);
    CHECK(sft_file_exists(a.cache_path));
    CHECK(!sft_dataset_load(&b, &p, 1, &d.enc, &o, &err));
    CHECK(b.cache_hit);
    CHECK_INT(b.count, a.count);
    CHECK_INT(b.token_count, a.token_count);
    CHECK(!memcmp(a.ids, b.ids, a.token_count * 4) && !memcmp(a.targets, b.targets, a.token_count * 4));
    CHECK(!memcmp(a.examples, b.examples, a.count * sizeof *a.examples));
    CHECK_INT(b.files[0].format, SFT_FORMAT_ALPACA);
    sft_dataset_free(&b);
    /* damage one byte in the middle: detected, rebuilt, same content */
    FILE *f = fopen(a.cache_path, "r+b");
    CHECK(f != NULL);
    fseek(f, 60, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 60, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    CHECK(!sft_dataset_load(&b, &p, 1, &d.enc, &o, &err));
    CHECK(!b.cache_hit);
    CHECK(b.cache_rebuilt);
    CHECK(!memcmp(a.ids, b.ids, a.token_count * 4));
    sft_dataset_free(&b);
    CHECK(!sft_dataset_load(&b, &p, 1, &d.enc, &o, &err));
    CHECK(b.cache_hit);
    /* another max_len or masking: another key */
    o.max_len = 63;
    CHECK(!sft_dataset_load(&c, &p, 1, &d.enc, &o, &err));
    CHECK(!c.cache_hit);
    CHECK(strcmp(c.cache_path, a.cache_path));
    sft_dataset_free(&c);
    o.max_len = 64;
    o.train_on_prompt = 1;
    CHECK(!sft_dataset_load(&c, &p, 1, &d.enc, &o, &err));
    CHECK(!c.cache_hit);
    sft_dataset_free(&c);
    /* changed data: another key */
    o.train_on_prompt = 0;
    write_text(path, "{\"instruction\": \"add 1 2\", \"output\": \"4\"}\n");
    CHECK(!sft_dataset_load(&c, &p, 1, &d.enc, &o, &err));
    CHECK(!c.cache_hit);
    CHECK_INT(c.count, 1);
    sft_dataset_free(&c);
    sft_dataset_free(&a);
    sft_dataset_free(&b);
    demo_close(&d);
}

static int load_n(demo_env *d, const char *dir, int n, int64_t max_len, sft_dataset *ds) {
    char path[256];
    snprintf(path, sizeof path, "%s/n%d.jsonl", dir, n);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"instruction\": \"add %d %d", i, 2 * i);
        for (int k = 0; k < i % 5; k++) fprintf(f, " %d", k);
        fprintf(f, "\", \"output\": \"%d\"}\n", 3 * i);
    }
    fclose(f);
    const char *p = path;
    sft_err err;
    sft_dataset_options o = opts_nocache(max_len);
    if (sft_dataset_load(ds, &p, 1, &d->enc, &o, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    return 0;
}

TEST(split_is_seeded_and_disjoint) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir();
    sft_dataset all, tr, va, all2, tr2, va2;
    CHECK(!load_n(&d, dir, 40, 64, &all));
    CHECK(!load_n(&d, dir, 40, 64, &all2));
    sft_err err;
    CHECK(!sft_dataset_split(&all, 0.25, 7, &tr, &va, &err));
    CHECK(!sft_dataset_split(&all2, 0.25, 7, &tr2, &va2, &err));
    CHECK_INT(va.count, 10);
    CHECK_INT(tr.count, 30);
    CHECK_INT(va2.count, 10);
    for (size_t i = 0; i < va.count; i++) CHECK_INT(va.examples[i].line, va2.examples[i].line);
    for (size_t i = 0; i < va.count; i++)
        for (size_t j = 0; j < tr.count; j++) CHECK(va.examples[i].line != tr.examples[j].line);
    sft_dataset_free(&tr), sft_dataset_free(&va), sft_dataset_free(&tr2), sft_dataset_free(&va2);
    demo_close(&d);
}

TEST(unpacked_batches_pad_to_the_longest_row_only) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir();
    sft_dataset ds;
    CHECK(!load_n(&d, dir, 10, 64, &ds));
    sft_loader ld;
    sft_err err;
    CHECK(!sft_loader_init(&ld, &ds, 0, 64, 362, &err));
    CHECK_INT(ld.item_count, 10);
    size_t items[3] = {0, 4, 2};
    sft_batch_buf buf = {0};
    CHECK(!sft_loader_batch(&ld, items, 3, &buf, &err));
    int longest = 0, sup = 0;
    for (int i = 0; i < 3; i++) {
        if (ds.examples[items[i]].len > longest) longest = ds.examples[items[i]].len;
        sup += ds.examples[items[i]].supervised;
    }
    CHECK_INT(buf.batch.T, longest);
    CHECK_INT(buf.supervised, sup);
    /* row 0 (example 0 is shorter): padding after it, no loss there */
    int len0 = ds.examples[0].len;
    CHECK(len0 < longest);
    for (int t = len0; t < longest; t++) {
        CHECK_INT(buf.targets[t], SFT_IGNORE_INDEX);
        CHECK_INT(buf.tokens[t], 362);
    }
    for (int t = 0; t < len0; t++) CHECK_INT(buf.pos[t], t);
    /* the epoch order is a permutation, and the same for the same stream and epoch */
    sft_rng data;
    sft_rng_seed(&data, 42, SFT_RNG_STREAM_DATA);
    sft_loader_set_epoch(&ld, &data, 0);
    int64_t first[10];
    memcpy(first, ld.order, sizeof first);
    sft_loader_set_epoch(&ld, &data, 1);
    int differs = memcmp(first, ld.order, sizeof first) != 0;
    CHECK(differs);
    sft_loader_set_epoch(&ld, &data, 0);
    CHECK(!memcmp(first, ld.order, sizeof first));
    sft_batch_buf_free(&buf);
    sft_loader_free(&ld);
    sft_dataset_free(&ds);
    demo_close(&d);
}

TEST(packing_fills_rows_with_restarting_positions) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    char *dir = tmpdir();
    sft_dataset ds;
    CHECK(!load_n(&d, dir, 30, 64, &ds));
    sft_loader ld;
    sft_err err;
    CHECK(!sft_loader_init(&ld, &ds, 1, 64, 362, &err));
    CHECK(ld.item_count < ds.count);
    CHECK(ld.packing_efficiency > 0.8 && ld.packing_efficiency <= 1.0);
    /* every example exactly once, no row over max_len */
    int *seen = calloc(ds.count, sizeof *seen);
    for (size_t r = 0; r < ld.item_count; r++) {
        CHECK(sft_loader_item_tokens(&ld, r) <= 64);
        for (size_t k = ld.item_start[r]; k < ld.item_start[r + 1]; k++) seen[ld.item_examples[k]]++;
    }
    for (size_t i = 0; i < ds.count; i++) CHECK_INT(seen[i], 1);
    free(seen);
    size_t item = 0;
    sft_batch_buf buf = {0};
    CHECK(!sft_loader_batch(&ld, &item, 1, &buf, &err));
    int t = 0;
    for (size_t k = ld.item_start[0]; k < ld.item_start[1]; k++) {
        const sft_example *e = &ds.examples[ld.item_examples[k]];
        for (int j = 0; j < e->len; j++, t++) {
            CHECK_INT(buf.pos[t], j);
            CHECK_INT(buf.seq[t], (int)(k - ld.item_start[0]));
        }
        /* no loss across the boundary: the last token of a record predicts nothing */
        CHECK_INT(buf.targets[t - 1], SFT_IGNORE_INDEX);
    }
    sft_batch_buf_free(&buf);
    sft_loader_free(&ld);
    sft_dataset_free(&ds);
    demo_close(&d);
}

static const char tiny_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 365, "
    "\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2, \"head_dim\": 8, \"hidden_act\": \"silu\", \"max_position_embeddings\": 256, "
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, \"eos_token_id\": 364, "
    "\"pad_token_id\": 362, \"torch_dtype\": \"float32\"}";

/* The logits of a packed row, for the tokens of every example but `skip`. */
TEST(packed_records_do_not_see_each_other) {
    demo_env d;
    if (demo_open(&d, DEMO, NULL)) {
        CHECK(0);
        return;
    }
    sft_set_threads(1);
    char *dir = tmpdir();
    sft_dataset ds;
    CHECK(!load_n(&d, dir, 12, 128, &ds));
    sft_err err;
    sft_model_config cfg;
    CHECK(!sft_config_parse(tiny_config, strlen(tiny_config), "tiny", &cfg, &err));
    sft_model *m = sft_model_create(&cfg, &err);
    CHECK(m != NULL);
    if (!m) return;
    sft_model_init_weights(m, 1);
    CHECK(!sft_model_plan(m, 2, 128, &err));
    sft_loader ld;
    CHECK(!sft_loader_init(&ld, &ds, 1, 128, 362, &err));
    /* a row with at least three records */
    size_t row = 0;
    while (row < ld.item_count && ld.item_start[row + 1] - ld.item_start[row] < 3) row++;
    CHECK(row < ld.item_count);
    if (row == ld.item_count) return;
    sft_batch_buf buf = {0};
    CHECK(!sft_loader_batch(&ld, &row, 1, &buf, &err));
    int T = buf.batch.T, V = cfg.vocab_size;
    double loss;
    CHECK(!sft_model_forward(m, &buf.batch, &loss, &err));
    float *before = malloc((size_t)T * V * sizeof *before);
    memcpy(before, m->logits, (size_t)T * V * sizeof *before);
    /* change every token of the second record */
    const sft_example *changed = &ds.examples[ld.item_examples[ld.item_start[row] + 1]];
    int start = ds.examples[ld.item_examples[ld.item_start[row]]].len, end = start + changed->len;
    for (int t = start; t < end; t++) buf.tokens[t] = (buf.tokens[t] + 7) % 300;
    CHECK(!sft_model_forward(m, &buf.batch, &loss, &err));
    int same_others = 1, changed_moved = 0;
    for (int t = 0; t < T; t++)
        for (int v = 0; v < V; v++) {
            float a = before[(size_t)t * V + v], b = m->logits[(size_t)t * V + v];
            if (t >= start && t < end) changed_moved |= a != b;
            else same_others &= fabsf(a - b) <= 1e-6f;
        }
    CHECK(same_others);
    CHECK(changed_moved);
    /* and the first record alone gives the logits it had in the row */
    size_t first_only = ld.item_examples[ld.item_start[row]];
    sft_loader single;
    CHECK(!sft_loader_init(&single, &ds, 0, 128, 362, &err));
    sft_batch_buf one = {0};
    CHECK(!sft_loader_batch(&single, &first_only, 1, &one, &err));
    CHECK(!sft_model_forward(m, &one.batch, &loss, &err));
    float worst = 0;
    for (int t = 0; t < one.batch.T; t++)
        for (int v = 0; v < V; v++) {
            float diff = fabsf(before[(size_t)t * V + v] - m->logits[(size_t)t * V + v]);
            if (diff > worst) worst = diff;
        }
    CHECK(worst <= 1e-5f);
    free(before);
    sft_batch_buf_free(&one);
    sft_batch_buf_free(&buf);
    sft_loader_free(&single);
    sft_loader_free(&ld);
    sft_model_free(m);
    sft_dataset_free(&ds);
    demo_close(&d);
}
