/* The client side of the fault harness (tests/faults/run.sh): threads that
 * operate on a few keys through real vaultfs mounts and record every
 * operation, with its invoke and complete times and its outcome, as a
 * history that lincheck checks for linearizability.
 *
 *   faultclient [options] MOUNT...
 *     --out DIR            history files DIR/hist-<process> (one per thread)
 *     --seed N             seeds every thread's choices (default 1)
 *     --duration SEC       run for SEC seconds (default 10)
 *     --clients N          threads per mount (default 3)
 *     --keys K             keys per epoch (default 5)
 *     --epoch SEC          every SEC seconds the threads move to a fresh set
 *                          of keys, so each key's history stays small enough
 *                          to check (default 60)
 *     --first-process P    number threads from P (default 0)
 *     --final              instead: one thread per mount reads every key of
 *                          every epoch the run went through (--duration and
 *                          --epoch as in the run) once, for the end check
 *   faultclient --clock    prints the time on the histories' clock
 *                          (CLOCK_MONOTONIC) and the wall clock, in ns:
 *                          the harness stamps its fault schedule with it
 *
 * Each key is a register: MOUNT/reg/epoch<epoch>-key<i>. Operations:
 *   read     open(O_RDONLY) + read + close: `r KEY VALUE` or `r KEY -` (ENOENT)
 *   write    one of two atomic ways, chosen at random:
 *            - open(O_WRONLY|O_TRUNC) + write + close on the existing key
 *              (vaultfs commits the new value on close); ENOENT at open is
 *              recorded as a read that found the key absent;
 *            - a temporary file MOUNT/tmp/<process>-<seq> written and
 *              closed, then rename()d over the key: the rename is the
 *              operation (creating the key with O_CREAT would make an empty
 *              value visible first, which is not a register write).
 *   delete   unlink: `d KEY -`; ENOENT is recorded as a read of absent.
 *
 * Outcomes: `ok`; `fail` when the operation certainly did not take effect
 * (it failed before anything that could commit: open() with O_TRUNC only
 * checks the file, a temporary file failing touches no key, EPERM is the
 * leader refusing a removed member); `unknown` when it may have taken effect
 * (close(), rename() or unlink() failed otherwise: the commit may have
 * happened on the leader even though the answer was lost). A failed read is
 * `fail`: it tells nothing about the register. After a failure a thread
 * pauses 50-100 ms, and a delete is only tried on a node that answers a
 * stat() of the key, so a node that cannot serve adds few unknown outcomes
 * (each one the checker must explore both ways).
 *
 * Values are unique: fv-p<process>-s<seq>-<random>, so a write applied twice
 * or a lost write shows up as a history that is not linearizable.
 *
 * Each history starts with `# process P mount M` (M: the mount's last path
 * component), which lincheck shows with an anomaly.
 *
 * History line (see lincheck.c):
 *   <process> <r|w|d> <key> <value|-> <invoke_ns> <complete_ns> <ok|fail|unknown>
 * A line is written and flushed when its operation completes; an operation
 * still running when the client is killed is simply absent (it may have taken
 * effect; lincheck then sees a value nobody wrote: run.sh never kills the
 * client, it stops it with SIGTERM and the threads finish their operation). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VALUE_MAX 64
#define READ_MAX 4096

struct options {
	const char *out_dir;
	uint64_t seed;
	unsigned duration_s;
	unsigned clients;
	unsigned keys;
	unsigned epoch_s;
	unsigned first_process;
	bool final;
	char **mounts;
	unsigned n_mounts;
};

enum outcome { OUT_OK, OUT_FAIL, OUT_UNKNOWN };
static const char *const outcome_names[] = { "ok", "fail", "unknown" };

/* Counts per operation kind and outcome, for the summary line. */
struct tally {
	unsigned long reads[3], writes[3], deletes[3];
};

struct worker {
	pthread_t thread;
	const struct options *opt;
	const char *mount;
	unsigned process;
	uint64_t rng;
	unsigned long seq;
	bool failed; /* the last operation did not succeed: back off */
	FILE *history;
	struct tally tally;
};

static volatile sig_atomic_t stop_requested;
static uint64_t run_start_ns;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough to pick operations. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
	return (unsigned)(rng_next(s) % n);
}

static void record(struct worker *w, char op, const char *key, const char *value,
		   uint64_t invoke, uint64_t complete, enum outcome out)
{
	fprintf(w->history, "%u %c %s %s %" PRIu64 " %" PRIu64 " %s\n", w->process, op, key,
		value, invoke, out == OUT_UNKNOWN ? 0 : complete, outcome_names[out]);
	fflush(w->history);
	w->failed = out != OUT_OK;
	unsigned long *row = op == 'r' ? w->tally.reads : op == 'w' ? w->tally.writes :
					 w->tally.deletes;
	row[out]++;
}

/* Names long enough (13 bytes or more) that the end check's search for
 * them in the data directories cannot match ciphertext by chance: "e3k1"
 * is in 40 MiB of random bytes about once in a hundred names. */
static void key_name(char *buf, size_t n, unsigned epoch, unsigned key)
{
	snprintf(buf, n, "epoch%03u-key%02u", epoch, key);
}

/* ---- the three operations ---- */

static void op_read(struct worker *w, const char *key, const char *path)
{
	char data[READ_MAX + 1];
	uint64_t t0 = now_ns();
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		int err = errno;
		record(w, 'r', key, "-", t0, now_ns(), err == ENOENT ? OUT_OK : OUT_FAIL);
		return;
	}
	ssize_t n = read(fd, data, READ_MAX);
	int close_rv = close(fd);
	uint64_t t1 = now_ns();
	/* Values never contain whitespace; an empty or odd value is recorded
	 * as read, as "<empty>", so lincheck reports it as a value nobody
	 * wrote. */
	if (n < 0 || close_rv < 0) {
		record(w, 'r', key, "-", t0, t1, OUT_FAIL);
		return;
	}
	data[n] = '\0';
	for (ssize_t i = 0; i < n; i++) {
		if (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r')
			data[i] = '_';
	}
	record(w, 'r', key, n == 0 ? "<empty>" : data, t0, t1, OUT_OK);
}

/* The outcome of a commit that failed with ERR. Only a refusal the leader
 * makes before anything reaches the log is certain: EPERM (this node is no
 * longer a member). Anything else (EAGAIN, ETIMEDOUT, ENOTCONN when the daemon
 * died, ENOKEY when it sealed or shut down with the request in flight) may
 * come after the leader committed. */
static enum outcome mutation_failure(int err)
{
	return err == EPERM ? OUT_FAIL : OUT_UNKNOWN;
}

static int write_all(int fd, const char *value)
{
	size_t len = strlen(value);
	ssize_t n = write(fd, value, len);
	return n == (ssize_t)len ? 0 : -1;
}

static void op_write_in_place(struct worker *w, const char *key, const char *path,
			      const char *value)
{
	uint64_t t0 = now_ns();
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0) {
		int err = errno;
		if (err == ENOENT)
			record(w, 'r', key, "-", t0, now_ns(), OUT_OK);
		else
			record(w, 'w', key, value, t0, now_ns(), OUT_FAIL);
		return;
	}
	/* From here the value may be committed on close even if write() or
	 * close() reports an error. */
	int rv = write_all(fd, value);
	if (close(fd) < 0)
		rv = -1;
	record(w, 'w', key, value, t0, now_ns(), rv == 0 ? OUT_OK : OUT_UNKNOWN);
}

static void op_write_by_rename(struct worker *w, const char *key, const char *path,
			       const char *value)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s/tmp/%u-%lu", w->mount, w->process, w->seq);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		uint64_t t = now_ns(); /* no key was touched */
		record(w, 'w', key, value, t, t, OUT_FAIL);
		return;
	}
	int rv = write_all(fd, value);
	if (close(fd) < 0)
		rv = -1;
	if (rv < 0) {
		unlink(tmp);
		uint64_t t = now_ns();
		record(w, 'w', key, value, t, t, OUT_FAIL);
		return;
	}
	uint64_t t0 = now_ns();
	rv = rename(tmp, path);
	uint64_t t1 = now_ns();
	if (rv < 0)
		unlink(tmp); /* if the rename did happen, this finds nothing */
	record(w, 'w', key, value, t0, t1, rv == 0 ? OUT_OK : mutation_failure(errno));
}

static void op_delete(struct worker *w, const char *key, const char *path)
{
	/* Not part of the operation: a node that cannot serve (sealed, no
	 * leader) fails this check at once, so the unlink below is only tried
	 * where it can work and its failures stay rare (each is an unknown
	 * outcome the checker must explore both ways). */
	struct stat st;
	if (stat(path, &st) < 0 && errno != ENOENT) {
		w->failed = true;
		return;
	}
	uint64_t t0 = now_ns();
	int rv = unlink(path);
	uint64_t t1 = now_ns();
	if (rv < 0 && errno == ENOENT)
		record(w, 'r', key, "-", t0, t1, OUT_OK);
	else
		record(w, 'd', key, "-", t0, t1, rv == 0 ? OUT_OK : mutation_failure(errno));
}

/* ---- threads ---- */

static unsigned current_epoch(const struct options *opt)
{
	return (unsigned)((now_ns() - run_start_ns) / 1000000000u / opt->epoch_s);
}

static void one_operation(struct worker *w)
{
	const struct options *opt = w->opt;
	char key[32], path[PATH_MAX], value[VALUE_MAX];
	key_name(key, sizeof key, current_epoch(opt), rng_below(&w->rng, opt->keys));
	snprintf(path, sizeof path, "%s/reg/%s", w->mount, key);
	w->seq++;
	snprintf(value, sizeof value, "fv-p%03u-s%06lu-%016" PRIx64, w->process, w->seq,
		 rng_next(&w->rng));

	unsigned dice = rng_below(&w->rng, 100);
	if (dice < 50)
		op_read(w, key, path);
	else if (dice < 70)
		op_write_in_place(w, key, path, value);
	else if (dice < 90)
		op_write_by_rename(w, key, path, value);
	else
		op_delete(w, key, path);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint64_t deadline = run_start_ns + (uint64_t)w->opt->duration_s * 1000000000u;
	while (!stop_requested && now_ns() < deadline) {
		one_operation(w);
		/* A node that cannot serve fails at once: without a pause the
		 * history would fill with millions of failures. */
		if (w->failed)
			usleep(50000 + rng_below(&w->rng, 50000));
	}
	return NULL;
}

/* --final: every key of every epoch once, in order, on this worker's mount. */
static void *worker_final(void *arg)
{
	struct worker *w = arg;
	const struct options *opt = w->opt;
	unsigned epochs = (opt->duration_s + opt->epoch_s - 1) / opt->epoch_s;
	for (unsigned e = 0; e < epochs; e++) {
		for (unsigned k = 0; k < opt->keys; k++) {
			char key[32], path[PATH_MAX];
			key_name(key, sizeof key, e, k);
			snprintf(path, sizeof path, "%s/reg/%s", w->mount, key);
			op_read(w, key, path);
		}
	}
	return NULL;
}

/* ---- command line ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: faultclient --out DIR [--seed N] [--duration SEC] [--clients N] [--keys K]\n"
		"                   [--epoch SEC] [--first-process P] [--final] MOUNT...\n");
	exit(2);
}

static unsigned long parse_number(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0') {
		fprintf(stderr, "faultclient: %s: not a number: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .seed = 1, .duration_s = 10, .clients = 3, .keys = 5,
			       .epoch_s = 60 };
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--final") == 0) {
			o->final = true;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (strcmp(a, "--out") == 0)
			o->out_dir = v;
		else if (strcmp(a, "--seed") == 0)
			o->seed = parse_number(v, a);
		else if (strcmp(a, "--duration") == 0)
			o->duration_s = (unsigned)parse_number(v, a);
		else if (strcmp(a, "--clients") == 0)
			o->clients = (unsigned)parse_number(v, a);
		else if (strcmp(a, "--keys") == 0)
			o->keys = (unsigned)parse_number(v, a);
		else if (strcmp(a, "--epoch") == 0)
			o->epoch_s = (unsigned)parse_number(v, a);
		else if (strcmp(a, "--first-process") == 0)
			o->first_process = (unsigned)parse_number(v, a);
		else
			usage();
	}
	o->mounts = argv + i;
	o->n_mounts = (unsigned)(argc - i);
	if (o->out_dir == NULL || o->n_mounts == 0 || o->clients == 0 || o->keys == 0 ||
	    o->epoch_s == 0 || o->duration_s == 0)
		usage();
}

static int worker_open(struct worker *w, const struct options *o, unsigned index)
{
	char path[PATH_MAX];
	w->opt = o;
	w->process = o->first_process + index;
	w->mount = o->mounts[o->final ? index : index % o->n_mounts];
	w->rng = o->seed * 1000003u + w->process;
	snprintf(path, sizeof path, "%s/hist-%u", o->out_dir, w->process);
	w->history = fopen(path, "w");
	if (w->history == NULL) {
		fprintf(stderr, "faultclient: %s: %s\n", path, strerror(errno));
		return -1;
	}
	const char *slash = strrchr(w->mount, '/');
	fprintf(w->history, "# process %u mount %s\n", w->process,
		slash != NULL && slash[1] != '\0' ? slash + 1 : w->mount);
	return 0;
}

static void tally_add(struct tally *sum, const struct tally *t)
{
	for (int i = 0; i < 3; i++) {
		sum->reads[i] += t->reads[i];
		sum->writes[i] += t->writes[i];
		sum->deletes[i] += t->deletes[i];
	}
}

static void print_summary(const struct tally *t)
{
	printf("faultclient: reads ok %lu fail %lu; writes ok %lu fail %lu unknown %lu; "
	       "deletes ok %lu unknown %lu\n",
	       t->reads[OUT_OK], t->reads[OUT_FAIL], t->writes[OUT_OK], t->writes[OUT_FAIL],
	       t->writes[OUT_UNKNOWN], t->deletes[OUT_OK], t->deletes[OUT_UNKNOWN]);
}

/* --clock: both clocks, for lining up the harness's records. */
static int print_clock(void)
{
	struct timespec real;
	uint64_t mono = now_ns();
	clock_gettime(CLOCK_REALTIME, &real);
	printf("%" PRIu64 " %" PRIu64 "\n", mono,
	       (uint64_t)real.tv_sec * 1000000000u + (uint64_t)real.tv_nsec);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	if (argc == 2 && strcmp(argv[1], "--clock") == 0)
		return print_clock();
	parse_options(argc, argv, &o);
	signal(SIGTERM, on_stop_signal);
	signal(SIGINT, on_stop_signal);
	run_start_ns = now_ns();

	unsigned n = o.final ? o.n_mounts : o.n_mounts * o.clients;
	struct worker *workers = calloc(n, sizeof *workers);
	if (workers == NULL)
		return 1;
	unsigned started = 0;
	int rc = 0;
	for (; started < n; started++) {
		struct worker *w = &workers[started];
		if (worker_open(w, &o, started) < 0 ||
		    pthread_create(&w->thread, NULL, o.final ? worker_final : worker_run, w) != 0) {
			if (w->history != NULL)
				fclose(w->history);
			stop_requested = 1;
			rc = 1;
			break;
		}
	}
	struct tally sum = { 0 };
	for (unsigned i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		fclose(workers[i].history);
		tally_add(&sum, &workers[i].tally);
	}
	free(workers);
	print_summary(&sum);
	return rc;
}
