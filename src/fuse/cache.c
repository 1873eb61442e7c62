/* Kernel cache coherence, the mount side: see cache.h. */
#include "fuse/cache.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuse/held.h"
#include "fuse/lookups.h"
#include "fuse/names.h"
#include "lib/log.h"
#include "lib/monoclock.h"
#include "vaultfs/client.h"

/* Taken off every grant: the kernel rounds a ttl up to whole jiffies (up
 * to 10 ms at HZ=100) and the answer spends time on its way. */
#define CACHE_MARGIN_NS 20000000u
/* A notice is read with this timeout so that cache_stop is noticed. */
#define CACHE_POLL_MS 200u
/* Between sweeps of what the mount holds (it is also wiped when dropped). */
#define CACHE_SWEEP_NS 50000000u
/* Between attempts to watch again after the daemon went away. */
#define CACHE_RETRY_NS 200000000u
/* How long an answer with a grant waits for its notice to be acted on. */
#define CACHE_WAIT_NOTICE_NS 50000000u
/* FUSE_NOTIFY_INC_EPOCH (linux/fuse.h 7.44): every cached name becomes
 * invalid; Debian 12's headers predate it. */
#define CACHE_NOTIFY_INC_EPOCH 8

struct cache {
	struct fuse_session *se;
	char *socket_path;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool stop;
	bool names;          /* the kernel supports INC_EPOCH */
	bool watching;       /* notices arrive: answers may be cached */
	uint64_t watch;      /* watches begun so far */
	uint64_t start;      /* seq at which this watch began */
	uint64_t processed;  /* seq of the last notice acted on */
	uint64_t granted_ns; /* the latest deadline handed to the kernel */
	uint64_t run;        /* runs of grants begun (cache.h: runs) */
	uint64_t names_dropped; /* seq of the last notice that dropped names */
	struct held *held;   /* answers the mount holds itself */
	struct names *listed; /* and names from listings (dropped with names) */
	struct lookups *lookups; /* inodes handed to the kernel */
	uint64_t swept_ns;   /* the watch thread's last sweep */
};

static struct timespec abs_after_ns(uint64_t ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t t = (uint64_t)ts.tv_nsec + ns;
	ts.tv_sec += (time_t)(t / 1000000000u);
	ts.tv_nsec = (long)(t % 1000000000u);
	return ts;
}

/* Every name the kernel cached for this mount becomes invalid. */
static void drop_all_names(struct cache *c)
{
	struct {
		uint32_t len;
		int32_t error;
		uint64_t unique;
	} hdr = { sizeof(hdr), CACHE_NOTIFY_INC_EPOCH, 0 };
	if (write(fuse_session_fd(c->se), &hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
		log_warn("mount: cannot drop the kernel's cached names: %s", strerror(errno));
}

/* For assert(): someone holds C's lock (a mutex this thread holds is busy
 * to it too). Acquires it if not, but then the assertion fails anyway. */
static bool cache_locked(const struct cache *c)
{
	return pthread_mutex_trylock((pthread_mutex_t *)&c->lock) == EBUSY;
}

/* Waits (lock held) until every deadline handed out so far has passed:
 * what the kernel cached is then gone by itself. */
static void outlive_grants(struct cache *c)
{
	assert(cache_locked(c));
	while (!c->stop && monoclock_ns() < c->granted_ns) {
		struct timespec until = abs_after_ns(c->granted_ns - monoclock_ns());
		pthread_cond_timedwait(&c->changed, &c->lock, &until);
	}
}

/* Drops INO's attributes in the kernel. True if the kernel does not hold
 * INO although the mount handed it out: a reply with its attributes may be
 * on its way (cache.h). */
static bool drop_attributes(struct cache *c, uint64_t ino)
{
	int r = fuse_lowlevel_notify_inval_inode(c->se, ino, -1, 0);
	if (r < 0 && r != -ENOENT) /* ENOENT: the kernel did not know it */
		log_warn("mount: cannot drop cached attributes of inode %llu: %s",
			 (unsigned long long)ino, strerror(-r));
	if (r != -ENOENT)
		return false;
	pthread_mutex_lock(&c->lock);
	bool given = lookups_held(c->lookups, ino);
	pthread_mutex_unlock(&c->lock);
	return given;
}

/* Whether the run of grants is alive at NOW_NS (lock held): what the mount
 * holds of attributes and names is good while it is. */
static bool run_alive(const struct cache *c, uint64_t now_ns)
{
	assert(cache_locked(c));
	return c->watching && now_ns + CACHE_MARGIN_NS < c->granted_ns;
}

/* The run of grants ended (lock held): the daemon may have skipped notices
 * since (cache.h), so what was held under it is forgotten, and answers
 * admitted under it are not held any more. */
static void end_run(struct cache *c)
{
	assert(cache_locked(c));
	held_forget_attrs(c->held);
	names_clear(c->listed);
	c->run++;
}

/* Holds (lock held) the attributes NOTICE brings of inodes the kernel
 * holds, so that its GETATTR after the drop is answered here: they are the
 * state at the notice's seq, and any later change of them drops them as
 * this notice did. They are good while a grant the daemon gave this mount
 * is: until then it sends this mount every notice and waits for its
 * acknowledgement before it answers a write (coherence.h), exactly as for
 * an answer held under that grant. */
static void hold_notice_attrs(struct cache *c, const struct vfs_notice *notice)
{
	assert(cache_locked(c));
	if (!run_alive(c, monoclock_ns()))
		return;
	for (uint32_t i = 0; i < notice->n; i++) {
		const struct vfs_attr *a = &notice->attrs[i];
		if (a->ino != 0 && lookups_held(c->lookups, a->ino))
			held_put_attr(c->held, notice->index, a);
	}
}

static void act_on(struct cache *c, const struct vfs_notice *notice)
{
	bool all = (notice->flags & VFS_NOTICE_ALL) != 0;
	pthread_mutex_lock(&c->lock);
	bool names = c->names;
	if (all)
		held_drop_all(c->held, notice->index);
	if (notice->flags & (VFS_NOTICE_NAMES | VFS_NOTICE_ALL)) {
		c->names_dropped = notice->index;
		names_clear(c->listed); /* before the ack: see cache.h */
	}
	for (uint32_t i = 0; i < notice->n; i++)
		held_drop(c->held, notice->inos[i], notice->index);
	pthread_mutex_unlock(&c->lock);
	bool drop_names = names && (notice->flags & (VFS_NOTICE_NAMES | VFS_NOTICE_ALL));
	if (drop_names)
		drop_all_names(c);
	bool in_flight = false;
	for (uint32_t i = 0; i < notice->n; i++)
		in_flight |= drop_attributes(c, notice->inos[i]);
	if (names && in_flight && !drop_names)
		drop_all_names(c);
	pthread_mutex_lock(&c->lock);
	if (all)
		outlive_grants(c); /* attributes cannot all be dropped at once */
	if (notice->attrs != NULL)
		hold_notice_attrs(c, notice);
	c->processed = notice->index;
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
}

/* Values that were dropped or whose grants ended leave the mount's memory:
 * no secret stays around much longer than it is used. */
static void sweep(struct cache *c)
{
	uint64_t now = monoclock_ns();
	if (now < c->swept_ns + CACHE_SWEEP_NS)
		return;
	c->swept_ns = now;
	pthread_mutex_lock(&c->lock);
	held_sweep(c->held, now);
	if (!run_alive(c, now))
		end_run(c); /* frees the memory now rather than at the next grant */
	pthread_mutex_unlock(&c->lock);
}

/* Reads notices until the connection fails or the cache stops. */
static void watch_session(struct cache *c, struct vfs_watch *w)
{
	for (;;) {
		struct vfs_notice notice;
		int r = vfs_watch_next(w, CACHE_POLL_MS, &notice);
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		sweep(c);
		if (stop || (r < 0 && r != -ETIMEDOUT)) {
			if (r == 0)
				vfs_notice_free(&notice);
			return;
		}
		if (r == -ETIMEDOUT)
			continue;
		act_on(c, &notice);
		vfs_notice_free(&notice);
		if (vfs_watch_ack(w, c->processed) < 0)
			return;
	}
}

static void set_watching(struct cache *c, bool watching, uint64_t start)
{
	pthread_mutex_lock(&c->lock);
	c->watching = watching;
	names_clear(c->listed); /* their seqs are the last watch's */
	if (watching) {
		c->watch++; /* answers of an earlier watch are not held (may_hold) */
		c->start = c->processed = start;
		c->names_dropped = 0;
	} else {
		/* Nothing is held between watches, and the next one numbers its
		 * seqs from its own start. */
		held_reset(c->held);
	}
	c->run++;
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
}

static void *watch_thread(void *arg)
{
	struct cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		pthread_mutex_unlock(&c->lock);
		char errmsg[512];
		struct vfs_watch *w = NULL;
		uint64_t start = 0;
		if (vfs_watch_open(&w, c->socket_path, &start, errmsg, sizeof(errmsg)) == 0) {
			set_watching(c, true, start);
			watch_session(c, w);
			set_watching(c, false, 0);
			vfs_watch_close(w);
		}
		pthread_mutex_lock(&c->lock);
		if (!c->stop) {
			struct timespec until = abs_after_ns(CACHE_RETRY_NS);
			pthread_cond_timedwait(&c->changed, &c->lock, &until);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Frees C's tables and C (the thread and its lock are gone). */
static void cache_free(struct cache *c)
{
	held_free(c->held);
	names_free(c->listed);
	lookups_free(c->lookups);
	free(c->socket_path);
	free(c);
}

int cache_start(struct cache **ret, struct fuse_session *se, const char *socket_path)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	if ((c->socket_path = strdup(socket_path)) == NULL || (c->held = held_new()) == NULL ||
	    (c->listed = names_new()) == NULL || (c->lookups = lookups_new()) == NULL) {
		cache_free(c);
		return -ENOMEM;
	}
	c->se = se;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->changed, &ca);
	pthread_condattr_destroy(&ca);
	int r = pthread_create(&c->thread, NULL, watch_thread, c);
	if (r != 0) {
		pthread_cond_destroy(&c->changed);
		pthread_mutex_destroy(&c->lock);
		cache_free(c);
		return -r;
	}
	*ret = c;
	return 0;
}

void cache_stop(struct cache *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->changed);
	pthread_mutex_destroy(&c->lock);
	cache_free(c);
}

bool cache_given(struct cache *c, uint64_t ino, const struct cache_ttl *ttl)
{
	if (c == NULL)
		return true; /* nothing is cached: every ttl is 0 */
	pthread_mutex_lock(&c->lock);
	(void)lookups_add(c->lookups, ino); /* when it fails, every inode counts */
	bool unchanged = ttl->watch == c->watch && held_unchanged(c->held, ino, ttl->state);
	pthread_mutex_unlock(&c->lock);
	return unchanged;
}

void cache_forgotten(struct cache *c, uint64_t ino, uint64_t n)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	lookups_forget(c->lookups, ino, n);
	pthread_mutex_unlock(&c->lock);
}

void cache_not_given(struct cache *c, uint64_t ino)
{
	cache_forgotten(c, ino, 1);
}

void cache_set_names(struct cache *c, bool names)
{
	pthread_mutex_lock(&c->lock);
	c->names = names;
	pthread_mutex_unlock(&c->lock);
}

/* Waits (lock held) until the answer stamped STATE may reach the kernel:
 * while the kernel may hold an entry, an answer must not overtake the
 * notices that make that entry stale; without a watch, every entry must
 * expire first. An answer with a grant also waits (briefly) for its notice,
 * so that it can be cached. */
static void wait_admissible(struct cache *c, const struct vfs_resp_meta *meta)
{
	assert(cache_locked(c));
	uint64_t give_up = monoclock_ns() + CACHE_WAIT_NOTICE_NS;
	while (!c->stop) {
		uint64_t now = monoclock_ns(), until;
		bool alive = now < c->granted_ns;
		if (!c->watching) {
			if (!alive)
				return;
			until = c->granted_ns;
		} else if (c->processed >= meta->state_index) {
			return;
		} else if (alive) {
			until = c->granted_ns;
		} else if (meta->cache_until_ns != 0 && now < give_up) {
			until = give_up;
		} else {
			return;
		}
		struct timespec ts = abs_after_ns(until - now);
		pthread_cond_timedwait(&c->changed, &c->lock, &ts);
	}
}

/* The ttls for a grant until UNTIL_NS, seen at NOW_NS (lock held). */
static struct cache_ttl ttl_until(const struct cache *c, uint64_t until_ns, uint64_t now_ns,
				  uint64_t state)
{
	assert(cache_locked(c));
	struct cache_ttl ttl = { 0, 0, c->watch, c->run, state, until_ns, now_ns };
	ttl.attr = (double)(until_ns - now_ns - CACHE_MARGIN_NS) / 1e9;
	ttl.entry = c->names ? ttl.attr : 0;
	return ttl;
}

double cache_ttl_left(const struct cache_ttl *ttl, double ttl_s)
{
	if (ttl_s <= 0)
		return 0;
	double spent = (double)(monoclock_ns() - ttl->given_ns) / 1e9;
	return ttl_s > spent ? ttl_s - spent : 0;
}

struct cache_ttl cache_admit(struct cache *c, const struct vfs_resp_meta *meta)
{
	struct cache_ttl ttl = { 0, 0, 0, 0, 0, 0, 0 };
	if (c == NULL)
		return ttl;
	pthread_mutex_lock(&c->lock);
	wait_admissible(c, meta);
	uint64_t now = monoclock_ns();
	/* An answer read before this watch began may have missed notices. */
	if (c->watching && c->processed >= meta->state_index && meta->state_index >= c->start &&
	    meta->cache_until_ns > now + CACHE_MARGIN_NS) {
		if (!run_alive(c, now))
			end_run(c);
		if (meta->cache_until_ns > c->granted_ns)
			c->granted_ns = meta->cache_until_ns;
		ttl = ttl_until(c, meta->cache_until_ns, now, meta->state_index);
	}
	pthread_mutex_unlock(&c->lock);
	return ttl;
}

/* Whether an answer admitted with TTL may be held now (lock held): its
 * seqs must belong to this watch, and it must have come in this run. */
static bool may_hold(const struct cache *c, const struct cache_ttl *ttl)
{
	assert(cache_locked(c));
	return c->watching && ttl->until_ns != 0 && ttl->watch == c->watch && ttl->run == c->run;
}

void cache_hold_attr(struct cache *c, const struct cache_ttl *ttl, const struct vfs_attr *a)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	if (may_hold(c, ttl))
		held_put_attr(c->held, ttl->state, a);
	pthread_mutex_unlock(&c->lock);
}

void cache_hold_value(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      const uint8_t *data, size_t len)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	if (may_hold(c, ttl))
		held_put_value(c->held, ttl->state, ttl->until_ns, ino, data, len);
	pthread_mutex_unlock(&c->lock);
}

bool cache_entry_give(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      struct cache_ttl *ret_now)
{
	if (c == NULL)
		return false;
	pthread_mutex_lock(&c->lock);
	uint64_t now = monoclock_ns();
	bool good = may_hold(c, ttl) && ttl->until_ns > now + CACHE_MARGIN_NS &&
		    ttl->state >= c->names_dropped && held_unchanged(c->held, ino, ttl->state);
	if (good) {
		*ret_now = ttl_until(c, ttl->until_ns, now, ttl->state);
		ret_now->entry = 0; /* never a name: see cache.h */
		(void)lookups_add(c->lookups, ino); /* when it fails, every inode counts */
	}
	pthread_mutex_unlock(&c->lock);
	return good;
}

void cache_hold_name(struct cache *c, const struct cache_ttl *ttl, uint64_t dir,
		     const char *name, const struct vfs_attr *a)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	/* A page read before a notice that dropped names may list a name
	 * that is gone (the notice emptied the table before this came). */
	if (may_hold(c, ttl) && ttl->state >= c->names_dropped) {
		names_put(c->listed, dir, name, ttl->state, a);
		held_put_attr(c->held, ttl->state, a);
	}
	pthread_mutex_unlock(&c->lock);
}

bool cache_held_name(struct cache *c, uint64_t dir, const char *name, struct vfs_attr *ret,
		     struct cache_ttl *ret_ttl)
{
	if (c == NULL)
		return false;
	pthread_mutex_lock(&c->lock);
	uint64_t now = monoclock_ns(), state = 0;
	bool found = run_alive(c, now) && names_get(c->listed, dir, name, ret, &state) &&
		     state >= c->names_dropped;
	/* The inode's attributes as held now, if they are; else the name's
	 * own, if nothing was dropped about the inode since. */
	if (found && held_attr(c->held, ret->ino, ret))
		state = c->processed;
	else if (found)
		found = held_unchanged(c->held, ret->ino, state);
	if (found) {
		*ret_ttl = ttl_until(c, c->granted_ns, now, state);
		ret_ttl->until_ns = 0; /* held already */
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

bool cache_held_attr(struct cache *c, uint64_t ino, struct vfs_attr *ret,
		     struct cache_ttl *ret_ttl)
{
	if (c == NULL)
		return false;
	pthread_mutex_lock(&c->lock);
	uint64_t now = monoclock_ns();
	bool found = run_alive(c, now) && held_attr(c->held, ino, ret);
	if (found) {
		*ret_ttl = ttl_until(c, c->granted_ns, now, c->processed);
		ret_ttl->until_ns = 0; /* held already */
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

int cache_held_value(struct cache *c, uint64_t ino,
		     int (*load)(void *arg, const uint8_t *data, size_t len), void *arg)
{
	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	const uint8_t *data;
	size_t len;
	int r = 0;
	if (held_value(c->held, ino, monoclock_ns() + CACHE_MARGIN_NS, &data, &len)) {
		r = load(arg, data, len);
		if (r == 0)
			r = 1;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}
