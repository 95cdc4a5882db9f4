"""Drives `agora cron` with chronos-python 1.2.1, the client Chronos users' scripts use,
the way those scripts call it: add scheduled and dependent jobs, list, search, update,
run, read stats and the graph, kill tasks, delete, and the errors it raises; with its
Chronos 3 paths (`/v1/scheduler`, POST) and its legacy ones (`/scheduler`, PUT to
update), and with a server that is down listed first.

Usage: python chronos_client.py CRON_URL [--no-runs]
Exits 0 when every check passed; otherwise prints what failed and exits 1. With
--no-runs it checks only what needs no agent (definitions, reads, errors).

chronos-python reports an API error as ChronosAPIError("No remaining Chronos servers to
try") after logging the server's message; the checks read that log to see which field
the server named.
"""

import json
import logging
import sys
import time
import traceback
import urllib.error
import urllib.request

import chronos  # noqa: E402
from chronos import ChronosAPIError, MissingFieldError, OneOfViolationError  # noqa: E402

# How long any one wait may take; runs start within a second or two on a healthy cluster.
WAIT_S = 30.0
STARTED = time.monotonic()


def log(message):
    print("[%6.2fs] %s" % (time.monotonic() - STARTED, message), flush=True)


def check(condition, message, *details):
    if not condition:
        raise AssertionError(message + "".join("\n  " + repr(d) for d in details))


def wait(what, probe, timeout=WAIT_S):
    """Polls `probe` until it returns a true value (returned); fails after `timeout`
    with what the last probe returned or raised."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (ChronosAPIError, AssertionError, KeyError, IndexError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s; last: %r" % (timeout, what, last))
        time.sleep(0.2)


class ClientLog(logging.Handler):
    """Keeps what chronos-python logs: the server's error messages end up only there."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def take(self):
        records, self.records = self.records, []
        return "\n".join(records)


CLIENT_LOG = ClientLog()


def refused(call, *args, names=()):
    """Calls `call`, which must fail with ChronosAPIError; the server's message (as the
    client logged it) must name every one of `names`. Returns that log."""
    CLIENT_LOG.take()
    try:
        call(*args)
    except ChronosAPIError:
        text = CLIENT_LOG.take()
        for name in names:
            check(name in text, "the error names %r" % name, text)
        return text
    raise AssertionError("%s%r was not refused" % (getattr(call, "__name__", call), args))


def job(name, command="echo hello", **fields):
    """A job as scripts write it: the fields chronos-python insists on, then the rest."""
    body = {"name": name, "command": command, "owner": "ops@example.com", "disabled": False}
    body.update(fields)
    return body


FUTURE = "R/2030-01-01T02:00:00Z/P1D"


def by_name(client, name):
    found = [j for j in client.list() if j["name"] == name]
    check(len(found) == 1, "one job named %s" % name, found)
    return found[0]


def graph_state(client, name):
    """The current state (`idle`, `queued`, `N running`) in Chronos' CSV graph."""
    for line in client.scheduler_graph().splitlines():
        parts = line.split(",")
        if parts[0] == "node" and parts[1] == name:
            return parts[3]
    raise AssertionError("%s is not in the graph" % name)


def raw(url, method, path, body):
    """A request chronos-python cannot make (a body that is not JSON): status and JSON."""
    request = urllib.request.Request(url + path, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def definitions(url, server):
    client = chronos.connect([server])
    check(client.list() == [], "no jobs at first", client.list())

    # Add: a scheduled job, then one that runs after it.
    check(client.add(job("nightly", schedule=FUTURE, scheduleTimeZone="Europe/London", epsilon="PT30M",
                         retries=1, cpus=0.1, mem=32, description="the nightly export")) is None,
          "adding answers 204, which the client returns as None")
    client.add(job("report", command="echo report", parents=["nightly"]))
    jobs = client.list()
    check([j["name"] for j in jobs] == ["nightly", "report"], "both listed", jobs)
    nightly = jobs[0]
    for key, value in [("successCount", 0), ("errorCount", 0), ("lastSuccess", ""), ("lastError", ""),
                       ("errorsSinceLastSuccess", 0), ("retries", 1), ("shell", True), ("disabled", False),
                       ("scheduleTimeZone", "Europe/London"), ("epsilon", "PT30M"), ("owner", "ops@example.com"),
                       ("description", "the nightly export"), ("mem", 32.0), ("cpus", 0.1), ("concurrent", False)]:
        check(nightly.get(key) == value, "nightly's %s" % key, nightly)
    check(nightly["schedule"].startswith("R/2030-01-01T02:00:00") and nightly["schedule"].endswith("/P1D"),
          "the schedule as given", nightly)
    check(jobs[1]["parents"] == ["nightly"] and "schedule" not in jobs[1], "report's parents", jobs[1])
    log("add: a scheduled job and a dependent one, listed with Chronos' fields and fresh counters")

    # Search.
    check([j["name"] for j in client.search(name="NIGHT")] == ["nightly"], "search by name, any case")
    check([j["name"] for j in client.search(command="echo report")] == ["report"], "search by command")
    check(len(client.search()) == 2, "search with no criteria finds every job")
    check(client.search(name="nothing-like-it") == [], "search finds nothing")
    log("search: by name and by command")

    # Update: read, change, send back (every field the server wrote, counters included).
    changed = dict(by_name(client, "nightly"))
    changed["command"] = "echo nightly v2"
    changed["successCount"] = 99  # the counters are the server's: ignored
    client.update(changed)
    nightly = by_name(client, "nightly")
    check(nightly["command"] == "echo nightly v2" and nightly["successCount"] == 0, "updated, counters kept", nightly)
    log("update: a job read back, changed and sent again replaces it")

    # Errors the server finds, each naming its field.
    refused(client.add, job("bad", schedule="61 * * * *"), names=["schedule", "61"])
    refused(client.add, job("bad", schedule="R/2026-01-01T00:00:00Z/PT0S"), names=["schedule"])
    refused(client.add, job("bad", schedule="@daily", scheduleTimeZone="Mars/Olympus"), names=["scheduleTimeZone"])
    refused(client.add, job("bad", schedule="@daily", retries=10 ** 9), names=["retries"])
    refused(client.add, job("bad", schedule="@daily", cpus="lots"), names=["cpus"])
    refused(client.add, job("bad/name", schedule="@daily"), names=["name"])
    refused(client.add, job("orphan", parents=["ghost"]), names=["ghost"])
    refused(client.add, job("nightly", parents=["report"]), names=["report"])  # a cycle
    refused(client.delete, "ghost", names=["ghost"])
    refused(client.run, "ghost", names=["ghost"])
    refused(client.job_stat, "ghost", names=["ghost"])
    refused(client.delete_tasks, "ghost", names=["ghost"])
    refused(client.delete, "nightly", names=["report"])  # it has a child
    check([j["name"] for j in client.list()] == ["nightly", "report"], "nothing stored by the refusals")
    status, body = raw(url, "POST", "/v1/scheduler/iso8601", b'{"name": "x", ')
    check(status == 400 and "message" in body and "details" in body, "malformed JSON is a 400 with details", status, body)
    status, body = raw(url, "POST", "/v1/scheduler/iso8601", json.dumps(job("bad", schedule="@daily", retries=10 ** 9)).encode())
    check(status == 400 and body["details"][0]["path"] == "/retries", "details name the field", body)
    log("errors: bad schedules, zones, retries, names, unknown parents and jobs, cycles, malformed JSON")

    # Errors the client finds before calling.
    for bad, error in [({"name": "x", "command": "x", "owner": "o", "disabled": False}, MissingFieldError),
                       ({"name": "x", "command": "x", "disabled": False, "schedule": FUTURE}, MissingFieldError),
                       (job("x", schedule=FUTURE, parents=["nightly"]), OneOfViolationError)]:
        try:
            client.add(bad)
        except error:
            continue
        raise AssertionError("the client accepted %r" % bad)

    # Reads: stats, graph, metrics.
    stat = client.job_stat("nightly")
    check(stat["histogram"]["count"] == 0 and stat["taskStatHistory"] == [], "a fresh job's stat", stat)
    for call in (client.scheduler_stat_99th, client.scheduler_stat_98th, client.scheduler_stat_95th,
                 client.scheduler_stat_75th, client.scheduler_stat_median, client.scheduler_stat_mean):
        check(isinstance(call(), list), "%s answers a list" % call.__name__)
    graph = client.scheduler_graph()
    check("node,nightly,fresh,idle" in graph and "link,nightly,report" in graph, "the CSV graph", graph)
    metrics = client.metrics()
    check(isinstance(metrics, str) and "cron_jobs 2" in metrics, "Prometheus metrics, as text", metrics)
    log("reads: job stats, the percentile stats, the graph and the metrics")

    return client


def legacy(server):
    """The legacy paths: `/scheduler`, POST to add and PUT to update; a dead server first.
    Last, because the legacy client adds `async` to the fields every later client
    requires (chronos-python extends its class's list in place)."""
    client = chronos.connect([server])
    legacy = chronos.connect(["127.0.0.1:1", server], scheduler_api_version=None)
    legacy.add(job("legacy", schedule=FUTURE, **{"async": False}))
    changed = by_name(legacy, "legacy")
    changed["description"] = "updated with PUT"
    legacy.update(changed)
    check(by_name(client, "legacy")["description"] == "updated with PUT", "the legacy update")
    legacy.delete("legacy")
    check("legacy" not in [j["name"] for j in client.list()], "the legacy job is gone")
    log("legacy paths (/scheduler, PUT) and a server list whose first server is down")


def runs(client):
    # Run now: the parent runs, succeeds, and its child follows.
    client.run("nightly")
    nightly = wait("nightly to succeed", lambda: (lambda j: j if j["successCount"] == 1 else None)(by_name(client, "nightly")))
    check(nightly["lastSuccess"] != "" and nightly["errorCount"] == 0, "nightly's counters", nightly)
    report = wait("report to run after nightly", lambda: (lambda j: j if j["successCount"] == 1 else None)(by_name(client, "report")))
    check(report["lastSuccess"] >= nightly["lastSuccess"], "the child ran after its parent", nightly, report)
    stat = wait("nightly's task stats", lambda: (lambda s: s if s["taskStatHistory"] else None)(client.job_stat("nightly")))
    entry = stat["taskStatHistory"][0]
    check(entry["status"] == "Success" and entry["jobName"] == "nightly" and entry["taskId"] and entry["slaveId"],
          "a finished task's stat", entry)
    check(stat["histogram"]["count"] == 1, "one run time in the histogram", stat)
    check(client.scheduler_stat_99th()[0]["jobNameLabel"] in ("nightly", "report"), "stats list a job that ran")
    log("run: nightly ran now and report after it; counters, stats and history updated")

    # A failing job is retried, then counted as one error.
    client.add(job("flaky", command="exit 3", schedule=FUTURE, retries=1))
    client.run("flaky")
    flaky = wait("flaky to fail", lambda: (lambda j: j if j["errorCount"] == 1 else None)(by_name(client, "flaky")))
    check(flaky["lastError"] != "" and flaky["errorsSinceLastSuccess"] == 1 and flaky["successCount"] == 0,
          "a failed run's counters", flaky)
    log("a failing job is retried and then counted as an error")

    # Kill tasks: a long job is killed and counted as an error.
    client.add(job("sleeper", command="sleep 300", schedule=FUTURE))
    client.run("sleeper")
    wait("sleeper to run", lambda: graph_state(client, "sleeper") == "1 running")
    check(client.delete_tasks("sleeper") is None, "kill answers 204")
    wait("sleeper to be killed", lambda: graph_state(client, "sleeper") == "idle")
    sleeper = wait("the kill to count", lambda: (lambda j: j if j["errorCount"] == 1 else None)(by_name(client, "sleeper")))
    check(sleeper["successCount"] == 0, "a killed run is no success", sleeper)
    log("delete_tasks: a running job's task is killed")

    # A schedule the client gives: twice, two seconds apart, from now.
    client.add(job("twice", schedule="R2//PT2S"))
    wait("twice to run twice", lambda: by_name(client, "twice")["successCount"] == 2)
    log("a job on an ISO 8601 schedule ran on it")

    for name in ("report", "nightly", "flaky", "sleeper", "twice"):
        client.delete(name)
    check(client.list() == [], "every job deleted", client.list())
    log("delete: every job, the child before its parent")


if __name__ == "__main__":
    logger = logging.getLogger("chronos")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(CLIENT_LOG)
    logger.propagate = False
    url = sys.argv[1].rstrip("/")
    server = url.split("://", 1)[-1]
    try:
        client = definitions(url, server)
        if "--no-runs" not in sys.argv[2:]:
            runs(client)
        legacy(server)
    except Exception:  # noqa: BLE001 - the test reads this output
        traceback.print_exc()
        print("client log:\n" + CLIENT_LOG.take(), flush=True)
        print("FAILED after %.1fs" % (time.monotonic() - STARTED), flush=True)
        sys.exit(1)
    print("PASSED in %.1fs" % (time.monotonic() - STARTED), flush=True)
