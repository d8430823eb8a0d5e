#!/usr/bin/env python3
"""Instructions Redis executes per script call, counted with callgrind.

Timings on a shared machine drift; instruction counts do not. This runs a
private redis-server under `valgrind --tool=callgrind` collecting only inside
`evalShaCommand`, seeds N sandbox records in the library's layout, sends N
pipelined `begin.lua` calls (snapshot, each one starts a transition), then N
`finish.lua` calls, and reports instructions per call for each script and for
a trivial `return 1`.

    python3 benches/coordination/lua_cost.py [LUA_DIR] [N]

LUA_DIR defaults to lua/ (pass a modified copy to measure a change). Needs
redis-server, redis-cli and valgrind. Arguments follow the scripts' headers;
keep them in step if a script's ARGV changes.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "lua")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
DATA = "x" * 162
CLASSES = "running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight"
RULES = ("running=start/start,pausing=invalid/invalid,paused=invalid/invalid,"
         "killing=invalid/invalid,killed=invalid/invalid,snapshotting=join/start")


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def keys(i):
    base = "sbx:{t}"
    return [f"{base}:rec:s{i}", f"{base}:lease:s{i}", f"{base}:out:s{i}", f"{base}:expiry"]


def run(phases):
    """Instructions inside evalShaCommand for `phases` (lists of commands)."""
    d = tempfile.mkdtemp(prefix="lua-cost-")
    sock = os.path.join(d, "r.sock")
    cli = lambda *a: subprocess.run(["redis-cli", "-s", sock, *a], capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand",
         f"--callgrind-out-file={d}/callgrind.out", "redis-server", "--port", "0",
         "--unixsocket", sock, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if cli("ping") == "PONG":
            break
        time.sleep(0.1)
    shas = {name: cli("script", "load", src) for name, src in SCRIPTS.items()}
    for phase in phases:
        data = b"".join(phase(shas))
        r = subprocess.run(["redis-cli", "-s", sock, "--pipe"], input=data, capture_output=True)
        if b"errors: 0" not in r.stdout:
            sys.exit(f"errors while sending: {r.stdout[-200:]!r}")
    cli("shutdown", "nosave")
    server.wait()
    text = open(f"{d}/callgrind.out").read()
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    for f in glob.glob(f"{d}/*"):
        os.remove(f)
    os.rmdir(d)
    return int(m.group(1))


SCRIPTS = {
    "trivial": "return 1",
    "begin": open(os.path.join(LUA, "begin.lua")).read(),
    "finish": open(os.path.join(LUA, "finish.lua")).read(),
}
seed = lambda s: [resp("HSET", keys(i)[0], "v", "1", "state", "running", "exec", f"e{i}",
                       "end_ms", "1893456000000", "fence", "0", "data", DATA)
                  + resp("ZADD", keys(i)[3], "1893456000000", f"s{i}") for i in range(N)]
begin = lambda s: [resp("EVALSHA", s["begin"], 5, *keys(i), "sbx:{t}:fence", "1", "t", f"s{i}",
                        "snapshot", "snapshotting", "0", "30000", f"h/{i}", "0", "",
                        "sbx:notify", "600000", CLASSES, RULES) for i in range(N)]
finish = lambda s: [resp("EVALSHA", s["finish"], 4, *keys(i), "1", "t", f"s{i}", i + 1,
                         "snapshot", "succeeded", "running", "0", "86400000", "",
                         "sbx:notify", "600000", CLASSES) for i in range(N)]
trivial = lambda s: [resp("EVALSHA", s["trivial"], 0) for _ in range(N)]

t = run([trivial]) / N
b = run([seed, begin]) / N
bf = run([seed, begin, finish]) / N
print(f"instructions per call (callgrind, inside evalShaCommand, N={N}):")
print(f"  return 1    {t:10.0f}")
print(f"  begin.lua   {b:10.0f}  ({b / t:.0f} x trivial)")
print(f"  finish.lua  {bf - b:10.0f}  ({(bf - b) / t:.0f} x trivial)")
print(f"  transition  {bf:10.0f}  vs 2 x trivial {2 * t:.0f}: {bf / (2 * t):.0f} x")
