"""Gunicorn settings of the WSGI images (`gunicorn -c /app/gunicorn.conf.py m2stack.wsgi:application`).

Everything is read from the environment:
  GUNICORN_WORKER_CLASS  gevent | eventlet (set by each image; eventlet needs gunicorn<26)
  WEB_CONCURRENCY        worker processes (default: the CPUs this container may use)
  WORKER_CONNECTIONS     simultaneous clients per worker (default 1000)
  GUNICORN_KEEPALIVE     seconds an idle keep-alive connection stays open (default 5)
  GUNICORN_GRACEFUL_TIMEOUT  seconds to finish in-flight requests on SIGTERM (default 10,
                         below the compose stop_grace_period of 15s)
  PORT                   listening port (default 6767, the port of the Mongrel2 stack)
  MAX_CONTENT_LENGTH     largest request body, read by m2stack.wsgi (default 20480)
"""

import math
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"setting {name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"setting {name} must be at least 1, got {value}")
    return value


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


worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
# One process per usable CPU: each async worker already serves many clients at once.
workers = _int("WEB_CONCURRENCY", available_cpus())
worker_connections = _int("WORKER_CONNECTIONS", 1000)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 10)
timeout = 30  # async workers heartbeat from their hub, so a long /sleep does not trip this

bind = [f"0.0.0.0:{_int('PORT', 6767)}"]
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
metrics_port = int(os.environ.get("METRICS_PORT", "9100") or 0)


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):  # stale files from a previous run
            os.unlink(os.path.join(directory, name))


def when_ready(server):
    if metrics_port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import subprocess
        import sys

        subprocess.Popen([sys.executable, "-m", "m2stack.metrics_server", str(metrics_port)])


def post_worker_init(worker):
    from m2stack import metrics

    metrics.watch_loop_lag()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
