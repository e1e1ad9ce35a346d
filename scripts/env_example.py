#!/usr/bin/env python3
"""Write .env.example from services/m2stack/settings.py: every setting, its default, its
comment, and the default this stack's compose files give it where theirs differs.

    python3 scripts/env_example.py > .env.example      (`make env-example`, in the test image)

settings.py is the one source: a Struct there is a group of settings, its fields' names
are the variables. READERS says which compose service runs the process that reads each
group; tests/unit/test_env_example.py holds the compose files to passing every such
variable through, and .env.example to this script's output.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import msgspec
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

from m2stack import settings  # noqa: E402

# Group -> (compose file, service) of every process that reads it in this stack.
READERS: dict[str, tuple[tuple[str, str], ...]] = {
    "AppSettings": (("docker-compose.yml", "handler"), ("compose/wsgi.yml", "wsgi")),
    "FrontSettings": (("docker-compose.yml", "handler"), ("docker-compose.yml", "dispatcher")),
    "HandlerSettings": (("docker-compose.yml", "handler"),),
    "DispatcherSettings": (("docker-compose.yml", "dispatcher"),),
    "WSGISettings": (("compose/wsgi.yml", "wsgi"),),
    "GunicornSettings": (("compose/wsgi.yml", "wsgi"),),
    "DatabaseSettings": (("docker-compose.yml", "handler"), ("compose/wsgi.yml", "wsgi")),
    "FanoutSettings": (("docker-compose.yml", "handler"), ("compose/wsgi.yml", "wsgi")),
}
# Read by a process but fixed by its image or by the stack's wiring, so not passed through.
FIXED = {
    "GUNICORN_WORKER_CLASS": "by each WSGI image, whose lock has that hub only",
    "PROMETHEUS_MULTIPROC_DIR": "by each WSGI image, a tmpfs path",
    "PORT": "6767 inside the stack, published on HTTP_PUBLISH",
}

HEADER = """\
# Every setting of every m2stack process, with its default. Generated from
# services/m2stack/settings.py by `make env-example`: edit that file, not this one.
#
# `make env` starts .env from this file (and keeps what you set there); docker compose
# passes each variable to the service that reads it. Uncomment a line to change it; unset
# or empty means the default. NAME_FILE=/path reads NAME from a file (a secret).
# "(compose: ...)" is the default this stack's compose files give where settings.py's differs.
"""


def groups() -> list[type[msgspec.Struct]]:
    """The settings Structs, in the order settings.py declares them."""
    return [value for value in vars(settings).values()
            if isinstance(value, type) and issubclass(value, msgspec.Struct)
            and value.__module__ == settings.__name__]


def field_comments(kind: type) -> dict[str, list[str]]:
    """Each field's comment: the comment lines right above it and its trailing comment."""
    lines, first = inspect.getsourcelines(kind)
    comments: dict[str, list[str]] = {}
    for node in ast.parse("".join(lines)).body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        code, hash_, trailing = lines[node.end_lineno - 1].partition("  #")
        if hash_ and trailing.strip():
            above.append(trailing.strip())
        comments[node.target.id] = above
    return comments


def default_text(field: msgspec.structs.FieldInfo) -> str:
    value = field.default
    if value is msgspec.NODEFAULT:
        value = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else ""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compose_environment(file: str, service: str) -> dict[str, str | None]:
    with open(ROOT / file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    environment = document["services"][service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {str(key): None if value is None else str(value) for key, value in environment.items()}


def compose_default(value: str | None, name: str) -> str | None:
    """`${NAME:-default}` -> default (None when the value is not that form)."""
    prefix = "${" + name + ":-"
    if value is None or not value.startswith(prefix) or not value.endswith("}"):
        return None
    return value[len(prefix):-1]


def same_value(compose: str, default: str) -> bool:
    """"10" in a compose file is settings.py's 10.0."""
    try:
        return compose == default or float(compose) == float(default)
    except ValueError:
        return False


def render() -> str:
    out = [HEADER.rstrip("\n")]
    seen: set[str] = set()
    for kind in groups():
        readers = READERS.get(kind.__name__, ())
        fields = [f for f in msgspec.structs.fields(kind) if f.encode_name not in seen]
        again = [f.encode_name for f in msgspec.structs.fields(kind) if f.encode_name in seen]
        doc = " ".join((kind.__doc__ or "").split())
        out.append(f"\n# ---- {kind.__name__}: {doc}")
        if readers:
            out.append("# read by: " + ", ".join(f"{service} ({file})" for file, service in readers))
        if again:
            out.append("# also reads " + ", ".join(again) + " (above)")
        comments: dict[str, list[str]] = {}
        for klass in reversed(kind.__mro__):
            if isinstance(klass, type) and issubclass(klass, msgspec.Struct) and klass in groups():
                comments.update(field_comments(klass))
        environments = [(service, compose_environment(file, service)) for file, service in readers]
        for field in fields:
            name = field.encode_name
            seen.add(name)
            out.extend(f"# {line}" if line else "#" for line in comments.get(field.name, []))
            default = default_text(field)
            line = f"# {name}={default}"
            given = [(service, compose_default(env.get(name), name)) for service, env in environments]
            agreed = len({value for _, value in given}) == 1  # every reader gets the same
            others = sorted({value if agreed else f"{service}: {value}"
                             for service, value in given if value and not same_value(value, default)})
            if others:
                line += f"   (compose: {', '.join(others)})"
            if name in FIXED:
                line += f"   (fixed: {FIXED[name]})"
            out.append(line)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
