"""A service of your own on the stack: the notes example (examples/notes), end to end.

What README's "Start your own service" says, done: its image is built FROM the handler
(or WSGI) image by its own Dockerfile (`make images` builds it, after the image it starts
from), its compose overlay goes on top of the stack's files, and its own tests
(examples/notes/tests) run against the published port: behind Mongrel2 and under
Gunicorn, on both hubs. Settings reach it through the environment, the stack's and its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from comparison.variants import VARIANTS
from stack import ROOT

NOTES = [name for name, v in VARIANTS.items() if v.app == "notes"]
# Settings set from the environment only (no compose file edited): one of the service's
# own, and some of the stack's that could not be set before.
SETTINGS = {"NOTES_MAX_LIST": "7", "DB_STATEMENT_TIMEOUT_MS": "4000", "FANOUT_URL": "http://example.invalid/",
            "HANDLER_SHUTDOWN_GRACE": "9", "HANDLER_SCHED_BATCH": "false", "M2_PEER_HEARTBEAT": "20"}
READ_BY_WSGI = ("NOTES_MAX_LIST", "DB_STATEMENT_TIMEOUT_MS", "FANOUT_URL")
STACK = {"purpose": "notes", "processes": 2, "env": SETTINGS}
pytestmark = pytest.mark.parametrize("stack", NOTES, indirect=True, scope="module")


def image_layers(image: str) -> list[str]:
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["RootFS"]["Layers"]


def test_the_table_has_the_example_on_both_doors_and_hubs(stack):
    assert sorted((VARIANTS[n].front_door, VARIANTS[n].hub) for n in NOTES) == [
        ("mongrel2", "eventlet"), ("mongrel2", "gevent"), ("wsgi", "eventlet"), ("wsgi", "gevent")]


def test_its_own_tests_pass_against_the_stack(stack):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/notes/tests"],
                          cwd=ROOT, env=dict(os.environ, NOTES_URL=stack.url), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-1000:]


def test_served_by_the_variants_door_and_hub_from_its_own_image(stack):
    response = stack.get("/notes")
    assert response.status_code == 200
    assert response.headers["X-Front-Door"] == stack.front_door and response.headers["X-Hub"] == stack.hub
    container = stack.inspect(stack.app_ids()[0])
    base = {"mongrel2": "m2stack/handler", "wsgi": "m2stack/wsgi"}[stack.front_door] + f":{stack.hub}"
    image = {"mongrel2": "m2stack/notes", "wsgi": "m2stack/notes-wsgi"}[stack.front_door] + f":{stack.hub}"
    assert container["Config"]["Image"] == image
    assert "APP=notes:create_app" in container["Config"]["Env"]
    # Behind Mongrel2 it runs the stack's default shape, behind the dispatcher.
    assert len(stack.container_ids("dispatcher")) == (1 if stack.front_door == "mongrel2" else 0)
    assert stack.variant.dispatched is (stack.front_door == "mongrel2")
    # FROM the stack's image, adding only its code: the base's layers, then one of its own.
    own, base_layers = image_layers(image), image_layers(base)
    assert own[:len(base_layers)] == base_layers and len(own) == len(base_layers) + 1


def test_settings_reach_the_process_from_the_environment(stack):
    env = stack.inspect(stack.app_ids()[0])["Config"]["Env"]
    for name, value in SETTINGS.items():
        if stack.front_door == "mongrel2" or name in READ_BY_WSGI:
            assert f"{name}={value}" in env, (name, sorted(env))
    # The service's own setting, in effect: at most NOTES_MAX_LIST notes a page.
    assert stack.get("/notes", params={"limit": "7"}).status_code == 200
    too_many = stack.get("/notes", params={"limit": "8"})
    assert too_many.status_code == 400 and too_many.json()["error"]["details"]["argument"] == "limit"
