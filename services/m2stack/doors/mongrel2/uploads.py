"""Large request bodies through mongrel2 1.12's `upload.temp_store`: the file named by
mongrel2's `x-mongrel2-upload-done` message becomes the request's body, read by the app in
chunks (doors/body.py); the file is unlinked as soon as it is open, so it is deleted
whatever the outcome, and its space freed when the body is closed.

Mongrel2's `-start` notice (the body is on its way to the file) is not answered, unless
the declared length is over MAX_REQUEST_BODY_BYTES: then it gets the 413 at once and the
connection closes, so the client is refused while still sending and mongrel2 stops writing
(it deletes its file when the connection closes; so does this handler, at once).

A client can send those header names itself, so a message counts as mongrel2's only if its
body is empty while it declares a positive Content-Length (mongrel2 sends such a message
only for an upload), the two header values are equal, and the file is a regular file
directly inside HANDLER_UPLOAD_DIR of the declared size. Anything else with one of those
headers gets 400. docs/streaming.md, "Large uploads".
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Callable

from m2stack.app import HTTPError, body_too_large
from m2stack.doors.body import FileBody
from m2stack.doors.mongrel2.core import UPLOAD_DONE, UPLOAD_START
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.uploads")


class Uploads:
    def __init__(self, settings: HandlerSettings, pause: Callable[[], None] = lambda: None):
        self.directory = os.path.realpath(settings.upload_dir) if settings.upload_dir else ""
        self.max_bytes = settings.max_body
        self.pause = pause  # a turn of the hub (doors/body.py)

    def take(self, message: protocol.Mongrel2Request) -> tuple[protocol.Mongrel2Request, FileBody] | None:
        """The request (mongrel2's headers removed) and its body, from mongrel2's file (then
        unlinked); None for the start notice (nothing to answer); or HTTPError (400, 413)."""
        meta = message.headers
        start, done = meta.get(UPLOAD_START), meta.get(UPLOAD_DONE)
        length = meta.get("content-length")
        declared = int(length) if isinstance(length, str) and length.isdigit() else None
        # A chunked body (no Content-Length) always goes to temp_store in mongrel2 1.12.
        chunked = length is None and "chunked" in str(meta.get("transfer-encoding", "")).lower()
        genuine = (not message.body and (chunked or (declared is not None and declared > 0))
                   and isinstance(start, str) and bool(self.directory))
        path = self._path(start) if genuine and isinstance(start, str) else None
        if genuine and done is None:
            # mongrel2 has started writing the file; its "done" message follows
            if declared is None or declared <= self.max_bytes:
                return None
            if path is not None:
                self._delete(path)  # mongrel2 writes on into the unlinked file until it closes
            raise body_too_large(self.max_bytes, declared)
        if done != start:
            path = None
        if path is None:
            log.warning("refused a request with mongrel2's upload headers",
                        extra={"conn_id": message.conn_id.decode("ascii", "replace")})
            raise HTTPError(400, "x-mongrel2-upload-* headers are reserved for mongrel2")
        try:
            file = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")  # closed by the door
        except FileNotFoundError:
            # mongrel2 wrote it, so it is on another host's volume (docs/swarm.md, "Uploads")
            raise HTTPError(503, "the uploaded body is not in this handler's HANDLER_UPLOAD_DIR: "
                                 "mongrel2 and the handlers must share that directory") from None
        finally:
            self._delete(path)
        try:
            info = os.fstat(file.fileno())
            size = info.st_size
            if not stat.S_ISREG(info.st_mode) or (declared is not None and size != declared):
                raise HTTPError(400, "the uploaded body is not the length declared",
                                details={"content_length": declared, "received": size})
            if size > self.max_bytes:
                raise body_too_large(self.max_bytes, size)
        except BaseException:
            file.close()
            raise
        headers = {k: v for k, v in meta.items() if k not in (UPLOAD_START, UPLOAD_DONE)}
        return dataclasses.replace(message, headers=headers), FileBody(file, size, self.pause)

    def _path(self, value: str) -> str | None:
        """The file, if directly inside the upload directory (no link, no `..`)."""
        if "\0" in value:
            return None
        path = os.path.realpath(value)
        if os.path.dirname(path) != self.directory or not os.path.basename(path).startswith("upload."):
            return None
        return path

    @staticmethod
    def _delete(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("cannot delete an upload file", extra={"path": path, "error": str(exc)})
