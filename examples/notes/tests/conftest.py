"""The notes service's own tests: real HTTP against a running service.

    NOTES_URL=http://127.0.0.1:6767 python3 -m pytest examples/notes/tests

Standard library HTTP only, so they run wherever pytest does. Skipped when NOTES_URL is
not set (they need the service up, and its database).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest


@dataclass
class Reply:
    status_code: int
    headers: Message
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Client:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

    def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:  # 4xx and 5xx: a reply like any other
            with error:
                return Reply(error.code, error.headers, error.read())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)


@pytest.fixture(scope="session")
def notes() -> Client:
    url = os.environ.get("NOTES_URL", "")
    if not url:
        pytest.skip("NOTES_URL is not set: these tests need the notes service running")
    return Client(url)
