"""POST /upload: the size and SHA-256 of the request body.

Through the Mongrel2 door a body over mongrel2's limits.content_length arrives via
upload.temp_store (doors/mongrel2_uploads.py); the endpoint sees an ordinary body.
"""

from __future__ import annotations

import hashlib

from m2stack.app import Endpoint, Response, Router

routes = Router()


@routes.route("/upload")
class Upload(Endpoint):
    def post(self) -> Response:
        body = self.request.body
        return self.json({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    put = post
