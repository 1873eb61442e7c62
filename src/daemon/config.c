/* vaultfsd configuration loader.
 *
 * libconfuse does the lexing and the block structure; everything a user can
 * get wrong is checked in callbacks that run while the parser still knows the
 * line, so every message points at the offending line. libconfuse 3.3
 * callbacks carry no user pointer, hence the thread-local "current" loader. */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <confuse.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "lib/buf.h"
#include "lib/fileutil.h"
#include "vaultfs/proto.h"

/* A config is a few hundred bytes; anything near this is not a config. */
#define CONFIG_MAX_BYTES (1024u * 1024u)
#define NODE_ID_MAX 64u
#define MAX_KEYS 64

struct num_range {
	const char *name;
	long min;
	long max;
	long def;
};

static const struct num_range num_ranges[] = {
	{ "snapshot_threshold", 1, 1000000000L, 8192 },
	{ "trailing_logs", 1, 1000000000L, 10240 },
	{ "election_timeout_ms", 100, 60000, 1000 },
	{ "heartbeat_interval_ms", 10, 10000, 100 },
	{ "request_timeout_ms", 100, 600000, 10000 },
	{ "min_quorum", 1, 64, 3 },
	{ "retain", 1, 100000, 24 }, /* snapshot "local" */
};

/* autopilot's server_stabilization_time unless set, in seconds. */
#define SERVER_STABILIZATION_DEFAULT_S 10

/* Durations ("24h"): whole numbers with a unit s, m, h or d, in seconds. */
struct duration_range {
	const char *name;
	long min_s, max_s;
	bool off;                  /* "off" is allowed (0) */
	const char *min, *max, *example; /* for the message */
};

static const struct duration_range duration_ranges[] = {
	{ "rotation_interval", 10, 365L * 86400, true, "10s", "365d", "24h" },
	{ "interval", 1, 86400, false, "1s", "1d", "15s" }, /* telemetry, snapshot */
	{ "dead_server_cleanup_threshold", 10, 365L * 86400, true, "10s", "365d", "5m" },
	{ "server_stabilization_time", 0, 3600, false, "0s", "1h", "10s" },
};

/* The blocks a file may hold. */
struct block_kind {
	const char *name;
	const char *title;	 /* NULL: written without a title */
	bool repeatable;	 /* one block per item (retry_join) */
	const char *const *keys; /* NULL-terminated: for the misplaced-key hint */
};

static const char *const storage_keys[] = {
	"path", "node_id", "snapshot_threshold", "trailing_logs",
	"election_timeout_ms", "heartbeat_interval_ms", NULL,
};
static const char *const listener_keys[] = { "path", NULL };
static const char *const telemetry_keys[] = { "prometheus_textfile", "interval", NULL };
static const char *const retry_join_keys[] = { "leader_addr", NULL };
static const char *const audit_keys[] = { "path", "fail_closed", NULL };
static const char *const autopilot_keys[] = { "dead_server_cleanup_threshold", "min_quorum",
					      "server_stabilization_time", NULL };
static const char *const snapshot_keys[] = { "path", "interval", "retain", NULL };
static const char *const top_keys[] = {
	"cluster_addr", "disable_mlock", "request_timeout_ms", "rotation_interval", NULL,
};

static const struct block_kind block_kinds[] = {
	{ "storage", "raft", false, storage_keys },
	{ "listener", "unix", false, listener_keys },
	{ "telemetry", NULL, false, telemetry_keys },
	{ "retry_join", NULL, true, retry_join_keys },
	{ "autopilot", NULL, false, autopilot_keys },
	{ "snapshot", "local", false, snapshot_keys },
	{ "audit", "file", false, audit_keys },
};
#define N_BLOCK_KINDS (sizeof(block_kinds) / sizeof(block_kinds[0]))

/* Copies, not pointers: libconfuse frees a block's strings when a block
 * with the same title replaces it. */
struct seen_key {
	char section[16]; /* "" for top level */
	unsigned block;   /* which block of that name (repeatable blocks) */
	char name[32];
	int line;
};

struct loader {
	const char *file;
	char *errmsg;
	size_t errlen;
	bool failed; /* the first error is the one worth reading */
	cfg_t *root;
	int section_line; /* header line of the block being parsed, 0 outside */
	unsigned blocks[N_BLOCK_KINDS]; /* closed blocks of each kind */
	struct seen_key seen[MAX_KEYS];
	size_t nseen;
};

static _Thread_local struct loader *current;

__attribute__((format(printf, 3, 4)))
static void report(struct loader *ld, int line, const char *fmt, ...)
{
	if (ld->failed)
		return;
	ld->failed = true;
	if (ld->errlen == 0)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(ld->errmsg, ld->errlen, "%s:%d: %s", ld->file, line, msg);
	else
		snprintf(ld->errmsg, ld->errlen, "%s: %s", ld->file, msg);
}

/* User strings go into one-line messages: cut them short and hide control
 * characters so a stray escape cannot garble the terminal. */
static const char *printable(const char *s, char *out, size_t outlen)
{
	size_t i = 0;
	for (; s[i] != '\0' && i + 4 < outlen; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0' && i >= 3) {
		memcpy(out + i - 3, "...", 3);
	}
	out[i] = '\0';
	return out;
}

static bool is_section(const struct loader *ld, const cfg_t *cfg)
{
	return cfg != ld->root;
}

static const struct block_kind *block_kind(const char *section)
{
	for (size_t i = 0; i < N_BLOCK_KINDS; i++)
		if (strcmp(block_kinds[i].name, section) == 0)
			return &block_kinds[i];
	assert(!"a section libconfuse knows is in block_kinds");
	return &block_kinds[0];
}

static unsigned *block_count(struct loader *ld, const char *section)
{
	return &ld->blocks[block_kind(section) - block_kinds];
}

/* Checks made as soon as anything inside a block is seen, so a wrong block
 * type or a second block is reported at its header rather than as a
 * confusing complaint about one of its keys. Returns 0 or -1. */
static int check_block(struct loader *ld, cfg_t *sec, int line)
{
	const struct block_kind *k = block_kind(sec->name);
	char tmp[80];
	if (k->title != NULL && (sec->title == NULL || strcmp(sec->title, k->title) != 0)) {
		const char *got = sec->title != NULL ? sec->title : "";
		report(ld, line, "%s type \"%s\" is not supported; use %s \"%s\"", k->name,
		       printable(got, tmp, sizeof(tmp)), k->name, k->title);
		return -1;
	}
	if (!k->repeatable && *block_count(ld, sec->name) > 0) {
		if (k->title != NULL)
			report(ld, line, "second %s block; only one %s \"%s\" block is allowed",
			       k->name, k->name, k->title);
		else
			report(ld, line, "second %s block; only one is allowed", k->name);
		return -1;
	}
	return 0;
}

/* Called for every key inside a block: the root's line still points at the
 * block header while libconfuse parses the block's contents. */
static int enter_block(struct loader *ld, cfg_t *sec)
{
	ld->section_line = ld->root->line;
	return check_block(ld, sec, ld->section_line);
}

static bool listed(const char *const *keys, const char *key)
{
	for (; *keys != NULL; keys++)
		if (strcmp(*keys, key) == 0)
			return true;
	return false;
}

/* Where a key belongs, for the "unknown key" hint (into BUF). */
static const char *misplaced_hint(bool in_section, const char *key, char *buf, size_t len)
{
	if (in_section)
		return listed(top_keys, key) ? " (it belongs at the top level, outside any block)"
					     : "";
	for (size_t i = 0; i < N_BLOCK_KINDS; i++) {
		const struct block_kind *k = &block_kinds[i];
		if (!listed(k->keys, key))
			continue;
		snprintf(buf, len, " (it belongs inside the %s%s%s%s block)", k->name,
			 k->title != NULL ? " \"" : "", k->title != NULL ? k->title : "",
			 k->title != NULL ? "\"" : "");
		return buf;
	}
	return "";
}

static void report_unknown_key(struct loader *ld, cfg_t *cfg, const char *key)
{
	char tmp[80], hint[96];
	printable(key, tmp, sizeof(tmp));
	if (is_section(ld, cfg) && cfg->title != NULL)
		report(ld, cfg->line, "unknown key '%s' in %s \"%s\" block%s", tmp, cfg->name,
		       cfg->title, misplaced_hint(true, key, hint, sizeof(hint)));
	else if (is_section(ld, cfg))
		report(ld, cfg->line, "unknown key '%s' in %s block%s", tmp, cfg->name,
		       misplaced_hint(true, key, hint, sizeof(hint)));
	else
		report(ld, cfg->line, "unknown key '%s'%s", tmp,
		       misplaced_hint(false, key, hint, sizeof(hint)));
}

/* libconfuse reports its own errors here. Known messages are reworded into
 * plain language; anything else is passed through unchanged. */
static void on_confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	struct loader *ld = current;
	if (ld == NULL || ld->failed)
		return;
	if (is_section(ld, cfg) && check_block(ld, cfg, ld->root->line) != 0)
		return;

	char tmp[80];
	if (strcmp(fmt, "no such option '%s'") == 0) {
		report_unknown_key(ld, cfg, va_arg(ap, const char *));
	} else if (strcmp(fmt, "unexpected token '%s'") == 0) {
		report(ld, cfg->line, "syntax error near '%s'",
		       printable(va_arg(ap, const char *), tmp, sizeof(tmp)));
	} else if (strcmp(fmt, "missing equal sign after option '%s'") == 0) {
		report(ld, cfg->line, "expected '=' after '%s'",
		       printable(va_arg(ap, const char *), tmp, sizeof(tmp)));
	} else if (strcmp(fmt, "invalid boolean value for option '%s'") == 0) {
		report(ld, cfg->line, "%s must be true or false", va_arg(ap, const char *));
	} else if (strcmp(fmt, "premature end of file") == 0) {
		report(ld, cfg->line, "unexpected end of file");
	} else if (strcmp(fmt, "unexpected closing brace") == 0) {
		report(ld, cfg->line, "unexpected '}' with no open block");
	} else if (strcmp(fmt, "missing title for section '%s'") == 0 ||
		   strcmp(fmt, "missing opening brace for section '%s'") == 0) {
		const struct block_kind *k = block_kind(va_arg(ap, const char *));
		if (k->title != NULL)
			report(ld, cfg->line, "%s must be written as %s \"%s\" { ... }", k->name,
			       k->name, k->title);
		else
			report(ld, cfg->line, "%s must be written as %s { ... }", k->name, k->name);
	} else if (strcmp(fmt, "attempt to append to non-list option '%s'") == 0) {
		report(ld, cfg->line, "'+=' cannot be used with %s; use '='",
		       va_arg(ap, const char *));
	} else {
		char msg[256];
		/* libconfuse's own message: its format comes from libconfuse. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		vsnprintf(msg, sizeof(msg), fmt, ap);
#pragma GCC diagnostic pop
		report(ld, cfg->line, "%s", msg);
	}
}

static const struct num_range *find_range(const char *name)
{
	for (size_t i = 0; i < sizeof(num_ranges) / sizeof(num_ranges[0]); i++)
		if (strcmp(num_ranges[i].name, name) == 0)
			return &num_ranges[i];
	return NULL;
}

/* Replaces libconfuse's strtol(base 0): no octal/hex surprises, and a range
 * check with the key's own line. */
static int parse_number(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct loader *ld = current;
	if (is_section(ld, cfg) && enter_block(ld, cfg) != 0)
		return -1;
	const struct num_range *r = find_range(opt->name);
	char tmp[80];
	const char *p = value[0] == '-' ? value + 1 : value;
	bool digits = *p != '\0';
	for (; *p != '\0'; p++)
		digits = digits && *p >= '0' && *p <= '9';
	if (!digits) {
		report(ld, cfg->line, "%s must be a whole number, got \"%s\"", opt->name,
		       printable(value, tmp, sizeof(tmp)));
		return -1;
	}
	errno = 0;
	long v = strtol(value, NULL, 10);
	if (errno == ERANGE || v < r->min || v > r->max) {
		report(ld, cfg->line, "%s must be between %ld and %ld, got %s", opt->name, r->min,
		       r->max, printable(value, tmp, sizeof(tmp)));
		return -1;
	}
	*(long *)result = v;
	return 0;
}

static const struct duration_range *find_duration(const char *name)
{
	for (size_t i = 0; i < sizeof(duration_ranges) / sizeof(duration_ranges[0]); i++)
		if (strcmp(duration_ranges[i].name, name) == 0)
			return &duration_ranges[i];
	assert(!"every duration key is in duration_ranges");
	return &duration_ranges[0];
}

/* A duration key (duration_ranges): a whole number with a unit s, m, h or
 * d ("24h"), or "off" where allowed. The result is in seconds. */
static int parse_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct loader *ld = current;
	if (is_section(ld, cfg) && enter_block(ld, cfg) != 0)
		return -1;
	const struct duration_range *r = find_duration(opt->name);
	char tmp[80];
	if (r->off && strcmp(value, "off") == 0) {
		*(long *)result = 0;
		return 0;
	}
	static const struct {
		char unit;
		long seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	size_t n = strlen(value);
	long scale = 0;
	for (size_t i = 0; n > 1 && i < sizeof(units) / sizeof(units[0]); i++)
		if (value[n - 1] == units[i].unit)
			scale = units[i].seconds;
	bool digits = scale != 0 && n <= 8;
	for (size_t i = 0; digits && i + 1 < n; i++)
		digits = value[i] >= '0' && value[i] <= '9';
	long v = digits ? strtol(value, NULL, 10) * scale : 0;
	if (!digits || v < r->min_s || v > r->max_s) {
		report(ld, cfg->line,
		       "%s must be %sa duration from %s to %s such as \"%s\" (units s, m, h, d), "
		       "got \"%s\"",
		       opt->name, r->off ? "\"off\" or " : "", r->min, r->max, r->example,
		       printable(value, tmp, sizeof(tmp)));
		return -1;
	}
	*(long *)result = v;
	return 0;
}

/* Remembers where each key was set; a key given twice is an error rather
 * than a silent override. */
static int note_key(struct loader *ld, const char *section, unsigned block, const char *name,
		    int line)
{
	for (size_t i = 0; i < ld->nseen; i++) {
		if (strcmp(ld->seen[i].section, section) == 0 && ld->seen[i].block == block &&
		    strcmp(ld->seen[i].name, name) == 0) {
			report(ld, line, "%s is set twice (first on line %d)", name,
			       ld->seen[i].line);
			return -1;
		}
	}
	if (ld->nseen < MAX_KEYS) {
		struct seen_key *k = &ld->seen[ld->nseen++];
		snprintf(k->section, sizeof(k->section), "%s", section);
		k->block = block;
		snprintf(k->name, sizeof(k->name), "%s", name);
		k->line = line;
	}
	return 0;
}

static int key_line(const struct loader *ld, const char *section, const char *name)
{
	for (size_t i = 0; i < ld->nseen; i++)
		if (strcmp(ld->seen[i].section, section) == 0 &&
		    strcmp(ld->seen[i].name, name) == 0)
			return ld->seen[i].line;
	return 0;
}

static bool valid_node_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > NODE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

static bool valid_hostname(const char *h, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	bool numeric = true;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');
		if (!alnum && c != '.' && c != '-' && c != '_')
			return false;
		if (!(c >= '0' && c <= '9') && c != '.')
			numeric = false;
	}
	if (!numeric)
		return true;
	/* Looks like dotted IPv4: it has to be a real one. */
	char copy[16];
	struct in_addr a;
	if (n >= sizeof(copy))
		return false;
	memcpy(copy, h, n);
	copy[n] = '\0';
	return inet_pton(AF_INET, copy, &a) == 1;
}

static bool valid_ipv6(const char *h, size_t n)
{
	char copy[INET6_ADDRSTRLEN];
	struct in6_addr a;
	if (n == 0 || n >= sizeof(copy))
		return false;
	memcpy(copy, h, n);
	copy[n] = '\0';
	return inet_pton(AF_INET6, copy, &a) == 1;
}

/* Parses "[scheme://]host:port[/]" into "host:port" (brackets kept for
 * IPv6). On error returns -EINVAL and a message without the key name. */
static int normalize_addr(const char *in, char *out, size_t outlen, const char **why)
{
	const char *p = in;
	const char *sep = strstr(in, "://");
	if (sep != NULL) {
		size_t slen = (size_t)(sep - in);
		/* https:// would promise TLS; the port speaks vaultfs's own
		 * authenticated, encrypted protocol (crypto/channel.h). */
		if (slen == 5 && strncmp(in, "https", 5) == 0) {
			*why = "is https://, but the cluster port speaks vaultfs's own encrypted "
			       "protocol, not TLS (use http:// or none)";
			return -EINVAL;
		}
		if (!(slen == 4 && strncmp(in, "http", 4) == 0)) {
			*why = "has an unsupported scheme (use http:// or none)";
			return -EINVAL;
		}
		p = sep + 3;
	}
	size_t n = strlen(p);
	if (n > 0 && p[n - 1] == '/')
		n--;
	if (memchr(p, '/', n) != NULL) {
		*why = "must be host:port without a path";
		return -EINVAL;
	}

	const char *host = p;
	size_t hlen;
	const char *colon;
	bool v6 = p[0] == '[';
	if (v6) {
		const char *close = memchr(p, ']', n);
		if (close == NULL) {
			*why = "has an unclosed '[' in its IPv6 address";
			return -EINVAL;
		}
		host = p + 1;
		hlen = (size_t)(close - host);
		colon = close + 1 < p + n && close[1] == ':' ? close + 1 : NULL;
		if (colon == NULL && close + 1 != p + n) {
			*why = "must be host:port";
			return -EINVAL;
		}
	} else {
		colon = NULL;
		for (size_t i = n; i > 0; i--) {
			if (p[i - 1] == ':') {
				colon = p + i - 1;
				break;
			}
		}
		hlen = colon != NULL ? (size_t)(colon - p) : n;
		if (memchr(p, ':', hlen) != NULL) {
			*why = "needs brackets around an IPv6 address, e.g. [::1]:8201";
			return -EINVAL;
		}
	}
	if (hlen == 0) {
		*why = "has an empty host";
		return -EINVAL;
	}
	if (v6 ? !valid_ipv6(host, hlen) : !valid_hostname(host, hlen)) {
		*why = v6 ? "has an invalid IPv6 address" : "has an invalid host name";
		return -EINVAL;
	}
	if (colon == NULL) {
		*why = "needs a port, e.g. 127.0.0.1:8201";
		return -EINVAL;
	}
	const char *port = colon + 1;
	size_t plen = (size_t)(p + n - port);
	unsigned long pv = 0;
	bool ok = plen > 0 && plen <= 5;
	for (size_t i = 0; ok && i < plen; i++) {
		ok = port[i] >= '0' && port[i] <= '9';
		pv = pv * 10 + (unsigned long)(port[i] - '0');
	}
	if (!ok || pv < 1 || pv > 65535) {
		*why = "needs a port between 1 and 65535";
		return -EINVAL;
	}
	int w = snprintf(out, outlen, v6 ? "[%.*s]:%lu" : "%.*s:%lu", (int)hlen, host, pv);
	if (w < 0 || (size_t)w >= outlen) {
		*why = "is too long";
		return -EINVAL;
	}
	return 0;
}

static int check_string_key(struct loader *ld, cfg_t *cfg, const char *key, const char *v)
{
	char tmp[80];
	bool in_listener = is_section(ld, cfg) && strcmp(cfg->name, "listener") == 0;

	if (strcmp(key, "path") == 0 || strcmp(key, "prometheus_textfile") == 0) {
		char what[64];
		snprintf(what, sizeof(what), "%s%s%s%s %s", cfg->name,
			 cfg->title != NULL ? " \"" : "", cfg->title != NULL ? cfg->title : "",
			 cfg->title != NULL ? "\"" : "", key);
		if (v[0] != '/') {
			report(ld, cfg->line, "%s must be an absolute path, got \"%s\"", what,
			       printable(v, tmp, sizeof(tmp)));
			return -1;
		}
		size_t max = in_listener ? sizeof(((struct sockaddr_un *)0)->sun_path) - 1
					 : (size_t)PATH_MAX - 64;
		if (strlen(v) > max) {
			report(ld, cfg->line, "%s is too long (at most %zu bytes)", what, max);
			return -1;
		}
	} else if (strcmp(key, "node_id") == 0) {
		if (!valid_node_id(v)) {
			report(ld, cfg->line,
			       "node_id must be 1 to %u characters from A-Z a-z 0-9 . _ -, got \"%s\"",
			       NODE_ID_MAX, printable(v, tmp, sizeof(tmp)));
			return -1;
		}
	} else if (strcmp(key, "cluster_addr") == 0 || strcmp(key, "leader_addr") == 0) {
		char norm[300];
		const char *why = NULL;
		if (normalize_addr(v, norm, sizeof(norm), &why) != 0) {
			report(ld, cfg->line, "%s \"%s\" %s", key,
			       printable(v, tmp, sizeof(tmp)), why);
			return -1;
		}
	}
	return 0;
}

/* Validation for every plain key, run right after libconfuse stores it. */
static int on_key(cfg_t *cfg, cfg_opt_t *opt)
{
	struct loader *ld = current;
	bool sec = is_section(ld, cfg);
	if (sec && enter_block(ld, cfg) != 0)
		return -1;
	if (note_key(ld, sec ? cfg->name : "", sec ? *block_count(ld, cfg->name) : 0, opt->name,
		     cfg->line) != 0)
		return -1;
	if (opt->type == CFGT_STR)
		return check_string_key(ld, cfg, opt->name, cfg_opt_getnstr(opt, 0));
	return 0;
}

/* Runs when a block closes: catches wrong types and repeats in blocks that
 * had no keys (those never reached enter_block). */
static int on_block(cfg_t *cfg, cfg_opt_t *opt)
{
	struct loader *ld = current;
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
	int line = ld->section_line > 0 ? ld->section_line : cfg->line;
	ld->section_line = 0;
	/* A repeated title replaces the earlier section in place, so repeats
	 * are found by counting closed blocks, not by cfg_opt_size(). */
	if (sec == NULL)
		return -1;
	if (check_block(ld, sec, line) != 0)
		return -1;
	(*block_count(ld, opt->name))++;
	return 0;
}

static void install_validators(cfg_t *cfg)
{
	for (const char *const *k = top_keys; *k != NULL; k++)
		cfg_set_validate_func(cfg, *k, on_key);
	for (size_t i = 0; i < N_BLOCK_KINDS; i++) {
		for (const char *const *k = block_kinds[i].keys; *k != NULL; k++) {
			char path[64];
			snprintf(path, sizeof(path), "%s|%s", block_kinds[i].name, *k);
			cfg_set_validate_func(cfg, path, on_key);
		}
		cfg_set_validate_func(cfg, block_kinds[i].name, on_block);
	}
}

/* A pass over the text with libconfuse's own lexical rules (quotes,
 * backslash escapes, #, // and C comments, ${VAR}). It exists because
 * libconfuse 3.3 miscounts lines after a comment and silently accepts a
 * block left open at end of file. Comments are blanked out in place (newlines
 * kept), so libconfuse never sees one and its line numbers stay exact.
 * Reports unterminated strings and comments; *ret_open is the line of the
 * first '{' never closed, or 0. */
static int prescan(struct loader *ld, uint8_t *t, size_t n, int *ret_open)
{
	int line = 1;
	int open_lines[32];
	size_t depth = 0;
	size_t i = 0;

	while (i < n) {
		uint8_t c = t[i];
		if (c == '\n') {
			line++;
			i++;
		} else if (c == '#' || (c == '/' && i + 1 < n && t[i + 1] == '/')) {
			for (; i < n && t[i] != '\n'; i++)
				t[i] = ' ';
		} else if (c == '/' && i + 1 < n && t[i + 1] == '*') {
			int start = line;
			t[i] = t[i + 1] = ' ';
			for (i += 2; i < n && !(t[i] == '*' && i + 1 < n && t[i + 1] == '/'); i++) {
				if (t[i] == '\n')
					line++;
				else
					t[i] = ' ';
			}
			if (i >= n) {
				report(ld, start, "comment opened here is never closed (missing */)");
				return -EINVAL;
			}
			t[i] = t[i + 1] = ' ';
			i += 2;
		} else if (c == '"' || c == '\'') {
			int start = line;
			for (i++; i < n && t[i] != c; i++) {
				if (t[i] == '\\' && i + 1 < n)
					i++;
				if (t[i] == '\n')
					line++;
			}
			if (i >= n) {
				report(ld, start, "string opened here is never closed (missing %c)", c);
				return -EINVAL;
			}
			i++;
		} else if (c == '$' && i + 1 < n && t[i + 1] == '{') {
			for (; i < n && t[i] != '}'; i++)
				if (t[i] == '\n')
					line++;
			i++;
		} else {
			if (c == '{') {
				if (depth < sizeof(open_lines) / sizeof(open_lines[0]))
					open_lines[depth] = line;
				depth++;
			} else if (c == '}' && depth > 0) {
				depth--;
			} else if (c == ',' && depth > 0) {
				/* One-line blocks as HCL writes them, "{ a = 1, b = 2 }":
				 * no key of ours takes a list, so a comma between
				 * keys only separates them. */
				t[i] = ' ';
			}
			i++;
		}
	}
	*ret_open = depth > 0 ? open_lines[0] : 0;
	return 0;
}

static int parse_text(struct loader *ld, cfg_t *cfg, struct buf *text)
{
	int open_line;
	int rv = prescan(ld, text->data, text->len, &open_line);
	if (rv != 0)
		return rv;

	/* fmemopen rejects a zero-length buffer on some glibc versions. */
	static const char empty[] = " ";
	FILE *fp = text->len > 0 ? fmemopen(text->data, text->len, "r")
				 : fmemopen((void *)empty, 1, "r");
	if (fp == NULL) {
		rv = -errno;
		report(ld, 0, "cannot read: %s", strerror(-rv));
		return rv;
	}
	current = ld;
	int rc = cfg_parse_fp(cfg, fp);
	current = NULL;
	fclose(fp);
	if (rc != CFG_SUCCESS) {
		report(ld, cfg->line, "cannot parse this file");
		return -EINVAL;
	}
	if (open_line > 0) {
		report(ld, open_line, "block opened here is never closed (missing '}')");
		return -EINVAL;
	}
	return 0;
}

/* Checks that need the whole file: required keys and relations. */
static int check_complete(struct loader *ld, cfg_t *cfg)
{
	if (cfg_size(cfg, "storage") == 0) {
		report(ld, 0, "missing storage \"raft\" block (with path and node_id)");
		return -EINVAL;
	}
	cfg_t *st = cfg_getnsec(cfg, "storage", 0);
	if (cfg_getstr(st, "path") == NULL) {
		report(ld, 0, "storage \"raft\" block needs path (the data directory)");
		return -EINVAL;
	}
	if (cfg_getstr(st, "node_id") == NULL) {
		report(ld, 0, "storage \"raft\" block needs node_id");
		return -EINVAL;
	}
	if (cfg_getstr(cfg, "cluster_addr") == NULL) {
		report(ld, 0, "cluster_addr is required, e.g. cluster_addr = \"http://127.0.0.1:8201\"");
		return -EINVAL;
	}
	if (cfg_size(cfg, "telemetry") > 0 &&
	    cfg_getstr(cfg_getnsec(cfg, "telemetry", 0), "prometheus_textfile") == NULL) {
		report(ld, 0, "telemetry block needs prometheus_textfile (the file to write)");
		return -EINVAL;
	}
	if (cfg_size(cfg, "snapshot") > 0 &&
	    cfg_getstr(cfg_getnsec(cfg, "snapshot", 0), "path") == NULL) {
		report(ld, 0, "snapshot \"local\" block needs path (the directory to write into)");
		return -EINVAL;
	}
	if (cfg_size(cfg, "audit") > 0 &&
	    cfg_getstr(cfg_getnsec(cfg, "audit", 0), "path") == NULL) {
		report(ld, 0, "audit \"file\" block needs path (the audit log file)");
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg_size(cfg, "retry_join"); i++) {
		if (cfg_getstr(cfg_getnsec(cfg, "retry_join", i), "leader_addr") == NULL) {
			report(ld, 0, "retry_join block %u needs leader_addr (a member's cluster "
				      "address)", i + 1);
			return -EINVAL;
		}
	}
	long election = cfg_getint(st, "election_timeout_ms");
	long heartbeat = cfg_getint(st, "heartbeat_interval_ms");
	if (heartbeat >= election) {
		int line = key_line(ld, "storage", "heartbeat_interval_ms");
		if (line == 0)
			line = key_line(ld, "storage", "election_timeout_ms");
		report(ld, line,
		       "heartbeat_interval_ms (%ld) must be less than election_timeout_ms (%ld)",
		       heartbeat, election);
		return -EINVAL;
	}
	return 0;
}

static int dup_into(char **dst, const char *src)
{
	*dst = strdup(src);
	return *dst != NULL ? 0 : -ENOMEM;
}

static long def(const char *name)
{
	return find_range(name)->def;
}

/* Each retry_join block's leader_addr, normalised, in file order. */
static int extract_retry_join(cfg_t *cfg, struct config *c)
{
	unsigned n = cfg_size(cfg, "retry_join");
	if (n == 0)
		return 0;
	c->retry_join = calloc(n, sizeof(*c->retry_join));
	if (c->retry_join == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		char addr[300];
		const char *why;
		const char *v = cfg_getstr(cfg_getnsec(cfg, "retry_join", i), "leader_addr");
		if (normalize_addr(v, addr, sizeof(addr), &why) != 0)
			return -EINVAL; /* already validated; cannot happen */
		if (dup_into(&c->retry_join[i], addr) != 0)
			return -ENOMEM;
		c->n_retry_join = i + 1;
	}
	return 0;
}

static int extract(cfg_t *cfg, struct config *c)
{
	cfg_t *st = cfg_getnsec(cfg, "storage", 0);
	cfg_t *li = cfg_size(cfg, "listener") > 0 ? cfg_getnsec(cfg, "listener", 0) : NULL;
	const char *sock = li != NULL ? cfg_getstr(li, "path") : NULL;
	char addr[300];
	const char *why;
	if (normalize_addr(cfg_getstr(cfg, "cluster_addr"), addr, sizeof(addr), &why) != 0)
		return -EINVAL; /* already validated; cannot happen */

	if (dup_into(&c->data_dir, cfg_getstr(st, "path")) != 0 ||
	    dup_into(&c->node_id, cfg_getstr(st, "node_id")) != 0 ||
	    dup_into(&c->cluster_addr, addr) != 0 ||
	    dup_into(&c->socket_path, sock != NULL ? sock : VFS_DEFAULT_SOCKET) != 0)
		return -ENOMEM;
	c->disable_mlock = cfg_getbool(cfg, "disable_mlock") == cfg_true;
	c->snapshot_threshold = (unsigned)cfg_getint(st, "snapshot_threshold");
	c->trailing_logs = (unsigned)cfg_getint(st, "trailing_logs");
	c->election_timeout_ms = (unsigned)cfg_getint(st, "election_timeout_ms");
	c->heartbeat_interval_ms = (unsigned)cfg_getint(st, "heartbeat_interval_ms");
	c->request_timeout_ms = (unsigned)cfg_getint(cfg, "request_timeout_ms");
	c->rotation_interval_ms = (uint64_t)cfg_getint(cfg, "rotation_interval") * 1000u;
	if (cfg_size(cfg, "telemetry") > 0) {
		cfg_t *te = cfg_getnsec(cfg, "telemetry", 0);
		if (dup_into(&c->metrics_textfile, cfg_getstr(te, "prometheus_textfile")) != 0)
			return -ENOMEM;
		c->metrics_interval_ms = (unsigned)cfg_getint(te, "interval") * 1000u;
	}
	if (cfg_size(cfg, "snapshot") > 0) {
		cfg_t *sn = cfg_getnsec(cfg, "snapshot", 0);
		if (dup_into(&c->snapshot_dir, cfg_getstr(sn, "path")) != 0)
			return -ENOMEM;
		c->snapshot_interval_ms = (uint64_t)cfg_getint(sn, "interval") * 1000u;
		c->snapshot_retain = (unsigned)cfg_getint(sn, "retain");
	}
	if (cfg_size(cfg, "audit") > 0) {
		cfg_t *au = cfg_getnsec(cfg, "audit", 0);
		if (dup_into(&c->audit_path, cfg_getstr(au, "path")) != 0)
			return -ENOMEM;
		c->audit_fail_closed = cfg_getbool(au, "fail_closed") == cfg_true;
	}
	c->min_quorum = (unsigned)def("min_quorum");
	c->server_stabilization_ms = SERVER_STABILIZATION_DEFAULT_S * 1000u;
	if (cfg_size(cfg, "autopilot") > 0) {
		cfg_t *ap = cfg_getnsec(cfg, "autopilot", 0);
		c->dead_server_cleanup_ms =
			(uint64_t)cfg_getint(ap, "dead_server_cleanup_threshold") * 1000u;
		c->min_quorum = (unsigned)cfg_getint(ap, "min_quorum");
		c->server_stabilization_ms =
			(uint64_t)cfg_getint(ap, "server_stabilization_time") * 1000u;
	}
	return extract_retry_join(cfg, c);
}

int config_load(const char *file, struct config *ret, char *errmsg, size_t errlen)
{
	struct loader ld = { .file = file, .errmsg = errmsg, .errlen = errlen };
	struct config c = { 0 };
	struct buf text;
	int rv;

	if (errlen > 0)
		errmsg[0] = '\0';
	buf_init(&text);
	rv = file_read_all(file, CONFIG_MAX_BYTES, &text);
	if (rv != 0) {
		report(&ld, 0, "cannot read: %s", strerror(-rv));
		buf_free(&text);
		return rv;
	}

	cfg_opt_t storage_opts[] = {
		CFG_STR("path", NULL, CFGF_NONE),
		CFG_STR("node_id", NULL, CFGF_NONE),
		CFG_INT_CB("snapshot_threshold", def("snapshot_threshold"), CFGF_NONE, parse_number),
		CFG_INT_CB("trailing_logs", def("trailing_logs"), CFGF_NONE, parse_number),
		CFG_INT_CB("election_timeout_ms", def("election_timeout_ms"), CFGF_NONE, parse_number),
		CFG_INT_CB("heartbeat_interval_ms", def("heartbeat_interval_ms"), CFGF_NONE,
			   parse_number),
		CFG_END(),
	};
	cfg_opt_t listener_opts[] = {
		CFG_STR("path", NULL, CFGF_NONE),
		CFG_END(),
	};
	cfg_opt_t telemetry_opts[] = {
		CFG_STR("prometheus_textfile", NULL, CFGF_NONE),
		CFG_INT_CB("interval", 15, CFGF_NONE, parse_duration),
		CFG_END(),
	};
	cfg_opt_t retry_join_opts[] = {
		CFG_STR("leader_addr", NULL, CFGF_NONE),
		CFG_END(),
	};
	cfg_opt_t autopilot_opts[] = {
		CFG_INT_CB("dead_server_cleanup_threshold", 0, CFGF_NONE, parse_duration),
		CFG_INT_CB("min_quorum", def("min_quorum"), CFGF_NONE, parse_number),
		CFG_INT_CB("server_stabilization_time", SERVER_STABILIZATION_DEFAULT_S, CFGF_NONE,
			   parse_duration),
		CFG_END(),
	};
	cfg_opt_t snapshot_opts[] = {
		CFG_STR("path", NULL, CFGF_NONE),
		CFG_INT_CB("interval", 3600, CFGF_NONE, parse_duration),
		CFG_INT_CB("retain", def("retain"), CFGF_NONE, parse_number),
		CFG_END(),
	};
	cfg_opt_t audit_opts[] = {
		CFG_STR("path", NULL, CFGF_NONE),
		CFG_BOOL("fail_closed", cfg_true, CFGF_NONE),
		CFG_END(),
	};
	cfg_opt_t opts[] = {
		CFG_SEC("storage", storage_opts, CFGF_TITLE | CFGF_MULTI),
		CFG_SEC("listener", listener_opts, CFGF_TITLE | CFGF_MULTI),
		CFG_SEC("telemetry", telemetry_opts, CFGF_MULTI),
		CFG_SEC("retry_join", retry_join_opts, CFGF_MULTI),
		CFG_SEC("autopilot", autopilot_opts, CFGF_MULTI),
		CFG_SEC("snapshot", snapshot_opts, CFGF_TITLE | CFGF_MULTI),
		CFG_SEC("audit", audit_opts, CFGF_TITLE | CFGF_MULTI),
		CFG_STR("cluster_addr", NULL, CFGF_NONE),
		CFG_BOOL("disable_mlock", cfg_false, CFGF_NONE),
		CFG_INT_CB("request_timeout_ms", def("request_timeout_ms"), CFGF_NONE, parse_number),
		CFG_INT_CB("rotation_interval", 0, CFGF_NONE, parse_duration),
		CFG_END(),
	};
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);
	if (cfg == NULL) {
		report(&ld, 0, "out of memory");
		buf_free(&text);
		return -ENOMEM;
	}
	ld.root = cfg;
	cfg_set_error_function(cfg, on_confuse_error);
	install_validators(cfg);

	rv = parse_text(&ld, cfg, &text);
	if (rv == 0)
		rv = check_complete(&ld, cfg);
	if (rv == 0) {
		rv = extract(cfg, &c);
		if (rv != 0) {
			report(&ld, 0, "out of memory");
			config_free(&c);
		}
	}
	if (rv == 0)
		*ret = c;
	cfg_free(cfg);
	buf_free(&text);
	return rv;
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->data_dir);
	free(c->node_id);
	free(c->cluster_addr);
	free(c->socket_path);
	free(c->metrics_textfile);
	free(c->snapshot_dir);
	c->snapshot_dir = NULL;
	free(c->audit_path);
	c->audit_path = NULL;
	for (unsigned i = 0; i < c->n_retry_join; i++)
		free(c->retry_join[i]);
	free(c->retry_join);
	c->metrics_textfile = NULL;
	c->retry_join = NULL;
	c->n_retry_join = 0;
	c->data_dir = NULL;
	c->node_id = NULL;
	c->cluster_addr = NULL;
	c->socket_path = NULL;
}
