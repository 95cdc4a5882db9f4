"""A Mesos framework written on pymesos 0.3.15, unmodified, run against Agora's master.

Run by tests/mesos_pymesos.rs in two lives, as a framework that fails over would be:

  pymesos_framework.py first MASTER     subscribes, launches two short tasks and sees them
                                         finish (acknowledging every update), suppresses and
                                         revives offers, launches a long task, sees it run,
                                         then stops without tearing down (a failover) and
                                         prints FRAMEWORK_ID=<id>.
  pymesos_framework.py second MASTER ID  subscribes again with that id (re-registered),
                                         reconciles the long task (still running), kills it,
                                         sees TASK_KILLED and tears the framework down.

  pymesos_framework.py ha FOLLOWER       given a master that does not lead, follows its 307
                                         to the leader, launches the long task, prints
                                         READY=<id>, then waits to be re-registered (the test
                                         kills the leader; the client reconnects, follows the
                                         307 again and re-subscribes with its id), reconciles
                                         the task until it is seen running, kills it and
                                         tears the framework down.

MASTER is host:port. Every wait is bounded; the last line is PASSED or the script fails.
"""

import logging
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

WAIT_SECONDS = 60
LONG_TASK = "pymesos-long"


def log(message):
    print(message, flush=True)


def resources(cpus, mem):
    return [
        dict(name="cpus", type="SCALAR", scalar=dict(value=cpus)),
        dict(name="mem", type="SCALAR", scalar=dict(value=mem)),
    ]


class Framework(Scheduler):
    """Launches what `to_launch` holds on the offers it gets; records every update."""

    def __init__(self):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.to_launch = []
        self.launched = {}
        self.states = {}
        self.updates = []
        self.registered_id = None
        self.was_reregistered = False
        self.errors = []

    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.registered_id = framework_id["value"]
            self.changed.notify_all()
        log("registered as %s with master %s" % (framework_id["value"], master_info))

    def reregistered(self, driver, master_info):
        with self.lock:
            self.was_reregistered = True
            self.changed.notify_all()
        log("re-registered with master %s" % (master_info,))

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                todo, self.to_launch = self.to_launch, []
            if not todo:
                driver.declineOffer(offer["id"], filters=dict(refuse_seconds=1))
                continue
            tasks = []
            for task_id, command in todo:
                tasks.append(
                    dict(
                        task_id=dict(value=task_id),
                        agent_id=offer["agent_id"],
                        name=task_id,
                        resources=resources(0.1, 16),
                        command=dict(
                            value=command,
                            environment=dict(variables=[dict(name="GREETING", value="hello")]),
                        ),
                    )
                )
            log("launching %s on %s" % ([t["task_id"]["value"] for t in tasks], offer["agent_id"]["value"]))
            driver.launchTasks(offer["id"], tasks)
            with self.lock:
                for task_id, _ in todo:
                    self.launched[task_id] = offer["agent_id"]["value"]

    def statusUpdate(self, driver, update):
        task_id = update["task_id"]["value"]
        with self.lock:
            self.states[task_id] = update["state"]
            self.updates.append(update)
            self.changed.notify_all()
        log("update: %s %s (uuid %s, source %s, reason %s)" % (
            task_id, update["state"], update.get("uuid"), update.get("source"), update.get("reason")))

    def error(self, driver, message):
        with self.lock:
            self.errors.append(message)
            self.changed.notify_all()
        log("error event: %s" % message)

    def wait_for(self, what, predicate):
        deadline = time.time() + WAIT_SECONDS
        with self.lock:
            while not predicate():
                if self.errors:
                    raise AssertionError("error event while waiting for %s: %s" % (what, self.errors))
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; states %s" % (what, self.states))
                self.changed.wait(left)
        log("ok: %s" % what)


def framework_info(framework_id=None):
    info = dict(user="", name="pymesos-test", failover_timeout=300, hostname="localhost")
    if framework_id:
        info["id"] = dict(value=framework_id)
    return info


def first_life(master):
    framework = Framework()
    short = ["pymesos-short-%d" % i for i in range(2)]
    framework.to_launch = [(task, 'test "$GREETING" = hello') for task in short]
    driver = MesosSchedulerDriver(framework, framework_info(), master, use_addict=True)
    driver.start()
    framework.wait_for("registered", lambda: framework.registered_id is not None)
    framework.wait_for(
        "short tasks finished",
        lambda: all(framework.states.get(t) == "TASK_FINISHED" for t in short),
    )
    for update in framework.updates:
        assert update.get("uuid"), "an agent's update carries a uuid to acknowledge: %s" % (update,)
        assert update.get("agent_id", {}).get("value"), "an update names its agent: %s" % (update,)
        assert isinstance(update.get("timestamp"), float), "timestamps are seconds: %s" % (update,)
    driver.suppressOffers()
    with framework.lock:
        framework.to_launch = [(LONG_TASK, "sleep 300")]
    driver.reviveOffers()
    framework.wait_for("long task running", lambda: framework.states.get(LONG_TASK) == "TASK_RUNNING")
    # A failover: the driver stops without TEARDOWN, the master keeps the tasks.
    driver.stop(failover=True)
    driver.join()
    log("FRAMEWORK_ID=%s" % framework.registered_id)


def second_life(master, framework_id):
    framework = Framework()
    driver = MesosSchedulerDriver(framework, framework_info(framework_id), master, use_addict=True)
    driver.start()
    framework.wait_for("re-registered", lambda: framework.was_reregistered)
    driver.reconcileTasks([dict(task_id=dict(value=LONG_TASK))])
    framework.wait_for("long task reconciled as running", lambda: framework.states.get(LONG_TASK) == "TASK_RUNNING")
    reconciled = [u for u in framework.updates if u["task_id"]["value"] == LONG_TASK]
    assert reconciled[-1].get("reason") == "REASON_RECONCILIATION", reconciled[-1]
    driver.killTask(dict(value=LONG_TASK))
    framework.wait_for("long task killed", lambda: framework.states.get(LONG_TASK) == "TASK_KILLED")
    # stop() without failover sends TEARDOWN.
    driver.stop()
    driver.join()
    log("torn down %s" % framework_id)


def high_availability(follower):
    framework = Framework()
    framework.to_launch = [(LONG_TASK, "sleep 300")]
    driver = MesosSchedulerDriver(framework, framework_info(), follower, use_addict=True)
    driver.start()
    framework.wait_for("registered through a redirect", lambda: framework.registered_id is not None)
    assert driver.master != follower, "the client follows the redirect to the leader"
    framework.wait_for("long task running", lambda: framework.states.get(LONG_TASK) == "TASK_RUNNING")
    leader = driver.master
    log("READY=%s" % framework.registered_id)
    framework.wait_for("re-registered after the leader died", lambda: framework.was_reregistered)
    log("now subscribed at %s (was %s)" % (driver.master, leader))
    assert driver.master != leader, "re-subscribed at another master than the one killed"
    # The agents find the new leader on their own; until the task's agent has
    # re-registered, reconciliation may not know the task yet.
    deadline = time.time() + WAIT_SECONDS
    while True:
        with framework.lock:
            framework.states.pop(LONG_TASK, None)
        driver.reconcileTasks([dict(task_id=dict(value=LONG_TASK))])
        try:
            framework.wait_for("a reconciliation answer", lambda: LONG_TASK in framework.states)
        except AssertionError:
            pass
        with framework.lock:
            if framework.states.get(LONG_TASK) == "TASK_RUNNING":
                break
        if time.time() > deadline:
            raise AssertionError("the long task was not reconciled as running: %s" % framework.states)
        time.sleep(0.5)
    driver.killTask(dict(value=LONG_TASK))
    framework.wait_for("long task killed", lambda: framework.states.get(LONG_TASK) == "TASK_KILLED")
    driver.stop()
    driver.join()
    log("torn down %s" % framework.registered_id)


def main():
    logging.basicConfig(level=logging.WARNING)
    phase, master = sys.argv[1], sys.argv[2]
    if phase == "first":
        first_life(master)
    elif phase == "second":
        second_life(master, sys.argv[3])
    elif phase == "ha":
        high_availability(master)
    else:
        raise SystemExit("unknown phase %r" % phase)
    log("PASSED")


if __name__ == "__main__":
    main()
