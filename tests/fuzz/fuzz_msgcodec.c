/* msgcodec_decode: a peer's raft message, after the channel opened it.
 * Invariant: the encoding is canonical, so a decoded message re-encodes to
 * exactly the input, and that decodes and re-encodes to the same bytes. */
#include <string.h>

#include "fuzz_common.h"
#include "raft/msgcodec.h"

static void seed(const char *dir, const char *name, const struct raft_message *m)
{
	struct buf b;
	buf_init(&b);
	FUZZ_CHECK(msgcodec_encode(m, &b) == 0);
	fuzz_write_seed(dir, name, b.data, b.len);
	buf_free(&b);
}

static void write_seeds(const char *dir)
{
	struct raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_REQUEST_VOTE;
	m.request_vote = (struct raft_request_vote){ .term = 3, .candidate_id = 2,
		.last_log_index = 10, .last_log_term = 2, .disrupt_leader = true, .pre_vote = true };
	seed(dir, "request_vote", &m);

	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_REQUEST_VOTE_RESULT;
	m.request_vote_result = (struct raft_request_vote_result){ .term = 3, .vote_granted = true,
		.pre_vote = raft_tribool_true };
	seed(dir, "request_vote_result", &m);

	static uint8_t p1[] = "\x02\x03some command bytes";
	static uint8_t p2[] = "configuration";
	struct raft_entry entries[3];
	memset(entries, 0, sizeof(entries));
	entries[0] = (struct raft_entry){ .term = 2, .type = RAFT_COMMAND,
		.buf = { .base = p1, .len = sizeof(p1) - 1 } };
	entries[1] = (struct raft_entry){ .term = 2, .type = RAFT_BARRIER,
		.buf = { .base = NULL, .len = 0 } };
	entries[2] = (struct raft_entry){ .term = 3, .type = RAFT_CHANGE,
		.buf = { .base = p2, .len = sizeof(p2) - 1 } };
	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_APPEND_ENTRIES;
	m.append_entries = (struct raft_append_entries){ .term = 3, .prev_log_index = 9,
		.prev_log_term = 2, .leader_commit = 8, .entries = entries, .n_entries = 3 };
	seed(dir, "append_entries", &m);
	m.append_entries.entries = NULL;
	m.append_entries.n_entries = 0;
	seed(dir, "append_entries_heartbeat", &m);

	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
	m.append_entries_result = (struct raft_append_entries_result){ .term = 3, .rejected = 0,
		.last_log_index = 12 };
	seed(dir, "append_entries_result", &m);

	static uint8_t snap[] = "snapshot data";
	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_INSTALL_SNAPSHOT;
	m.install_snapshot.term = 4;
	m.install_snapshot.last_index = 100;
	m.install_snapshot.last_term = 3;
	m.install_snapshot.conf_index = 1;
	raft_configuration_init(&m.install_snapshot.conf);
	FUZZ_CHECK(raft_configuration_add(&m.install_snapshot.conf, 1, "127.0.0.1:8201", RAFT_VOTER) == 0);
	FUZZ_CHECK(raft_configuration_add(&m.install_snapshot.conf, 2, "127.0.0.1:8202", RAFT_STANDBY) == 0);
	FUZZ_CHECK(raft_configuration_add(&m.install_snapshot.conf, 3, "127.0.0.1:8203", RAFT_SPARE) == 0);
	m.install_snapshot.data.base = snap;
	m.install_snapshot.data.len = sizeof(snap) - 1;
	seed(dir, "install_snapshot", &m);
	raft_configuration_close(&m.install_snapshot.conf);

	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_TIMEOUT_NOW;
	m.timeout_now = (struct raft_timeout_now){ .term = 5, .last_log_index = 20, .last_log_term = 4 };
	seed(dir, "timeout_now", &m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct raft_message m, m2;
	struct buf e1, e2;

	if (msgcodec_decode(data, size, &m) != 0)
		return 0;
	FUZZ_CHECK(m.server_id == 0 && m.server_address == NULL);

	buf_init(&e1);
	buf_init(&e2);
	FUZZ_CHECK(msgcodec_encode(&m, &e1) == 0);
	FUZZ_CHECK(e1.len == size && memcmp(e1.data, data, size) == 0);
	FUZZ_CHECK(msgcodec_decode(e1.data, e1.len, &m2) == 0);
	FUZZ_CHECK(m2.type == m.type);
	FUZZ_CHECK(msgcodec_encode(&m2, &e2) == 0);
	FUZZ_CHECK(e2.len == e1.len && memcmp(e2.data, e1.data, e1.len) == 0);

	msgcodec_release(&m2);
	msgcodec_release(&m);
	buf_free(&e2);
	buf_free(&e1);
	return 0;
}
