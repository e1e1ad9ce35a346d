"""Gunicorn settings of the WSGI images (`gunicorn -c /app/gunicorn.conf.py m2stack.run_wsgi:application`).

Everything is read from the environment, through m2stack.settings (GunicornSettings):
  GUNICORN_WORKER_CLASS  gevent | eventlet (set by each image; eventlet needs gunicorn<26)
  WEB_CONCURRENCY        worker processes (default: the CPUs this container may use)
  WORKER_CONNECTIONS     simultaneous clients per worker (default 1000)
  GUNICORN_KEEPALIVE     seconds an idle keep-alive connection stays open (default 5)
  GUNICORN_GRACEFUL_TIMEOUT  seconds to finish in-flight requests on SIGTERM (default 10,
                         below the compose stop_grace_period of 15s)
  PORT                   listening port (default 6767, the port of the Mongrel2 stack)
  METRICS_PORT           the merged Prometheus metrics of every worker (default 9100, 0: off)
  MAX_REQUEST_BODY_BYTES largest request body, read by both doors (default 104857600 = 100 MiB)
"""

import math
import os

from m2stack.settings import GunicornSettings, load

_settings = load(GunicornSettings)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota
    (`cpus:` in compose is a quota, which neither os.cpu_count() nor the affinity sees)."""
    cpus = len(os.sched_getaffinity(0))
    try:  # cgroup v2: "max 100000" or "150000 100000"
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        try:  # cgroup v1
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                quota = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period = int(f.read())
            if quota > 0:
                cpus = min(cpus, math.ceil(quota / period))
        except (OSError, ValueError):
            pass
    return max(1, cpus)


worker_class = _settings.worker_class
# One process per usable CPU: each async worker already serves many clients at once.
workers = _settings.workers or available_cpus()
worker_connections = _settings.worker_connections
keepalive = _settings.keepalive
graceful_timeout = _settings.graceful_timeout
timeout = 30  # async workers heartbeat from their hub, so a long /sleep does not trip this

bind = [f"0.0.0.0:{_settings.port}"]
# Whom to believe about the client (X-Forwarded-*, Forwarded) is decided once, in the app
# layer, for both doors (FORWARDED_ALLOW_IPS, m2stack/app/forwarded.py): Gunicorn, which
# would read that variable too and trust 127.0.0.1 when it is unset, trusts no one.
forwarded_allow_ips = ""
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'

# The root filesystem is read-only: heartbeat files go to /dev/shm (a tmpfs in every
# container), and the control socket (gunicornc, new in 25) is not used.
worker_tmp_dir = "/dev/shm"
control_socket_disable = True
# No preload: the app is built in each worker, after the worker class patched it.
preload_app = False
proc_name = "m2stack-wsgi"

# ---- Prometheus, multiprocess mode ---------------------------------------------------------
# Every worker writes its metrics to PROMETHEUS_MULTIPROC_DIR (a tmpfs, set by the image);
# the master serves their sum on METRICS_PORT (internal network only, like the handlers').
metrics_port = _settings.metrics_port


def on_starting(server):
    directory = _settings.prometheus_dir
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):  # stale files from a previous run
            os.unlink(os.path.join(directory, name))


def when_ready(server):
    if metrics_port and _settings.prometheus_dir:
        import subprocess
        import sys

        subprocess.Popen([sys.executable, "-m", "m2stack.probes.gunicorn_metrics", str(metrics_port)])


def post_worker_init(worker):
    from gunicorn.errors import AppImportError

    from m2stack import metrics, run_wsgi

    metrics.watch_loop_lag()
    try:
        run_wsgi.load()  # the app, now: a bad APP stops Gunicorn at start, not at a request
    except SystemExit as exc:
        raise AppImportError(str(exc.code)) from None  # Gunicorn prints the one line and exits 4


def child_exit(server, worker):
    if _settings.prometheus_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
