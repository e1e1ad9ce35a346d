"""The front doors: each takes an app and a hub and serves the app to the world.

  mongrel2.py   the Mongrel2 handler: a receive loop on ZeroMQ (serve(hub, app, settings))
  wsgi.py       the app as a PEP 3333 callable, for Gunicorn or any WSGI server
  ceiling.py    the least a Mongrel2 handler can do: the baseline of comparisons
  healthcheck.py, http_healthcheck.py, gunicorn_metrics.py   what the containers run beside them
"""
