/* records.h: instruction-data records, read streaming from JSONL or a JSON
 * array, in the five formats sft accepts, each normalised to a list of
 * {role, content} messages while the original JSON record is kept whole.
 *
 * Formats and how they map to messages (docs/data.md says the same, with the pipeline steps):
 *   alpaca             {"instruction", "input"?, "output", "system"?}
 *                      -> [system?] user = instruction, or instruction + "\n\n" + input
 *                         when input is a non-empty string (the blank line of the original
 *                         Alpaca prompt; LLaMA-Factory joins with a single "\n"),
 *                         assistant = output.
 *   sharegpt           {"conversations": [{"from", "value"}...], "system"?}
 *                      from: human|user -> user; gpt|assistant|chatgpt|model -> assistant;
 *                      system -> system. A top-level "system" string (LLaMA-Factory) becomes
 *                      the first message.
 *   messages           {"messages": [{"role", "content"}...]} roles system|user|assistant
 *                      (TRL's conversational format, OpenAI chat format).
 *   prompt-completion  {"prompt", "completion"}: strings -> user = prompt, assistant =
 *                      completion; or lists of messages (TRL's conversational
 *                      prompt-completion) -> prompt messages then completion messages.
 *   text               {"text"} -> one assistant message holding the whole text (loss on
 *                      every token, as TRL's language-modeling format).
 * TRL does not apply a chat template to plain (non-conversational) prompt-completion or
 * text records; `sft_record.format` tells the trainer which kind a record was, so it can
 * choose to render those raw.
 *
 * Detection (`auto`): from the first record's keys, in this order: messages,
 * conversations, instruction+output, prompt+completion, text. Every later
 * record of the same file must have the detected format's keys.
 *
 * Every record must hold at least one assistant message with a string content;
 * errors read "FILE:LINE: what was expected". */
#ifndef SFT_DATA_RECORDS_H
#define SFT_DATA_RECORDS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "io/err.h"
#include "tok/template.h"

typedef enum {
    SFT_FORMAT_AUTO = 0,
    SFT_FORMAT_ALPACA,
    SFT_FORMAT_SHAREGPT,
    SFT_FORMAT_MESSAGES,
    SFT_FORMAT_PROMPT_COMPLETION,
    SFT_FORMAT_TEXT,
} sft_data_format;

/* "auto", "alpaca", "sharegpt", "messages", "prompt-completion", "text". */
const char *sft_data_format_name(sft_data_format format);
/* -1 with err naming the valid names (and the nearest one) when unknown. */
int sft_data_format_parse(const char *name, sft_data_format *out, sft_err *err);

/* The roles are the chat templates' (tok/template.h), so a record's messages
 * feed the renderer without translation. */
typedef sft_chat_role sft_role;
#define SFT_ROLE_COUNT 3
const char *sft_role_name(sft_role role); /* "system", "user", "assistant" */

typedef struct sft_message {
    sft_role role;
    const char *content; /* UTF-8, may hold NUL bytes; owned by the record */
    size_t content_len;
    /* The turn object this message came from (sharegpt/messages/conversational
     * prompt-completion), so that conversions keep its extra fields; NULL otherwise. */
    const json_t *source;
} sft_message;

typedef struct sft_record {
    json_t *json; /* the original record, every field (owned) */
    sft_data_format format;
    sft_message *messages;
    size_t message_count;
    size_t message_cap;
    char *joined; /* owned storage for an alpaca instruction + input */
    /* The record's text exactly as it was in the file (one JSONL line, or one
     * array element), so unchanged records are written back byte for byte. */
    char *raw;
    size_t raw_len;
    const char *path; /* the reader's path (valid while the reader is open) */
    size_t line;      /* 1-based line where the record starts */
    size_t index;     /* 0-based index of the record within its file */
} sft_record;

void sft_record_init(sft_record *rec);
/* Drops the record's contents but keeps its message buffer for the next record. */
void sft_record_clear(sft_record *rec);
void sft_record_free(sft_record *rec); /* frees everything the record owns */

/* Normalises a parsed record (owned by rec afterwards) of a given format
 * (not AUTO). where = "FILE:LINE" for messages. allow_no_assistant lets a record
 * without an assistant turn through (filter reports it as a rule instead). */
int sft_record_from_json(sft_record *rec, json_t *json, sft_data_format format, int allow_no_assistant,
                         const char *where, sft_err *err);

/* The format whose keys the object has (AUTO when none). */
sft_data_format sft_data_format_detect(const json_t *record);

/* Counts helpers. */
size_t sft_record_count_role(const sft_record *rec, sft_role role);
/* Index of the last assistant message, or -1. */
long sft_record_last_assistant(const sft_record *rec);

/* Stable copies of the input paths that records kept past their reader
 * (batched for dedup or scoring) point to. */
typedef struct sft_path_pool {
    char **paths;
    size_t count;
} sft_path_pool;

/* Moves *rec into *slot (the reader gets the slot's old buffers back to
 * reuse) and points slot->path at a copy in `pool` that outlives the reader. */
int sft_record_move_into(sft_record *slot, sft_record *rec, sft_path_pool *pool, sft_err *err);
void sft_path_pool_free(sft_path_pool *pool);

/* ---- streaming reader ---- */
typedef struct sft_reader_options {
    sft_data_format format; /* AUTO detects from the first record */
    int skip_bad;           /* count bad lines/records instead of failing */
    int allow_no_assistant; /* see sft_record_from_json */
} sft_reader_options;

typedef struct sft_reader sft_reader;

/* Opens a JSONL file (one record per line; blank lines ignored) or a JSON
 * array (first non-blank byte '['), plain or gzip. */
sft_reader *sft_reader_open(const char *path, const sft_reader_options *opts, sft_err *err);
/* 1 with *rec filled (cleared first), 0 at the end, -1 on error ("FILE:LINE: ..."). */
int sft_reader_next(sft_reader *r, sft_record *rec, sft_err *err);
/* The format detected (or forced); AUTO before the first record. */
sft_data_format sft_reader_format(const sft_reader *r);
size_t sft_reader_skipped(const sft_reader *r);
/* The first skipped line's message ("" when none). */
const char *sft_reader_first_skip(const sft_reader *r);
size_t sft_reader_bytes_read(const sft_reader *r);
const char *sft_reader_path(const sft_reader *r);
void sft_reader_close(sft_reader *r);

/* Loads any JSON record without a format (decontamination evaluation sets):
 * same streaming as the reader, *json owned by the caller. 1/0/-1 like next. */
int sft_reader_next_json(sft_reader *r, json_t **json, size_t *line, sft_err *err);

/* ---- writing ---- */
/* A record writer: JSONL, or a JSON array when the path ends in ".json".
 * Written atomically: nothing appears under path until sft_writer_commit. */
typedef struct sft_writer sft_writer;
sft_writer *sft_writer_open(const char *path, sft_err *err);
/* Writes the record unchanged (its raw text when it was one line). */
int sft_writer_put_record(sft_writer *w, const sft_record *rec, sft_err *err);
/* Writes a JSON object (key order kept). */
int sft_writer_put_json(sft_writer *w, const json_t *json, sft_err *err);
size_t sft_writer_count(const sft_writer *w);
int sft_writer_commit(sft_writer *w, sft_err *err); /* frees w */
void sft_writer_abort(sft_writer *w);               /* frees w; NULL is fine */
/* The end of a write: commits when rc == 0, else aborts (the output never
 * appears half-written); returns the final status. Frees w. */
int sft_writer_finish(sft_writer *w, int rc, sft_err *err);

/* Dumps a JSON value compactly on one line, keys in their original order and
 * integers as integers; malloc'ed. */
char *sft_record_dumps(const json_t *json);

/* ---- conversion ---- */
/* Builds a new record object in `format` from messages, keeping every field of
 * `original` that is not one of its own format's keys (in their order, the new
 * format's keys where the first old format key was). Refuses what the target
 * cannot represent (multi-turn to alpaca, ...) with a message naming `where`. */
json_t *sft_record_build(const json_t *original, sft_data_format original_format, const sft_message *messages,
                         size_t count, sft_data_format format, const char *where, sft_err *err);

#endif
