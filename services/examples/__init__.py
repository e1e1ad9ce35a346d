"""Example WSGI applications served by the Mongrel2 handler images (APP=module:callable)."""
