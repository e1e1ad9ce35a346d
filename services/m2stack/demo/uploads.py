"""POST /upload: the length and SHA-256 of the request body, read as a stream.

However large the body (up to MAX_REQUEST_BODY_BYTES), the endpoint holds one chunk of it
at a time: through the Mongrel2 door it is mongrel2's temp_store file, through the WSGI door
Gunicorn's spooled copy; either way `request.iter_body()` (doors/body.py).
"""

from __future__ import annotations

import hashlib

from m2stack.app import Endpoint, Response, Router

routes = Router()


@routes.route("/upload")
class Upload(Endpoint):
    def post(self) -> Response:
        digest, length = hashlib.sha256(), 0
        for chunk in self.request.iter_body():
            digest.update(chunk)
            length += len(chunk)
        return self.json({"bytes": length, "sha256": digest.hexdigest()})

    put = post
