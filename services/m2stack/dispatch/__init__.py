"""The dispatcher between mongrel2 and the handlers: credits, acknowledgements, sticky
connections, no request lost to a handler that dies (docs/dispatcher.md).

core.py decides (no sockets); service.py moves the bytes (blocking pyzmq, no hub).
"""
