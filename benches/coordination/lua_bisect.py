#!/usr/bin/env python3
"""Where the instructions of the library's begin and finish go: callgrind
counts of cut-down copies of the assembled scripts (bench only; the library
is not changed).

Each variant is the dumped script cut at a known line and ended with a reply
of the right shape, so the difference between two variants is the cost of
the lines between the cuts. Run on the same server as lua_cost.py
(`processCommand`, N calls per variant, one dump part per variant):

  b0  a script that only replies, with begin's KEYS and ARGV (argument
      passing and the reply)
  b1  + the generated prelude and every included helper defined (the
      script's top level up to `local now ... = clock()`)
  b2a + TIME and a raw HMGET of record.lua's 17 FIELDS
  b2b + the record table built from it (no validation)
  b2  + load_record as it is (validation: refusal())
  b4  the whole begin_snapshot.lua (decision, HSET, reply)
  f0..f4 the same cuts of finish.lua (f3: + recorded_outcome, the GET of
      the outcome key)
  f5  the whole finish.lua with the live-lease match checked before
      recorded_outcome (the GET only when the lease does not match: a
      candidate cut, same replies)

    cargo bench --bench coordination -- --dump-scripts DIR
    python3 benches/coordination/lua_bisect.py --scripts DIR [-n N] [--redis-server BIN]
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lua_cost as L  # noqa: E402

START = "return {'started', '1', '30000', 'e'}"
FIN = "return {'finished', 'running'}"


def cut(lines, at, tail):
    return "\n".join(lines[:at] + tail)


def variants(d):
    begin = L.read(d, "begin_snapshot.lua").split("\n")
    finish = L.read(d, "finish.lua").split("\n")
    bi = begin.index("local now, now_us = clock()")
    fi = finish.index("local now = clock()")
    hmget = "local x = redis.pcall('HMGET', REC, unpack(FIELDS))"
    table = ["local r = {}", "for i, f in ipairs(FIELDS) do r[f] = x[i] or '' end"]
    b = [
        ("b0 reply only, begin's KEYS/ARGV", START),
        ("b1 + prelude and helpers defined", cut(begin, bi, [START])),
        ("b2a + TIME + HMGET of 17 fields", cut(begin, bi, [begin[bi], hmget, START])),
        ("b2b + record table, no validation", cut(begin, bi, [begin[bi], hmget] + table + [START])),
        ("b2 + load_record (with validation)", cut(begin, bi, begin[bi:bi + 3] + [START])),
        ("b4 begin_snapshot.lua", "\n".join(begin)),
    ]
    tail = finish[fi:]
    rec = tail.index("local act, outcome, why = recorded_outcome(r, FENCE)")
    live = [
        "local now = clock()",
        "local r, err = load_record(REC)",
        "if err then return err end",
        "if not (r and r.fence == FENCE and r.holder == HOLDER and r.until_n > now and r.action == ACT) then",
        "  local act, outcome, why = recorded_outcome(r, FENCE)",
        "  if act then return {'recorded', outcome, why} end",
        "  if not r then return {'not_found'} end",
        "  return {'fenced', r.fence}",
        "end",
        "if r.lc ~= LIFECYCLE then return {'lifecycle', r.lc} end",
        "local state, refused = finish_transition(r, OUTCOME, REASON, now)",
        "if refused then return refused end",
        "return {'finished', state}",
    ]
    f = [
        ("f0 reply only, finish's KEYS/ARGV", FIN),
        ("f1 + prelude and helpers defined", cut(finish, fi, [FIN])),
        ("f2 + TIME + load_record", cut(finish, fi, tail[:rec] + [FIN])),
        ("f3 + recorded_outcome (GET)", cut(finish, fi, tail[:rec + 2] + [FIN])),
        ("f4 finish.lua", "\n".join(finish)),
    ]
    f5 = ("f5 finish.lua, GET only off the live path", cut(finish, fi, live))
    return b, f, f5


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scripts", required=True, metavar="DIR")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--redis-server", default="redis-server", metavar="BIN")
    args = ap.parse_args()
    n = args.n
    b, f, f5 = variants(args.scripts)
    d = tempfile.mkdtemp(prefix="lua-bisect-")
    sock = os.path.join(d, "r.sock")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--toggle-collect=processCommand",
         "--dump-before=echoCommand", f"--callgrind-out-file={d}/cg.out",
         args.redis_server, "--port", "0", "--unixsocket", sock, "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            conn = L.Conn(sock)
            if conn.call("PING") == "PONG":
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        sys.exit("redis-server under valgrind did not start")
    scripts = L.load_scripts(args.scripts)
    # Two sets of records: the begin/finish variants, and f5's own
    # transitions (a finish can end a transition once).
    sides = [L.Ours("ours", ns, n) for ns in ("bisect", "bisect5")]
    for side in sides:
        side.setup(conn, scripts)
    conn.call("ECHO", "setup")
    names = []

    def run(name, src, mk, side):
        sha = conn.call("SCRIPT", "LOAD", src)
        conn.call("ECHO", "loaded")
        replies = conn.pipeline([mk(sha, t, s, i) for (t, s, i) in side.ids])
        conn.call("ECHO", name)
        names.append(name)
        return replies

    def begin_args(side):
        def mk(sha, team, sid, i):
            tp = side.tp(team)
            return L.resp("EVALSHA", sha, 4, tp + "rec:" + sid, tp + "expiry", tp + "tombs",
                          tp + "ids", tp, sid, f"{L.HOLDER}/{i}", L.LEASE_MS, "", "0", L.QUEUE_MS)
        return mk

    def finish_args(side, fences):
        def mk(sha, team, sid, i):
            tp = side.tp(team)
            return L.resp("EVALSHA", sha, 4, tp + "rec:" + sid, f"{tp}out:{sid}:{fences[i]}",
                          tp + "expiry", tp + "tombs", tp, sid, fences[i], f"{L.HOLDER}/{i}",
                          "snapshot", "succeeded", "")
        return mk

    for name, src in b:
        replies = run(name, src, begin_args(sides[0]), sides[0])
    fences = [L.expect(r, "started", "begin")[1] for r in replies]
    for name, src in f:
        replies = run(name, src, finish_args(sides[0], fences), sides[0])
    for r in replies:
        L.expect(r, "finished", "finish")
    replies = run("(f5's begins)", b[-1][1], begin_args(sides[1]), sides[1])
    fences5 = [L.expect(r, "started", "begin")[1] for r in replies]
    replies = run(f5[0], f5[1], finish_args(sides[1], fences5), sides[1])
    for r in replies:
        L.expect(r, "finished", "f5")
    try:
        conn.call("SHUTDOWN", "NOSAVE")
    except (EOFError, ConnectionResetError):
        pass
    server.wait()
    parts = sorted(glob.glob(f"{d}/cg.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    # part 1: setup; then per variant a SCRIPT LOAD part and its run's part.
    print(f"instructions per call (callgrind, inside processCommand, N={n}):")
    prev = None
    for k, name in enumerate(names):
        if name.startswith("("):
            continue
        v = L.parts_total(parts[2 + 2 * k]) / n
        step = name.split()[0]
        delta = "" if prev is None or step in ("b0", "f0", "f5") else f"{v - prev:+9.0f}"
        print(f"  {v:9.0f} {delta:>9}  {name}")
        prev = v
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
