"""The Mongrel2 door: a handler process serving an app to mongrel2 over ZeroMQ."""
