"""Lateness of cron runs due while the leading `agora cron` is replaced.

Starts etcd (from the PATH), an `agora master`, an `agora agent` and two `agora cron --etcd`
with the given lease on loopback (ports 23791, 23801, 25151, 25152, 24401, 24402, state in a
temporary directory); adds 20 jobs every 2 s (`true`); SIGKILLs the leading `agora cron`
OFFSET seconds after the jobs' first run (an odd offset such as 7.9 puts the kill just
before a due time, so that the runs due next are due while nobody leads); reads every run
from the new leader's history 12 s later and prints one JSON line: runs, runs never
started, the lateness (start - scheduled time) of the runs due in the 8 s after the kill.

Usage: python3 benches/scripts/cron_takeover.py PATH/TO/agora [LEASE=2s] [OFFSET=7.9]
"""
import json, os, signal, subprocess, sys, time, urllib.request, statistics, tempfile
AGORA = sys.argv[1]; LEASE = sys.argv[2] if len(sys.argv) > 2 else "2s"; OFFSET = float(sys.argv[3]) if len(sys.argv) > 3 else 7.9
d = tempfile.mkdtemp(prefix="takeover-")
procs = []
def spawn(name, args):
    f = open(os.path.join(d, name + ".log"), "w")
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, cwd=d)
    procs.append(p); return p
def get(url):
    with urllib.request.urlopen(url, timeout=5) as r: return json.loads(r.read() or b"null")
def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r: return r.status
def wait(what, f, t=30):
    end = time.time() + t
    while time.time() < end:
        try:
            v = f()
            if v: return v
        except Exception: pass
        time.sleep(0.1)
    raise SystemExit("timeout: " + what)
try:
    spawn("etcd", ["etcd", "--data-dir", d + "/etcd", "--listen-client-urls", "http://127.0.0.1:23791", "--advertise-client-urls", "http://127.0.0.1:23791", "--listen-peer-urls", "http://127.0.0.1:23801"])
    time.sleep(1.5)
    spawn("master", [AGORA, "master", "--port", "25151", "--work-dir", d + "/master"])
    wait("master", lambda: urllib.request.urlopen("http://127.0.0.1:25151/health", timeout=2).status == 200)
    spawn("agent", [AGORA, "agent", "--master", "127.0.0.1:25151", "--port", "25152", "--work-dir", d + "/agent", "--resources", "cpus:16;mem:16384;disk:100000;ports:[31000-32000]"])
    crons = {}
    for name, port in (("a", 24401), ("b", 24402)):
        crons[port] = spawn("cron-" + name, [AGORA, "cron", "--master", "127.0.0.1:25151", "--etcd", "127.0.0.1:23791", "--etcd-lease-ttl", LEASE, "--port", str(port), "--work-dir", d + "/cron-" + name])
    def leader():
        for port in crons:
            try:
                if get("http://127.0.0.1:%d/leader" % port)["leader"] == "127.0.0.1:%d" % port: return port
            except Exception: pass
    lead = wait("leader", leader)
    start = (int(time.time()) + 4)
    startiso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    for i in range(20):
        post("http://127.0.0.1:%d/v1/scheduler/iso8601" % lead, {"name": "t%02d" % i, "command": "true", "schedule": "R/%s/PT2S" % startiso, "epsilon": "PT60S", "cpus": 0.01, "mem": 8, "disk": 1, "retries": 0})
    time.sleep(start - time.time() + OFFSET)
    killed_at = time.time()
    crons[lead].send_signal(signal.SIGKILL)
    other = [p for p in crons if p != lead][0]
    became = wait("the other to lead", lambda: leader() == other and time.time(), 20)
    print("killed leader", lead, "new leader", other, "after %.2f s" % (became - killed_at))
    time.sleep(max(0, 12 - (time.time() - killed_at)))
    rows = []
    for i in range(20):
        for r in get("http://127.0.0.1:%d/v1/scheduler/job/t%02d/history?limit=1000" % (other, i)):
            sched = r.get("scheduled"); started = r.get("started") or r.get("start")
            rows.append((sched, started, r.get("state"), i))
    def ms(t):
        from datetime import datetime
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
    lat_all, lat_takeover, missing = [], [], 0
    by = {}
    for s, st, state, job in rows:
        by[(job, s)] = by.get((job, s), 0) + 1
        if st is None: missing += 1; continue
        l = ms(st) - ms(s)
        lat_all.append(l)
        if ms(s) >= killed_at * 1000 - 1 and ms(s) <= killed_at * 1000 + 8000: lat_takeover.append(l)
    lat_takeover.sort()
    print(json.dumps({"lease": LEASE, "runs": len(rows), "not_started": missing, "doubled": sum(1 for n in by.values() if n > 1), "states": sorted({x[2] for x in rows}),
        "takeover_runs": len(lat_takeover), "takeover_lateness_ms_max": round(max(lat_takeover), 1) if lat_takeover else None,
        "takeover_lateness_ms_p50": round(statistics.median(lat_takeover), 1) if lat_takeover else None,
        "other_lateness_ms_p99": round(sorted(lat_all)[int(len(lat_all) * 0.99) - 1], 1) if lat_all else None}))
finally:
    for p in procs:
        try: p.kill()
        except Exception: pass
    subprocess.run(["pkill", "-KILL", "-P", str(os.getpid())], check=False)
