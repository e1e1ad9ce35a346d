"""The notes service's own tests: real HTTP against a running service.

    NOTES_URL=http://127.0.0.1:6767 python -m pytest examples/notes/tests

Skipped when NOTES_URL is not set (they need the service up, and its database).
"""

from __future__ import annotations

import os

import pytest
import requests


class Client:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False  # loopback: no proxy

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture(scope="session")
def notes() -> Client:
    url = os.environ.get("NOTES_URL", "")
    if not url:
        pytest.skip("NOTES_URL is not set: these tests need the notes service running")
    return Client(url)
