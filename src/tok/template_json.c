/* template_json.c: JSON message arrays -> sft_chat_message (see template_json.h). */
#include <stdlib.h>

#include "tok/template_json.h"

int sft_chat_messages_from_json(const json_t *array, sft_chat_message **messages, size_t *cap, size_t *count,
                                sft_err *err) {
    *count = 0;
    if (!json_is_array(array)) return sft_errf(err, "'messages' must be an array of {\"role\", \"content\"} objects");
    size_t n = json_array_size(array);
    if (!n) return sft_errf(err, "'messages' is empty");
    if (n > *cap) {
        sft_chat_message *p = realloc(*messages, n * sizeof *p);
        if (!p) return sft_errf(err, "out of memory for %zu messages", n);
        *messages = p;
        *cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(array, i);
        if (!json_is_object(m)) return sft_errf(err, "messages[%zu] must be an object with 'role' and 'content'", i);
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!role) return sft_errf(err, "messages[%zu] has no 'role'", i);
        if (!json_is_string(role)) return sft_errf(err, "messages[%zu]: 'role' must be a string", i);
        if (sft_chat_role_parse(json_string_value(role), &(*messages)[i].role, err))
            return sft_err_prefix(err, "messages[%zu]", i);
        if (!content) return sft_errf(err, "messages[%zu] (%s) has no 'content'", i, json_string_value(role));
        if (!json_is_string(content))
            return sft_errf(err, "messages[%zu] (%s): 'content' must be a string", i, json_string_value(role));
        (*messages)[i].content = json_string_value(content);
        (*messages)[i].content_len = json_string_length(content);
    }
    *count = n;
    return 0;
}
