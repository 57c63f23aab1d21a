/* SPDX-License-Identifier: MIT */
/*
 * A small JSON reader for repctl: parses a whole document into a tree.
 * Bounded (nesting depth, document size) and strict (RFC 8259: no trailing
 * commas, no comments, no bytes after the value). Numbers keep their text
 * so integers up to 2^64 - 1 read back exactly.
 */
#ifndef REPCTL_JSON_H
#define REPCTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_type type;
	bool boolean;
	double number;
	bool is_u64; /* a non-negative integer that fits uint64_t */
	uint64_t u64;
	char *string;     /* JSON_STRING (NUL-terminated; a \u0000 ends it early) */
	size_t n;         /* JSON_ARRAY / JSON_OBJECT: members */
	struct json *kid; /* members */
	char **key;       /* JSON_OBJECT: member names */
};

#define JSON_MAX_DEPTH 64

/*
 * Parse @len bytes at @text. Returns 0 and sets *@out, or -EINVAL with a
 * message in @err (offset and what was expected), or -ENOMEM.
 */
int json_parse(const char *text, size_t len, struct json **out, char *err, size_t errlen);
void json_free(struct json *j);

/* Member @key of an object (NULL when absent or @obj is not an object). */
const struct json *json_get(const struct json *obj, const char *key);
/* Typed accessors with a default for a missing or differently typed value. */
const char *json_str(const struct json *j, const char *def);
uint64_t json_u64(const struct json *j, uint64_t def);
double json_num(const struct json *j, double def);
bool json_bool(const struct json *j, bool def);

#endif /* REPCTL_JSON_H */
