"""What granian loads (`peers.granian_app:application`): m2stack's own WSGI app, unchanged.

`m2stack.run_wsgi:application` is the callable Gunicorn serves. Under Gunicorn its worker
class patches the process for a hub; granian patches nothing, so the app finds the
blocking hub (m2stack/hubs/blocking.py) and granian's thread pool supplies the
concurrency: one request per thread. What that means for the measured endpoints:
  - /plaintext, /json: pure CPU under the GIL; the threads take turns.
  - /sleep: time.sleep holds its thread, so at most GRANIAN_THREADS sleeps run at once
    (threads / duration requests per second), where a hub interleaves thousands: hence
    1,000 threads by default (run_granian.py).
  - /fanout: the blocking hub's map_concurrently runs the K GETs one after another, each
    holding a second thread of this same server while the first waits for it.
  - /db and friends: psycopg2 blocks in libpq (no wait callback) and releases the GIL, so
    up to GRANIAN_THREADS queries run at once, each thread on its own pooled connection.
  - no request deadline: the blocking hub's Timeout never fires (no 504); the database's
    statement_timeout still bounds a query.
"""

from __future__ import annotations

import granian

from m2stack import metrics, run_wsgi
from peers.common import serve_metrics_in_worker

# Built once here, in the worker's main thread: the first requests would otherwise race to
# build it from several of granian's threads at once.
run_wsgi._adapter()
metrics.HUB.labels("blocking", "wsgi", granian.__version__).set(1)
serve_metrics_in_worker()

application = run_wsgi.application
