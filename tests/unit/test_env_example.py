"""Every setting reachable: settings.py, .env.example and the compose files agree.

settings.py declares each variable once (a Struct per process); scripts/env_example.py
writes .env.example from it and says which compose service runs each process. These
tests fail when .env.example is stale (run `make env-example`), when a setting is not
passed through by the compose file of the service that reads it, or when a new group of
settings has no reader named.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("env_example", ROOT / "scripts" / "env_example.py")
env_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(env_example)

READS = [(kind.__name__, file, service, field.encode_name)
         for kind in env_example.groups()
         for file, service in env_example.READERS.get(kind.__name__, ())
         for field in msgspec.structs.fields(kind)
         if field.encode_name not in env_example.FIXED]


def test_env_example_is_what_settings_py_generates():
    written = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert written == env_example.render(), ".env.example is stale: run `make env-example`"


def test_env_example_lists_every_setting_once_with_its_default():
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    names = [m.group(1) for line in lines if (m := re.match(r"# ([A-Z][A-Z0-9_]*)=", line))]
    declared = {field.encode_name for kind in env_example.groups() for field in msgspec.structs.fields(kind)}
    assert sorted(names) == sorted(declared)
    assert "# HANDLER_SHUTDOWN_GRACE=10.0" in lines and "# DB_STATEMENT_TIMEOUT_MS=5000" in lines
    assert "# M2_REQUESTS_ENDPOINT=tcp://127.0.0.1:9997   (compose: tcp://mongrel2:9997)" in lines


def test_every_group_of_settings_names_the_services_that_read_it():
    unnamed = [kind.__name__ for kind in env_example.groups() if kind.__name__ not in env_example.READERS]
    assert not unnamed, f"say in scripts/env_example.py READERS which compose service reads {unnamed}"


@pytest.mark.parametrize(("group", "file", "service", "name"), READS,
                         ids=[f"{service}-{name}" for _, _, service, name in READS])
def test_the_service_that_reads_a_setting_passes_it_through(group, file, service, name):
    environment = env_example.compose_environment(file, service)
    assert name in environment, f"{file}: service {service} does not pass {name} ({group})"
    value = environment[name]
    # `${NAME...}` (with or without a default), or a bare key: passed on only when set.
    assert value is None or value.startswith("${" + name), \
        f"{file}: {service} sets {name}={value!r}: write \"${{{name}:-{value}}}\" so it can be changed"


def test_the_settings_left_to_the_image_are_real_settings_and_not_passed():
    declared = {field.encode_name for kind in env_example.groups() for field in msgspec.structs.fields(kind)}
    assert set(env_example.FIXED) <= declared
    wsgi = env_example.compose_environment("compose/wsgi.yml", "wsgi")
    assert not set(env_example.FIXED) & set(wsgi)  # an empty value would override the image's


def test_an_empty_passthrough_means_the_default_of_settings_py():
    # `${NAME:-}` hands the process an empty value, which settings.load reads as unset.
    from m2stack.settings import HandlerSettings, load

    assert load(HandlerSettings, {"HANDLER_SHUTDOWN_GRACE": "", "HANDLER_WS_KEEPALIVE": ""}) == HandlerSettings()


def test_the_compose_default_shown_is_the_one_compose_uses():
    handler = env_example.compose_environment("docker-compose.yml", "handler")
    assert env_example.compose_default(handler["HANDLER_SHUTDOWN_GRACE"], "HANDLER_SHUTDOWN_GRACE") == "10"
    assert env_example.compose_default(handler["HANDLER_SCHED_BATCH"], "HANDLER_SCHED_BATCH") == ""
    assert env_example.compose_default("literal", "X") is None
