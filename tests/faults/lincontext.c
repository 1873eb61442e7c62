/* The context of an anomaly for lincheck: see lincontext.h. */
#include "lincontext.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct process_mount {
	uint64_t process;
	char *mount;
};

struct fault {
	uint64_t mono_ns;
	uint64_t real_ns;
	char *text;
};

static struct process_mount *mounts;
static size_t n_mounts;
static struct fault *faults;
static size_t n_faults;

bool lincontext_note_line(const char *line)
{
	uint64_t p;
	char mount[256];
	if (sscanf(line, " # process %" SCNu64 " mount %255s", &p, mount) != 2)
		return false;
	struct process_mount *m = realloc(mounts, (n_mounts + 1) * sizeof *m);
	if (m == NULL)
		return false;
	mounts = m;
	mounts[n_mounts].process = p;
	mounts[n_mounts].mount = strdup(mount);
	if (mounts[n_mounts].mount != NULL)
		n_mounts++;
	return true;
}

const char *lincontext_mount_of(uint64_t process)
{
	for (size_t i = n_mounts; i-- > 0;)
		if (mounts[i].process == process)
			return mounts[i].mount;
	return NULL;
}

static int add_fault(uint64_t mono, uint64_t real, const char *text)
{
	struct fault *f = realloc(faults, (n_faults + 1) * sizeof *f);
	if (f == NULL)
		return -ENOMEM;
	faults = f;
	char *copy = strdup(text);
	if (copy == NULL)
		return -ENOMEM;
	copy[strcspn(copy, "\n")] = '\0';
	faults[n_faults++] = (struct fault){ mono, real, copy };
	return 0;
}

int lincontext_load_faults(const char *path)
{
	FILE *in = fopen(path, "r");
	if (in == NULL) {
		fprintf(stderr, "lincheck: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	unsigned long lineno = 0;
	int r = 0;
	while (r == 0 && getline(&line, &cap, in) >= 0) {
		uint64_t mono, real;
		int text_at = 0;
		lineno++;
		if (sscanf(line, "%" SCNu64 " %" SCNu64 " %n", &mono, &real, &text_at) != 2 ||
		    text_at == 0) {
			fprintf(stderr, "lincheck: %s:%lu: not `MONOTONIC_NS REALTIME_NS TEXT`\n", path,
				lineno);
			r = -1;
		} else if (add_fault(mono, real, line + text_at) < 0) {
			fprintf(stderr, "lincheck: out of memory\n");
			r = -1;
		}
	}
	free(line);
	fclose(in);
	return r;
}

/* AT_NS on the wall clock, from the fault recorded nearest to it. */
static bool wall_clock_of(uint64_t at_ns, char *out, size_t size)
{
	const struct fault *near = NULL;
	uint64_t best = UINT64_MAX;
	for (size_t i = 0; i < n_faults; i++) {
		uint64_t d = faults[i].mono_ns > at_ns ? faults[i].mono_ns - at_ns :
							 at_ns - faults[i].mono_ns;
		if (d < best) {
			best = d;
			near = &faults[i];
		}
	}
	if (near == NULL)
		return false;
	uint64_t real = near->real_ns + at_ns - near->mono_ns;
	time_t s = (time_t)(real / 1000000000u);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, size - n, ".%03uZ", (unsigned)(real / 1000000u % 1000u));
	return true;
}

void lincontext_print_faults(FILE *out, uint64_t at_ns)
{
	char wall[64];
	if (!wall_clock_of(at_ns, wall, sizeof wall))
		return;
	fprintf(out, "  at %s (wall clock, as in the daemons' logs); faults within %u s:\n", wall,
		(unsigned)(LINCONTEXT_WINDOW_NS / 1000000000u));
	size_t shown = 0;
	for (size_t i = 0; i < n_faults; i++) {
		const struct fault *f = &faults[i];
		if (f->mono_ns + LINCONTEXT_WINDOW_NS < at_ns || f->mono_ns > at_ns + LINCONTEXT_WINDOW_NS)
			continue;
		double rel = ((double)f->mono_ns - (double)at_ns) / 1e9;
		fprintf(out, "    %+8.3f s  %s\n", rel, f->text);
		shown++;
	}
	if (shown == 0)
		fprintf(out, "    (none)\n");
}

void lincontext_free(void)
{
	for (size_t i = 0; i < n_mounts; i++)
		free(mounts[i].mount);
	for (size_t i = 0; i < n_faults; i++)
		free(faults[i].text);
	free(mounts);
	free(faults);
	mounts = NULL;
	faults = NULL;
	n_mounts = n_faults = 0;
}
