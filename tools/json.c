/* SPDX-License-Identifier: MIT */
/* A small strict JSON reader: see json.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct jp {
	const char *p, *end, *start;
	int depth;
	char *err;
	size_t errlen;
	int rc;
};

static void fail(struct jp *s, const char *what)
{
	if (!s->rc) {
		snprintf(s->err, s->errlen, "offset %zu: %s", (size_t)(s->p - s->start), what);
		s->rc = -EINVAL;
	}
}

static void skip_ws(struct jp *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool lit(struct jp *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return false;
	s->p += n;
	return true;
}

static int hex4(struct jp *s, unsigned *out)
{
	unsigned v = 0;

	if (s->end - s->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = *s->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at s->p (the opening quote). Returns a malloc'ed copy. */
static char *parse_string(struct jp *s)
{
	const char *q;
	char *out, *o;

	s->p++;
	/* The decoded string is never longer than the encoded one. */
	for (q = s->p; q < s->end && *q != '"'; q++)
		if (*q == '\\')
			q++;
	if (q >= s->end) {
		fail(s, "unterminated string");
		return NULL;
	}
	out = malloc((size_t)(q - s->p) + 1);
	if (!out) {
		s->rc = -ENOMEM;
		return NULL;
	}
	o = out;
	while (*s->p != '"') {
		unsigned char c = (unsigned char)*s->p++;
		unsigned cp, lo;

		if (c < 0x20) {
			fail(s, "control character in a string");
			goto bad;
		}
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		c = (unsigned char)*s->p++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			*o++ = (char)c;
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u':
			if (hex4(s, &cp)) {
				fail(s, "bad \\u escape");
				goto bad;
			}
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u') {
					fail(s, "lone surrogate in \\u escape");
					goto bad;
				}
				s->p += 2;
				if (hex4(s, &lo) || lo < 0xdc00 || lo > 0xdfff) {
					fail(s, "bad surrogate pair");
					goto bad;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				fail(s, "lone surrogate in \\u escape");
				goto bad;
			}
			/* \u escapes never take more bytes than their 6 (or 12). */
			o += put_utf8(o, cp);
			break;
		default:
			fail(s, "unknown escape in a string");
			goto bad;
		}
	}
	s->p++;
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

static void parse_number(struct jp *s, struct json *j)
{
	const char *b = s->p;
	char buf[64], *end;
	bool neg = false, integral = true;

	if (s->p < s->end && *s->p == '-') {
		neg = true;
		s->p++;
	}
	if (s->p >= s->end || *s->p < '0' || *s->p > '9') {
		fail(s, "bad number");
		return;
	}
	if (*s->p == '0') {
		s->p++;
	} else {
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	}
	if (s->p < s->end && *s->p == '.') {
		integral = false;
		s->p++;
		if (s->p >= s->end || *s->p < '0' || *s->p > '9') {
			fail(s, "bad number");
			return;
		}
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		integral = false;
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (s->p >= s->end || *s->p < '0' || *s->p > '9') {
			fail(s, "bad number");
			return;
		}
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	}
	if ((size_t)(s->p - b) >= sizeof(buf)) {
		fail(s, "number too long");
		return;
	}
	memcpy(buf, b, (size_t)(s->p - b));
	buf[s->p - b] = '\0';
	j->type = JSON_NUMBER;
	j->number = strtod(buf, NULL);
	if (integral && !neg) {
		errno = 0;
		j->u64 = strtoull(buf, &end, 10);
		j->is_u64 = errno == 0 && *end == '\0';
	}
}

static void parse_value(struct jp *s, struct json *j);

static int grow(struct jp *s, struct json *j, size_t *cap, bool keys)
{
	size_t ncap;
	struct json *nk;

	if (j->n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	nk = realloc(j->kid, ncap * sizeof(*nk));
	if (!nk) {
		s->rc = -ENOMEM;
		return -1;
	}
	j->kid = nk;
	if (keys) {
		char **nkey = realloc(j->key, ncap * sizeof(*nkey));

		if (!nkey) {
			s->rc = -ENOMEM;
			return -1;
		}
		j->key = nkey;
	}
	*cap = ncap;
	return 0;
}

static void parse_container(struct jp *s, struct json *j, bool object)
{
	size_t cap = 0;
	char close = object ? '}' : ']';

	j->type = object ? JSON_OBJECT : JSON_ARRAY;
	if (++s->depth > JSON_MAX_DEPTH) {
		fail(s, "nested too deeply");
		return;
	}
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return;
	}
	for (;;) {
		char *key = NULL;

		skip_ws(s);
		if (object) {
			if (s->p >= s->end || *s->p != '"') {
				fail(s, "expected a member name");
				return;
			}
			key = parse_string(s);
			if (!key)
				return;
			skip_ws(s);
			if (s->p >= s->end || *s->p != ':') {
				free(key);
				fail(s, "expected ':'");
				return;
			}
			s->p++;
		}
		if (grow(s, j, &cap, object)) {
			free(key);
			return;
		}
		memset(&j->kid[j->n], 0, sizeof(j->kid[0]));
		if (object)
			j->key[j->n] = key;
		j->n++;
		parse_value(s, &j->kid[j->n - 1]);
		if (s->rc)
			return;
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == close) {
			s->p++;
			s->depth--;
			return;
		}
		fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
		return;
	}
}

static void parse_value(struct jp *s, struct json *j)
{
	skip_ws(s);
	if (s->p >= s->end) {
		fail(s, "unexpected end of the document");
		return;
	}
	switch (*s->p) {
	case '{':
		parse_container(s, j, true);
		return;
	case '[':
		parse_container(s, j, false);
		return;
	case '"':
		j->type = JSON_STRING;
		j->string = parse_string(s);
		return;
	case 't':
		if (lit(s, "true")) {
			j->type = JSON_BOOL;
			j->boolean = true;
			return;
		}
		break;
	case 'f':
		if (lit(s, "false")) {
			j->type = JSON_BOOL;
			return;
		}
		break;
	case 'n':
		if (lit(s, "null")) {
			j->type = JSON_NULL;
			return;
		}
		break;
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
			parse_number(s, j);
			return;
		}
		break;
	}
	fail(s, "expected a value");
}

static void free_members(struct json *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free_members(&j->kid[i]);
		if (j->type == JSON_OBJECT)
			free(j->key[i]);
	}
	free(j->kid);
	free(j->key);
	free(j->string);
}

void json_free(struct json *j)
{
	if (!j)
		return;
	free_members(j);
	free(j);
}

int json_parse(const char *text, size_t len, struct json **out, char *err, size_t errlen)
{
	struct jp s = {.p = text, .end = text + len, .start = text, .err = err, .errlen = errlen};
	struct json *j = calloc(1, sizeof(*j));

	*out = NULL;
	if (!j)
		return -ENOMEM;
	parse_value(&s, j);
	if (!s.rc) {
		skip_ws(&s);
		if (s.p != s.end)
			fail(&s, "bytes after the document");
	}
	if (s.rc) {
		if (s.rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		json_free(j);
		return s.rc;
	}
	*out = j;
	return 0;
}

const struct json *json_get(const struct json *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->key[i], key) == 0)
			return &obj->kid[i];
	return NULL;
}

const char *json_str(const struct json *j, const char *def)
{
	return j && j->type == JSON_STRING && j->string ? j->string : def;
}

uint64_t json_u64(const struct json *j, uint64_t def)
{
	return j && j->type == JSON_NUMBER && j->is_u64 ? j->u64 : def;
}

double json_num(const struct json *j, double def)
{
	return j && j->type == JSON_NUMBER ? j->number : def;
}

bool json_bool(const struct json *j, bool def)
{
	return j && j->type == JSON_BOOL ? j->boolean : def;
}
