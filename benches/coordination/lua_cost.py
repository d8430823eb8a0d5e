#!/usr/bin/env python3
"""Instructions Redis executes per transition, per side, counted with callgrind.

Timings on a shared machine drift; instruction counts do not. This starts a
private redis-server under `valgrind --tool=callgrind`, collecting only inside
`processCommand` (the execution of every command a client sends, scripts
included with the commands they run; not the socket reads and writes), seeds
N sandboxes per side, and drives N uncontended transitions of each side:

  ceiling    2 x EVALSHA `return 1` (benches/coordination/limit.rs)
  minimal    lua/minimal_begin.lua + lua/minimal_finish.lua (minimal.rs)
  ours       the library's begin_snapshot.lua + finish.lua, called as
             src/ops/begin.rs and src/ops/finish.rs call them (KEYS and
             ARGV as each script's header says)
  functions  (--functions) ours loaded as one Function library and called
             with FCALL: the same Lua, its helpers defined once per load
  reference  the reference protocol's begin (lock, 2 GET, start script,
             release script, PUBLISH) and completion (lock, SET, DEL,
             release, 2 PUBLISH), as reference.rs sends them

Each side's begins are sent (pipelined) and answered, then its finishes (a
finish needs the fence its begin returned). A marker command (ECHO) between
phases makes callgrind dump and zero its counters (`--dump-before=echoCommand`),
so each phase is one dump part.

    cargo bench --bench coordination -- --dump-scripts DIR
    python3 benches/coordination/lua_cost.py --scripts DIR [-n N] [--profile] [--silent]

DIR holds the library's assembled scripts (`scripts::assemble` with the
default lifecycle and options; `sandboxctl scripts --dump DIR` once it
exists). Records are seeded as lua/register.lua writes them: v=2,
lc=<lifecycle digest, read from the dumped scripts>, state, exec, end_ms,
fence, data, and the team's `expiry` and `ids` zsets. `--profile` also
prints, per phase, the functions with the most instructions (exclusive and
inclusive). `--machine` prints
`instr <side> <begin|finish> <instructions per call>` lines (read by the
bench's `instructions` section). `--silent` adds a side `silent`: ours with
the team views' announcements stubbed out (ANNOUNCE_STUBS), for what they
cost, measured in the same run. Needs redis-server and valgrind;
`--redis-server BIN` counts another build (Debian's is stripped, so
--profile names Lua's internal functions only with a build that has symbols).
"""
import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_LUA = os.path.join(HERE, "lua")
# ours.rs DATA: the opaque blob every sandbox carries (162 bytes).
DATA = ('{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,'
        '"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench",'
        '"purpose":"load"}}')
TEAMS = 16
END_MS = str(int(time.time() * 1000) + 30 * 24 * 3600 * 1000)
LEASE_MS = "30000"      # BeginOptions::default().lease
QUEUE_MS = "4000"       # Runtime::queue_place with the default 1 s poll
OUTCOME_MS = "600000"   # the default outcome retention
HOLDER = "4242-00c0ffee0042"  # <pid>-<hex>, as Runtime::next_holder prefixes


def team_id(t):
    return f"00000000-0000-4000-8000-{t:012d}"


def sandbox_id(n):
    return f"i{n:019d}"


def execution_id(n):
    return f"e0000000-0000-4000-8000-{n:012d}"


# --- a minimal RESP client over a unix socket ---------------------------------

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")

    def pipeline(self, commands):
        """Sends every command (RESP bytes), returns every reply; errors raise."""
        self.s.sendall(b"".join(commands))
        replies = [self.reply() for _ in commands]
        for r in replies:
            if isinstance(r, RuntimeError):
                sys.exit(f"redis error: {r}")
        return replies

    def call(self, *args):
        return self.pipeline([resp(*args)])[0]


# --- the sides ----------------------------------------------------------------

class Side:
    """One side's keys, seeding and two phases; `n` sandboxes, 16 teams."""

    def __init__(self, name, ns, n):
        self.name, self.ns, self.n = name, ns, n
        self.ids = [(team_id(i % TEAMS), sandbox_id(i), i) for i in range(n)]

    def tp(self, team):
        return f"{self.ns}:{{{team}}}:"


def data_pieces(data):
    """The record fields of `data` as lua/include/data.lua writes them."""
    out = []
    for k in range(max(1, (len(data) + 63) // 64)):
        out += ["data" if k == 0 else f"data:{k + 1}", data[64 * k:64 * (k + 1)]]
    return out


def v3_seed(side, digest):
    out = []
    for team, sid, i in side.ids:
        tp = side.tp(team)
        out.append(resp("HSET", tp + "rec:" + sid, "v", "3", "lc", digest, "state", "running",
                        "exec", execution_id(i), "end_ms", END_MS, "fence", "0", *data_pieces(DATA)))
        out.append(resp("ZADD", tp + "expiry", END_MS, sid))
        out.append(resp("ZADD", tp + "ids", "0", sid))
    return out


class Ceiling(Side):
    def setup(self, conn, scripts):
        self.sha = conn.call("SCRIPT", "LOAD", "return 1")

    def begin(self, conn):
        conn.pipeline([resp("EVALSHA", self.sha, 0) for _ in self.ids])

    def finish(self, conn):
        conn.pipeline([resp("EVALSHA", self.sha, 0) for _ in self.ids])


class Minimal(Side):
    def setup(self, conn, scripts):
        self.begin_sha = conn.call("SCRIPT", "LOAD", read(BENCH_LUA, "minimal_begin.lua"))
        self.finish_sha = conn.call("SCRIPT", "LOAD", read(BENCH_LUA, "minimal_finish.lua"))
        conn.pipeline(v3_seed(self, scripts["digest"]))

    def begin(self, conn):
        replies = conn.pipeline([
            resp("EVALSHA", self.begin_sha, 2, self.tp(team) + "rec:" + sid, self.tp(team) + "fence",
                 f"bench/{i}", LEASE_MS)
            for team, sid, i in self.ids])
        self.fences = [expect(r, "started", "minimal begin")[1] for r in replies]

    def finish(self, conn):
        replies = conn.pipeline([
            resp("EVALSHA", self.finish_sha, 2, self.tp(team) + "rec:" + sid,
                 f"{self.tp(team)}out:{sid}:{fence}", fence, f"bench/{i}", "succeeded",
                 self.tp(team) + "notify", sid, OUTCOME_MS)
            for (team, sid, i), fence in zip(self.ids, self.fences)])
        for r in replies:
            expect(r, "finished", "minimal finish")


class Ours(Side):
    def setup(self, conn, scripts):
        self.begin_sha = conn.call("SCRIPT", "LOAD", scripts["begin_snapshot"])
        self.finish_sha = conn.call("SCRIPT", "LOAD", scripts["finish"])
        conn.pipeline(v3_seed(self, scripts["digest"]))

    def begin(self, conn):
        # src/ops/begin.rs: KEYS record, expiry, tombs, ids, seq; ARGV team
        # prefix, id, holder, lease ms, expected execution, eviction, queue ms.
        replies = conn.pipeline([
            resp("EVALSHA", self.begin_sha, 5, self.tp(team) + "rec:" + sid, self.tp(team) + "expiry",
                 self.tp(team) + "tombs", self.tp(team) + "ids", self.tp(team) + "seq", self.tp(team), sid,
                 f"{HOLDER}/{i}", LEASE_MS, "", "0", QUEUE_MS)
            for team, sid, i in self.ids])
        self.fences = [expect(r, "started", "begin_snapshot")[1] for r in replies]

    def finish(self, conn):
        # src/ops/finish.rs: KEYS record, outcome, expiry, tombs, seq; ARGV team
        # prefix, id, fence, holder, action, outcome, reason.
        replies = conn.pipeline([
            resp("EVALSHA", self.finish_sha, 5, self.tp(team) + "rec:" + sid,
                 f"{self.tp(team)}out:{sid}:{fence}", self.tp(team) + "expiry", self.tp(team) + "tombs",
                 self.tp(team) + "seq", self.tp(team), sid, fence, f"{HOLDER}/{i}", "snapshot", "succeeded", "")
            for (team, sid, i), fence in zip(self.ids, self.fences)])
        for r in replies:
            expect(r, "finished", "finish")


class Reference(Side):
    """reference.rs, step by step (its header numbers the steps)."""

    def rec(self, team, sid):
        return f"{self.ns}:{{{team}}}:sandboxes:{sid}"

    def json(self, team, sid, i, state):
        return (f'{{"sandboxID":"{sid}","teamID":"{team}","executionID":"exec-{sid}",'
                f'"state":"{state}","endTime":{END_MS},"data":{DATA}}}')

    def setup(self, conn, scripts):
        self.start_sha = conn.call("SCRIPT", "LOAD", read(BENCH_LUA, "reference_start.lua"))
        self.release_sha = conn.call("SCRIPT", "LOAD", read(BENCH_LUA, "reference_release.lua"))
        out = []
        for team, sid, i in self.ids:
            out.append(resp("SET", self.rec(team, sid), self.json(team, sid, i, "running")))
            out.append(resp("SET", self.rec(team, sid) + ":eid", f"exec-{sid}"))
        conn.pipeline(out)

    def begin(self, conn):
        out = []
        channel = f"{self.ns}:notify"
        for team, sid, i in self.ids:
            key = self.rec(team, sid)
            tkey = f"{self.ns}:{{{team}}}:transition:{sid}"
            lock, token, tid = key + ":lock", f"{i:032x}", f"{i + 1:032x}"
            out += [
                resp("SET", lock, token, "NX", "PX", 10000),                       # 1
                resp("GET", key),                                                  # 2
                resp("GET", tkey),                                                 # 3
                resp("EVALSHA", self.start_sha, 4, key, tkey, f"{tkey}:{tid}",     # 4
                     key + ":eid", self.json(team, sid, i, "snapshotting"), tid, 60, 30, "",
                     f"exec-{sid}"),
                resp("EVALSHA", self.release_sha, 1, lock, token),                 # 5
                resp("PUBLISH", channel, "lock " + lock),
            ]
        conn.pipeline(out)

    def finish(self, conn):
        out = []
        channel = f"{self.ns}:notify"
        for team, sid, i in self.ids:
            tkey = f"{self.ns}:{{{team}}}:transition:{sid}"
            lock, token, tid = tkey + ":lock", f"{i + 7:032x}", f"{i + 1:032x}"
            out += [
                resp("SET", lock, token, "NX", "PX", 10000),                       # 6
                resp("SET", f"{tkey}:{tid}", "", "EX", 30),                         # 7
                resp("DEL", tkey),                                                 # 8
                resp("EVALSHA", self.release_sha, 1, lock, token),                 # 9
                resp("PUBLISH", channel, "lock " + lock),
                resp("PUBLISH", channel, f"{team}/{sid}/{tid}"),                   # 10
            ]
        conn.pipeline(out)


SIDES = [("ceiling", Ceiling), ("minimal", Minimal), ("ours", Ours), ("reference", Reference)]

# What the team views' announcements do in begin_snapshot.lua and finish.lua
# (lua/include/notify.lua), stubbed out for the `silent` side: the check of
# the team's sequence before the writes, reading the record back, the TIME,
# INCR and announcement (the wake-up message still published, as before
# views). benches/team_view.rs stubs the same for its commandstats A/B.
ANNOUNCE_STUBS = [
    ("local function announce(change, message, now, seq)\n",
     "local function announce(change, message, now, seq)\n"
     "  if message then redis.call(PUBLISH, TP .. 'notify', message) end\n  do return end\n"),
    ("local function record_change(id)\n", "local function record_change(id)\n  do return '' end\n"),
    ("local function change_line(id, state, exec, fence, end_ms, action, holder, until_ms, resv, ttl)\n",
     "local function change_line(id, state, exec, fence, end_ms, action, holder, until_ms, resv, ttl)\n"
     "  do return '' end\n"),
    ("local function sequence_refusal()\n", "local function sequence_refusal()\n  do return nil end\n"),
    ("local function claim_sequence()\n", "local function claim_sequence()\n  do return '0', nil end\n"),
]


def function_library(scripts):
    """begin_snapshot.lua and finish.lua as one Redis Function library
    (`FUNCTION LOAD`, called with FCALL): each script's constants and
    helpers at the library's top level, defined once per load; the locals
    it reads from KEYS/ARGV declared there too and assigned at the start of
    each call (Redis runs one call at a time); the rest of its top level
    (from `local now ... = clock()` on) as the function's body. The same
    Lua as the EVAL side, so the difference is what defining the helpers
    on every call costs."""
    out = ["#!lua name=sbxcost"]
    for name, fn in (("begin_snapshot", "b"), ("finish", "f")):
        lines = scripts[name].split("\n")
        body = next(i for i, line in enumerate(lines) if re.match(r"^local now.* = clock\(\)", line))
        out.append("do")
        per_call = []
        for line in lines[:body]:
            m = re.match(r"^local ([\w, ]+) = (.*\b(KEYS|ARGV)\b.*)$", line)
            if m:
                out.append("local " + m.group(1))
                per_call.append(m.group(1) + " = " + m.group(2))
            else:
                out.append(line)
        out.append(f"redis.register_function('{fn}', function(KEYS, ARGV)")
        out += per_call + lines[body:]
        out += ["end)", "end"]
    return "\n".join(out)


class Functions(Ours):
    """ours as a Function library (function_library), called with FCALL."""

    def setup(self, conn, scripts):
        conn.call("FUNCTION", "LOAD", "REPLACE", function_library(scripts))
        conn.pipeline(v3_seed(self, scripts["digest"]))

    def begin(self, conn):
        replies = conn.pipeline([
            resp("FCALL", "b", 5, self.tp(team) + "rec:" + sid, self.tp(team) + "expiry",
                 self.tp(team) + "tombs", self.tp(team) + "ids", self.tp(team) + "seq", self.tp(team),
                 sid, f"{HOLDER}/{i}", LEASE_MS, "", "0", QUEUE_MS)
            for team, sid, i in self.ids])
        self.fences = [expect(r, "started", "begin_snapshot (FCALL)")[1] for r in replies]

    def finish(self, conn):
        replies = conn.pipeline([
            resp("FCALL", "f", 5, self.tp(team) + "rec:" + sid,
                 f"{self.tp(team)}out:{sid}:{fence}", self.tp(team) + "expiry", self.tp(team) + "tombs",
                 self.tp(team) + "seq", self.tp(team), sid, fence, f"{HOLDER}/{i}", "snapshot",
                 "succeeded", "")
            for (team, sid, i), fence in zip(self.ids, self.fences)])
        for r in replies:
            expect(r, "finished", "finish (FCALL)")


class Silent(Ours):
    """ours without the team views' announcements (ANNOUNCE_STUBS)."""

    def setup(self, conn, scripts):
        quiet = dict(scripts)
        for name in ("begin_snapshot", "finish"):
            # (A script holds only the helpers it calls: a stub whose helper
            # is not there has nothing to stub. announce is always there.)
            if ANNOUNCE_STUBS[0][0] not in quiet[name]:
                sys.exit(f"{name}.lua has no {ANNOUNCE_STUBS[0][0].strip()!r} to stub")
            for old, new in ANNOUNCE_STUBS:
                quiet[name] = quiet[name].replace(old, new)
        super().setup(conn, quiet)


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read()


def expect(reply, status, what):
    if not isinstance(reply, list) or reply[0] != status:
        sys.exit(f"{what}: expected {status!r}, got {reply!r}")
    return reply


def load_scripts(d):
    scripts = {}
    for name in ("begin_snapshot", "finish"):
        path = os.path.join(d, name + ".lua")
        if not os.path.exists(path):
            sys.exit(f"{path} missing: write the scripts with "
                     "`cargo bench --bench coordination -- --dump-scripts DIR`")
        scripts[name] = read(d, name + ".lua")
    m = re.search(r"^local LIFECYCLE = '([^']+)'", scripts["finish"], re.M)
    if not m:
        sys.exit("no LIFECYCLE constant in finish.lua: not a v2 script?")
    scripts["digest"] = m.group(1)
    return scripts


def parts_total(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


# Groups of functions for --profile's summary (exclusive instructions).
GROUPS = [
    ("numbers (strtod, printf)", ("____strtod", "__printf_fp", "hack_digit", "str_to_mpn", "__mpn",
                                  "round_and_return", "__vfprintf", "vfprintf", "_IO_", "__strchrnul",
                                  "snprintf", "fpconv", "ll2string", "string2l")),
    ("Lua VM (luaV_, luaD_, luaF_, lua_ API)", ("luaV_", "luaD_", "luaF_", "lua_", "luaL_", "luaO_",
                                                "luaG_", "luaK_", "luaT_", "index2adr", "f_call")),
    ("Lua tables (luaH_)", ("luaH_", "mainposition", "newkey", "rehash", "resize", "computesizes",
                            "numusehash", "numusearray", "setnodevector", "luaH")),
    ("Lua strings (luaS_, string library)", ("luaS_", "str_", "match", "singlematch", "lmemfind",
                                             "classend", "luaI_", "push_onecapture", "push_captures",
                                             "start_capture", "do_match", "gmatch", "tostring")),
    ("Lua GC (luaC_, mark and sweep)", ("luaC_", "sweeplist", "propagatemark", "singlestep",
                                        "reallymarkobject", "markroot", "traverse", "atomic",
                                        "remarkupvals", "cleartable", "freeobj", "GCTM", "marktmu")),
    ("allocator (malloc, free, realloc, l_alloc)", ("malloc", "_int_", "free", "realloc", "luaM_",
                                                    "l_alloc", "je_", "unlink_chunk", "calloc",
                                                    "cfree", "zmalloc", "zfree", "zrealloc",
                                                    "tcache", "__libc_malloc", "__libc_free")),
]


def grouped(own):
    totals = {name: 0 for name, _ in GROUPS}
    rest = 0
    for fn, v in own.items():
        for name, prefixes in GROUPS:
            if fn.startswith(prefixes) and not fn.startswith(("freeLua", "freeClient")):
                totals[name] += v
                break
        else:
            rest += v
    return list(totals.items()) + [("Redis (commands, redis.call glue, replies) and the rest", rest)]


def profile(path, top=16):
    """Top functions of one dump part: [("exclusive", rows), ("inclusive", rows)],
    rows = (instructions, function). Read from the callgrind file directly
    (written with --compress-strings=no): a cost line under fn= is that
    function's own; the line after calls= is the inclusive cost of a call."""
    own, incl = {}, {}
    fn, after_calls = None, False
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].strip()
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if not line[:1].isdigit() and line[:1] not in "+-*":
                continue
            parts = line.split()
            if len(parts) < 2 or fn is None:
                continue
            cost = int(parts[1])
            if after_calls:
                incl[fn] = incl.get(fn, 0) + cost
                after_calls = False
            else:
                own[fn] = own.get(fn, 0) + cost
                incl[fn] = incl.get(fn, 0) + cost
    rank = lambda d: sorted(((v, k) for k, v in d.items()), reverse=True)[:top]
    groups = [(v, k) for k, v in grouped(own)]
    return [("by group (exclusive)", groups), ("exclusive", rank(own)), ("inclusive", rank(incl))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scripts", required=True, metavar="DIR",
                    help="the library's assembled scripts (--dump-scripts DIR)")
    ap.add_argument("-n", type=int, default=1000, help="transitions per side (default 1000)")
    ap.add_argument("--profile", action="store_true", help="top functions per phase")
    ap.add_argument("--machine", action="store_true", help="only `instr` lines")
    ap.add_argument("--silent", action="store_true",
                    help="also a side `silent`: ours with the team views' announcements stubbed out")
    ap.add_argument("--functions", action="store_true",
                    help="also a side `functions`: ours loaded as a Function library, called with FCALL")
    ap.add_argument("--redis-server", default="redis-server", metavar="BIN",
                    help="the server to count (default: redis-server on PATH; a build with "
                         "symbols names Lua's functions in --profile)")
    args = ap.parse_args()
    for tool in (args.redis_server, "valgrind"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    scripts = load_scripts(args.scripts)
    n = args.n

    d = tempfile.mkdtemp(prefix="lua-cost-")
    sock = os.path.join(d, "r.sock")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--toggle-collect=processCommand",
         "--dump-before=echoCommand", "--compress-strings=no", "--compress-pos=no",
         f"--callgrind-out-file={d}/callgrind.out",
         args.redis_server, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if os.path.exists(sock):
                try:
                    conn = Conn(sock)
                    if conn.call("PING") == "PONG":
                        break
                except OSError:
                    pass
            time.sleep(0.1)
        else:
            sys.exit("redis-server under valgrind did not start")
        kinds = (SIDES + ([("silent", Silent)] if args.silent else [])
                 + ([("functions", Functions)] if args.functions else []))
        sides = [(name, cls(name, f"lc{name}", n)) for name, cls in kinds]
        for _, side in sides:
            side.setup(conn, scripts)
        # Each ECHO dumps what ran since the previous one: part k+1 is phase k.
        phases = []
        conn.call("ECHO", "setup")
        for name, side in sides:
            for step in ("begin", "finish"):
                getattr(side, step)(conn)
                conn.call("ECHO", f"{name} {step}")
                phases.append((name, step))
        conn.call("SHUTDOWN", "NOSAVE")
    except (EOFError, ConnectionResetError):
        pass
    server.wait()
    parts = sorted(glob.glob(f"{d}/callgrind.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    # Part 1 is the setup; part k + 2 is phase k; the last one is the shutdown.
    if len(parts) < len(phases) + 1:
        sys.exit(f"callgrind wrote {len(parts)} parts for {len(phases)} phases")
    per = {}
    for (name, step), path in zip(phases, parts[1:]):
        per[(name, step)] = parts_total(path) / n
    if args.machine:
        for (name, step), v in per.items():
            print(f"instr {name} {step} {v:.0f}")
    else:
        print(f"instructions per call (callgrind, inside processCommand, N={n} per side):")
        print(f"  {'side':<10} {'begin':>10} {'finish':>10} {'transition':>11} {'/ minimal':>10}")
        floor = per[("minimal", "begin")] + per[("minimal", "finish")]
        for name, _ in kinds:
            b, f = per[(name, "begin")], per[(name, "finish")]
            print(f"  {name:<10} {b:10.0f} {f:10.0f} {b + f:11.0f} {(b + f) / floor:9.2f}x")
    if args.profile:
        for (name, step), path in zip(phases, parts[1:]):
            print(f"\n== {name} {step}: {per[(name, step)]:.0f} instructions per call")
            for kind, rows in profile(path):
                print(f"  -- {kind}, per call:")
                for ir, fn in rows:
                    print(f"  {ir / n:10.0f}  {fn[:110]}")
    if os.environ.get("LUA_COST_KEEP"):
        print(f"callgrind parts kept in {d}", file=sys.stderr)
    else:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
