"""Large request bodies through mongrel2 1.12's `upload.temp_store`.

A body over `limits.content_length` is written by mongrel2 to a file made with mkstemp
from the `upload.temp_store` template (M2_UPLOAD_DIR/upload.XXXXXX here), and the handlers
get two messages for it, both with an empty body (src/upload.c `Upload_file` and
`Upload_notify`): one with `x-mongrel2-upload-start: <path>` when it starts, one with
that header and `x-mongrel2-upload-done: <path>` once the file is complete. Like every
message, each one goes round-robin to any handler: only the `-done` one is acted on.
Mongrel2 never deletes the file: the handler does, whatever the outcome.

A client can send those header names itself (mongrel2 passes lower-case client headers
through, and only overwrites them on its own upload path). So a message counts as
mongrel2's only if its body is empty while it declares a positive Content-Length (which
mongrel2 produces only for an upload: a client's declared body is read and sent), the two
values are equal, and the file is a regular file directly inside HANDLER_UPLOAD_DIR whose
size is the declared length. Anything else with one of those headers gets 400.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat

from m2stack.app import HTTPError
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.uploads")

START = "x-mongrel2-upload-start"
DONE = "x-mongrel2-upload-done"


class Uploads:
    def __init__(self, settings: HandlerSettings):
        self.directory = os.path.realpath(settings.upload_dir) if settings.upload_dir else ""
        self.max_bytes = settings.max_upload
        self.received = self.refused = 0

    def take(self, message: protocol.Mongrel2Request) -> protocol.Mongrel2Request | None:
        """The request with its body read from mongrel2's file (the file deleted), None
        for the start notice (nothing to answer), or HTTPError (400, 413)."""
        meta = message.headers
        start, done = meta.get(START), meta.get(DONE)
        length = meta.get("content-length")
        genuine = (not message.body and isinstance(length, str) and length.isdigit()
                   and int(length) > 0 and isinstance(start, str) and bool(self.directory))
        if genuine and done is None:
            return None  # mongrel2 has started writing the file; its "done" message follows
        path = self._path(start) if genuine and done == start else None
        if path is None:
            self.refused += 1
            log.warning("refused a request with mongrel2's upload headers",
                        extra={"conn_id": message.conn_id.decode("ascii", "replace")})
            raise HTTPError(400, "x-mongrel2-upload-* headers are reserved for mongrel2")
        try:
            declared = int(str(length))
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size != declared:
                raise HTTPError(400, "the uploaded body is not the length declared",
                                details={"content_length": declared, "received": info.st_size})
            if declared > self.max_bytes:
                raise HTTPError(413, "request body too large",
                                details={"limit": self.max_bytes, "length": declared})
            with open(path, "rb") as f:
                body = f.read(declared + 1)
            if len(body) != declared:
                raise HTTPError(400, "the uploaded body is not the length declared")
        except FileNotFoundError:
            raise HTTPError(400, "the uploaded body is gone") from None
        finally:
            self._delete(path)
        self.received += 1
        headers = {k: v for k, v in meta.items() if k not in (START, DONE)}
        return dataclasses.replace(message, headers=headers, body=body)

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
