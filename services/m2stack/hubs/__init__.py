"""Hub adapters: the few primitives the Mongrel2 front door needs from a greenlet hub.

gevent_hub.py and eventlet_hub.py mirror each other line for line; the entry
points (run_gevent.py, run_eventlet.py) monkey-patch before importing them.
"""
