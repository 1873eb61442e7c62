/* lincheck: the linearizability checker of the fault harness.
 *
 *   lincheck [--max-states N] [--quiet] [--faults FILE] [HISTORY...]
 *   lincheck [--max-states N] --self-test [SEED] [ROUNDS]
 *
 * Reads the histories written by faultclient (one file per client, taken
 * together; stdin when there is none or for `-`), one operation per line:
 *
 *   <process> <w|r|d> <key> <value|-> <invoke_ns> <complete_ns> <ok|fail|unknown>
 *
 * Blank lines and lines starting with '#' are ignored. Each key is a register
 * that starts absent (`-`): `w v` sets it, `d` needs it present and makes it
 * absent, `r` returns it. `fail` operations certainly did not take effect and
 * are dropped; `unknown` ones may take effect at any time after their
 * invocation, or never (an unknown read tells nothing and is dropped too).
 *
 * Output: one line per key (`key K: N ops (ok X, unknown Y, failed Z):
 * linearizable`, `NOT linearizable` followed by an explanation, or
 * `undecided`), then `lincheck: K keys, N ops: ...`. --quiet prints only the
 * keys that are not linearizable or undecided. An explanation names the
 * mount each process used (`# process P mount M` lines in the histories)
 * and, with --faults (the fault harness's schedule, lincontext.h), the
 * anomaly's wall-clock time and the faults within 5 s of it.
 *
 * Exit status: 0 every key linearizable; 1 some key NOT linearizable; 2 some
 * key undecided (the search hit --max-states, default 50 million, per key)
 * and none proven NOT linearizable; 3 malformed or unreadable input
 * (`FILE:LINE: what is wrong`); 4 usage error or out of memory.
 *
 * Algorithm: keys are independent registers, so each is checked on its own
 * (P-compositionality, Horn & Kroening). For one key, the Wing & Gong search
 * as improved by Lowe (and Porcupine): calls and returns in one time-ordered
 * list; at each step, linearize a call that precedes the first pending
 * return; when none fits, backtrack. Explored states (linearized ops,
 * register value) go into a hash set and are not explored again. The search
 * succeeds when every `ok` op is linearized: `unknown` ones return at
 * +infinity and need not be linearized at all. --max-states bounds the
 * states a key may explore; past it the key is `undecided`.
 *
 * Time convention: two operations are concurrent when their intervals touch
 * (at equal nanoseconds a call sorts before a return). This accepts a few
 * more histories than the strict reading would, never rejects a linearizable
 * one: a clock tick is not a proof of order.
 *
 * Unknown operations. Applied freely, they make the search exponential in
 * the number pending (each subset is a distinct state), which matters most
 * when proving a history NOT linearizable: every subset is tried before
 * giving up. Four reductions, each keeping some linearization if there is
 * one:
 * 1. Pairs. Any linearization can be rewritten so that each unknown op it
 *    applies is immediately followed by an ok read or delete that could not
 *    take effect without it: drop an unknown op followed by nothing, by a
 *    write (which ignores the state), or by another unknown op (a write hides
 *    what came before; a delete needs a present key, which was present
 *    already or came from the unknown write dropped with it); and drop it
 *    when the next op would succeed from the state before it too (a read saw
 *    the same value; a delete leaves the key absent either way). So an
 *    unknown op is applied only to open such a pair; unknown writes of values
 *    no ok read observes are ignored when the key has no ok delete, unknown
 *    deletes when no ok read observes the key absent.
 * 2. Interchangeable ops. Unknown deletes are all alike, and so are unknown
 *    writes whose value no ok read observes (they can only make the key
 *    present for an ok delete): once invoked, any could stand for any other.
 *    Those of a class are applied in invocation order only, and a state
 *    records how many of each it used rather than which. A delete is fed an
 *    observed unknown write only if no unobserved one invoked no later is
 *    left: keeping the observed one never hurts.
 * 3. Fewer is better. A state that used at least as many of each class as an
 *    explored state with the same linearized ops, value and observed unknown
 *    writes has fewer ops left and nothing new to offer: it is not explored.
 *    Ok ops are tried before unknown ones so that thrifty states come first.
 * 4. An unknown op is tried only when it could open a pair: a delete when
 *    the key is present, an unobserved write when it is absent, an observed
 *    write when the key is absent or holds another value and a read of its
 *    value was invoked before the first pending return.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lincontext.h"

enum {
	EXIT_ALL_LINEARIZABLE = 0,
	EXIT_NOT_LINEARIZABLE = 1,
	EXIT_UNDECIDED = 2,
	EXIT_BAD_INPUT = 3,
	EXIT_USAGE_OR_MEMORY = 4,
};

#define DEFAULT_MAX_STATES 50000000u
#define HISTORY_FIELDS 7
#define MAX_REPORTED_ERRORS 10
#define PREFIX_OPS_SHOWN 5
#define VALUE_ABSENT 0u /* id of "-" in the value table */
#define NOT_READ UINT64_MAX /* first_read_ns of a value no ok read observed */

enum op_kind { OP_WRITE, OP_READ, OP_DELETE };
enum outcome { OUTCOME_OK, OUTCOME_FAIL, OUTCOME_UNKNOWN };
enum verdict { VERDICT_LINEARIZABLE, VERDICT_NOT_LINEARIZABLE, VERDICT_UNDECIDED };

static const char *const outcome_names[] = { "ok", "fail", "unknown" };

/* ---- small containers ---- */

/* Returns `items` grown to hold at least `need` elements (updating *cap), or
 * NULL when out of memory, in which case `items` is untouched. */
static void *array_grow(void *items, size_t *cap, size_t need, size_t elem_size)
{
	if (need <= *cap)
		return items;
	size_t new_cap = *cap ? *cap : 16;
	while (new_cap < need) {
		if (new_cap > SIZE_MAX / 2 / elem_size)
			return NULL;
		new_cap *= 2;
	}
	void *p = realloc(items, new_cap * elem_size);
	if (p != NULL)
		*cap = new_cap;
	return p;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	return mix64(h);
}

/* Interned strings (keys, values): each distinct string gets a dense id, in
 * order of first appearance. */
struct strtab {
	char **strs;
	size_t n, cap;
	uint32_t *slots; /* open addressing: id + 1, 0 = empty */
	size_t n_slots;  /* a power of two, at least twice n */
};

static void strtab_free(struct strtab *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->strs[i]);
	free(t->strs);
	free(t->slots);
	memset(t, 0, sizeof *t);
}

static size_t strtab_find_slot(const struct strtab *t, const char *s, size_t len)
{
	size_t mask = t->n_slots - 1;
	size_t i = (size_t)hash_bytes(s, len) & mask;
	while (t->slots[i] != 0) {
		const char *cand = t->strs[t->slots[i] - 1];
		if (strncmp(cand, s, len) == 0 && cand[len] == '\0')
			break;
		i = (i + 1) & mask;
	}
	return i;
}

static int strtab_rehash(struct strtab *t, size_t n_slots)
{
	uint32_t *slots = calloc(n_slots, sizeof *slots);
	if (slots == NULL)
		return -ENOMEM;
	free(t->slots);
	t->slots = slots;
	t->n_slots = n_slots;
	for (size_t id = 0; id < t->n; id++) {
		size_t i = strtab_find_slot(t, t->strs[id], strlen(t->strs[id]));
		t->slots[i] = (uint32_t)id + 1;
	}
	return 0;
}

static int strtab_intern(struct strtab *t, const char *s, size_t len, uint32_t *ret_id)
{
	if ((t->n + 1) * 2 > t->n_slots) {
		if (t->n >= UINT32_MAX - 1)
			return -ENOMEM;
		int r = strtab_rehash(t, t->n_slots ? t->n_slots * 2 : 64);
		if (r < 0)
			return r;
	}
	size_t i = strtab_find_slot(t, s, len);
	if (t->slots[i] == 0) {
		char **strs = array_grow(t->strs, &t->cap, t->n + 1, sizeof *strs);
		if (strs == NULL)
			return -ENOMEM;
		t->strs = strs;
		char *copy = strndup(s, len);
		if (copy == NULL)
			return -ENOMEM;
		t->strs[t->n] = copy;
		t->slots[i] = (uint32_t)++t->n;
	}
	*ret_id = t->slots[i] - 1;
	return 0;
}

/* ---- histories ---- */

struct op {
	uint64_t process;
	uint64_t invoke_ns;
	uint64_t complete_ns; /* meaningless for OUTCOME_UNKNOWN */
	uint32_t key;         /* id in history.keys */
	uint32_t value;       /* id in history.values; VALUE_ABSENT is "-" */
	uint8_t kind;         /* enum op_kind */
	uint8_t outcome;      /* enum outcome */
};

struct history {
	struct op *ops;
	size_t n_ops, cap_ops;
	struct strtab keys, values;
	uint64_t first_invoke_ns; /* times are printed relative to it */
};

static int history_init(struct history *h)
{
	memset(h, 0, sizeof *h);
	uint32_t absent;
	return strtab_intern(&h->values, "-", 1, &absent);
}

static void history_free(struct history *h)
{
	free(h->ops);
	strtab_free(&h->keys);
	strtab_free(&h->values);
	memset(h, 0, sizeof *h);
}

static int history_append(struct history *h, const struct op *op)
{
	if (h->n_ops >= UINT32_MAX - 1)
		return -ENOMEM; /* op ids are 32-bit */
	struct op *ops = array_grow(h->ops, &h->cap_ops, h->n_ops + 1, sizeof *ops);
	if (ops == NULL)
		return -ENOMEM;
	h->ops = ops;
	if (h->n_ops == 0 || op->invoke_ns < h->first_invoke_ns)
		h->first_invoke_ns = op->invoke_ns;
	h->ops[h->n_ops++] = *op;
	return 0;
}

/* ---- parsing ---- */

static int parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	if (*s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned digit = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		v = v * 10 + digit;
	}
	*ret = v;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Splits `line` in place; returns the number of fields, which may exceed
 * `max` (only the first `max` are stored). */
static size_t split_fields(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (*p == '\0')
			return n;
		if (n < max)
			fields[n] = p;
		n++;
		while (*p != '\0' && !is_blank(*p))
			p++;
		if (*p != '\0')
			*p++ = '\0';
	}
}

static bool parse_kind(const char *s, uint8_t *ret)
{
	if (strcmp(s, "w") == 0)
		*ret = OP_WRITE;
	else if (strcmp(s, "r") == 0)
		*ret = OP_READ;
	else if (strcmp(s, "d") == 0)
		*ret = OP_DELETE;
	else
		return false;
	return true;
}

static bool parse_outcome(const char *s, uint8_t *ret)
{
	for (uint8_t i = 0; i < sizeof outcome_names / sizeof outcome_names[0]; i++) {
		if (strcmp(s, outcome_names[i]) == 0) {
			*ret = i;
			return true;
		}
	}
	return false;
}

static int parse_time(const char *s, const char *what, uint64_t *ret, char *err, size_t errlen)
{
	int r = parse_u64(s, ret);
	if (r < 0)
		snprintf(err, errlen, "%s '%.40s' is not an unsigned 64-bit decimal number", what, s);
	return r;
}

/* Parses one non-blank, non-comment line into the history. Returns 0,
 * -EINVAL with `err` saying what is wrong, or -ENOMEM. */
static int parse_line(struct history *h, char *line, char *err, size_t errlen)
{
	char *f[HISTORY_FIELDS];
	size_t n = split_fields(line, f, HISTORY_FIELDS);
	if (n != HISTORY_FIELDS) {
		snprintf(err, errlen,
			 "expected %d fields (process op key value invoke_ns complete_ns outcome), found %zu",
			 HISTORY_FIELDS, n);
		return -EINVAL;
	}
	struct op op = { 0 };
	if (parse_u64(f[0], &op.process) < 0) {
		snprintf(err, errlen, "process '%.40s' is not a non-negative integer", f[0]);
		return -EINVAL;
	}
	if (!parse_kind(f[1], &op.kind)) {
		snprintf(err, errlen, "unknown op '%.40s' (expected w, r or d)", f[1]);
		return -EINVAL;
	}
	bool absent = strcmp(f[3], "-") == 0;
	if (op.kind == OP_DELETE && !absent) {
		snprintf(err, errlen, "a delete's value must be '-', found '%.40s'", f[3]);
		return -EINVAL;
	}
	if (op.kind == OP_WRITE && absent) {
		snprintf(err, errlen, "a write's value cannot be '-' (it means absent)");
		return -EINVAL;
	}
	if (parse_time(f[4], "invoke_ns", &op.invoke_ns, err, errlen) < 0 ||
	    parse_time(f[5], "complete_ns", &op.complete_ns, err, errlen) < 0)
		return -EINVAL;
	if (!parse_outcome(f[6], &op.outcome)) {
		snprintf(err, errlen, "unknown outcome '%.40s' (expected ok, fail or unknown)", f[6]);
		return -EINVAL;
	}
	if (op.outcome != OUTCOME_UNKNOWN && op.complete_ns < op.invoke_ns) {
		snprintf(err, errlen, "complete_ns %s is before invoke_ns %s for a completed (%s) operation",
			 f[5], f[4], outcome_names[op.outcome]);
		return -EINVAL;
	}
	int r = strtab_intern(&h->keys, f[2], strlen(f[2]), &op.key);
	if (r == 0)
		r = strtab_intern(&h->values, f[3], strlen(f[3]), &op.value);
	if (r == 0)
		r = history_append(h, &op);
	return r;
}

static bool is_ignored_line(const char *line)
{
	while (is_blank(*line))
		line++;
	return *line == '\0' || *line == '#';
}

/* Reads every line of `in` into `h`, printing `NAME:LINE: problem` for each
 * malformed one (up to MAX_REPORTED_ERRORS, counted in *errors). Returns 0
 * (check *errors), -EIO on a read error, or -ENOMEM. */
static int parse_stream(struct history *h, FILE *in, const char *name, unsigned *errors)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long lineno = 0;
	int r = 0;
	while (*errors < MAX_REPORTED_ERRORS && (len = getline(&line, &cap, in)) >= 0) {
		char err[256];
		lineno++;
		if (strlen(line) != (size_t)len) {
			snprintf(err, sizeof err, "line contains a NUL byte");
			r = -EINVAL;
		} else if (is_ignored_line(line)) {
			lincontext_note_line(line);
			continue;
		} else {
			r = parse_line(h, line, err, sizeof err);
		}
		if (r == -EINVAL) {
			fprintf(stderr, "%s:%lu: %s\n", name, lineno, err);
			++*errors;
			r = 0;
		} else if (r < 0) {
			break;
		}
	}
	if (r == 0 && ferror(in))
		r = -EIO;
	else if (r == 0 && *errors >= MAX_REPORTED_ERRORS)
		fprintf(stderr, "%s: stopped after %d malformed lines\n", name, MAX_REPORTED_ERRORS);
	free(line);
	return r;
}

/* ---- bitsets ---- */

static size_t bit_words(size_t bits)
{
	return (bits + 63) / 64;
}

static bool bit_get(const uint64_t *b, size_t i)
{
	return (b[i / 64] >> (i % 64)) & 1u;
}

static void bit_set(uint64_t *b, size_t i)
{
	b[i / 64] |= (uint64_t)1 << (i % 64);
}

static void bit_clear(uint64_t *b, size_t i)
{
	b[i / 64] &= ~((uint64_t)1 << (i % 64));
}

/* Copies bits [from, from + len) of `src` (src_words long) to the start of
 * `dst`, zero-padding the last word. */
static void bits_extract(const uint64_t *src, size_t src_words, size_t from, size_t len,
			 uint64_t *dst)
{
	size_t shift = from % 64;
	for (size_t i = 0; i < bit_words(len); i++) {
		size_t w = from / 64 + i;
		uint64_t v = src[w] >> shift;
		if (shift != 0 && w + 1 < src_words)
			v |= src[w + 1] << (64 - shift);
		dst[i] = v;
	}
	if (len % 64 != 0)
		dst[bit_words(len) - 1] &= ((uint64_t)1 << (len % 64)) - 1;
}

/* ---- the set of explored search states ---- */

/* A state's key is a sequence of 64-bit words: [0] the register value, [1]
 * frontier and window length, then the window of linearized ok ops, then the
 * bitset of applied seen unknown writes (fixed_words long). Its usage, how
 * many interchangeable unknown ops of each class it applied, is kept apart:
 * a state that used no fewer of each class than an explored one with the
 * same key has nothing new to offer (it has fewer ops left to use). */
struct memo_slot {
	uint64_t hash;
	uint64_t offset; /* of the key in words, + 1; 0 = empty slot */
	uint64_t usages; /* newest entry in usages for this key, + 1 */
};

struct memo_usage {
	uint64_t used; /* two classes, 32 bits each */
	uint64_t next; /* older entry of the same key, + 1; 0 = none */
};

struct memo {
	struct memo_slot *slots;
	size_t n_slots, n_keys; /* n_slots: a power of two, at least twice n_keys */
	uint64_t *words;
	size_t n_words, cap_words;
	struct memo_usage *usages;
	size_t n_usages, cap_usages;
	size_t fixed_words;
};

static void memo_free(struct memo *m)
{
	free(m->slots);
	free(m->words);
	free(m->usages);
	memset(m, 0, sizeof *m);
}

static size_t memo_key_len(const struct memo *m, const uint64_t *key)
{
	return 2 + bit_words((size_t)(key[1] >> 32)) + m->fixed_words;
}

static uint64_t hash_words(const uint64_t *key, size_t len)
{
	uint64_t h = len;
	for (size_t i = 0; i < len; i++)
		h = (((h << 5) | (h >> 59)) ^ key[i]) * 0x9e3779b97f4a7c15u;
	return mix64(h);
}

static int memo_grow(struct memo *m)
{
	size_t n_slots = m->n_slots ? m->n_slots * 2 : 1024;
	struct memo_slot *slots = calloc(n_slots, sizeof *slots);
	if (slots == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_slots; i++) {
		if (m->slots[i].offset == 0)
			continue;
		size_t j = (size_t)m->slots[i].hash & (n_slots - 1);
		while (slots[j].offset != 0)
			j = (j + 1) & (n_slots - 1);
		slots[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->n_slots = n_slots;
	return 0;
}

/* Whether an explored usage left at least as many ops of each class. */
static bool usage_covers(uint64_t explored, uint64_t now)
{
	return (uint32_t)explored <= (uint32_t)now && explored >> 32 <= now >> 32;
}

/* Finds the slot of `key`, or the empty slot where it belongs. */
static struct memo_slot *memo_find(const struct memo *m, const uint64_t *key, size_t len,
				   uint64_t h)
{
	size_t i = (size_t)h & (m->n_slots - 1);
	for (; m->slots[i].offset != 0; i = (i + 1) & (m->n_slots - 1)) {
		const uint64_t *stored = m->words + m->slots[i].offset - 1;
		if (m->slots[i].hash == h && memo_key_len(m, stored) == len &&
		    memcmp(stored, key, len * sizeof *key) == 0)
			break;
	}
	return &m->slots[i];
}

/* Records the state (key, usage) unless an explored one covers it;
 * *ret_new says which. 0 or -ENOMEM. */
static int memo_visit(struct memo *m, const uint64_t *key, size_t len, uint64_t usage,
		      bool *ret_new)
{
	if ((m->n_keys + 1) * 2 > m->n_slots) {
		int r = memo_grow(m);
		if (r < 0)
			return r;
	}
	uint64_t h = hash_words(key, len);
	struct memo_slot *slot = memo_find(m, key, len, h);
	for (uint64_t u = slot->usages; u != 0; u = m->usages[u - 1].next) {
		if (usage_covers(m->usages[u - 1].used, usage)) {
			*ret_new = false;
			return 0;
		}
	}
	struct memo_usage *usages =
		array_grow(m->usages, &m->cap_usages, m->n_usages + 1, sizeof *usages);
	if (usages == NULL)
		return -ENOMEM;
	m->usages = usages;
	if (slot->offset == 0) {
		uint64_t *words = array_grow(m->words, &m->cap_words, m->n_words + len, sizeof *words);
		if (words == NULL)
			return -ENOMEM;
		m->words = words;
		memcpy(m->words + m->n_words, key, len * sizeof *key);
		*slot = (struct memo_slot){ h, m->n_words + 1, 0 };
		m->n_words += len;
		m->n_keys++;
	}
	m->usages[m->n_usages] = (struct memo_usage){ usage, slot->usages };
	slot->usages = ++m->n_usages;
	*ret_new = true;
	return 0;
}

/* ---- the search for one key ---- */

/* The register's sequential specification: whether `op` can take effect in
 * `state`, and the state after it. */
static bool register_step(const struct op *op, uint32_t state, uint32_t *ret_state)
{
	if (op->kind == OP_WRITE) {
		*ret_state = op->value;
		return true;
	}
	if (op->kind == OP_READ) {
		*ret_state = state;
		return state == op->value;
	}
	*ret_state = VALUE_ABSENT;
	return state != VALUE_ABSENT;
}

/* A call or a return in the time-ordered list of one key's operations. */
struct event {
	struct event *prev, *next;
	struct event *match; /* a call's return; NULL for a return */
	uint32_t sop;        /* search op id */
};

/* What to undo when backtracking over one linearized operation. */
struct frame {
	struct event *call;
	uint64_t horizon; /* of the unknown pass that tried this op */
	uint32_t prev_state;
	uint32_t prev_frontier;
	uint32_t prev_ok_end;
	bool prev_after_unknown;
};

/* The point where the search got furthest (most ok ops linearized), kept to
 * explain a failure. */
struct furthest {
	uint32_t *seq; /* sops linearized, in order */
	uint32_t len;
	uint32_t ok_done;
	uint32_t state;
	uint32_t blocker; /* sop whose return no order could reach */
	bool found;
};

/* Unknown ops that can matter, by what they can do. Within each of the
 * first two classes the ops are interchangeable, so the search applies them
 * in invocation order only (see the header). */
enum unknown_class {
	UNKNOWN_DELETE,       /* can make the key absent for a read of absent */
	UNKNOWN_WRITE_UNSEEN, /* no ok read saw its value: can only feed an ok delete */
	UNKNOWN_WRITE_SEEN,   /* some ok read saw its value */
};
#define INTERCHANGEABLE_CLASSES 2

/* Search ops ("sops") are the key's ok ops, sorted by invocation, then its
 * unknown ops that can matter, likewise. */
struct search {
	const struct history *h;
	uint32_t *ops; /* sop -> history op id */
	uint32_t n_ok, n_unknown;
	uint8_t *unknown_class;  /* [sop - n_ok]: enum unknown_class */
	uint32_t *class_rank;    /* [sop - n_ok]: position within its class */
	uint32_t *unseen_writes; /* the UNKNOWN_WRITE_UNSEEN sops, in order */
	uint64_t *first_seen_ns; /* [sop - n_ok]: invocation of the first ok read
				  * of its value (NOT_READ if none) */
	uint32_t n_unseen_writes, n_seen_writes;
	uint32_t used[INTERCHANGEABLE_CLASSES]; /* how many of each are applied */
	struct event *events; /* [0] is the list head */
	uint64_t *ok_done_bits, *seen_done_bits; /* seen: by class rank */
	/* Every ok sop below `frontier` is linearized, none at or above
	 * `ok_end`: only the window in between goes into a memo key. */
	uint32_t frontier, ok_end, ok_done;
	uint32_t state;
	bool after_unknown; /* the last op linearized has an unknown outcome */
	struct frame *stack;
	uint32_t depth;
	struct memo memo;
	uint64_t *key; /* scratch memo key */
	uint64_t states, max_states;
	struct furthest furthest;
};

static const struct op *search_op(const struct search *s, uint32_t sop)
{
	return &s->h->ops[s->ops[sop]];
}

static void search_free(struct search *s)
{
	free(s->ops);
	free(s->unknown_class);
	free(s->class_rank);
	free(s->unseen_writes);
	free(s->first_seen_ns);
	free(s->events);
	free(s->ok_done_bits);
	free(s->seen_done_bits);
	free(s->stack);
	free(s->key);
	free(s->furthest.seq);
	memo_free(&s->memo);
}

struct sort_item {
	uint64_t time;
	uint32_t id;
	uint8_t rank; /* events: 0 call, 1 return, 2 return at +infinity */
};

static int compare_sort_items(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;
	if ((x->rank == 2) != (y->rank == 2))
		return x->rank == 2 ? 1 : -1;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->rank != y->rank) /* a call before a return: touching intervals overlap */
		return x->rank < y->rank ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Whether an unknown op of this key could ever be needed (see the header). */
static bool unknown_can_matter(const struct op *op, const uint64_t *first_read_ns,
			       bool has_ok_delete)
{
	if (op->kind == OP_WRITE)
		return first_read_ns[op->value] != NOT_READ || has_ok_delete;
	return op->kind == OP_DELETE && first_read_ns[VALUE_ABSENT] != NOT_READ;
}

/* Sorts the unknown sops into classes, ranked by invocation within each. */
static int search_classify_unknowns(struct search *s, const uint64_t *first_read_ns)
{
	uint32_t counts[UNKNOWN_WRITE_SEEN + 1] = { 0 };
	s->unknown_class = calloc(s->n_unknown + 1, sizeof *s->unknown_class);
	s->class_rank = calloc(s->n_unknown + 1, sizeof *s->class_rank);
	s->unseen_writes = calloc(s->n_unknown + 1, sizeof *s->unseen_writes);
	s->first_seen_ns = calloc(s->n_unknown + 1, sizeof *s->first_seen_ns);
	if (!s->unknown_class || !s->class_rank || !s->unseen_writes || !s->first_seen_ns)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->n_unknown; i++) {
		const struct op *op = search_op(s, s->n_ok + i);
		uint8_t c = op->kind == OP_DELETE ? UNKNOWN_DELETE
			    : first_read_ns[op->value] != NOT_READ ? UNKNOWN_WRITE_SEEN
								   : UNKNOWN_WRITE_UNSEEN;
		s->unknown_class[i] = c;
		s->first_seen_ns[i] = first_read_ns[op->value];
		if (c == UNKNOWN_WRITE_UNSEEN)
			s->unseen_writes[counts[c]] = s->n_ok + i;
		s->class_rank[i] = counts[c]++;
	}
	s->n_unseen_writes = counts[UNKNOWN_WRITE_UNSEEN];
	s->n_seen_writes = counts[UNKNOWN_WRITE_SEEN];
	return 0;
}

/* Fills s->ops: ok ops by invocation time, then the unknown ops that can
 * matter. `first_read_ns` (per value, all NOT_READ) is left so. */
static int search_select_ops(struct search *s, const uint32_t *key_ops, size_t n,
			     uint64_t *first_read_ns)
{
	const struct op *ops = s->h->ops;
	bool has_ok_delete = false;
	for (size_t i = 0; i < n; i++) {
		const struct op *op = &ops[key_ops[i]];
		if (op->outcome == OUTCOME_OK && op->kind == OP_READ &&
		    op->invoke_ns < first_read_ns[op->value])
			first_read_ns[op->value] = op->invoke_ns;
		has_ok_delete |= op->outcome == OUTCOME_OK && op->kind == OP_DELETE;
	}
	struct sort_item *items = calloc(n ? n : 1, sizeof *items);
	if (items == NULL)
		return -ENOMEM;
	size_t n_ok = 0, n_sops = 0;
	for (int pass = 0; pass < 2; pass++) { /* ok ops, then unknown ones */
		for (size_t i = 0; i < n; i++) {
			const struct op *op = &ops[key_ops[i]];
			bool wanted = pass == 0 ? op->outcome == OUTCOME_OK
						: op->outcome == OUTCOME_UNKNOWN &&
							  unknown_can_matter(op, first_read_ns, has_ok_delete);
			if (wanted)
				items[n_sops++] = (struct sort_item){ op->invoke_ns, key_ops[i], 0 };
		}
		if (pass == 0)
			n_ok = n_sops;
	}
	qsort(items, n_ok, sizeof *items, compare_sort_items);
	qsort(items + n_ok, n_sops - n_ok, sizeof *items, compare_sort_items);
	s->n_ok = (uint32_t)n_ok;
	s->n_unknown = (uint32_t)(n_sops - n_ok);
	s->ops = calloc(n_sops + 1, sizeof *s->ops);
	int r = s->ops ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < n_sops; i++)
		s->ops[i] = items[i].id;
	free(items);
	if (r == 0)
		r = search_classify_unknowns(s, first_read_ns);
	for (size_t i = 0; i < n; i++)
		first_read_ns[ops[key_ops[i]].value] = NOT_READ;
	return r;
}

/* Builds the doubly linked, time-ordered list of calls and returns. */
static int search_build_events(struct search *s)
{
	size_t n_sops = (size_t)s->n_ok + s->n_unknown;
	struct sort_item *items = calloc(2 * n_sops + 1, sizeof *items);
	s->events = calloc(2 * n_sops + 1, sizeof *s->events);
	if (items == NULL || s->events == NULL) {
		free(items);
		return -ENOMEM;
	}
	for (uint32_t sop = 0; sop < n_sops; sop++) {
		const struct op *op = search_op(s, sop);
		bool unknown = sop >= s->n_ok;
		items[2 * sop] = (struct sort_item){ op->invoke_ns, sop, 0 };
		items[2 * sop + 1] = (struct sort_item){ unknown ? 0 : op->complete_ns, sop, unknown ? 2 : 1 };
	}
	qsort(items, 2 * n_sops, sizeof *items, compare_sort_items);
	/* events[1 + 2 * sop] is sop's call, events[2 + 2 * sop] its return */
	struct event *prev = &s->events[0];
	for (size_t i = 0; i < 2 * n_sops; i++) {
		bool is_return = items[i].rank != 0;
		struct event *e = &s->events[1 + 2 * (size_t)items[i].id + is_return];
		e->sop = items[i].id;
		e->match = is_return ? NULL : e + 1;
		e->prev = prev;
		prev->next = e;
		prev = e;
	}
	free(items);
	return 0;
}

static int search_init(struct search *s, const struct history *h, const uint32_t *key_ops, size_t n,
		       uint64_t *first_read_ns, uint64_t max_states)
{
	memset(s, 0, sizeof *s);
	s->h = h;
	s->max_states = max_states;
	int r = search_select_ops(s, key_ops, n, first_read_ns);
	if (r == 0)
		r = search_build_events(s);
	if (r < 0)
		return r;
	size_t n_sops = (size_t)s->n_ok + s->n_unknown;
	s->memo.fixed_words = bit_words(s->n_seen_writes);
	s->ok_done_bits = calloc(bit_words(s->n_ok) + 1, sizeof *s->ok_done_bits);
	s->seen_done_bits = calloc(s->memo.fixed_words + 1, sizeof *s->seen_done_bits);
	s->stack = calloc(n_sops + 1, sizeof *s->stack);
	s->key = calloc(2 + bit_words(s->n_ok) + s->memo.fixed_words, sizeof *s->key);
	s->furthest.seq = calloc(n_sops + 1, sizeof *s->furthest.seq);
	if (!s->ok_done_bits || !s->seen_done_bits || !s->stack || !s->key || !s->furthest.seq)
		return -ENOMEM;
	return 0;
}

static void lift(struct event *call)
{
	call->prev->next = call->next;
	call->next->prev = call->prev; /* a call is always followed by its return */
	struct event *ret = call->match;
	ret->prev->next = ret->next;
	if (ret->next != NULL)
		ret->next->prev = ret->prev;
}

static void unlift(struct event *call)
{
	struct event *ret = call->match;
	ret->prev->next = ret;
	if (ret->next != NULL)
		ret->next->prev = ret;
	call->prev->next = call;
	call->next->prev = call;
}

static void mark_linearized(struct search *s, uint32_t sop)
{
	if (sop >= s->n_ok) {
		uint8_t c = s->unknown_class[sop - s->n_ok];
		if (c < INTERCHANGEABLE_CLASSES)
			s->used[c]++;
		else
			bit_set(s->seen_done_bits, s->class_rank[sop - s->n_ok]);
		return;
	}
	bit_set(s->ok_done_bits, sop);
	if (sop + 1 > s->ok_end)
		s->ok_end = sop + 1;
	while (s->frontier < s->n_ok && bit_get(s->ok_done_bits, s->frontier))
		s->frontier++;
}

/* Undoes mark_linearized() and the state change recorded in `f`. */
static void unmark_linearized(struct search *s, const struct frame *f)
{
	uint32_t sop = f->call->sop;
	if (sop >= s->n_ok) {
		uint8_t c = s->unknown_class[sop - s->n_ok];
		if (c < INTERCHANGEABLE_CLASSES)
			s->used[c]--;
		else
			bit_clear(s->seen_done_bits, s->class_rank[sop - s->n_ok]);
	} else {
		bit_clear(s->ok_done_bits, sop);
	}
	s->frontier = f->prev_frontier;
	s->ok_end = f->prev_ok_end;
	s->state = f->prev_state;
	s->after_unknown = f->prev_after_unknown;
}

static size_t search_memo_key(const struct search *s, uint64_t *key)
{
	uint32_t window = s->ok_end > s->frontier ? s->ok_end - s->frontier : 0;
	key[0] = s->state;
	key[1] = (uint64_t)s->frontier | (uint64_t)window << 32;
	bits_extract(s->ok_done_bits, bit_words(s->n_ok), s->frontier, window, key + 2);
	size_t len = 2 + bit_words(window);
	memcpy(key + len, s->seen_done_bits, s->memo.fixed_words * sizeof *key);
	return len + s->memo.fixed_words;
}

/* An op of an interchangeable class is applied only when all those of its
 * class invoked before it are. */
static bool is_next_of_its_class(const struct search *s, uint32_t sop)
{
	uint8_t c = s->unknown_class[sop - s->n_ok];
	return c >= INTERCHANGEABLE_CLASSES || s->class_rank[sop - s->n_ok] == s->used[c];
}

/* Right after an unknown op, only an ok read or delete that could not take
 * effect without it is worth trying; and a delete is not fed a seen write
 * when an unseen one, invoked no later, is still there (see the header). */
static bool needs_the_unknown_op(const struct search *s, const struct op *op, bool unknown)
{
	const struct frame *top = &s->stack[s->depth - 1];
	uint32_t ignored;
	if (unknown || op->kind == OP_WRITE || register_step(op, top->prev_state, &ignored))
		return false;
	uint32_t unknown_sop = top->call->sop;
	if (op->kind == OP_READ || s->unknown_class[unknown_sop - s->n_ok] != UNKNOWN_WRITE_SEEN ||
	    s->used[UNKNOWN_WRITE_UNSEEN] == s->n_unseen_writes)
		return true;
	uint32_t unseen = s->unseen_writes[s->used[UNKNOWN_WRITE_UNSEEN]];
	return search_op(s, unseen)->invoke_ns > search_op(s, unknown_sop)->invoke_ns;
}

/* Whether applying the unknown op could open a pair now: some ok read or
 * delete invoked by `horizon` (the first pending return) must be unable to
 * take effect in the current state and able to right after the op. */
static bool unknown_may_pair(const struct search *s, uint32_t sop, uint64_t horizon)
{
	uint32_t i = sop - s->n_ok;
	switch ((enum unknown_class)s->unknown_class[i]) {
	case UNKNOWN_DELETE:
		return s->state != VALUE_ABSENT; /* for a read of absent */
	case UNKNOWN_WRITE_UNSEEN:
		return s->state == VALUE_ABSENT; /* for a delete */
	case UNKNOWN_WRITE_SEEN:
		break;
	}
	return s->state == VALUE_ABSENT ||
	       (s->first_seen_ns[i] <= horizon && s->state != search_op(s, sop)->value);
}

/* Tries to linearize the op of `call` next (`horizon`: see
 * unknown_may_pair); *ret_descended says whether it did (a new state). 0 or
 * -ENOMEM. */
static int search_try(struct search *s, struct event *call, uint64_t horizon, bool *ret_descended)
{
	uint32_t sop = call->sop;
	bool unknown = sop >= s->n_ok;
	const struct op *op = search_op(s, sop);
	uint32_t next_state;
	*ret_descended = false;
	if (unknown && (!is_next_of_its_class(s, sop) || !unknown_may_pair(s, sop, horizon)))
		return 0;
	if (!register_step(op, s->state, &next_state))
		return 0;
	if (s->after_unknown && !needs_the_unknown_op(s, op, unknown))
		return 0;
	struct frame *f = &s->stack[s->depth];
	*f = (struct frame){ call, horizon, s->state, s->frontier, s->ok_end, s->after_unknown };
	mark_linearized(s, sop);
	s->state = next_state;
	s->after_unknown = unknown;
	/* The state right after an unknown op only opens a pair (what follows
	 * depends on the state before it too), so only states reached by an ok
	 * op are remembered. */
	bool is_new = true;
	uint64_t usage = s->used[UNKNOWN_DELETE] | (uint64_t)s->used[UNKNOWN_WRITE_UNSEEN] << 32;
	int r = unknown ? 0 : memo_visit(&s->memo, s->key, search_memo_key(s, s->key), usage, &is_new);
	if (r < 0 || !is_new) {
		unmark_linearized(s, f);
		return r;
	}
	s->depth++;
	s->ok_done += !unknown;
	s->states++;
	lift(call);
	*ret_descended = true;
	return 0;
}

static struct event *search_backtrack(struct search *s)
{
	const struct frame *f = &s->stack[--s->depth];
	unmark_linearized(s, f);
	s->ok_done -= f->call->sop < s->n_ok;
	unlift(f->call);
	return f->call;
}

/* Remembers the deepest dead end for the explanation. Only states reached by
 * an ok op count: after an unknown one the search is mid-pair, and its parent
 * state is stuck at the same depth anyway. */
static void note_dead_end(struct search *s, const struct event *ret)
{
	struct furthest *b = &s->furthest;
	if (s->after_unknown || (b->found && s->ok_done <= b->ok_done))
		return;
	for (uint32_t i = 0; i < s->depth; i++)
		b->seq[i] = s->stack[i].call->sop;
	b->len = s->depth;
	b->ok_done = s->ok_done;
	b->state = s->state;
	b->blocker = ret->sop;
	b->found = true;
}

/* At each state, the calls before the first pending return are tried in
 * two passes: ok ops first, then unknown ones, so that states using fewer
 * unknown ops come first and cover the others (see memo_visit). */
static int search_run(struct search *s, enum verdict *ret)
{
	struct event *head = &s->events[0];
	struct event *e = head->next;
	bool unknown_pass = false;
	uint64_t horizon = 0; /* in the unknown pass: time of the first pending return */
	while (s->ok_done < s->n_ok) {
		if (s->states > s->max_states) {
			*ret = VERDICT_UNDECIDED;
			return 0;
		}
		/* e cannot run off the list: some ok op, hence its finite
		 * return, is still in it, ahead of the +infinity ones. */
		if (e->match != NULL) {
			bool descended = false;
			if ((e->sop >= s->n_ok) == unknown_pass) {
				int r = search_try(s, e, horizon, &descended);
				if (r < 0)
					return r;
			}
			if (descended) {
				unknown_pass = false;
				e = head->next;
			} else {
				e = e->next;
			}
			continue;
		}
		/* The return of an op not yet linearized: nothing pending can go
		 * before it. Unknown ops next, unless one was just applied. */
		if (!unknown_pass && !s->after_unknown) {
			unknown_pass = true;
			horizon = search_op(s, e->sop)->complete_ns;
			e = head->next;
			continue;
		}
		note_dead_end(s, e);
		if (s->depth == 0) {
			*ret = VERDICT_NOT_LINEARIZABLE;
			return 0;
		}
		horizon = s->stack[s->depth - 1].horizon;
		struct event *call = search_backtrack(s);
		unknown_pass = call->sop >= s->n_ok;
		e = call->next;
	}
	*ret = VERDICT_LINEARIZABLE;
	return 0;
}

/* ---- explaining a failure ---- */

static double rel_ms(const struct history *h, uint64_t ns)
{
	return (double)(ns - h->first_invoke_ns) / 1e6;
}

static const char *value_name(const struct history *h, uint32_t value)
{
	return h->values.strs[value];
}

static void print_op(FILE *out, const struct history *h, const struct op *op)
{
	static const char *const kind_names[] = { "write", "read", "delete" };
	fprintf(out, "p%" PRIu64 " %s", op->process, kind_names[op->kind]);
	if (op->kind == OP_WRITE || (op->kind == OP_READ && op->value != VALUE_ABSENT))
		fprintf(out, " %s", value_name(h, op->value));
	else if (op->kind == OP_READ)
		fprintf(out, " (absent)");
	if (op->outcome == OUTCOME_UNKNOWN)
		fprintf(out, " [%.1f ms .. ?, outcome unknown]", rel_ms(h, op->invoke_ns));
	else
		fprintf(out, " [%.1f .. %.1f ms%s]", rel_ms(h, op->invoke_ns),
			rel_ms(h, op->complete_ns), op->outcome == OUTCOME_FAIL ? ", failed" : "");
	const char *mount = lincontext_mount_of(op->process);
	if (mount != NULL)
		fprintf(out, " on %s", mount);
}

/* "the key held V (p1 write V [...])" or "the key was absent (...)": the
 * register at the dead end and the op that set it. */
/* The last write or delete of the furthest prefix, or NULL. */
static const struct op *state_origin(const struct search *s)
{
	for (uint32_t i = s->furthest.len; i-- > 0;) {
		const struct op *op = search_op(s, s->furthest.seq[i]);
		if (op->kind != OP_READ)
			return op;
	}
	return NULL;
}

static void print_state(FILE *out, const struct search *s)
{
	const struct furthest *b = &s->furthest;
	const struct op *origin = state_origin(s);
	if (b->state == VALUE_ABSENT && origin == NULL) {
		fprintf(out, "the key was absent (nothing written before)");
		return;
	}
	if (b->state == VALUE_ABSENT)
		fprintf(out, "the key was absent (");
	else
		fprintf(out, "the key held %s (", value_name(s->h, b->state));
	print_op(out, s->h, origin);
	fprintf(out, "%s)", origin->outcome == OUTCOME_UNKNOWN ? ", assumed applied" : "");
}

/* The position of `op` in the furthest prefix, or UINT32_MAX. */
static uint32_t prefix_position(const struct search *s, const struct op *op)
{
	for (uint32_t i = 0; i < s->furthest.len; i++) {
		if (search_op(s, s->furthest.seq[i]) == op)
			return i;
	}
	return UINT32_MAX;
}

/* In the furthest prefix after position `pos` (a write of the value `read`
 * observes), the first ok op that changed the value and completed before
 * `read` began, or NULL. */
static const struct op *overwriter(const struct search *s, uint32_t pos, const struct op *read)
{
	for (uint32_t i = pos + 1; i < s->furthest.len; i++) {
		const struct op *op = search_op(s, s->furthest.seq[i]);
		if (op->kind != OP_READ && op->value != read->value && op->outcome == OUTCOME_OK &&
		    op->complete_ns < read->invoke_ns)
			return op;
	}
	return NULL;
}

/* Explains why the blocking read of a value could not be linearized. */
static void explain_read_of_value(FILE *out, const struct search *s, const struct op *read,
				  const uint32_t *key_ops, size_t n)
{
	const struct history *h = s->h;
	const struct op *failed = NULL, *earliest = NULL, *overwritten = NULL;
	uint32_t overwritten_pos = 0;
	for (size_t i = 0; i < n; i++) {
		const struct op *op = &h->ops[key_ops[i]];
		if (op->kind != OP_WRITE || op->value != read->value)
			continue;
		if (op->outcome == OUTCOME_FAIL)
			failed = op;
		else if (earliest == NULL || op->invoke_ns < earliest->invoke_ns)
			earliest = op;
		uint32_t pos = op->outcome == OUTCOME_FAIL ? UINT32_MAX : prefix_position(s, op);
		if (pos != UINT32_MAX) {
			overwritten = op;
			overwritten_pos = pos;
		}
	}
	const char *v = value_name(h, read->value);
	if (earliest == NULL && failed != NULL) {
		fprintf(out, "only a failed write wrote %s (", v);
		print_op(out, h, failed);
		fprintf(out, "): read of a value never written");
	} else if (earliest == NULL) {
		fprintf(out, "no operation wrote %s: read of a value never written", v);
	} else if (earliest->invoke_ns > read->complete_ns) {
		fprintf(out, "%s was written by ", v);
		print_op(out, h, earliest);
		fprintf(out, ", which started after this read completed: read from the future");
	} else if (overwritten != NULL) {
		print_state(out, s);
		fprintf(out, "; %s had been written earlier by ", v);
		print_op(out, h, overwritten);
		const struct op *by = overwriter(s, overwritten_pos, read);
		if (by != NULL) {
			fprintf(out, " and overwritten by ");
			print_op(out, h, by);
			fprintf(out, " before this read began");
		} else {
			fprintf(out, " and overwritten");
		}
		fprintf(out, ": stale read");
	} else {
		print_state(out, s);
		fprintf(out, ", and no order of the operations around it lets it observe %s", v);
	}
}

static void explain_read_of_absent(FILE *out, const struct search *s, const struct op *read,
				   const uint32_t *key_ops, size_t n)
{
	bool delete_before = false;
	for (size_t i = 0; i < n; i++) {
		const struct op *op = &s->h->ops[key_ops[i]];
		delete_before |= op->kind == OP_DELETE && op->outcome != OUTCOME_FAIL &&
				 op->invoke_ns <= read->complete_ns;
	}
	print_state(out, s);
	if (delete_before)
		fprintf(out, ", and no order of the deletes around it explains the absence");
	else
		fprintf(out, ", and no delete was invoked before this read completed: lost write");
}

static void explain_blocker(FILE *out, const struct search *s, const uint32_t *key_ops, size_t n)
{
	const struct op *op = search_op(s, s->furthest.blocker);
	fprintf(out, "  cannot linearize: ");
	print_op(out, s->h, op);
	fprintf(out, "\n  why: ");
	uint32_t ignored;
	if (op->kind == OP_READ && !register_step(op, s->furthest.state, &ignored)) {
		if (op->value == VALUE_ABSENT)
			explain_read_of_absent(out, s, op, key_ops, n);
		else
			explain_read_of_value(out, s, op, key_ops, n);
	} else if (op->kind == OP_DELETE && s->furthest.state == VALUE_ABSENT) {
		print_state(out, s);
		fprintf(out, ": delete succeeded on an absent key");
	} else {
		print_state(out, s);
		fprintf(out, "; it had to take effect before it completed at %.1f ms, "
			     "but every order of the operations around it fails later",
			rel_ms(s->h, op->complete_ns));
	}
	fprintf(out, "\n");
}

static void explain_failure(FILE *out, const struct search *s, const uint32_t *key_ops, size_t n)
{
	const struct furthest *b = &s->furthest;
	explain_blocker(out, s, key_ops, n);
	fprintf(out, "  longest linearizable prefix: %" PRIu32 " of %" PRIu32 " ok ops", b->ok_done,
		s->n_ok);
	if (b->len > 0)
		fprintf(out, ", ending with:\n");
	else
		fprintf(out, "\n");
	for (uint32_t i = b->len > PREFIX_OPS_SHOWN ? b->len - PREFIX_OPS_SHOWN : 0; i < b->len; i++) {
		const struct op *op = search_op(s, b->seq[i]);
		fprintf(out, "    ");
		print_op(out, s->h, op);
		fprintf(out, "%s\n", op->outcome == OUTCOME_UNKNOWN ? " (assumed to take effect here)" : "");
	}
	fprintf(out, "  register there: %s\n",
		b->state == VALUE_ABSENT ? "(absent)" : value_name(s->h, b->state));
	lincontext_print_faults(out, search_op(s, b->blocker)->invoke_ns);
}

/* ---- checking a whole history ---- */

struct totals {
	size_t keys, ops, not_linearizable, undecided;
};

struct key_counts {
	size_t ok, unknown, failed;
};

static struct key_counts count_outcomes(const struct history *h, const uint32_t *key_ops, size_t n)
{
	struct key_counts c = { 0 };
	for (size_t i = 0; i < n; i++) {
		uint8_t o = h->ops[key_ops[i]].outcome;
		c.ok += o == OUTCOME_OK;
		c.unknown += o == OUTCOME_UNKNOWN;
		c.failed += o == OUTCOME_FAIL;
	}
	return c;
}

/* Checks one key, printing its line (and explanation) to `out` unless NULL
 * or quiet and linearizable. */
static int check_key(const struct history *h, uint32_t key, const uint32_t *key_ops, size_t n,
		     uint64_t *first_read_ns, uint64_t max_states, bool quiet, FILE *out,
		     enum verdict *ret)
{
	struct search s;
	enum verdict v = VERDICT_UNDECIDED;
	int r = search_init(&s, h, key_ops, n, first_read_ns, max_states);
	if (r == 0)
		r = search_run(&s, &v);
	if (r == 0 && out != NULL && !(quiet && v == VERDICT_LINEARIZABLE)) {
		struct key_counts c = count_outcomes(h, key_ops, n);
		fprintf(out, "key %s: %zu ops (ok %zu, unknown %zu, failed %zu): ", h->keys.strs[key], n,
			c.ok, c.unknown, c.failed);
		if (v == VERDICT_LINEARIZABLE) {
			fprintf(out, "linearizable\n");
		} else if (v == VERDICT_UNDECIDED) {
			fprintf(out, "undecided (search stopped after %" PRIu64
				     " states; raise --max-states)\n", max_states);
		} else {
			fprintf(out, "NOT linearizable\n");
			explain_failure(out, &s, key_ops, n);
		}
	}
	search_free(&s);
	if (r == 0)
		*ret = v;
	return r;
}

/* Groups op ids by key: ops of key k are by_key[start[k] .. start[k + 1]). */
static int group_by_key(const struct history *h, uint32_t **ret_by_key, size_t **ret_start)
{
	size_t n_keys = h->keys.n;
	size_t *start = calloc(n_keys + 2, sizeof *start);
	uint32_t *by_key = calloc(h->n_ops + 1, sizeof *by_key);
	if (start == NULL || by_key == NULL) {
		free(start);
		free(by_key);
		return -ENOMEM;
	}
	for (size_t i = 0; i < h->n_ops; i++)
		start[h->ops[i].key + 2]++;
	for (size_t k = 2; k < n_keys + 2; k++)
		start[k] += start[k - 1];
	/* start[k + 1] serves as key k's fill cursor and ends at its end */
	for (size_t i = 0; i < h->n_ops; i++)
		by_key[start[h->ops[i].key + 1]++] = (uint32_t)i;
	*ret_by_key = by_key;
	*ret_start = start;
	return 0;
}

static int check_history(const struct history *h, uint64_t max_states, bool quiet, FILE *out,
			 struct totals *ret)
{
	uint32_t *by_key;
	size_t *start;
	int r = group_by_key(h, &by_key, &start);
	if (r < 0)
		return r;
	uint64_t *first_read_ns = calloc(h->values.n, sizeof *first_read_ns);
	if (first_read_ns == NULL)
		r = -ENOMEM;
	for (size_t v = 0; r == 0 && v < h->values.n; v++)
		first_read_ns[v] = NOT_READ;
	struct totals t = { h->keys.n, h->n_ops, 0, 0 };
	for (uint32_t k = 0; r == 0 && k < h->keys.n; k++) {
		enum verdict v;
		r = check_key(h, k, by_key + start[k], start[k + 1] - start[k], first_read_ns, max_states,
			      quiet, out, &v);
		t.not_linearizable += r == 0 && v == VERDICT_NOT_LINEARIZABLE;
		t.undecided += r == 0 && v == VERDICT_UNDECIDED;
	}
	free(first_read_ns);
	free(by_key);
	free(start);
	if (r == 0)
		*ret = t;
	return r;
}

static enum verdict overall_verdict(const struct totals *t)
{
	if (t->not_linearizable > 0)
		return VERDICT_NOT_LINEARIZABLE;
	return t->undecided > 0 ? VERDICT_UNDECIDED : VERDICT_LINEARIZABLE;
}

/* ---- self-test: generated histories with known answers ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r) /* splitmix64 */
{
	r->s += 0x9e3779b97f4a7c15u;
	return mix64(r->s);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

#define GEN_ABSENT (-1L)
#define GEN_NEVER_WRITTEN (-2L)
#define GEN_TIME_BASE 1000000000000u

struct gen_op {
	uint64_t invoke, complete, effect_at;
	long value; /* a value number, GEN_ABSENT or GEN_NEVER_WRITTEN */
	unsigned process, key;
	enum op_kind kind;
	enum outcome outcome;
	bool takes_effect;
};

struct gen_history {
	struct gen_op *ops;
	size_t n, cap;
	unsigned n_keys;
};

static void gen_free(struct gen_history *g)
{
	free(g->ops);
	memset(g, 0, sizeof *g);
}

static int gen_copy(const struct gen_history *src, struct gen_history *dst)
{
	*dst = *src;
	dst->cap = src->n + 1; /* room for one op added by a mutation */
	dst->ops = calloc(dst->cap, sizeof *dst->ops);
	if (dst->ops == NULL)
		return -ENOMEM;
	memcpy(dst->ops, src->ops, src->n * sizeof *src->ops);
	return 0;
}

/* One random op of process p starting at *t; small times so that intervals
 * often touch. Unknown ops take effect (if at all) any time after invoke,
 * possibly long after the client gave up. */
static struct gen_op gen_random_op(struct rng *r, unsigned p, unsigned n_keys, uint64_t *t,
				   long *next_value)
{
	struct gen_op op = { 0 };
	uint64_t dice = rng_below(r, 100), fate = rng_below(r, 100);
	op.process = p;
	op.key = (unsigned)rng_below(r, n_keys);
	op.kind = dice < 45 ? OP_READ : dice < 80 ? OP_WRITE : OP_DELETE;
	op.value = op.kind == OP_WRITE ? (*next_value)++ : GEN_ABSENT;
	op.invoke = *t + rng_below(r, 4);
	op.complete = op.invoke + rng_below(r, 8);
	op.effect_at = op.invoke + rng_below(r, op.complete - op.invoke + 1);
	op.outcome = fate < 10 ? OUTCOME_UNKNOWN : fate < 15 ? OUTCOME_FAIL : OUTCOME_OK;
	op.takes_effect = op.outcome == OUTCOME_OK;
	*t = op.complete;
	if (op.outcome == OUTCOME_UNKNOWN) {
		op.takes_effect = op.kind != OP_READ && rng_below(r, 2) == 0;
		op.effect_at = op.invoke + rng_below(r, 60);
		if (rng_below(r, 2) == 0)
			op.complete = 0; /* meaningless for unknown ops */
	}
	if (op.kind == OP_READ && op.outcome != OUTCOME_OK) {
		/* carries no information: anything at all */
		long junk = (long)rng_below(r, (uint64_t)*next_value + 1) - 1;
		op.value = rng_below(r, 4) == 0 ? GEN_NEVER_WRITTEN : junk;
	}
	return op;
}

/* Runs the ops that take effect, in order of effect_at, on per-key registers
 * to fill in what reads observe. A delete of an absent key does not happen:
 * an ok one becomes an ok read of absent (as faultclient records ENOENT). */
static int gen_simulate(struct gen_history *g)
{
	struct sort_item *order = calloc(g->n + 1, sizeof *order);
	long *reg = calloc(g->n_keys, sizeof *reg);
	if (order == NULL || reg == NULL) {
		free(order);
		free(reg);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < g->n; i++) {
		if (g->ops[i].takes_effect)
			order[n++] = (struct sort_item){ g->ops[i].effect_at, (uint32_t)i, 0 };
	}
	qsort(order, n, sizeof *order, compare_sort_items);
	for (unsigned k = 0; k < g->n_keys; k++)
		reg[k] = GEN_ABSENT;
	for (size_t i = 0; i < n; i++) {
		struct gen_op *op = &g->ops[order[i].id];
		long *state = &reg[op->key];
		if (op->kind == OP_READ) {
			op->value = *state;
		} else if (op->kind == OP_WRITE) {
			*state = op->value;
		} else if (*state != GEN_ABSENT) {
			*state = GEN_ABSENT;
		} else if (op->outcome == OUTCOME_OK) {
			op->kind = OP_READ;
		} else {
			op->takes_effect = false;
		}
	}
	free(order);
	free(reg);
	return 0;
}

static int gen_history(struct rng *r, struct gen_history *ret)
{
	struct gen_history g = { 0 };
	unsigned n_procs = 2 + (unsigned)rng_below(r, 5);
	unsigned per_proc = 3 + (unsigned)rng_below(r, 23);
	long next_value = 0;
	g.n_keys = 1 + (unsigned)rng_below(r, 3);
	g.cap = (size_t)n_procs * per_proc;
	g.ops = calloc(g.cap, sizeof *g.ops);
	if (g.ops == NULL)
		return -ENOMEM;
	for (unsigned p = 0; p < n_procs; p++) {
		uint64_t t = GEN_TIME_BASE + rng_below(r, 20);
		for (unsigned i = 0; i < per_proc; i++)
			g.ops[g.n++] = gen_random_op(r, p, g.n_keys, &t, &next_value);
	}
	int rc = gen_simulate(&g);
	if (rc < 0) {
		gen_free(&g);
		return rc;
	}
	*ret = g;
	return 0;
}

static void gen_print(FILE *out, const struct gen_history *g, const char *prefix)
{
	static const char kind_chars[] = { 'w', 'r', 'd' };
	for (size_t i = 0; i < g->n; i++) {
		const struct gen_op *op = &g->ops[i];
		char value[32];
		if (op->value == GEN_ABSENT || op->kind == OP_DELETE)
			snprintf(value, sizeof value, "-");
		else if (op->value == GEN_NEVER_WRITTEN)
			snprintf(value, sizeof value, "never-written");
		else
			snprintf(value, sizeof value, "v%ld", op->value);
		fprintf(out, "%s%u %c k%u %s %" PRIu64 " %" PRIu64 " %s\n", prefix, op->process,
			kind_chars[op->kind], op->key, value, op->invoke, op->complete,
			outcome_names[op->outcome]);
	}
}

/* Checks a generated history through its text form, so the parser takes
 * part. Output (explanations) goes to `out` unless NULL. */
static int gen_check(const struct gen_history *g, uint64_t max_states, FILE *out, enum verdict *ret)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL)
		return -ENOMEM;
	gen_print(f, g, "");
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	struct history h;
	unsigned errors = 0;
	int r = history_init(&h);
	f = r == 0 ? fmemopen(text, len, "r") : NULL;
	if (r == 0 && f == NULL)
		r = -ENOMEM;
	if (r == 0) {
		r = parse_stream(&h, f, "self-test", &errors);
		fclose(f);
	}
	if (r == 0 && errors > 0)
		r = -EINVAL;
	struct totals t;
	if (r == 0)
		r = check_history(&h, max_states, false, out, &t);
	if (r == 0)
		*ret = overall_verdict(&t);
	history_free(&h);
	free(text);
	return r;
}

/* Mutations that make any history certainly not linearizable. Each returns
 * false when this history offers no place to apply it. */

static bool is_ok(const struct gen_op *op, enum op_kind kind)
{
	return op->outcome == OUTCOME_OK && op->kind == kind;
}

/* The i-th (mod count) op satisfying `fits`, or NULL. */
static struct gen_op *pick(struct gen_history *g, struct rng *r,
			   bool (*fits)(const struct gen_history *, const struct gen_op *))
{
	size_t count = 0;
	for (size_t i = 0; i < g->n; i++)
		count += fits(g, &g->ops[i]);
	if (count == 0)
		return NULL;
	size_t want = (size_t)rng_below(r, count);
	for (size_t i = 0; i < g->n; i++) {
		if (fits(g, &g->ops[i]) && want-- == 0)
			return &g->ops[i];
	}
	return NULL;
}

static bool fits_ok_read(const struct gen_history *g, const struct gen_op *op)
{
	(void)g;
	return is_ok(op, OP_READ);
}

static bool mutate_never_written(struct gen_history *g, struct rng *r)
{
	struct gen_op *read = pick(g, r, fits_ok_read);
	if (read != NULL)
		read->value = GEN_NEVER_WRITTEN;
	return read != NULL;
}

/* A write of the read's key invoked after the read completed. */
static const struct gen_op *later_write(const struct gen_history *g, const struct gen_op *read)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct gen_op *w = &g->ops[i];
		if (w->kind == OP_WRITE && w->key == read->key && w->invoke > read->complete)
			return w;
	}
	return NULL;
}

static bool fits_read_before_write(const struct gen_history *g, const struct gen_op *op)
{
	return is_ok(op, OP_READ) && later_write(g, op) != NULL;
}

static bool mutate_read_from_future(struct gen_history *g, struct rng *r)
{
	struct gen_op *read = pick(g, r, fits_read_before_write);
	if (read != NULL)
		read->value = later_write(g, read)->value;
	return read != NULL;
}

static bool mutate_delete_never_written(struct gen_history *g, struct rng *r)
{
	struct gen_op d = { 0 };
	d.process = (unsigned)rng_below(r, 8);
	d.key = g->n_keys; /* a key no other op touches */
	d.kind = OP_DELETE;
	d.value = GEN_ABSENT;
	d.invoke = GEN_TIME_BASE + rng_below(r, 100);
	d.complete = d.invoke + rng_below(r, 5);
	d.outcome = OUTCOME_OK;
	g->ops[g->n++] = d;
	return true;
}

/* For a stale read: an ok write w1 that completed before another ok write w2
 * of the same key was invoked, w2 completing before `read` was invoked. */
static const struct gen_op *overwritten_write(const struct gen_history *g,
					      const struct gen_op *read)
{
	const struct gen_op *w2 = NULL;
	for (size_t i = 0; i < g->n; i++) {
		const struct gen_op *w = &g->ops[i];
		if (is_ok(w, OP_WRITE) && w->key == read->key && w->complete < read->invoke &&
		    (w2 == NULL || w->invoke > w2->invoke))
			w2 = w;
	}
	for (size_t i = 0; w2 != NULL && i < g->n; i++) {
		const struct gen_op *w1 = &g->ops[i];
		if (is_ok(w1, OP_WRITE) && w1->key == read->key && w1->complete < w2->invoke)
			return w1;
	}
	return NULL;
}

static bool fits_stale_read(const struct gen_history *g, const struct gen_op *op)
{
	return is_ok(op, OP_READ) && overwritten_write(g, op) != NULL;
}

static bool mutate_stale_read(struct gen_history *g, struct rng *r)
{
	struct gen_op *read = pick(g, r, fits_stale_read);
	if (read != NULL)
		read->value = overwritten_write(g, read)->value;
	return read != NULL;
}

/* For a lost write: an ok write completed before the read was invoked, and no
 * delete (ok or unknown) of the key invoked before the read completed. */
static bool fits_lost_write(const struct gen_history *g, const struct gen_op *read)
{
	bool written = false;
	if (!is_ok(read, OP_READ))
		return false;
	for (size_t i = 0; i < g->n; i++) {
		const struct gen_op *op = &g->ops[i];
		if (op->key != read->key)
			continue;
		if (op->kind == OP_DELETE && op->outcome != OUTCOME_FAIL && op->invoke <= read->complete)
			return false;
		written |= is_ok(op, OP_WRITE) && op->complete < read->invoke;
	}
	return written;
}

static bool mutate_lost_write(struct gen_history *g, struct rng *r)
{
	struct gen_op *read = pick(g, r, fits_lost_write);
	if (read != NULL)
		read->value = GEN_ABSENT;
	return read != NULL;
}

struct self_check {
	const char *what;
	bool (*mutate)(struct gen_history *, struct rng *); /* NULL: the history as generated */
	unsigned checked, wrong;
};

/* Prints the first wrong case as TAP comments: the history and the verdict. */
static void show_wrong_case(const struct gen_history *g, uint64_t max_states, uint64_t seed,
			    unsigned round, const char *what)
{
	enum verdict v;
	printf("# seed %" PRIu64 " round %u, %s: wrong verdict for this history:\n", seed, round, what);
	gen_print(stdout, g, "#   ");
	printf("# lincheck says:\n");
	if (gen_check(g, max_states, stdout, &v) < 0)
		printf("# (out of memory)\n");
}

static int self_test_round(struct rng *r, uint64_t max_states, uint64_t seed, unsigned round,
			   struct self_check *checks, size_t n_checks)
{
	struct gen_history g;
	int rc = gen_history(r, &g);
	for (size_t c = 0; rc == 0 && c < n_checks; c++) {
		struct gen_history m;
		rc = gen_copy(&g, &m);
		if (rc < 0)
			break;
		enum verdict want = VERDICT_LINEARIZABLE, got = VERDICT_LINEARIZABLE;
		if (checks[c].mutate == NULL || checks[c].mutate(&m, r)) {
			want = checks[c].mutate ? VERDICT_NOT_LINEARIZABLE : VERDICT_LINEARIZABLE;
			rc = gen_check(&m, max_states, NULL, &got);
			checks[c].checked++;
		}
		if (rc == 0 && got != want && checks[c].wrong++ == 0)
			show_wrong_case(&m, max_states, seed, round, checks[c].what);
		gen_free(&m);
	}
	gen_free(&g);
	return rc;
}

static int self_test(uint64_t seed, unsigned rounds, uint64_t max_states)
{
	struct self_check checks[] = {
		{ "generated histories judged linearizable", NULL, 0, 0 },
		{ "reads of a never-written value judged NOT linearizable", mutate_never_written, 0, 0 },
		{ "reads of a write invoked after the read completed judged NOT linearizable",
		  mutate_read_from_future, 0, 0 },
		{ "ok deletes of a never-written key judged NOT linearizable", mutate_delete_never_written,
		  0, 0 },
		{ "stale reads (a value overwritten before the read began) judged NOT linearizable",
		  mutate_stale_read, 0, 0 },
		{ "lost writes (absent after an ok write, no delete) judged NOT linearizable",
		  mutate_lost_write, 0, 0 },
	};
	size_t n_checks = sizeof checks / sizeof checks[0];
	struct rng r = { seed };
	printf("# self-test: seed %" PRIu64 ", %u rounds\n", seed, rounds);
	for (unsigned round = 0; round < rounds; round++) {
		int rc = self_test_round(&r, max_states, seed, round, checks, n_checks);
		if (rc < 0)
			return rc;
	}
	bool all_right = true;
	for (size_t c = 0; c < n_checks; c++) {
		bool right = checks[c].wrong == 0 && checks[c].checked > 0;
		printf("%s %zu - %u %s", right ? "ok" : "not ok", c + 1, checks[c].checked, checks[c].what);
		if (checks[c].wrong > 0)
			printf(" (%u wrong)", checks[c].wrong);
		printf("\n");
		all_right &= right;
	}
	printf("1..%zu\n", n_checks);
	return all_right ? 0 : 1;
}

/* ---- command line ---- */

struct cli {
	uint64_t max_states;
	bool quiet, self_test;
	const char *faults; /* --faults FILE, or NULL */
	char **args; /* positional: files, or SEED ROUNDS with --self-test */
	int n_args;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: lincheck [--max-states N] [--quiet] [--faults FILE] [HISTORY...]\n"
		     "       lincheck [--max-states N] --self-test [SEED] [ROUNDS]  (default 1, 300)\n"
		     "Checks that each key of the histories (stdin if none, or '-') is a linearizable\n"
		     "register. Exit: 0 linearizable, 1 NOT linearizable, 2 undecided (search bound,\n"
		     "default %u states per key), 3 malformed input, 4 usage error or out of memory.\n",
		     DEFAULT_MAX_STATES);
}

static int parse_cli(int argc, char **argv, struct cli *ret)
{
	struct cli c = { DEFAULT_MAX_STATES, false, false, NULL, argv + argc, 0 };
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--quiet") == 0) {
			c.quiet = true;
		} else if (strcmp(a, "--self-test") == 0) {
			c.self_test = true;
		} else if (strcmp(a, "--faults") == 0 && i + 1 < argc) {
			c.faults = argv[++i];
		} else if (strcmp(a, "--max-states") == 0 && i + 1 < argc) {
			if (parse_u64(argv[++i], &c.max_states) < 0 || c.max_states == 0) {
				fprintf(stderr, "lincheck: --max-states wants a positive number, not '%s'\n",
					argv[i]);
				return -EINVAL;
			}
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(EXIT_ALL_LINEARIZABLE);
		} else {
			fprintf(stderr, "lincheck: unknown option or missing argument: %s\n", a);
			usage(stderr);
			return -EINVAL;
		}
	}
	c.args = argv + i;
	c.n_args = argc - i;
	if (c.self_test && c.n_args > 2) {
		fprintf(stderr, "lincheck: --self-test takes at most SEED and ROUNDS\n");
		return -EINVAL;
	}
	*ret = c;
	return 0;
}

static int run_self_test(const struct cli *c)
{
	uint64_t seed = 1, rounds = 300;
	if ((c->n_args > 0 && parse_u64(c->args[0], &seed) < 0) ||
	    (c->n_args > 1 && (parse_u64(c->args[1], &rounds) < 0 || rounds > UINT32_MAX))) {
		fprintf(stderr, "lincheck: --self-test SEED and ROUNDS are unsigned numbers\n");
		return EXIT_USAGE_OR_MEMORY;
	}
	int r = self_test(seed, (unsigned)rounds, c->max_states);
	if (r < 0) {
		fprintf(stderr, "lincheck: self-test: %s\n", strerror(-r));
		return EXIT_USAGE_OR_MEMORY;
	}
	return r == 0 ? EXIT_ALL_LINEARIZABLE : EXIT_NOT_LINEARIZABLE;
}

/* Reads every input into `h`. Returns 0, -EINVAL (malformed or unreadable,
 * already reported) or -ENOMEM. */
static int read_inputs(struct history *h, char *const *files, int n_files)
{
	static char dash[] = "-";
	char *const stdin_only[] = { dash };
	unsigned errors = 0;
	if (n_files == 0) {
		files = stdin_only;
		n_files = 1;
	}
	for (int i = 0; i < n_files; i++) {
		bool is_stdin = strcmp(files[i], "-") == 0;
		const char *name = is_stdin ? "<stdin>" : files[i];
		FILE *f = is_stdin ? stdin : fopen(files[i], "r");
		if (f == NULL) {
			fprintf(stderr, "lincheck: %s: %s\n", name, strerror(errno));
			return -EINVAL;
		}
		int r = parse_stream(h, f, name, &errors);
		if (!is_stdin)
			fclose(f);
		if (r == -EIO)
			fprintf(stderr, "lincheck: %s: read error\n", name);
		if (r == -EIO || errors > 0)
			return -EINVAL;
		if (r < 0)
			return r;
	}
	return 0;
}

static int print_summary(const struct totals *t)
{
	printf("lincheck: %zu keys, %zu ops: ", t->keys, t->ops);
	switch (overall_verdict(t)) {
	case VERDICT_LINEARIZABLE:
		printf("all linearizable\n");
		return EXIT_ALL_LINEARIZABLE;
	case VERDICT_UNDECIDED:
		printf("%zu undecided\n", t->undecided);
		return EXIT_UNDECIDED;
	case VERDICT_NOT_LINEARIZABLE:
		break;
	}
	printf("%zu NOT linearizable", t->not_linearizable);
	if (t->undecided > 0)
		printf(", %zu undecided", t->undecided);
	printf("\n");
	return EXIT_NOT_LINEARIZABLE;
}

int main(int argc, char **argv)
{
	struct cli c;
	if (parse_cli(argc, argv, &c) < 0)
		return EXIT_USAGE_OR_MEMORY;
	if (c.self_test)
		return run_self_test(&c);

	struct history h;
	struct totals t;
	int r = history_init(&h);
	if (r == 0 && c.faults != NULL && lincontext_load_faults(c.faults) < 0)
		r = -EINVAL;
	if (r == 0)
		r = read_inputs(&h, c.args, c.n_args);
	if (r == 0)
		r = check_history(&h, c.max_states, c.quiet, stdout, &t);
	history_free(&h);
	lincontext_free();
	if (r == -EINVAL)
		return EXIT_BAD_INPUT;
	if (r < 0) {
		fprintf(stderr, "lincheck: out of memory (try a smaller --max-states)\n");
		return EXIT_USAGE_OR_MEMORY;
	}
	return print_summary(&t);
}
