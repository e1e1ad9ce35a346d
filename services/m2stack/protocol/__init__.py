"""The wire formats, sans I/O: bytes in, values out, and back. Standard library only.

  tnetstring.py   the tnetstring codec Mongrel2 uses for headers
  mongrel2.py     Mongrel2's handler messages (requests in, framed responses out)
  http.py         HTTP/1.1 response bytes
"""
