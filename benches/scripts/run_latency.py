#!/usr/bin/env python3
"""Times `agora run -- true` on a fresh `agora local` (one agent) per isolation mode.

Usage: run_latency.py AGORA_BINARY RUNS MODE... (modes: cgroups, posix, posix-auth: posix
with `agora local --authenticate`, the run presenting the operator's credential, and
posix-secure: `agora local --secure`, TLS and authentication, the run also given the CA); prints
p50/p90 per round and per mode. Two rounds, modes alternated within each."""
import json, os, signal, socket, ssl, statistics, subprocess, sys, tempfile, time, urllib.request
BIN = sys.argv[1]; RUNS = int(sys.argv[2]); modes = sys.argv[3:]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
results = {}
for rnd in range(2):
  for mode in modes:
    d = tempfile.mkdtemp(); port = free_port()
    log = open(os.path.join(d, "local.log"), "w")
    secure = mode.endswith("-secure"); auth = secure or mode.endswith("-auth")
    isolation = mode.removesuffix("-auth").removesuffix("-secure")
    local = subprocess.Popen([BIN, "local", "--port", str(port), "--agents", "1", "--no-services", "--no-cron",
                              "--work-dir", os.path.join(d, "w"), "--isolation", isolation]
                             + (["--secure"] if secure else ["--authenticate"] if auth else []), stdout=log, stderr=log)
    env = {**os.environ, "RUST_LOG": "warn"}
    headers = {}
    if auth:
        secret_file = os.path.join(d, "w", "auth", "operator.secret")
        # The credentials file is written last: once it is there, every secret is whole.
        made_by = time.time() + 60
        while not os.path.exists(os.path.join(d, "w", "auth", "credentials")) and time.time() < made_by: time.sleep(0.1)
        env.update(AGORA_PRINCIPAL="operator", AGORA_SECRET_FILE=secret_file)
        headers["Authorization"] = "Bearer " + open(secret_file).read().strip()
    scheme, context, tls_flags = "http", None, []
    if secure:
        ca = os.path.join(d, "w", "tls", "ca.pem")
        made_by = time.time() + 60
        while not os.path.exists(ca) and time.time() < made_by: time.sleep(0.1)
        scheme, context, tls_flags = "https", ssl.create_default_context(cafile=ca), ["--tls-ca", ca]
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/state", headers=headers)
            s = json.load(urllib.request.urlopen(request, timeout=1, context=context))
            if any(a.get("active") for a in s.get("slaves", [])): break
        except Exception: pass
        time.sleep(0.1)
    times = []
    for i in range(RUNS):
        t0 = time.monotonic()
        r = subprocess.run([BIN, "run", "--master", f"127.0.0.1:{port}", "--name", f"r{i}"] + tls_flags + ["--", "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        t1 = time.monotonic()
        if r.returncode != 0: print("run failed", mode, r.returncode, file=sys.stderr)
        times.append((t1 - t0) * 1000)
    local.send_signal(signal.SIGINT); local.wait(timeout=60)
    results.setdefault(mode, []).extend(times)
    print(mode, "round", rnd, "p50 %.1f ms" % statistics.median(times), flush=True)
for mode, times in results.items():
    times.sort()
    print(mode, "n", len(times), "p50 %.1f" % statistics.median(times), "p90 %.1f" % times[int(len(times)*0.9)-1], "min %.1f max %.1f" % (times[0], times[-1]))
