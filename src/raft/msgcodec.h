/* Wire encoding of libraft's struct raft_message (the plaintext inside a
 * cluster channel frame). Strict: a decoder for input from the network. */
#ifndef VAULTFS_RAFT_MSGCODEC_H
#define VAULTFS_RAFT_MSGCODEC_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Appends the encoding of M (all six message types; server_id and
 * server_address are the sender's) to OUT. Returns 0, -EINVAL (unknown
 * type) or -ENOMEM. */
int msgcodec_encode(const struct raft_message *m, struct buf *out);

/* Decodes a message. Memory is allocated the way libraft frees received
 * messages: APPEND_ENTRIES gets a raft_malloc'd entries array whose entries
 * all point into one raft_malloc'd batch (entries[0].batch); INSTALL_SNAPSHOT
 * gets its configuration via raft_configuration_add and a raft_malloc'd data
 * buffer; SERVER_ADDRESS is set to NULL (the transport fills it in from the
 * authenticated connection). Returns 0 or -EBADMSG (unknown type, short,
 * trailing bytes, counts or lengths out of range) with nothing allocated.
 * msgcodec_release frees what a successful decode allocated, for messages
 * that are never handed to libraft. */
int msgcodec_decode(const uint8_t *data, size_t len, struct raft_message *m);
void msgcodec_release(struct raft_message *m);

#endif
