"""Large request bodies through mongrel2 1.12's `upload.temp_store`: the file named by
mongrel2's `x-mongrel2-upload-done` message is read as the body and deleted, whatever the
outcome; its `-start` notice is not answered.

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

from m2stack.app import HTTPError
from m2stack.doors.mongrel2.core import UPLOAD_DONE, UPLOAD_START
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.uploads")


class Uploads:
    def __init__(self, settings: HandlerSettings):
        self.directory = os.path.realpath(settings.upload_dir) if settings.upload_dir else ""
        self.max_bytes = settings.max_upload

    def take(self, message: protocol.Mongrel2Request) -> protocol.Mongrel2Request | None:
        """The request with its body read from mongrel2's file (the file deleted), None
        for the start notice (nothing to answer), or HTTPError (400, 413)."""
        meta = message.headers
        start, done = meta.get(UPLOAD_START), meta.get(UPLOAD_DONE)
        length = meta.get("content-length")
        genuine = (not message.body and isinstance(length, str) and length.isdigit()
                   and int(length) > 0 and isinstance(start, str) and bool(self.directory))
        if genuine and done is None:
            return None  # mongrel2 has started writing the file; its "done" message follows
        path = self._path(start) if genuine and isinstance(start, str) and done == start else None
        if path is None:
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
        headers = {k: v for k, v in meta.items() if k not in (UPLOAD_START, UPLOAD_DONE)}
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
