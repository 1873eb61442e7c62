#include "raft/zeroheap.h"

#include <malloc.h>
#include <raft.h>
#include <stdlib.h>
#include <string.h>

static void *zero_malloc(void *data, size_t size)
{
	(void)data;
	return calloc(1, size);
}

static void zero_free(void *data, void *ptr)
{
	(void)data;
	free(ptr);
}

static void *zero_calloc(void *data, size_t nmemb, size_t size)
{
	(void)data;
	return calloc(nmemb, size);
}

/* The grown part of a block is zeroed too. */
static void *zero_realloc(void *data, void *ptr, size_t size)
{
	(void)data;
	size_t old = ptr != NULL ? malloc_usable_size(ptr) : 0;
	void *p = realloc(ptr, size);
	if (p != NULL && size > old)
		memset((char *)p + old, 0, size - old);
	return p;
}

static void *zero_aligned_alloc(void *data, size_t alignment, size_t size)
{
	(void)data;
	/* aligned_alloc wants a size that is a multiple of the alignment. */
	size_t rounded = (size + alignment - 1) / alignment * alignment;
	void *p = aligned_alloc(alignment, rounded);
	if (p != NULL)
		memset(p, 0, rounded);
	return p;
}

static void zero_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)data;
	(void)alignment;
	free(ptr);
}

void zeroheap_install(void)
{
	static struct raft_heap heap = {
		.malloc = zero_malloc,
		.free = zero_free,
		.calloc = zero_calloc,
		.realloc = zero_realloc,
		.aligned_alloc = zero_aligned_alloc,
		.aligned_free = zero_aligned_free,
	};
	raft_heap_set(&heap);
}
