#!/usr/bin/env python3
"""Times `agora run -- true` on a fresh `agora local` (one agent) per isolation mode.

Usage: run_latency.py AGORA_BINARY RUNS MODE... (modes: cgroups, posix); prints p50/p90 per round
and per mode. Two rounds, modes alternated within each."""
import json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request
BIN = sys.argv[1]; RUNS = int(sys.argv[2]); modes = sys.argv[3:]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
results = {}
for rnd in range(2):
  for mode in modes:
    d = tempfile.mkdtemp(); port = free_port()
    log = open(os.path.join(d, "local.log"), "w")
    local = subprocess.Popen([BIN, "local", "--port", str(port), "--agents", "1", "--no-services", "--no-cron",
                              "--work-dir", os.path.join(d, "w"), "--isolation", mode], stdout=log, stderr=log)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=1))
            if any(a.get("active") for a in s.get("slaves", [])): break
        except Exception: pass
        time.sleep(0.1)
    times = []
    for i in range(RUNS):
        t0 = time.monotonic()
        r = subprocess.run([BIN, "run", "--master", f"127.0.0.1:{port}", "--name", f"r{i}", "--", "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        t1 = time.monotonic()
        if r.returncode != 0: print("run failed", mode, r.returncode, file=sys.stderr)
        times.append((t1 - t0) * 1000)
    local.send_signal(signal.SIGINT); local.wait(timeout=60)
    results.setdefault(mode, []).extend(times)
    print(mode, "round", rnd, "p50 %.1f ms" % statistics.median(times), flush=True)
for mode, times in results.items():
    times.sort()
    print(mode, "n", len(times), "p50 %.1f" % statistics.median(times), "p90 %.1f" % times[int(len(times)*0.9)-1], "min %.1f max %.1f" % (times[0], times[-1]))
