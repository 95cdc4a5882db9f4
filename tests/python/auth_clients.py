"""The real clients with credentials, against Agora run with authentication on.

  auth_clients.py SERVICES_URL CRON_HOST_PORT MASTER PRINCIPAL SECRET

- marathon-python 0.13: refused (401) without credentials; lists apps with
  username/password (HTTP Basic) and with auth_token (Marathon's `token=`).
- chronos-python: refused without credentials; lists jobs with username/password
  (httplib2 sends Basic after the 401's challenge).
- pymesos 0.3.15: subscribes to the master (--authenticate-frameworks) with its
  principal and secret (HTTP Basic on every call), then tears the framework down.

Every wait is bounded; the last line is PASSED or the script fails.
"""

import sys
import threading

import chronos
from marathon import MarathonClient
from marathon.exceptions import MarathonHttpError
from pymesos import MesosSchedulerDriver, Scheduler

WAIT_SECONDS = 30


def log(message):
    print(message, flush=True)


def marathon(url, principal, secret):
    try:
        MarathonClient(url).list_apps()
        raise AssertionError("marathon: an anonymous call was accepted")
    except MarathonHttpError as error:
        assert error.status_code == 401, error
    assert MarathonClient(url, username=principal, password=secret).list_apps() == []
    assert MarathonClient(url, auth_token=secret).list_apps() == []
    log("ok: marathon-python with Basic and token=")


def chronos_client(host_port, principal, secret):
    anonymous = chronos.connect([host_port], scheduler_api_version="v1")
    try:
        anonymous.list()
        raise AssertionError("chronos: an anonymous call was accepted")
    except chronos.ChronosAPIError:
        pass
    client = chronos.connect([host_port], username=principal, password=secret, scheduler_api_version="v1")
    assert isinstance(client.list(), list)
    log("ok: chronos-python with Basic")


class Registered(Scheduler):
    def __init__(self):
        self.done = threading.Event()
        self.framework_id = None

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]
        self.done.set()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            driver.declineOffer(offer["id"])


def pymesos(master, principal, secret):
    scheduler = Registered()
    info = dict(user="nobody", name="pymesos-auth", hostname="localhost")
    driver = MesosSchedulerDriver(scheduler, info, master, use_addict=True, principal=principal, secret=secret)
    driver.start()
    assert scheduler.done.wait(WAIT_SECONDS), "pymesos: not registered within %ss" % WAIT_SECONDS
    driver.stop()
    driver.join()
    log("ok: pymesos registered as %s with its principal" % scheduler.framework_id)


def main():
    services, cron, master, principal, secret = sys.argv[1:6]
    marathon(services, principal, secret)
    chronos_client(cron, principal, secret)
    pymesos(master, principal, secret)
    log("PASSED")


if __name__ == "__main__":
    main()
