"""The front doors: each takes an app and a hub and serves the app to the world.

  mongrel2/   the Mongrel2 handler: a pure core and a thin driver over ZeroMQ
  wsgi.py     the app as a PEP 3333 callable, for Gunicorn or any WSGI server
"""
