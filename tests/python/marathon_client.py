"""Drives `agora services` with marathon-python 0.13.0, the client many deployment
scripts use, the way those scripts call it: apps, tasks, scaling, kills, restarts,
versions and rollbacks, deployments (cancelled with a rollback and forced), the queue,
groups, the event stream, info, leader, ping and metrics, and the errors it raises.

Usage: python marathon_client.py SERVICES_URL
       python marathon_client.py --follower FOLLOWER_URL LEADER_ADDRESS
Exits 0 when every check passed; otherwise prints what failed and exits 1.

With --follower, it talks to a process that does not lead (several `agora services` on
etcd): the client must reach the leader through the follower's redirects, the event
stream included, as it does with Marathon's standbys.

The cluster it runs against (started by tests/services_marathon_client.rs) has two agents
with the attributes rack:r1 and rack:r2 and a few free ports each.
"""

import collections
import collections.abc
import http.server
import json
import sys
import threading
import time
import traceback
import urllib.request

# marathon 0.13.0 still reaches the abstract base classes through `collections`, which
# Python 3.10 removed; put them back before importing it.
if sys.version_info >= (3, 10):
    for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "MutableSequence", "Callable", "Set"):
        setattr(collections, _name, getattr(collections.abc, _name))

import marathon  # noqa: E402
from marathon import MarathonClient  # noqa: E402
from marathon.exceptions import ConflictError, MarathonHttpError, NotFoundError  # noqa: E402
from marathon.models import MarathonApp, MarathonDeployment, MarathonGroup, MarathonHealthCheck  # noqa: E402
from marathon.models.app import MarathonTaskFailure, MarathonUpgradeStrategy, PortDefinition, ReadinessCheck  # noqa: E402
from marathon.models.constraint import MarathonConstraint  # noqa: E402
from marathon.models.events import (  # noqa: E402
    MarathonApiPostEvent,
    MarathonDeploymentInfo,
    MarathonDeploymentSuccess,
    MarathonEventStreamAttached,
    MarathonHealthStatusChangedEvent,
    MarathonStatusUpdateEvent,
    MarathonUnhealthyInstanceKillEvent,
)
from marathon.models.info import MarathonInfo  # noqa: E402
from marathon.models.queue import MarathonQueueItem  # noqa: E402
from marathon.models.task import MarathonTask  # noqa: E402

# How long any one wait may take; the whole script stays well under a minute when the
# cluster is healthy.
WAIT_S = 25.0
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
        except (MarathonHttpError, AssertionError, KeyError, IndexError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s; last: %r" % (timeout, what, last))
        time.sleep(0.1)


def raises(exception_type, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except exception_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(call, "__name__", call), exception_type.__name__))


class EventCollector:
    """Reads `client.event_stream(...)` on a thread, keeping every event (as models)."""

    def __init__(self, client, **kwargs):
        self.events = []
        self.error = None
        self.lock = threading.Lock()
        thread = threading.Thread(target=self._run, args=(client, kwargs), daemon=True)
        thread.start()

    def _run(self, client, kwargs):
        try:
            for event in client.event_stream(**kwargs):
                with self.lock:
                    self.events.append(event)
        except Exception as e:  # noqa: BLE001 - reported by the checks below
            self.error = "".join(traceback.format_exception(e))

    def snapshot(self):
        check(self.error is None, "the event stream failed", self.error)
        with self.lock:
            return list(self.events)

    def of(self, cls):
        return [e for e in self.snapshot() if isinstance(e, cls)]


def app_state(client, app_id):
    return client.get_app(app_id, embed_tasks=True, embed_counts=True)


def settled(client, app_id, instances, healthy=None, not_ids=()):
    """The app once `instances` tasks run (all healthy if `healthy`), none of them in
    `not_ids`, and no deployment holds it; else None."""
    app = app_state(client, app_id)
    running = [t for t in app.tasks if t.state == "TASK_RUNNING" and t.id not in not_ids]
    if app.instances != instances or len(app.tasks) != instances or len(running) != instances or app.deployments:
        return None
    if healthy and app.tasks_healthy != instances:
        return None
    return app


def no_deployments(client):
    return client.list_deployments() == []


class CallbackReceiver:
    """An HTTP server on a thread keeping the JSON of every event POSTed to it."""

    def __init__(self):
        events, lock = [], threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    events.append((self.headers.get("Content-Type"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/events" % self.server.server_address[1]
        self.events, self.lock = events, lock
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def types(self):
        return {event.get("eventType") for _, event in self.snapshot()}


def main(url):
    client = MarathonClient(url, timeout=10)

    # --- ping, info, leader, metrics -------------------------------------------------
    check(client.ping().strip() == b"pong", "ping", client.ping())
    info = wait("the framework to be subscribed", lambda: (lambda i: i if i.framework_id else None)(client.get_info()))
    check(isinstance(info, MarathonInfo), "get_info's model", info)
    check(info.name and info.version, "name and version in /v2/info", info)
    address = url.split("://", 1)[1].rstrip("/")
    check(info.http_config.http_port == int(address.rsplit(":", 1)[1]), "http_config.http_port", info.http_config)
    check(info.marathon_config.master, "marathon_config.master", info.marathon_config)
    check(info.elected is True and info.leader == address, "elected leader in /v2/info", info)
    check(client.get_leader() == {"leader": address}, "get_leader", client.get_leader())
    metrics = client.get_metrics()
    check(isinstance(metrics, dict) and metrics, "get_metrics gives a JSON object", metrics)
    # Without --etcd there is no election to hand over.
    raises(NotFoundError, client.delete_leader)
    log("ping, info, leader and metrics answer")

    # --- HTTP callback subscriptions (the server runs with --event-subscriber http_callback)
    callbacks = CallbackReceiver()
    subscribed = client.create_event_subscription(callbacks.url)
    check(subscribed.get("eventType") == "subscribe_event" and subscribed.get("callbackUrl") == callbacks.url,
          "create_event_subscription answers the subscribe_event", subscribed)
    check(client.list_event_subscriptions() == [callbacks.url], "list_event_subscriptions", client.list_event_subscriptions())
    e = raises(MarathonHttpError, client.create_event_subscription, "ftp://example.invalid/x")
    check(e.status_code == 422 and "callbackUrl" in json.dumps(e.error_details), "422 names callbackUrl", e.error_details)
    log("create_event_subscription and list_event_subscriptions")

    # The streams start before any change so that they see every event of the run.
    everything = EventCollector(client)
    successes = EventCollector(client, event_types=[MarathonDeploymentSuccess])
    wait("the event streams to attach", lambda: everything.of(MarathonEventStreamAttached))

    # --- errors ------------------------------------------------------------------------
    e = raises(NotFoundError, client.get_app, "/compat/missing")
    check(e.status_code == 404 and "/compat/missing" in e.error_message, "404 for an unknown app", e.error_message)
    raises(NotFoundError, client.get_group, "/compat-missing")
    raises(NotFoundError, client.list_versions, "/compat/missing")
    raises(NotFoundError, client.delete_deployment, "no-such-deployment")
    e = raises(MarathonHttpError, client.create_app, "/compat/bad", MarathonApp(cmd="sleep 1", cpus=-1, mem=16))
    check(e.status_code == 422, "422 for a negative cpus", e.status_code, e.error_message)
    check(any("cpus" in json.dumps(d) for d in (e.error_details or [])), "the 422 names cpus", e.error_details)
    e = raises(MarathonHttpError, client.create_app, "/compat/bad", MarathonApp(cmd="sleep 1", instances=-3))
    check(e.status_code == 422 and "instances" in json.dumps(e.error_details), "422 names instances", e.error_details)
    raises(NotFoundError, client.get_app, "/compat/bad")
    log("errors: 404 and 422 raise NotFoundError and MarathonHttpError with details")

    # --- create ------------------------------------------------------------------------
    web = MarathonApp(
        cmd="python3 -m http.server --bind 127.0.0.1 $PORT0",
        cpus=0.01,
        mem=16,
        instances=2,
        env={"GREETING": "hello"},
        labels={"team": "compat", "tier": "web"},
        constraints=[MarathonConstraint("rack", "UNIQUE")],
        port_definitions=[PortDefinition(port=0, protocol="tcp", name="http", labels={"vip": "web"})],
        health_checks=[
            MarathonHealthCheck(
                protocol="HTTP",
                path="/",
                port_index=0,
                grace_period_seconds=30,
                interval_seconds=1,
                timeout_seconds=1,
                max_consecutive_failures=3,
                # Marathon's field (a keyword marathon-python passes through): the first
                # check 1 s after the start rather than 15.
                delay_seconds=1,
            )
        ],
        readiness_checks=[
            ReadinessCheck(
                name="ready",
                protocol="HTTP",
                path="/",
                port_name="http",
                interval_seconds=2,
                timeout_seconds=1,
                http_status_codes_for_ready=[200],
            )
        ],
        upgrade_strategy=MarathonUpgradeStrategy(minimum_health_capacity=0.5, maximum_over_capacity=0),
        backoff_seconds=1,
    )
    created = client.create_app("/compat/web", web)
    check(isinstance(created, MarathonApp), "create_app gives the app", created)
    check(created.id == "/compat/web" and created.instances == 2 and created.cpus == 0.01, "created app", created)
    check(created.env == {"GREETING": "hello"} and created.labels == {"team": "compat", "tier": "web"}, "env, labels", created)
    check([(c.field, c.operator) for c in created.constraints] == [("rack", "UNIQUE")], "constraints", created.constraints)
    check(created.health_checks[0].protocol == "HTTP" and created.health_checks[0].path == "/", "health check", created)
    check(created.health_checks[0].interval_seconds == 1, "health check interval", created.health_checks)
    pd = created.port_definitions[0]
    check(pd.name == "http" and pd.protocol == "tcp" and pd.labels == {"vip": "web"}, "port definition", pd)
    check(pd.port > 0, "a service port is assigned for port 0", pd)
    check(created.upgrade_strategy.minimum_health_capacity == 0.5, "upgrade strategy", created.upgrade_strategy)
    rc = created.readiness_checks[0]
    check((rc.name, rc.port_name, rc.http_status_codes_for_ready) == ("ready", "http", [200]), "readiness check", rc)
    check(created.version, "the created app has a version", created)
    e = raises(ConflictError, client.create_app, "/compat/web", MarathonApp(cmd="sleep 1", cpus=0.01, mem=16))
    check(e.status_code == 409, "409 for an existing app", e)

    sleeper = client.create_app("/compat/sleeper", MarathonApp(cmd="sleep 3600", cpus=0.01, mem=16, instances=1))
    check(sleeper.id == "/compat/sleeper" and sleeper.instances == 1, "second app", sleeper)
    log("created /compat/web (HTTP health check, UNIQUE rack) and /compat/sleeper")

    web_app = wait("/compat/web to run 2 healthy tasks", lambda: settled(client, "/compat/web", 2, healthy=True))
    wait("/compat/sleeper to run 1 task", lambda: settled(client, "/compat/sleeper", 1))
    check(web_app.tasks_running == 2 and web_app.tasks_healthy == 2 and web_app.tasks_unhealthy == 0, "counts", web_app)
    check(len({t.slave_id for t in web_app.tasks}) == 2, "UNIQUE rack puts one task on each agent", web_app.tasks)
    for task in web_app.tasks:
        check(isinstance(task, MarathonTask) and task.app_id == "/compat/web", "task model", task)
        check(task.host and len(task.ports) == 1 and task.service_ports == [pd.port], "task host and ports", task)
        check(task.started_at is not None and task.staged_at is not None, "task times", task)
        check(task.version == web_app.version, "task version", task, web_app.version)
        check([r.alive for r in task.health_check_results] == [True], "health check results", task)
        with urllib.request.urlopen("http://%s:%d/" % (task.host, task.ports[0]), timeout=5) as response:
            check(response.status == 200, "the task serves HTTP on its port", task)
    check(web_app.version_info.last_config_change_at is not None, "version info", web_app.version_info)
    log("web: 2 tasks running and healthy, on both racks, serving HTTP")

    # --- list, get, tasks, endpoints -----------------------------------------------------
    apps = client.list_apps(
        embed_tasks=True,
        embed_counts=True,
        embed_deployments=True,
        embed_readiness=True,
        embed_last_task_failure=True,
        embed_failures=True,
        embed_task_stats=True,
    )
    check(sorted(a.id for a in apps) == ["/compat/sleeper", "/compat/web"], "list_apps", apps)
    listed = [a for a in apps if a.id == "/compat/web"][0]
    check(len(listed.tasks) == 2 and listed.tasks_healthy == 2, "list_apps embeds tasks and counts", listed)
    check(listed.task_stats is not None, "list_apps embeds task stats", listed)
    check([a.id for a in client.list_apps(app_id="/compat/web")] == ["/compat/web"], "list_apps(app_id)")
    check([a.id for a in client.list_apps(cmd="http.server")] == ["/compat/web"], "list_apps(cmd)")
    check([a.id for a in client.list_apps(label="tier==web")] == ["/compat/web"], "list_apps(label)")
    check([a.id for a in client.list_apps(instances=1)] == ["/compat/sleeper"], "list_apps(**filters)")
    got = client.get_app("/compat/web")
    check(got.id == "/compat/web" and len(got.tasks) == 2 and got.deployments == [], "get_app", got)
    ready = client.get_app("/compat/web", embed_readiness=True).readiness_check_results
    check(sorted(r["taskId"] for r in ready) == sorted(t.id for t in got.tasks), "readiness results", ready)
    check(all(r["ready"] for r in ready), "every web task is ready", ready)

    tasks = client.list_tasks()
    check(sorted(t.app_id for t in tasks) == ["/compat/sleeper", "/compat/web", "/compat/web"], "list_tasks", tasks)
    web_tasks = client.list_tasks("/compat/web")
    check(sorted(t.id for t in web_tasks) == sorted(t.id for t in web_app.tasks), "list_tasks(app)", web_tasks)
    endpoints = [e for e in client.list_endpoints() if e.app_id == "/compat/web"]
    check(len(endpoints) == 2 and all(e.service_port == pd.port and e.task_port for e in endpoints), "endpoints", endpoints)
    log("list_apps (every embed, filters), get_app, list_tasks and list_endpoints agree")

    # --- scale ---------------------------------------------------------------------------
    result = client.scale_app("/compat/sleeper", instances=3)
    check(result.get("deploymentId") and result.get("version"), "scale_app answers a deployment", result)
    wait("sleeper at 3", lambda: settled(client, "/compat/sleeper", 3))
    client.scale_app("/compat/sleeper", delta=-1)
    app = wait("sleeper at 2", lambda: settled(client, "/compat/sleeper", 2))
    log("scale_app: absolute 3, then delta -1: 2 running")

    # --- update (the read-modify-write every script does) --------------------------------
    app = client.get_app("/compat/sleeper")
    app.cmd = "sleep 3601"
    before = {t.id for t in app.tasks}
    result = client.update_app("/compat/sleeper", app)
    check(result.get("deploymentId") and result.get("version"), "update_app answers a deployment", result)
    app = wait("sleeper replaced", lambda: settled(client, "/compat/sleeper", 2, not_ids=before))
    check(app.cmd == "sleep 3601", "update_app changed cmd", app)
    # The same with an app from a listing with every embed, sent whole (minimal=False):
    # its read-only keys go back, and every attribute the client's models have, as null
    # when unset (unreachableStrategy's unreachableInactiveAfterSeconds, ...).
    app = [a for a in client.list_apps(embed_tasks=True, embed_counts=True, embed_deployments=True, embed_readiness=True,
                                       embed_failures=True, embed_task_stats=True) if a.id == "/compat/sleeper"][0]
    app.env = {"MODE": "updated"}
    before = {t.id for t in app.tasks}
    client.update_app("/compat/sleeper", app, minimal=False)
    app = wait("sleeper replaced again", lambda: settled(client, "/compat/sleeper", 2, not_ids=before))
    check(app.cmd == "sleep 3601" and app.env == {"MODE": "updated"}, "update_app changed env", app)
    check(all(t.version == app.version for t in app.tasks), "tasks run the new version", app.tasks, app.version)
    result = client.update_apps([MarathonApp(id="/compat/sleeper", labels={"batch": "yes"})])
    check(result.get("deploymentId"), "update_apps answers a deployment", result)
    wait("the label to show", lambda: client.get_app("/compat/sleeper").labels == {"batch": "yes"})
    # A new label is a new version: the tasks are replaced.
    app = wait("update_apps to finish", lambda: settled(client, "/compat/sleeper", 2))
    log("update_app (get, modify, put back) and update_apps")

    # --- kills -------------------------------------------------------------------------
    victim = app.tasks[0].id
    killed = client.kill_task("/compat/sleeper", victim, scale=True)
    check(isinstance(killed, dict) and killed.get("deploymentId"), "kill_task(scale=True) answers a deployment", killed)
    app = wait("sleeper scaled down to 1", lambda: settled(client, "/compat/sleeper", 1, not_ids={victim}))
    victim = app.tasks[0].id
    killed = client.kill_task("/compat/sleeper", victim)
    check(isinstance(killed, MarathonTask) and killed.id == victim, "kill_task gives the killed task", killed)
    app = wait("the killed task replaced", lambda: settled(client, "/compat/sleeper", 1, not_ids={victim}))
    victim = app.tasks[0].id
    check(client.kill_given_tasks([victim]) is True, "kill_given_tasks")
    app = wait("the given task replaced", lambda: settled(client, "/compat/sleeper", 1, not_ids={victim}))
    victim = app.tasks[0].id
    killed = client.kill_tasks("/compat/sleeper")
    check([t.id for t in killed] == [victim], "kill_tasks gives the killed tasks", killed)
    wait("the app's tasks replaced", lambda: settled(client, "/compat/sleeper", 1, not_ids={victim}))
    log("kill_task (with scale and without), kill_given_tasks, kill_tasks: replaced or scaled")

    # --- versions and rollback -----------------------------------------------------------
    versions = client.list_versions("/compat/sleeper")
    check(len(versions) >= 4 and versions == sorted(versions, reverse=True), "list_versions newest first", versions)
    first = client.get_version("/compat/sleeper", versions[-1])
    check(first.cmd == "sleep 3600" and first.instances == 1 and first.version == versions[-1], "get_version", first)
    client.rollback_app("/compat/sleeper", versions[-1])
    wait(
        "the rollback to the first version",
        lambda: (lambda a: a if a and a.cmd == "sleep 3600" else None)(settled(client, "/compat/sleeper", 1)),
    )
    log("list_versions, get_version and rollback_app")

    # --- restart -----------------------------------------------------------------------
    before = {t.id for t in client.get_app("/compat/web").tasks}
    result = client.restart_app("/compat/web")
    check(result.get("deploymentId"), "restart_app answers a deployment", result)
    wait("web restarted, healthy", lambda: settled(client, "/compat/web", 2, healthy=True, not_ids=before), timeout=40)
    log("restart_app: both web tasks replaced by healthy ones")

    # --- deployments: cancelled (rollback), forced, conflicts, the queue ---------------
    client.create_app("/compat/stuck", MarathonApp(cmd="sleep 3600", cpus=0.01, mem=16, instances=1))
    wait("stuck app running", lambda: settled(client, "/compat/stuck", 1))
    # No agent has 50 CPUs: the new version never starts and its deployment stays.
    result = client.update_app("/compat/stuck", MarathonApp(cpus=50))
    deployment = wait(
        "the stuck deployment",
        lambda: [d for d in client.list_deployments() if d.id == result["deploymentId"]],
    )[0]
    check(isinstance(deployment, MarathonDeployment) and deployment.affected_apps == ["/compat/stuck"], "deployment", deployment)
    check(deployment.version == result["version"], "the deployment's version is the update's", deployment, result)
    check(deployment.total_steps >= 1 and 1 <= deployment.current_step <= deployment.total_steps, "steps", deployment)
    actions = [(a.action, a.app) for a in deployment.current_actions]
    check(("RestartApplication", "/compat/stuck") in actions, "current action", deployment.current_actions)
    check(any(a.app == "/compat/stuck" for s in deployment.steps for a in s.actions), "steps' actions", deployment.steps)
    check(client.get_app("/compat/stuck", embed_deployments=True).deployments[0].id == deployment.id, "app's deployments")
    queue = wait("the stuck app in the queue", lambda: [q for q in client.list_queue() if q.app.id == "/compat/stuck"])
    check(isinstance(queue[0], MarathonQueueItem) and queue[0].count >= 1, "queue item", queue[0])
    check(queue[0].delay is not None and queue[0].app.cpus == 50, "queue item's delay and app", queue[0])
    client.list_queue(embed_last_unused_offers=True)
    client.reset_delay("/compat/stuck")
    e = raises(ConflictError, client.update_app, "/compat/stuck", MarathonApp(cpus=0.02))
    check(e.status_code == 409 and "/compat/stuck" in e.error_message, "409 names the locked app", e)
    raises(ConflictError, client.restart_app, "/compat/stuck")
    rollback = client.delete_deployment(deployment.id)
    check(rollback.get("deploymentId") and rollback["deploymentId"] != deployment.id, "rollback deployment", rollback)
    wait("the rollback to finish", lambda: no_deployments(client))
    app = wait("stuck back on its old version", lambda: settled(client, "/compat/stuck", 1))
    check(app.cpus == 0.01, "the rollback restored cpus", app.cpus)

    result = client.update_app("/compat/stuck", MarathonApp(cpus=50))
    wait("a second stuck deployment", lambda: [d for d in client.list_deployments() if d.id == result["deploymentId"]])
    forced = client.update_app("/compat/stuck", MarathonApp(cpus=60), force=True)
    check(forced["deploymentId"] != result["deploymentId"], "update_app(force=True) overrides the deployment", forced)
    wait("the forced deployment", lambda: [d.id for d in client.list_deployments()] == [forced["deploymentId"]])
    check(client.delete_deployment(forced["deploymentId"], force=True) == {}, "delete_deployment(force=True)")
    wait("the forced cancel to end the deployment", lambda: no_deployments(client))
    check(client.get_app("/compat/stuck").cpus == 60, "a forced cancel keeps the new definition")
    client.delete_app("/compat/stuck", force=True)
    wait("stuck deleted", lambda: isinstance(raises(NotFoundError, client.get_app, "/compat/stuck"), NotFoundError))
    log("deployments: listed with steps, queue, 409, rollback via delete_deployment, force")

    # --- a task that fails, one that is unhealthy --------------------------------------
    client.create_app("/compat/crash", MarathonApp(cmd="exit 3", cpus=0.01, mem=16, instances=1, backoff_seconds=30))
    sick_check = MarathonHealthCheck(
        protocol="COMMAND",
        command="false",
        grace_period_seconds=0,
        interval_seconds=1,
        timeout_seconds=1,
        max_consecutive_failures=2,
        delay_seconds=0,
    )
    sick = client.create_app(
        "/compat/sick",
        MarathonApp(cmd="sleep 3600", cpus=0.01, mem=16, instances=1, backoff_seconds=30, health_checks=[sick_check]),
    )
    check(sick.health_checks[0].command == {"value": "false"}, "a COMMAND check's command", sick.health_checks)
    app = wait(
        "the crash recorded",
        lambda: (lambda a: a if a.last_task_failure else None)(client.get_app("/compat/crash", embed_last_task_failure=True)),
    )
    failure = app.last_task_failure
    check(isinstance(failure, MarathonTaskFailure) and failure.app_id == "/compat/crash", "last task failure", failure)
    check(failure.state == "TASK_FAILED" and failure.task_id and failure.host, "the failure's task", failure)
    check(failure.timestamp is not None and failure.version == app.version, "the failure's time and version", failure)
    delayed = wait(
        "the crashing app delayed in the queue",
        lambda: [q for q in client.list_queue() if q.app.id == "/compat/crash" and q.delay.time_left_seconds > 0],
    )[0]
    check(delayed.delay.overdue is False and delayed.count == 1, "the queue item's delay", delayed.delay)
    client.reset_delay("/compat/crash")
    wait(
        "the delay reset",
        lambda: [q for q in client.list_queue() if q.app.id == "/compat/crash" and q.delay.time_left_seconds == 0]
        or not [q for q in client.list_queue() if q.app.id == "/compat/crash"],
    )
    client.delete_app("/compat/crash")

    def unhealthy():
        app = client.get_app("/compat/sick")
        return [t for t in app.tasks if [r.alive for r in t.health_check_results] == [False]] and app.tasks_unhealthy

    wait("the sick task reported unhealthy", unhealthy)
    kill = wait(
        "the sick task killed as unhealthy",
        lambda: [e for e in everything.of(MarathonUnhealthyInstanceKillEvent) if e.app_id == "/compat/sick"],
    )[0]
    check(kill.task_id and kill.reason and kill.host, "unhealthy_instance_kill_event", kill)
    # Its start never ends (no healthy instance): like Marathon, Agora takes the client's
    # explicit force=False at its word and answers 409.
    raises(ConflictError, client.delete_app, "/compat/sick")
    client.delete_app("/compat/sick", force=True)
    for app_id in ("/compat/crash", "/compat/sick"):
        wait(app_id + " deleted", lambda: isinstance(raises(NotFoundError, client.get_app, app_id), NotFoundError))
    log("a failing task (last_task_failure, backoff in the queue, reset_delay) and an unhealthy one (killed)")

    # --- groups ------------------------------------------------------------------------
    stack = MarathonGroup(
        id="/stack",
        apps=[
            MarathonApp(id="/stack/db", cmd="sleep 3600", cpus=0.01, mem=16, instances=1),
            MarathonApp(id="/stack/api", cmd="sleep 3600", cpus=0.01, mem=16, instances=1, dependencies=["/stack/db"]),
        ],
    )
    result = client.create_group(stack)
    check(result.get("deploymentId") and result.get("version"), "create_group answers a deployment", result)
    wait("the stack to run", lambda: settled(client, "/stack/db", 1) and settled(client, "/stack/api", 1))
    groups = client.list_groups()
    check(all(isinstance(g, MarathonGroup) for g in groups), "list_groups' models", groups)
    check({"/stack", "/compat"} <= {g.id for g in groups}, "list_groups", [g.id for g in groups])
    group = client.get_group("/stack")
    check(sorted(a.id for a in group.apps) == ["/stack/api", "/stack/db"], "get_group's apps", group.apps)
    api_app = [a for a in group.apps if a.id == "/stack/api"][0]
    check(api_app.dependencies == ["/stack/db"], "dependencies", api_app)
    result = client.scale_group("/stack", 2)
    check(result.get("deploymentId"), "scale_group answers a deployment", result)
    wait("the stack scaled by 2", lambda: settled(client, "/stack/db", 2) and settled(client, "/stack/api", 2))
    group = client.get_group("/stack")
    for a in group.apps:
        if a.id == "/stack/db":
            a.instances = 1
    result = client.update_group("/stack", group, minimal=False)
    check(result.get("deploymentId"), "update_group answers a deployment", result)
    wait("db back to 1", lambda: settled(client, "/stack/db", 1) and settled(client, "/stack/api", 2))
    result = client.delete_group("/stack")
    check(result.get("version"), "delete_group answers a version", result)
    wait("the stack gone", lambda: isinstance(raises(NotFoundError, client.get_group, "/stack"), NotFoundError))
    wait("its tasks gone", lambda: not [t for t in client.list_tasks() if t.app_id.startswith("/stack/")])
    log("groups: create_group, list_groups, get_group, scale_group, update_group, delete_group")

    # --- delete ------------------------------------------------------------------------
    for app_id in ("/compat/web", "/compat/sleeper"):
        result = client.delete_app(app_id)
        check(result.get("deploymentId") and result.get("version"), "delete_app answers a deployment", result)
    wait("every app gone", lambda: client.list_apps() == [] and client.list_tasks() == [])
    raises(NotFoundError, client.delete_app, "/compat/web")
    log("delete_app: apps and tasks gone")

    # --- what the event streams saw ----------------------------------------------------
    posts = everything.of(MarathonApiPostEvent)
    check(any(p.app_definition.get("id") == "/compat/web" for p in posts), "api_post_event for web", posts)
    running = [e for e in everything.of(MarathonStatusUpdateEvent) if e.app_id == "/compat/web" and e.task_status == "TASK_RUNNING"]
    check(len(running) >= 4 and all(e.host and e.ports for e in running), "status_update_event TASK_RUNNING", running)
    healthy = [e for e in everything.of(MarathonHealthStatusChangedEvent) if e.app_id == "/compat/web" and e.alive]
    check(len(healthy) >= 4, "health_status_changed_event", healthy)
    infos = everything.of(MarathonDeploymentInfo)
    check(any(i.plan.id == deployment.id for i in infos), "deployment_info carries the plan", infos)
    done = {e.id for e in everything.of(MarathonDeploymentSuccess)}
    check(rollback["deploymentId"] in done, "deployment_success of the rollback", done)
    types = {e.event_type for e in everything.snapshot()}
    for expected in ("app_terminated_event", "group_change_success", "instance_changed_event", "deployment_step_success"):
        check(expected in types, "an event of type " + expected, sorted(types))
    only = {e.event_type for e in successes.snapshot()}
    check(only == {"deployment_success"}, "a filtered stream gets only its type", only)
    wait("the filtered stream to see every success", lambda: {e.id for e in successes.of(MarathonDeploymentSuccess)} >= done)
    log("event streams: %d events of %d types; the filtered one only deployment_success" % (len(everything.snapshot()), len(types)))

    # --- what the HTTP callback got ------------------------------------------------------
    wanted = {"subscribe_event", "api_post_event", "status_update_event", "deployment_success", "app_terminated_event"}
    wait("the callback to get every kind of event", lambda: wanted <= callbacks.types())
    check(all(kind == "application/json" for kind, _ in callbacks.snapshot()), "events are POSTed as JSON",
          {kind for kind, _ in callbacks.snapshot()})
    posted = [event for _, event in callbacks.snapshot() if event.get("eventType") == "api_post_event"]
    check(any(event["appDefinition"].get("id") == "/compat/web" for event in posted), "api_post_event for web", posted)
    removed = client.delete_event_subscription(callbacks.url)
    check(removed.get("eventType") == "unsubscribe_event", "delete_event_subscription answers the unsubscribe_event", removed)
    check(client.list_event_subscriptions() == [], "no subscription left", client.list_event_subscriptions())
    count = len(callbacks.snapshot())
    client.create_app("/compat/after", MarathonApp(cmd="sleep 3600", cpus=0.01, mem=8, instances=0))
    client.delete_app("/compat/after", force=True)
    time.sleep(0.5)
    check(len(callbacks.snapshot()) == count, "nothing is POSTed after the unsubscription", callbacks.snapshot()[count:])
    callbacks.server.shutdown()
    log("the callback got %d events of %d types; none after delete_event_subscription" % (count, len(callbacks.types())))


def through_a_follower(follower_url, leader):
    """Every call through a follower reaches the leader `leader` (`host:port`)."""
    # A server that is down comes first: the client tries the next, as with Marathon.
    down = "http://127.0.0.1:1"
    client = MarathonClient([down, follower_url], timeout=10)
    check(client.ping().strip() == b"pong", "a follower answers /ping itself")
    check(client.get_leader() == {"leader": leader}, "a follower names the leader", client.get_leader())
    info = client.get_info()
    check(info.leader == leader and info.elected is True, "/v2/info comes from the leader", info)
    # The event stream is redirected too (marathon-python follows it by hand).
    events = EventCollector(MarathonClient(follower_url, timeout=10))
    wait("the event stream to attach through the follower", lambda: events.of(MarathonEventStreamAttached))
    log("through a follower: ping, leader, info and the event stream")

    # These servers run without --event-subscriber http_callback, as Marathon by default.
    e = raises(MarathonHttpError, client.list_event_subscriptions)
    check(e.status_code == 400 and "http_callback" in e.error_message, "400 while callbacks are off", e.error_message)

    created = client.create_app("/ha/sleeper", MarathonApp(cmd="sleep 3600", cpus=0.01, mem=16, instances=1))
    check(created.id == "/ha/sleeper" and created.instances == 1, "create_app through a follower", created)
    wait("the app to run", lambda: settled(client, "/ha/sleeper", 1))
    result = client.scale_app("/ha/sleeper", instances=2)
    check(result.get("deploymentId"), "scale_app through a follower answers a deployment", result)
    app = wait("the app at 2", lambda: settled(client, "/ha/sleeper", 2))
    victim = app.tasks[0].id
    check(client.kill_given_tasks([victim]) is True, "kill_given_tasks through a follower")
    wait("the task replaced", lambda: settled(client, "/ha/sleeper", 2, not_ids={victim}))
    check(client.delete_app("/ha/sleeper").get("deploymentId"), "delete_app through a follower")
    wait("the app gone", lambda: client.list_apps() == [] and client.list_tasks() == [])
    check(
        any(e.app_id == "/ha/sleeper" for e in events.of(MarathonStatusUpdateEvent)),
        "the stream through the follower carries the leader's events",
    )
    log("through a follower: create, scale, kill and delete reach the leader")


if __name__ == "__main__":
    marathon.log.setLevel("CRITICAL")
    try:
        if sys.argv[1] == "--follower":
            through_a_follower(sys.argv[2], sys.argv[3])
        else:
            main(sys.argv[1])
    except Exception:  # noqa: BLE001 - the test reads this output
        traceback.print_exc()
        print("FAILED after %.1fs" % (time.monotonic() - STARTED), flush=True)
        sys.exit(1)
    print("PASSED in %.1fs" % (time.monotonic() - STARTED), flush=True)
