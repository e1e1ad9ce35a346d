"""Reference peers of `make compare`: other servers doing our app's per-request work.

Not part of m2stack (its layering contracts do not cover this package), and shipped only
in the peer images (services/Dockerfile, targets wsgi-granian, uvicorn-starlette and
granian-starlette):

    run_granian.py     granian: m2stack's own WSGI app (m2stack.run_wsgi:application), or
                       in ASGI mode starlette_app.py (GRANIAN_INTERFACE)
    granian_app.py     what granian loads in WSGI mode: that app, built once, plus its metrics endpoint
    run_uvicorn.py     uvicorn (uvloop, httptools) serving starlette_app.py
    starlette_app.py   the demo's endpoints that the comparison measures, on Starlette + asyncpg:
                       one app for both ASGI servers
    common.py          worker count and the Prometheus endpoint, shared by both servers
    exporter.py        the merged metrics of several worker processes (a child of the server)
    healthcheck.py     the images' healthcheck: GET /healthz on loopback
"""
