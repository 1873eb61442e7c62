#!/usr/bin/env python3
r"""The report of tests/bench/bench.sh: its tables and its JSON file.

  tests/bench/report.py [--strict] RAW JSON   print the tables, write JSON
  tests/bench/report.py --selftest            report on a canned raw file and
                                              compare with the expected output

bench.sh runs the clusters and the load; as it goes it appends what it
measured to RAW (bench-raw.tsv next to bench.json), and at the end it runs
this script, which prints the markdown tables to stdout, writes every figure
to JSON, and lists what did not work. Exit status: 0, or 1 with --strict if
something did not work (a problem record, or JSON could not be written).

RAW holds one record a line: KIND, then FIELD=VALUE fields, tab-separated;
in a value, a backslash, tab or newline is written \\, \t, \n. "out" is
what loadgen printed (its figures are read from it here). The kinds:

  run        the settings, before the first cell: mode (short|full),
             date_start, loadavg_start, build, seconds_per_cell, maxops,
             failovers, scale_dirs, scale_files_per_dir, scale_threads,
             stability_seconds, stability_clients, election_ms,
             heartbeat_ms, demo (BENCH_DEMO), demo_log, upcall_ops,
             upcall_opcodes (space-separated), many_files, many_dirs,
             clk_tck, traverse_runs, mixed_clients, mixed_write_pct,
             cells (the cells run, space-separated)
  cpu        before the cell record of a cell whose processes' CPU time
             loadgen measured (its out then holds cpu_us_ROLE=U for each
             and cpu_us_machine): name, procs ("ROLE=NODE ...": mount,
             leader, follower1 (the follower the cell goes through, if
             any), follower2; fs for the null filesystem)
  cell       a loadgen run: name, args, out, epo (vaultfs: Raft log entries
             committed per operation, "-" if unknown); the mixed cells'
             out also has read_ and write_ ops, p50_us and p99_us
  upcalls    FUSE requests counted on a debug mount: kind (put|get), ops,
             one OPCODE=COUNT per opcode, total
  failover   a trial: sys (vaultfs|etcd), trial (1..), killed (the node), out
  failexec   the same, for a trial timed with a new process per attempt
  disk0      a node's data directory before the scale fill: sys, node, bytes
  list       a traversal of the scale tree: sys (vaultfs|etcd|nullfs: the
             floor), what (ls_R|ls_lR|du_a|find_f|stat_all; etcd: ls_R = get
             --prefix --keys-only, du_a = get --prefix), run (1..), cache
             (vaultfs: cold|warm; none means cold), ms, seen (secrets it
             named), exit, lines
  cold       a follower's cold start: sys, node, out; vaultfs also
             socket_ms, unsealed_ms
  footprint  a node at the end of the scale cell: sys, node, disk (bytes),
             hwm (peak RSS, KiB), vaultfs also mount_hwm (its mount's)
             (disk0, cold and footprint with cell=million: the million
             cell's, whose fill cells are mfill-v and mfill-e)
  join       the million cell's fresh node, joined until it served the
             tree's last secret: sys, node, out, hwm, disk
  stability  sys, leader0, term0 (before), leader1, term1 (after),
             changes, no_leader, samples
  demo       examples/demo.sh: build (fresh|no-op|incremental), secs, exit
  problem    something that did not work: msg
  end        after the demo: date_end, wall_seconds, nproc, kernel,
             loadavg_end, data_fs, etcd_version, git_commit, git_dirty
"""
import difflib
import io
import json
import os
import re
import sys
import tempfile

# The absolute targets for vaultfs (reported, never enforced).
TARGET_COLD_MS = 2000
TARGET_RSS_MIB = 64
# ... and at a million secrets: cold start, a fresh node's catch-up, and
# the fill rate against etcd's.
TARGET_MILLION_COLD_MS = 5000
TARGET_MILLION_JOIN_MS = 60000
TARGET_MILLION_FILL_RATIO = 2.0
VALUE_BYTES = 64  # loadgen's fill values
CELL_FIELDS = ('ops', 'secs', 'ops_s', 'p50_us', 'p99_us', 'errors', 'dirs', 'cpu_us',
               'read_ops', 'read_p50_us', 'read_p99_us', 'write_ops', 'write_p50_us',
               'write_p99_us')
# The processes of a cell whose CPU time is measured, in the order of the
# CPU table's columns; "client" is loadgen itself (its cpu_us).
CPU_ROLES = ('mount', 'fs', 'leader', 'follower1', 'follower2', 'client', 'machine')
SELFTEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report-selftest')


# ---- reading ----------------------------------------------------------------

def unescape(v):
    return re.sub(r'\\(.)', lambda m: {'t': '\t', 'n': '\n'}.get(m.group(1), m.group(1)), v)


def read_raw(path):
    """[(kind, {field: value})] in the order bench.sh wrote them."""
    records = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            kind, *fields = line.rstrip('\n').split('\t')
            rec = {}
            for field in fields:
                name, _, value = field.partition('=')
                rec[name] = unescape(value)
            records.append((kind, rec))
    return records


def lg_field(out, name):
    """NAME's value in loadgen's output ("" if none): NAME=digits and dots,
    at the start of a line or after a space; the first line that has it."""
    for line in out.split('\n'):
        m = re.match(r'(?:.* )?' + re.escape(name) + r'=([0-9.]*)', line)
        if m:
            return m.group(1)
    return ''


def lg_ms(out):
    """The ms=T of loadgen's failover and wait modes ("" for a timeout)."""
    return '\n'.join(m.group(1) for m in re.finditer(r'^ms=([0-9.]*)', out, re.M))


class Results:
    def __init__(self, records):
        self.run = {}
        self.cells = {}  # name -> {field: value}, in the order they ran
        self.failovers = []  # failover records, in order
        self.fo_ms = {'vaultfs': [], 'etcd': []}  # ms per trial, '' for a timeout
        self.failexecs = []  # failexec records, in order
        self.fx_ms = {'vaultfs': [], 'etcd': []}  # the same, a new process per attempt
        self.procs = {}  # cell -> {role: node} of its cpu record
        self.upcalls, self.disk0, self.lists, self.cold = {}, {}, {}, {}
        self.footprint, self.stability, self.demo = {}, {}, {}
        # the million cell's: disk0, cold, footprint as above, and join
        self.million = {'disk0': {}, 'cold': {}, 'footprint': {}, 'join': {}}
        self.problems = []
        for kind, r in records:
            if r.get('cell') == 'million' and kind in ('disk0', 'cold', 'footprint'):
                self.million_record(kind, r)
            elif kind in ('run', 'end'):
                self.run.update(r)
            elif kind == 'cell':
                out = r.get('out', '')
                cell = {f: lg_field(out, f) for f in CELL_FIELDS}
                cell.update(args=r.get('args', ''), epo=r.get('epo', ''))
                cell['cpu'] = dict(re.findall(r'(?:^| )cpu_us_([a-z0-9_]+)=([0-9]+)', out))
                if cell['cpu_us'] != '':
                    cell['cpu']['client'] = cell['cpu_us']
                self.cells[r.get('name', '')] = cell
            elif kind == 'cpu':
                self.procs[r.get('name', '')] = dict(
                    p.split('=', 1) for p in r.get('procs', '').split() if '=' in p)
            elif kind == 'failover':
                self.failovers.append(r)
                self.fo_ms.setdefault(r.get('sys', ''), []).append(lg_ms(r.get('out', '')))
            elif kind == 'failexec':
                self.failexecs.append(r)
                self.fx_ms.setdefault(r.get('sys', ''), []).append(lg_ms(r.get('out', '')))
            elif kind == 'upcalls':
                self.upcalls[r.get('kind', '')] = r
            elif kind == 'disk0':
                self.disk0[r.get('sys', ''), r.get('node', '')] = r.get('bytes', '')
            elif kind == 'list':
                self.lists.setdefault((r.get('sys', ''), r.get('what', '')), []).append(r)
            elif kind == 'cold':
                self.cold[r.get('sys', '')] = dict(r, ms=lg_ms(r.get('out', '')))
            elif kind == 'footprint':
                self.footprint[r.get('sys', ''), r.get('node', '')] = r
            elif kind == 'stability':
                self.stability[r.get('sys', '')] = r
            elif kind == 'join':
                self.million['join'][r.get('sys', '')] = dict(r, ms=lg_ms(r.get('out', '')))
            elif kind == 'demo':
                self.demo = r
            elif kind == 'problem':
                self.problems.append(r.get('msg', ''))
            else:
                raise SystemExit('report.py: unknown record kind %r' % kind)

    def million_record(self, kind, r):
        m, sys_ = self.million[kind], r.get('sys', '')
        if kind == 'disk0':
            m[sys_, r.get('node', '')] = r.get('bytes', '')
        elif kind == 'cold':
            m[sys_] = dict(r, ms=lg_ms(r.get('out', '')))
        else:
            m[sys_, r.get('node', '')] = r

    def cell(self, name, field):
        return self.cells.get(name, {}).get(field, '')

    def setting(self, name):
        return self.run.get(name, '')


# ---- figures (the same rounding as awk's printf) ------------------------------

def awknum(s):
    """A string's value as awk sees it: its leading number, or 0."""
    m = re.match(r'\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?', s)
    return float(m.group(0)) if m else 0.0


def awkprint(v):
    """A number as awk's print writes it: integral ones as integers, others %.6g."""
    return str(int(v)) if v == int(v) and abs(v) < 2 ** 63 else '%.6g' % v


def is_num(s):
    return re.fullmatch(r'[0-9]+(\.[0-9]+)?', s) is not None


def fmt(spec, x, div=1):
    return '-' if x == '' else spec % (awknum(x) / div)


def num(x):
    return fmt('%.0f', x)


def ms(us):
    return fmt('%.2f', us, 1000)


def mib(x, div):
    return fmt('%.1f', x, div)


def ratio(a, b):
    if a == '' or b == '' or awknum(b) == 0:
        return '-'
    return '%.2f' % (awknum(a) / awknum(b))


def met(x, limit):
    """"met" if X < LIMIT."""
    if x == '':
        return '-'
    return 'met' if awknum(x) < limit else 'missed'


def trial_values(trials):
    return [v for t in trials for v in t.split('\n') if re.fullmatch(r'[0-9.]+', v)]


def median(trials):
    v = sorted(trial_values(trials), key=awknum)
    if not v:
        return ''
    if len(v) % 2:
        return v[len(v) // 2]
    return awkprint((awknum(v[len(v) // 2 - 1]) + awknum(v[len(v) // 2])) / 2)


def maximum(trials):
    v = sorted(trial_values(trials), key=awknum)
    return v[-1] if v else ''


def each_trial(trials):
    return ' '.join(t or 'timeout' for t in trials)


def as_int(x):
    """A figure in shell arithmetic: "" (or anything but an integer) is 0."""
    return int(x) if re.fullmatch(r'-?[0-9]+', x) else 0


def system(cell):
    if '-v' in cell:
        return 'vaultfs'
    if '-n-' in cell:
        return 'null'
    if cell in ('floor-tmpfs', 'cat-tmpfs'):
        return 'tmpfs'
    return 'vaultfs' if cell.startswith(('floor-', 'cat-')) else 'etcd'


# ---- JSON -------------------------------------------------------------------

NUM = re.compile(r'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$')


def json_num(v):
    if not NUM.match(v):
        return None
    return int(v) if re.match(r'^-?[0-9]+$', v) else float(v)


class Doc:
    """The JSON document, built by dot-separated paths (#N: a list index)
    in the order the figures come; a num that is not a number (a "-", a
    timeout) becomes null, an empty str null."""

    def __init__(self):
        self.root = {}

    def put(self, path, typ, val):
        val = str(val).replace('\t', ' ').replace('\n', ' ')
        if typ == 'num':
            v = json_num(val)
        elif typ == 'str':
            v = val if val != '' else None
        elif typ == 'bool':
            v = val in ('1', 'true')
        elif typ == 'nums':
            v = [json_num(x) for x in val.split()]
        else:
            raise ValueError('unknown JSON type ' + typ)
        keys = path.split('.')
        d = self.root
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            fresh = (lambda: [] if keys[i + 1].startswith('#') else {})
            if k.startswith('#'):
                k = int(k[1:])
                while len(d) <= k:
                    d.append(None)
                if last:
                    d[k] = v
                elif d[k] is None:
                    d[k] = fresh()
            elif last:
                d[k] = v
            elif k not in d:
                d[k] = fresh()
            if not last:
                d = d[k]

    def num(self, path, val):
        self.put(path, 'num', val)

    def str(self, path, val):
        self.put(path, 'str', val)

    def bool(self, path, val):
        self.put(path, 'bool', 'true' if val else 'false')

    def ordered(self):
        """The top level in a reading order; the problems last."""
        order = ['schema', 'mode', 'date_start', 'date_end', 'wall_seconds', 'machine',
                 'settings', 'cells', 'rows', 'local_reads', 'failover', 'failover_exec', 'scale',
                 'traversals', 'mixed', 'million', 'stability', 'demo', 'failed_operations']
        root = dict(self.root)
        root.setdefault('problems', [])
        rest = sorted(set(root) - set(order) - {'problems'})
        return {k: root[k] for k in order + rest + ['problems'] if k in root}


# ---- the report -------------------------------------------------------------

VNODES, ENODES = ('n1', 'n2', 'n3'), ('e1', 'e2', 'e3')
# The traversals of the scale tree: (what, label, the etcd listing it is
# compared with, that listing's label).
TRAV_ROWS = (('ls_R', 'ls -R', 'ls_R', '--keys-only'),
             ('ls_lR', 'ls -lR', 'du_a', 'with values'),
             ('du_a', 'du -a', 'du_a', 'with values'),
             ('find_f', 'find -type f', 'ls_R', '--keys-only'),
             ('stat_all', 'stat of every secret', 'du_a', 'with values'))
TRAV_WHAT = tuple(r[0] for r in TRAV_ROWS)
SCALE_RULE = ('|----------------------------------------------|-----------------------:'
              '|-----------------------:|------------------|')


class Report:
    """Prints the tables to OUT, section by section, and builds the JSON
    document with each section's figures as it goes."""

    def __init__(self, res, out):
        self.res, self.out, self.doc = res, out, Doc()
        self.run, self.cell = res.setting, res.cell
        self.total = str(as_int(self.run('scale_dirs')) * as_int(self.run('scale_files_per_dir')))

    def p(self, line=''):
        print(line, file=self.out)

    def srow(self, *cols):  # scale and stability rows
        self.p('| %-44s | %22s | %22s | %16s |' % cols)

    def header(self):
        run, doc = self.run, self.doc
        date_end = run('date_end')
        self.p()
        self.p('## vaultfs vs etcd — %s %s UTC, one run%s' % (
            date_end[:10], date_end[11:16],
            ' (--short: tiny cells, figures not meaningful)' if run('mode') == 'short' else ''))
        self.p()
        self.p('machine: nproc %s, %s, load average %s at start, %s at end;' % (
            run('nproc'), run('kernel'), run('loadavg_start'), run('loadavg_end')))
        self.p('etcd %s, vaultfs release build (%s%s); data dirs on %s;' % (
            run('etcd_version'), run('git_commit')[:7],
            ', uncommitted changes' if run('git_dirty') == 'true' else '', run('data_fs')))
        self.p('%s s per cell, closed loop (each client waits for its answer); latencies in ms;'
               % run('seconds_per_cell'))
        self.p('vfs e/op = vaultfs Raft log entries committed per operation '
               '(etcd: 1 per put, 0 per read);')
        self.p('vfs/etcd = ratio of op/s (1.00 = as fast as etcd, higher is better).')
        doc.str('schema', 'vaultfs-bench/1')
        doc.str('mode', run('mode'))
        doc.str('date_start', run('date_start'))
        doc.str('date_end', date_end)
        doc.num('wall_seconds', run('wall_seconds'))
        doc.num('machine.nproc', run('nproc'))
        doc.str('machine.kernel', run('kernel'))
        doc.put('machine.loadavg_start', 'nums', run('loadavg_start'))
        doc.put('machine.loadavg_end', 'nums', run('loadavg_end'))
        doc.str('machine.etcd_version', run('etcd_version'))
        doc.str('machine.data_fs', run('data_fs'))
        doc.str('machine.git_commit', run('git_commit'))
        doc.bool('machine.git_dirty', run('git_dirty') == 'true')
        doc.str('machine.vaultfs_build', 'release (%s)' % run('build'))
        for key in ('seconds_per_cell', 'maxops', 'failovers', 'scale_dirs', 'scale_files_per_dir',
                    'scale_threads', 'stability_seconds', 'election_ms', 'heartbeat_ms'):
            doc.num('settings.' + key, run(key))
        for key in ('many_files', 'many_dirs', 'clk_tck', 'traverse_runs', 'mixed_clients',
                    'mixed_write_pct'):
            if run(key):
                doc.num('settings.' + key, run(key))
        if run('cells'):
            doc.str('settings.cells', run('cells'))

    def cells(self):
        """Every loadgen run, in the order they ran (JSON only)."""
        for name, c in self.res.cells.items():
            sys_ = system(name)
            self.doc.str('cells.%s.system' % name, sys_)
            self.doc.str('cells.%s.loadgen' % name, c['args'])
            for f in CELL_FIELDS:
                if c[f] != '':
                    self.doc.num('cells.%s.%s' % (name, f), c[f])
            if sys_ == 'vaultfs':
                self.doc.num('cells.%s.raft_entries_per_op' % name, c['epo'])
            for role, node in self.res.procs.get(name, {}).items():
                self.doc.str('cells.%s.processes.%s' % (name, role), node)
            for role in CPU_ROLES:
                if role in c['cpu']:
                    self.doc.num('cells.%s.cpu_us_per_op.%s' % (name, role),
                                 self.cpu_per_op(name, role))

    def cpu_per_op(self, name, role):
        """µs of CPU per operation of ROLE in cell NAME ("" if unknown)."""
        c = self.res.cells.get(name, {})
        us, ops = c.get('cpu', {}).get(role, ''), c.get('ops', '')
        if us == '' or ops == '' or awknum(ops) == 0:
            return ''
        return '%.1f' % (awknum(us) / awknum(ops))

    def put_rows(self, prefix, verb='put'):
        """(label, vaultfs cell, etcd cell, null cell) of the put rows (or
        the create rows: the same cells, another prefix)."""
        rows = [('%s, %d cl., via leader' % (verb, c), '%s-vl-%d' % (prefix, c),
                 '%s-e-%d' % (prefix, c), '%s-n-%d' % (prefix, c)) for c in (1, 16, 64)]
        rows += [('%s, %d cl., via follower' % (verb, c), '%s-vf-%d' % (prefix, c),
                  '%s-ef-%d' % (prefix, c), '%s-n-%d' % (prefix, c)) for c in (1, 16, 64)]
        return rows

    def ran(self, rows):
        """Whether any cell of ROWS ran."""
        return any(name in self.res.cells for row in rows for name in row[1:])

    def read_rows(self):
        rows = [('lin. read, follower, %d cl.' % c, 'get-v-%d' % c, 'get-e-%d' % c,
                 'get-n-%d' % c) for c in (1, 16)]
        rows += [('vs etcd serializable, %d cl.' % c, 'get-v-%d' % c, 'sget-e-%d' % c,
                  'get-n-%d' % c) for c in (1, 16)]
        return rows

    def puts_reads(self):
        cell = self.cell
        row_fmt = ('| %-28s | %8s | %7s | %7s | %7s | %8s | %7s | %7s | %8s '
                   '| %8s | %7s | %8s |')
        rule = ('|------------------------------|---------:|--------:|--------:|--------:'
                '|---------:|--------:|--------:|---------:|---------:|--------:|---------:|')
        head = row_fmt % ('workload', 'vfs op/s', 'vfs p50', 'vfs p99', 'vfs e/op',
                          'etcd op/s', 'etcd p50', 'etcd p99', 'vfs/etcd',
                          'null op/s', 'null p50', 'vfs/null')
        i = 0
        # (label, vaultfs cell, etcd cell, null cell)
        # (table, caption, rows); "table" names it in the JSON's rows
        tables = [('puts_reads', '', self.put_rows('put') + self.read_rows())]
        if self.run('many_files'):
            tables.append(('putmany', 'puts over %s distinct existing secrets per client, in %s '
                           'directories:' % (self.run('many_files'), self.run('many_dirs')),
                           self.put_rows('putmany')))
        for prefix, where in (('create', 'each client in 4 directories of its own'),
                              ('createsh', 'every client in one shared directory')):
            if self.ran(self.put_rows(prefix)):
                tables.append((prefix, 'creates of new secrets (open O_CREAT|O_TRUNC, write, close; etcd: '
                               'puts of new keys;\nnull: a CREATE), %s:' % where,
                               self.put_rows(prefix, 'create')))
        for table, caption, rows in tables:
            self.p()
            if caption:
                self.p(caption)
                self.p()
            self.p(head)
            self.p(rule)
            for label, v, e, n in rows:
                r = ratio(cell(v, 'ops_s'), cell(e, 'ops_s'))
                rn = ratio(cell(v, 'ops_s'), cell(n, 'ops_s'))
                self.p(row_fmt % (label, num(cell(v, 'ops_s')), ms(cell(v, 'p50_us')),
                                  ms(cell(v, 'p99_us')), cell(v, 'epo') or '-',
                                  num(cell(e, 'ops_s')), ms(cell(e, 'p50_us')),
                                  ms(cell(e, 'p99_us')), r, num(cell(n, 'ops_s')),
                                  ms(cell(n, 'p50_us')), rn))
                self.doc.str('rows.#%d.table' % i, table)
                self.doc.str('rows.#%d.label' % i, label)
                self.doc.str('rows.#%d.vaultfs_cell' % i, v)
                self.doc.str('rows.#%d.etcd_cell' % i, e)
                self.doc.num('rows.#%d.ops_s_ratio' % i, r)
                self.doc.str('rows.#%d.null_cell' % i, n)
                self.doc.num('rows.#%d.ops_s_ratio_to_null' % i, rn)
                i += 1

    def local_reads(self):
        """The -o local_reads mount against the linearizable one, the
        same reads on the same follower: against a twin mount made with it,
        in the order twin, local, local, twin (op/s: the mean of the two
        runs of each; p50, p99: the first's); in an older run without a
        twin, against the follower's main mount, right after it."""
        cell = self.cell
        if not any('getlocal-v-%d' % c in self.res.cells for c in (1, 16)):
            return
        twin = any('gettwin-v-%d' % c in self.res.cells for c in (1, 16))
        l_fmt = '| %-20s | %10s | %9s | %9s | %9s | %8s | %8s | %9s |'
        self.p()
        if twin:
            self.p('-o local_reads against the linearizable mount: two new mounts of the same '
                   'follower, one with')
            self.p('local_reads, the same reads (open/read/close of one secret) in the order '
                   'linearizable, local,')
            self.p('local, linearizable; op/s = the mean of the two runs of each;')
        else:
            self.p('-o local_reads against the linearizable mount: a second mount of the same '
                   'follower,')
            self.p('the same reads (open/read/close of one secret), right after the linearizable '
                   'cell;')
        self.p('local/lin. = ratio of op/s (1.00: as fast as the linearizable mount).')
        self.p()
        self.p(l_fmt % ('reads on a follower', 'local op/s', 'local p50', 'local p99',
                        'lin. op/s', 'lin. p50', 'lin. p99', 'local/lin.'))
        self.p('|----------------------|-----------:|----------:|----------:|----------:'
               '|---------:|---------:|----------:|')

        def mean_ops(*names):
            vals = [cell(n, 'ops_s') for n in names]
            if any(v == '' for v in vals):
                return ''
            return '%.1f' % (sum(awknum(v) for v in vals) / len(vals))

        for i, c in enumerate((1, 16)):
            lc = 'getlocal-v-%d' % c
            if twin:
                vc = 'gettwin-v-%d' % c
                lops = mean_ops(lc, 'getlocal2-v-%d' % c)
                vops = mean_ops(vc, 'gettwin2-v-%d' % c)
            else:
                vc = 'get-v-%d' % c
                lops, vops = cell(lc, 'ops_s'), cell(vc, 'ops_s')
            r = ratio(lops, vops)
            self.p(l_fmt % ('%d cl.' % c, num(lops), ms(cell(lc, 'p50_us')),
                            ms(cell(lc, 'p99_us')), num(vops), ms(cell(vc, 'p50_us')),
                            ms(cell(vc, 'p99_us')), r))
            self.doc.num('local_reads.#%d.clients' % i, str(c))
            self.doc.str('local_reads.#%d.local_cell' % i, lc)
            self.doc.str('local_reads.#%d.linearizable_cell' % i, vc)
            self.doc.num('local_reads.#%d.ops_s_ratio' % i, r)
            self.doc.num('local_reads.#%d.p50_ratio' % i, ratio(cell(lc, 'p50_us'),
                                                                cell(vc, 'p50_us')))

    def mixed(self):
        """The mixed cell: reads and writes of random secrets of the scale
        tree through a follower, each kind on its own."""
        cell, res = self.cell, self.res
        names = [n for n in res.cells if n.startswith('mixed-')]
        if not names:
            return
        clients = self.run('mixed_clients')
        v, e = 'mixed-v-%s' % clients, 'mixed-e-%s' % clients

        def rate(c, kind):
            secs, ops = cell(c, 'secs'), cell(c, kind + '_ops')
            if secs == '' or ops == '' or awknum(secs) == 0:
                return ''
            return '%.1f' % (awknum(ops) / awknum(secs))

        m_fmt = '| %-14s | %8s | %9s | %8s | %8s | %10s | %9s | %9s | %8s |'
        self.p()
        self.p('mixed: %s cl. through a follower, each operation on a secret of the scale tree '
               '(%s)' % (clients, self.total))
        self.p('picked uniformly at random: %s %% writes (64 B), the rest linearizable reads '
               '(etcd: range,' % self.run('mixed_write_pct'))
        self.p('serializable=false); op/s of each kind = its operations / the cell\'s time.')
        self.p()
        self.p(m_fmt % ('system', 'op/s', 'read op/s', 'read p50', 'read p99', 'write op/s',
                        'write p50', 'write p99', 'vfs e/op'))
        self.p('|----------------|---------:|----------:|---------:|---------:|-----------:'
               '|----------:|----------:|---------:|')
        for label, c in (('vaultfs', v), ('etcd', e)):
            self.p(m_fmt % (label, num(cell(c, 'ops_s')), num(rate(c, 'read')),
                            ms(cell(c, 'read_p50_us')), ms(cell(c, 'read_p99_us')),
                            num(rate(c, 'write')), ms(cell(c, 'write_p50_us')),
                            ms(cell(c, 'write_p99_us')),
                            (cell(c, 'epo') or '-') if c == v else '-'))
        r = {k: ratio(rate(v, k), rate(e, k)) for k in ('read', 'write')}
        r['all'] = ratio(cell(v, 'ops_s'), cell(e, 'ops_s'))
        self.p(m_fmt % ('vfs/etcd op/s', r['all'], r['read'], '', '', r['write'], '', '', ''))
        doc = self.doc
        doc.num('mixed.clients', clients)
        doc.num('mixed.write_percent', self.run('mixed_write_pct'))
        doc.num('mixed.secrets', self.total)
        doc.str('mixed.vaultfs_cell', v)
        doc.str('mixed.etcd_cell', e)
        for k in ('read', 'write'):
            doc.num('mixed.vaultfs.%s_ops_s' % k, rate(v, k))
            doc.num('mixed.etcd.%s_ops_s' % k, rate(e, k))
            doc.num('mixed.%s_ops_s_ratio' % k, r[k])
        doc.num('mixed.ops_s_ratio', r['all'])

    def cpu(self):
        """µs of CPU per operation of each process, for every put and read
        cell whose processes were measured."""
        res, cell = self.res, self.cell
        if not res.procs:
            return
        cpu_fmt = '| %-28s | %-9s | %7s | %7s | %7s | %7s | %7s | %7s | %7s |'
        self.p()
        self.p('CPU per operation, us: user + system time of each process over the cell '
               '/ its operations')
        hz = awknum(self.run('clk_tck'))
        self.p('(from /proc/PID/stat, in %s ms ticks); mount = the FUSE process (mount.vaultfs '
               'or the null' % ('%g' % (1000 / hz) if hz else '?'))
        self.p('filesystem); flw. 1 = the follower the cell goes through (if any); client = '
               'loadgen;')
        self.p('sum = the processes listed; machine = busy time of all CPUs '
               '(other work on the machine included).')
        self.p()
        self.p(cpu_fmt % ('workload', 'system', 'mount', 'leader', 'flw. 1', 'flw. 2', 'client',
                          'sum', 'machine'))
        self.p('|------------------------------|-----------|--------:|--------:|--------:|--------:'
               '|--------:|--------:|--------:|')
        # (label, [(cell, system)])
        rows = [(label, [(v, 'vaultfs'), (e, 'etcd'), (n, 'null fs')])
                for label, v, e, n in self.put_rows('put')]
        rows += [(label, [(v, 'vaultfs'), (e, 'etcd'), ('s' + e, 'etcd ser.'), (n, 'null fs')])
                 for label, v, e, n in self.read_rows()[:2]]
        rows += [('local_reads, flw., %d cl.' % c, [('getlocal-v-%d' % c, 'vaultfs')])
                 for c in (1, 16)]
        rows += [(label.replace('put,', 'many:'), [(v, 'vaultfs'), (e, 'etcd'), (n, 'null fs')])
                 for label, v, e, n in self.put_rows('putmany')]
        rows += [(label, [(v, 'vaultfs'), (e, 'etcd'), (n, 'null fs')])
                 for label, v, e, n in self.put_rows('create', 'create')]
        rows += [(label.replace('create,', '1 dir:'), [(v, 'vaultfs'), (e, 'etcd'),
                                                        (n, 'null fs')])
                 for label, v, e, n in self.put_rows('createsh', 'create')]
        mc = self.run('mixed_clients')
        rows += [('mixed, %s cl., via follower' % mc, [('mixed-v-%s' % mc, 'vaultfs'),
                                                       ('mixed-e-%s' % mc, 'etcd')])]
        for label, names in rows:
            first = True
            for name, sys_ in names:
                if name not in res.procs:
                    continue
                fig = {r: self.cpu_per_op(name, r) for r in CPU_ROLES}
                parts = [fig[r] for r in CPU_ROLES[:-1] if fig[r] != '']
                total = '%.1f' % sum(awknum(x) for x in parts) if parts else ''
                self.p(cpu_fmt % (label if first else '', sys_, fig['mount'] or fig['fs'] or '-',
                                  fig['leader'] or '-', fig['follower1'] or '-',
                                  fig['follower2'] or '-', fig['client'] or '-', total or '-',
                                  fig['machine'] or '-'))
                self.doc.num('cells.%s.cpu_us_per_op.sum' % name, total)
                first = False

    def failover(self):
        """The failover trials: timed by one loadgen process (failover),
        and by a new process per attempt (failexec, if it ran)."""
        res = self.res
        self.fo_table('failover', res.fo_ms, res.failovers, 'failover: SIGKILL -> write',
                      ('num', 'trials', self.run('failovers')))
        if not res.failexecs:
            return
        self.p()
        self.p('failover timed by a new process per attempt: loadgen exec\'d for every attempt, '
               'for both systems')
        self.p('(one write through the survivor\'s mount / one put on a new connection to a '
               'surviving member),')
        self.p('a new one every 10 ms; the time from the SIGKILL to the exit of the first that '
               'succeeded.')
        self.fo_table('failover_exec', res.fx_ms, res.failexecs, 'failover, exec per attempt',
                      ('str', 'attempts', 'loadgen fs-once / etcd-once, exec\'d per attempt'))

    def fo_table(self, key, ms_by_sys, records, title, extra):
        """One failover table, its figures under KEY in the JSON, and
        EXTRA, (type, name, value), beside them."""
        doc = self.doc
        trials = self.run('failovers')
        fig = {}  # system -> (each trial, median, max, trials that succeeded)
        for sys_ in ('vaultfs', 'etcd'):
            t = ms_by_sys.get(sys_, [])
            fig[sys_] = (each_trial(t), median(t), maximum(t), len(trial_values(t)))
        (veach, vmed, vmax, vok), (eeach, emed, emax, eok) = fig['vaultfs'], fig['etcd']
        fo_fmt = '| %-28s | %22s | %22s | %13s |'
        self.p()
        self.p(fo_fmt % (title, 'vaultfs ms', 'etcd ms', 'vfs/etcd time'))
        self.p('|------------------------------|-----------------------:|-----------------------:'
               '|--------------:|')
        self.p(fo_fmt % ('median of %s trials' % trials, vmed or '-', emed or '-',
                         ratio(vmed, emed)))
        self.p(fo_fmt % ('max of %s trials' % trials, vmax or '-', emax or '-', ratio(vmax, emax)))
        self.p(fo_fmt % ('trials that succeeded', '%d/%s' % (vok, trials), '%d/%s' % (eok, trials),
                         ''))
        self.p(fo_fmt % ('each trial', veach, eeach, ''))
        for r in records:
            doc.str('%s.%s.killed.#%d' % (key, r.get('sys', ''), as_int(r.get('trial', '')) - 1),
                    r.get('killed', ''))
        for sys_, (each, med, mx, ok) in fig.items():
            doc.put('%s.%s.trials_ms' % (key, sys_), 'nums', each)
            doc.num('%s.%s.median_ms' % (key, sys_), med)
            doc.num('%s.%s.max_ms' % (key, sys_), mx)
            doc.num('%s.%s.succeeded' % (key, sys_), ok)
        doc.put('%s.%s' % (key, extra[1]), extra[0], extra[2])
        doc.num('%s.median_ratio' % key, ratio(vmed, emed))
        doc.num('%s.max_ratio' % key, ratio(vmax, emax))

    def floor(self):
        """The floor, the cat command, and FUSE requests per operation."""
        cell = self.cell
        fl_fmt = '| %-36s | %9s | %9s | %9s |'
        self.p()
        self.p(fl_fmt % ('floor: empty open+read+close, 1 cl.', 'op/s', 'p50 us', 'p99 us'))
        self.p('|--------------------------------------|----------:|----------:|----------:|')
        for k, label in (('floor-tmpfs', 'tmpfs (/dev/shm)'),
                         ('floor-local', 'vaultfs -o local_reads (no Raft)'),
                         ('floor-lin-leader', 'vaultfs linearizable, leader mount')):
            self.p(fl_fmt % (label, num(cell(k, 'ops_s')), cell(k, 'p50_us') or '-',
                             cell(k, 'p99_us') or '-'))
        cat_fmt = '| %-36s | %9s | %9s | %9s | %12s |'
        self.p()
        self.p(cat_fmt % ('the cat command, 1 cl.', 'op/s', 'p50 us', 'p99 us', 'p50 / tmpfs'))
        self.p('|--------------------------------------|----------:|----------:|----------:'
               '|-------------:|')
        for k, label in (('cat-tmpfs', 'tmpfs (/dev/shm)'),
                         ('cat-local', 'vaultfs -o local_reads (no Raft)'),
                         ('cat-lin-leader', 'vaultfs linearizable, leader mount'),
                         ('cat-lin-follower', 'vaultfs linearizable, follower mount')):
            r = ratio(cell(k, 'p50_us'), cell('cat-tmpfs', 'p50_us'))
            self.p(cat_fmt % (label, num(cell(k, 'ops_s')), cell(k, 'p50_us') or '-',
                              cell(k, 'p99_us') or '-', r))
            self.doc.num('cat.%s.p50_ratio_to_tmpfs' % k, r)

        def per_op(kind, code):
            x = self.res.upcalls.get(kind, {}).get(code, '')
            return '-' if x == '' else '%.1f' % (awknum(x) / awknum(self.run('upcall_ops')))

        uc_fmt = '| %-36s | %9s | %9s |'
        self.p()
        self.p(uc_fmt % ('FUSE requests per operation', 'put', 'read'))
        self.p('|--------------------------------------|----------:|----------:|')
        for code in self.run('upcall_opcodes').split() + ['total']:
            self.p(uc_fmt % (code, per_op('put', code), per_op('get', code)))
            self.doc.num('fuse_requests_per_op.put.' + code, per_op('put', code))
            self.doc.num('fuse_requests_per_op.read.' + code, per_op('get', code))

    def scale(self):
        res, doc, cell, run, total = self.res, self.doc, self.cell, self.run, self.total

        def fig(sys_, node, what):
            return res.footprint.get((sys_, node), {}).get(what, '')


        def per_node(sys_, what, div, nodes):
            return ' '.join(mib(fig(sys_, k, what), div) for k in nodes)

        def growth(sys_, nodes):
            out = []
            for k in nodes:
                a, b = res.disk0.get((sys_, k), ''), fig(sys_, k, 'disk')
                out.append('-' if a == '' or b == ''
                           else '%.1f' % ((awknum(b) - awknum(a)) / 1048576))
            return ' '.join(out)

        def fill(c):  # time, rate, latencies of a fill cell
            return (fmt('%.1f s', cell(c, 'secs')), '%s op/s' % num(cell(c, 'ops_s')),
                    '%s / %s ms' % (ms(cell(c, 'p50_us')), ms(cell(c, 'p99_us'))))

        def msfig(x):
            return '%s ms' % x if is_num(x) else 'ERROR'

        vhwm_max = '0'
        for k in VNODES:
            x = fig('vaultfs', k, 'hwm')
            if re.fullmatch(r'[0-9]+', x) and int(x) > int(vhwm_max):
                vhwm_max = x
        vcold, ecold = res.cold.get('vaultfs', {}), res.cold.get('etcd', {})
        cold_met = met(vcold.get('ms', ''), TARGET_COLD_MS)
        rss_met = met(mib(vhwm_max, 1024), TARGET_RSS_MIB)
        dirs, files, writers = run('scale_dirs'), run('scale_files_per_dir'), run('scale_threads')
        vfill, efill = fill('fill-v'), fill('fill-e')
        srow = self.srow
        self.p()
        srow('scale: %s secrets, %s dirs x %s, %d B' % (total, dirs, files, VALUE_BYTES),
             'vaultfs', 'etcd', 'vaultfs target')
        self.p(SCALE_RULE)
        srow('write all, %s writers, via leader: time' % writers, vfill[0], efill[0], '')
        srow('  rate (vaultfs: incl. %s mkdirs)' % dirs, vfill[1], efill[1], '')
        srow('  p50 / p99 per secret', vfill[2], efill[2], '')
        srow('  Raft log entries per secret', cell('fill-v', 'epo') or '-', '1', '')
        srow('cold start -> lin. read, follower', msfig(vcold.get('ms', '')),
             msfig(ecold.get('ms', '')), '< %d ms: %s' % (TARGET_COLD_MS, cold_met))
        srow('  vaultfs: API socket up / unsealed at', '%s / %s ms' % (
            vcold.get('socket_ms', '') or '-', vcold.get('unsealed_ms', '') or '-'), '', '')
        srow('disk per node (du -sb), MiB', per_node('vaultfs', 'disk', 1048576, VNODES),
             per_node('etcd', 'disk', 1048576, ENODES), '')
        srow('  growth during the cell, MiB', growth('vaultfs', VNODES), growth('etcd', ENODES), '')
        srow('peak RSS per node (VmHWM), MiB', per_node('vaultfs', 'hwm', 1024, VNODES),
             per_node('etcd', 'hwm', 1024, ENODES), '< %d MiB: %s' % (TARGET_RSS_MIB, rss_met))
        srow('  mount.vaultfs peak RSS, MiB', per_node('vaultfs', 'mount_hwm', 1024, VNODES),
             '', '')

        doc.num('scale.secrets', total)
        doc.num('scale.dirs', dirs)
        doc.num('scale.files_per_dir', files)
        doc.num('scale.value_bytes', VALUE_BYTES)
        doc.num('scale.writers', writers)
        doc.str('scale.vaultfs.fill_cell', 'fill-v')
        doc.str('scale.etcd.fill_cell', 'fill-e')
        for sys_, nodes in (('vaultfs', VNODES), ('etcd', ENODES)):
            for w in TRAV_WHAT if sys_ == 'vaultfs' else ('ls_R', 'du_a'):
                t = self.trav(sys_, w, 'cold')
                doc.num('scale.%s.%s.ms' % (sys_, w), t['ms'])
                doc.put('scale.%s.%s.runs_ms' % (sys_, w), 'nums', ' '.join(t['runs']))
                if sys_ == 'vaultfs':
                    warm = self.trav(sys_, w, 'warm')
                    doc.num('scale.%s.%s.warm_ms' % (sys_, w), warm['ms'])
                    doc.put('scale.%s.%s.warm_runs_ms' % (sys_, w), 'nums', ' '.join(warm['runs']))
                doc.num('scale.%s.%s.secrets_seen' % (sys_, w), t['seen'])
                doc.num('scale.%s.%s.lines' % (sys_, w), t['lines'])
                doc.num('scale.%s.%s.exit' % (sys_, w), t['exit'])
                doc.bool('scale.%s.%s.complete' % (sys_, w), t['complete'])
            cold = res.cold.get(sys_, {})
            doc.str('scale.%s.cold_start.node' % sys_, cold.get('node', ''))
            doc.num('scale.%s.cold_start.ms' % sys_, cold.get('ms', ''))
            for k in nodes:
                doc.num('scale.%s.disk_bytes.%s' % (sys_, k), fig(sys_, k, 'disk'))
                doc.num('scale.%s.disk_bytes_before_fill.%s' % (sys_, k),
                        res.disk0.get((sys_, k), ''))
                doc.num('scale.%s.peak_rss_kib.%s' % (sys_, k), fig(sys_, k, 'hwm'))
        doc.num('scale.vaultfs.cold_start.socket_ms', vcold.get('socket_ms', ''))
        doc.num('scale.vaultfs.cold_start.unsealed_ms', vcold.get('unsealed_ms', ''))
        for k in VNODES:
            doc.num('scale.vaultfs.mount_peak_rss_kib.' + k, fig('vaultfs', k, 'mount_hwm'))
        doc.num('scale.vaultfs.targets.cold_start_ms', TARGET_COLD_MS)
        doc.bool('scale.vaultfs.targets.cold_start_met', cold_met == 'met')
        doc.num('scale.vaultfs.targets.rss_mib', TARGET_RSS_MIB)
        doc.bool('scale.vaultfs.targets.rss_met', rss_met == 'met')

    def million(self):
        """The million cell: the fill, a cold start, a fresh node's
        catch-up, and the footprint per node, against etcd."""
        res, doc, cell, run = self.res, self.doc, self.cell, self.run
        if 'mfill-v' not in res.cells and 'mfill-e' not in res.cells:
            return
        m = res.million
        dirs, files = run('million_dirs'), run('million_files_per_dir')
        total = str(as_int(dirs) * as_int(files))

        def fig(sys_, node, what):
            return m['footprint'].get((sys_, node), {}).get(what, '')

        def per_node(sys_, what, div, nodes):
            return ' '.join(mib(fig(sys_, k, what), div) for k in nodes)

        def most(sys_, what, nodes):
            xs = [awknum(fig(sys_, k, what)) for k in nodes if is_num(fig(sys_, k, what))]
            return str(max(xs)) if xs else ''

        def no_larger(what):
            v, e = most('vaultfs', what, VNODES), most('etcd', what, ENODES)
            if v == '' or e == '':
                return '-'
            return 'met' if awknum(v) <= awknum(e) else 'missed'

        def msfig(x):
            return '%s ms' % x if is_num(x) else 'ERROR'

        def fill(c):
            return (fmt('%.1f s', cell(c, 'secs')), '%s op/s' % num(cell(c, 'ops_s')),
                    '%s / %s ms' % (ms(cell(c, 'p50_us')), ms(cell(c, 'p99_us'))))

        vfill, efill = fill('mfill-v'), fill('mfill-e')
        fill_ratio = ratio(cell('mfill-v', 'ops_s'), cell('mfill-e', 'ops_s'))
        fill_met = '-' if fill_ratio == '-' else (
            'met' if awknum(fill_ratio) >= TARGET_MILLION_FILL_RATIO else 'missed')
        vcold, ecold = m['cold'].get('vaultfs', {}), m['cold'].get('etcd', {})
        vjoin, ejoin = m['join'].get('vaultfs', {}), m['join'].get('etcd', {})
        cold_met = met(vcold.get('ms', ''), TARGET_MILLION_COLD_MS)
        join_met = met(vjoin.get('ms', ''), TARGET_MILLION_JOIN_MS)
        srow = self.srow
        self.p()
        srow('million: %s secrets, %s x %s, %d B' % (total, dirs, files, VALUE_BYTES),
             'vaultfs', 'etcd', 'vaultfs target')
        self.p(SCALE_RULE)
        srow('write all, %s writers, via leader: time' % run('scale_threads'), vfill[0],
             efill[0], '')
        srow('  rate (vfs/etcd: %s)' % fill_ratio, vfill[1], efill[1],
             '>= %.0fx etcd: %s' % (TARGET_MILLION_FILL_RATIO, fill_met))
        srow('  p50 / p99 per secret', vfill[2], efill[2], '')
        srow('  Raft log entries per secret', cell('mfill-v', 'epo') or '-', '1', '')
        srow('cold start -> lin. read, follower', msfig(vcold.get('ms', '')),
             msfig(ecold.get('ms', '')), '< %d ms: %s' % (TARGET_MILLION_COLD_MS, cold_met))
        srow('fresh node joins -> lin. read of the last', msfig(vjoin.get('ms', '')),
             msfig(ejoin.get('ms', '')), '< %d ms: %s' % (TARGET_MILLION_JOIN_MS, join_met))
        srow('  the fresh node: peak RSS / disk, MiB', '%s / %s' % (
            mib(vjoin.get('hwm', ''), 1024), mib(vjoin.get('disk', ''), 1048576)), '%s / %s' % (
            mib(ejoin.get('hwm', ''), 1024), mib(ejoin.get('disk', ''), 1048576)), '')
        srow('disk per node (du -sb), MiB', per_node('vaultfs', 'disk', 1048576, VNODES),
             per_node('etcd', 'disk', 1048576, ENODES), '<= etcd: %s' % no_larger('disk'))
        srow('peak RSS per node (VmHWM), MiB', per_node('vaultfs', 'hwm', 1024, VNODES),
             per_node('etcd', 'hwm', 1024, ENODES), '<= etcd: %s' % no_larger('hwm'))

        doc.num('million.secrets', total)
        doc.num('million.dirs', dirs)
        doc.num('million.files_per_dir', files)
        doc.num('million.value_bytes', VALUE_BYTES)
        doc.num('million.writers', run('scale_threads'))
        doc.str('million.vaultfs.fill_cell', 'mfill-v')
        doc.str('million.etcd.fill_cell', 'mfill-e')
        doc.num('million.fill_ratio', fill_ratio)
        for sys_, nodes, cold, join in (('vaultfs', VNODES, vcold, vjoin),
                                        ('etcd', ENODES, ecold, ejoin)):
            doc.str('million.%s.cold_start.node' % sys_, cold.get('node', ''))
            doc.num('million.%s.cold_start.ms' % sys_, cold.get('ms', ''))
            doc.num('million.%s.join.ms' % sys_, join.get('ms', ''))
            doc.num('million.%s.join.peak_rss_kib' % sys_, join.get('hwm', ''))
            doc.num('million.%s.join.disk_bytes' % sys_, join.get('disk', ''))
            for k in nodes:
                doc.num('million.%s.disk_bytes.%s' % (sys_, k), fig(sys_, k, 'disk'))
                doc.num('million.%s.disk_bytes_before_fill.%s' % (sys_, k),
                        m['disk0'].get((sys_, k), ''))
                doc.num('million.%s.peak_rss_kib.%s' % (sys_, k), fig(sys_, k, 'hwm'))
        doc.bool('million.vaultfs.targets.fill_met', fill_met == 'met')
        doc.bool('million.vaultfs.targets.cold_start_met', cold_met == 'met')
        doc.bool('million.vaultfs.targets.join_met', join_met == 'met')
        doc.bool('million.vaultfs.targets.disk_met', no_larger('disk') == 'met')
        doc.bool('million.vaultfs.targets.rss_met', no_larger('hwm') == 'met')

    def trav(self, sys_, what, cache):
        """A traversal's runs (vaultfs: those with CACHE; a run without
        one is a cold one): the median ms, each run's ms, whether every
        run named every secret and exited 0, the fewest secrets a run
        named, the first nonzero exit status (or 0) and the first run's
        lines."""
        recs = [r for r in self.res.lists.get((sys_, what), [])
                if sys_ != 'vaultfs' or r.get('cache', 'cold') == cache]
        runs = [r.get('ms', '') for r in recs]
        seen = [r.get('seen', '') for r in recs]
        exits = [r.get('exit', '') for r in recs if r.get('exit', '') != '0']
        return {
            'ms': median(runs), 'runs': runs,
            'complete': bool(recs) and all(r.get('seen', '') == self.total and
                                           r.get('exit', '') == '0' for r in recs),
            'seen': min(seen, key=awknum) if seen else '',
            'exit': exits[0] if exits else ('0' if recs else ''),
            'lines': recs[0].get('lines', '') if recs else ''}

    def traversals(self):
        """The traversals of the scale tree on a follower: vaultfs cold
        and warm, etcd's prefix get of the same keys."""
        if not self.res.lists:
            return
        runs = self.run('traverse_runs') or '1'
        t_fmt = '| %-22s | %9s | %9s | %9s | %-16s | %9s | %9s | %9s | %9s |'
        self.p()
        self.p('traversals of the scale tree (%s secrets) on a follower, ms, median of %s run(s);'
               % (self.total, runs))
        self.p('cold = on a mount made for it (nothing in the kernel\'s caches), warm = the same '
               'again at once;')
        self.p('etcd has no tree: its figure is etcdctl\'s prefix get of the same keys on a '
               'follower, names')
        self.p('only or with values; vfs/etcd = time ratio (below 1: vaultfs faster); '
               'ERROR = a run missed secrets;')
        self.p('null = the floor: the same traversal, cold, on the null filesystem holding a '
               'tree of the same shape.')
        self.p()
        self.p(t_fmt % ('traversal', 'vfs cold', 'vfs warm', 'etcd', 'etcd: get', 'cold/etcd',
                        'warm/etcd', 'null', 'null/etcd'))
        self.p('|------------------------|----------:|----------:|----------:|------------------'
               '|----------:|----------:|----------:|----------:|')

        def shown(t):
            if t['complete']:
                return t['ms']
            return 'ERROR' if t['runs'] else '-'

        for what, label, ewhat, eget in TRAV_ROWS:
            v, w, e = (self.trav('vaultfs', what, 'cold'), self.trav('vaultfs', what, 'warm'),
                       self.trav('etcd', ewhat, ''))
            z = self.trav('nullfs', what, 'cold')
            rc = ratio(v['ms'], e['ms']) if v['complete'] and e['complete'] else '-'
            rw = ratio(w['ms'], e['ms']) if w['complete'] and e['complete'] else '-'
            rz = ratio(z['ms'], e['ms']) if z['complete'] and e['complete'] else '-'
            self.p(t_fmt % (label, shown(v), shown(w), shown(e), eget, rc, rw, shown(z), rz))
            self.doc.str('traversals.%s.label' % what, label)
            self.doc.str('traversals.%s.etcd' % what, 'etcdctl get --prefix' +
                         (' --keys-only' if ewhat == 'ls_R' else ''))
            self.doc.num('traversals.%s.cold_ratio' % what, rc)
            self.doc.num('traversals.%s.warm_ratio' % what, rw)
            self.doc.num('traversals.%s.null_ms' % what, z['ms'] if z['complete'] else '-')
            self.doc.num('traversals.%s.null_ratio' % what, rz)
        self.doc.num('traversals.runs', runs)

    def stability(self):
        st, cell, doc = self.res.stability, self.cell, self.doc
        clients = self.run('stability_clients')

        def stf(sys_, what):
            return st.get(sys_, {}).get(what, '')

        def elections(sys_):
            return as_int(stf(sys_, 'term1')) - as_int(stf(sys_, 'term0'))

        def terms(sys_):
            return '%s -> %s (%d)' % (stf(sys_, 'term0') or '?', stf(sys_, 'term1') or '?',
                                      elections(sys_))

        def puts(c):
            return '%s, %s' % (num(cell(c, 'ops_s')), cell(c, 'errors') or '-')

        def no_leader(sys_):
            return '%s/%s' % (stf(sys_, 'no_leader') or '-', stf(sys_, 'samples') or '0')

        self.p()
        self.srow('stability: %s s, %s cl. via follower, both' % (
            self.run('stability_seconds'), clients), 'vaultfs', 'etcd', '')
        self.p(SCALE_RULE)
        self.srow('puts: op/s, failed', puts('stab-v'), puts('stab-e'), '')
        self.srow('term before -> after (elections)', terms('vaultfs'), terms('etcd'),
                  '0 elections')
        self.srow('leader changes (1 s samples)', stf('vaultfs', 'changes') or '-',
                  stf('etcd', 'changes') or '-', '0')
        self.srow('samples without an agreed leader', no_leader('vaultfs'), no_leader('etcd'), '')
        doc.num('stability.seconds', self.run('stability_seconds'))
        doc.num('stability.clients', clients)
        for sys_, load_cell in (('vaultfs', 'stab-v'), ('etcd', 'stab-e')):
            doc.str('stability.%s.load_cell' % sys_, load_cell)
            for f in ('term0', 'term1', 'changes', 'no_leader', 'samples'):
                doc.num('stability.%s.%s' % (sys_, f), stf(sys_, f))
            doc.str('stability.%s.leader_before' % sys_, stf(sys_, 'leader0'))
            doc.str('stability.%s.leader_after' % sys_, stf(sys_, 'leader1'))
            doc.num('stability.%s.elections' % sys_, elections(sys_))

    def demo(self):
        """The demo, and the failed operations of every cell."""
        demo, run, doc = self.res.demo, self.run, self.doc
        self.p()
        if run('demo') == '1':
            self.p('demo (examples/demo.sh, alone after both clusters stopped): %s s wall, exit %s;'
                   % (demo.get('secs', '') or '?', demo.get('exit', '') or '?'))
            self.p('its build of ./build (included in the time): %s; log %s' % (
                demo.get('build', '') or '?', run('demo_log')))
        else:
            self.p('demo: skipped (BENCH_DEMO=%s)' % run('demo'))
        errs = sum(int(c['errors']) for c in self.res.cells.values()
                   if re.fullmatch(r'[0-9]+', c['errors']))
        self.p('failed operations during the cells: %d' % errs)
        doc.bool('demo.ran', run('demo') == '1')
        doc.num('demo.wall_seconds', demo.get('secs', ''))
        doc.num('demo.exit_status', demo.get('exit', ''))
        doc.str('demo.build', demo.get('build', ''))
        doc.str('demo.log', run('demo_log'))
        doc.num('failed_operations', errs)


def report(res, json_path, out):
    """Prints the tables to OUT, writes JSON_PATH and lists what did not
    work; returns that list."""
    rep = Report(res, out)
    rep.header()
    rep.cells()
    rep.puts_reads()
    rep.local_reads()
    rep.cpu()
    rep.failover()
    rep.floor()
    rep.scale()
    rep.traversals()
    rep.mixed()
    rep.million()
    rep.stability()
    rep.demo()
    problems = list(res.problems)
    for i, msg in enumerate(problems):
        rep.doc.str('problems.#%d' % i, msg)
    try:
        if os.path.dirname(json_path):
            os.makedirs(os.path.dirname(json_path), exist_ok=True)
        with open(json_path, 'w', encoding='utf-8') as f:
            json.dump(rep.doc.ordered(), f, indent=2, allow_nan=False)
            f.write('\n')
        with open(json_path, encoding='utf-8') as f:
            json.load(f)
    except (OSError, ValueError):
        msg = 'the JSON file %s could not be written or is not valid JSON' % json_path
        problems.append(msg)
        print('# PROBLEM: ' + msg, file=sys.stderr)
    rep.p()
    rep.p('results as JSON: ' + json_path)
    if problems:
        rep.p()
        rep.p('%d thing(s) did not work:' % len(problems))
        for msg in problems:
            rep.p('- ' + msg)
    return problems


# ---- self-test --------------------------------------------------------------

def selftest():
    """The report on report-selftest/raw.tsv (a short run's figures, with a
    failover and a cold start that timed out, failed operations, a listing
    that missed secrets, a failed demo; the null filesystem's cells, the
    many-secrets cells and CPU figures from another short run, and a cell,
    put-vl-64, whose CPU was not measured; the local_reads, creates, mixed,
    failexec and traversal records of a third, with an etcd failexec trial
    that timed out, a warm stat run that missed a secret, the null
    filesystem's traversals but find's, a create cell,
    createsh-n-64, that did not run, and the first two listings in the
    older form, one run and no cache) must be expected.txt and
    expected.json: what bench.sh printed and wrote for those figures before
    report.py existed, with the tables and fields added since; and report()
    returns the problems (with --strict, exit status 1)."""
    records = read_raw(os.path.join(SELFTEST_DIR, 'raw.tsv'))
    out = io.StringIO()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            problems = report(Results(records), 'bench.json', out)
            with open('bench.json', encoding='utf-8') as f:
                got_json = f.read()
        finally:
            os.chdir(cwd)
    failed = 0
    for name, got in (('expected.txt', out.getvalue()), ('expected.json', got_json)):
        with open(os.path.join(SELFTEST_DIR, name), encoding='utf-8') as f:
            want = f.read()
        if got != want:
            failed += 1
            sys.stdout.writelines(difflib.unified_diff(
                want.splitlines(True), got.splitlines(True), name, 'report.py'))
    if len(problems) != sum(1 for kind, _ in records if kind == 'problem') or not problems:
        failed += 1
        print('report() returned %d problems' % len(problems))
    print('report.py self-test: %s' % ('FAILED' if failed else 'ok'))
    return 1 if failed else 0


def main(argv):
    if argv == ['--selftest']:
        return selftest()
    strict = '--strict' in argv
    args = [a for a in argv if a != '--strict']
    if len(args) != 2 or args[0].startswith('-'):
        print('usage: tests/bench/report.py [--strict] RAW JSON | --selftest', file=sys.stderr)
        return 2
    problems = report(Results(read_raw(args[0])), args[1], sys.stdout)
    return 1 if strict and problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
