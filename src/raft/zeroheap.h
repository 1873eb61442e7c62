/* libraft's allocator in vaultfs: every block it hands out is zero-filled.
 *
 * libraft 0.15 leaves bytes it never writes (the alignment padding of an
 * encoded configuration) uninitialised. With the plain allocator those bytes
 * are whatever the heap held before, possibly plaintext or key material, and
 * they are written to raft.db and sent to peers. Install once, before any
 * other libraft call. */
#ifndef VAULTFS_RAFT_ZEROHEAP_H
#define VAULTFS_RAFT_ZEROHEAP_H

void zeroheap_install(void);

#endif
