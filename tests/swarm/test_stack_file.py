"""The generated stack file agrees with the compose files (no swarm needed).

One source of truth: docker-compose.yml (+ the hub overlay, + compose/bare.yml for the
bare shape). The stack file is generated from it (compose/swarm.yml adds only what a swarm
needs; scripts/swarm_stack.py converts), and these tests hold the two to the same
services, images, environment, limits and lock-down, with the documented differences only
(swarmlib.SWARM_ENV, no *PASSWORD), in both shapes: the default with the dispatcher
(`make swarm-up`), the bare one with none (`make swarm-up DISPATCH=0`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from swarmlib import COMPOSE, ROOT, from_compose, from_stack_file, run

from comparison.variants import VARIANTS
from support import missing

sys.path.insert(0, str(ROOT / "scripts"))
import swarm_stack  # noqa: E402

HUBS = ["gevent", "eventlet"]
# The variant swarm.sh deploys for each DISPATCH: its files, then compose/swarm.yml.
SHAPES = {"dispatcher": "mongrel2-{hub}-dispatch", "bare": "mongrel2-{hub}"}
SERVICES = {"dispatcher": {"db", "mongrel2", "dispatcher", "handler"}, "bare": {"db", "mongrel2", "handler"}}


@pytest.fixture(scope="module", autouse=True)
def compose_v2():
    try:
        version = subprocess.run([*COMPOSE, "version", "--short"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        version = ""
    if not version or version.startswith("1."):
        missing(f"COMPOSE={' '.join(COMPOSE)!r} is not Compose v2 (make compose-v2)")


def env(**extra: str) -> dict[str, str]:
    # A DB_PASSWORD in the environment (as `make env` puts in .env) must not reach the stack.
    return dict(os.environ, DB_PASSWORD="must-not-leak", FRONTS="2", HANDLERS="3", SWARM_STACK="m2check", **extra)


def configs(hub: str, shape: str = "dispatcher", **extra: str) -> tuple[dict, dict]:
    files = VARIANTS[SHAPES[shape].format(hub=hub)].files
    args = [arg for f in files for arg in ("-f", f)]
    base = json.loads(run(*COMPOSE, "-p", "m2check", *args, "config", "--format", "json", env=env(**extra)).stdout)
    merged = json.loads(run(*COMPOSE, "-p", "m2check", *args, "-f", "compose/swarm.yml", "config", "--format",
                            "json", env=env(**extra)).stdout)
    return base, merged


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hub", HUBS)
def test_stack_file_agrees_with_compose_file(hub, shape):
    base, merged = configs(hub, shape)
    stack = swarm_stack.convert(merged)
    expected, generated = from_compose(base), from_stack_file(stack)
    assert set(stack["services"]) == set(expected) == SERVICES[shape]
    for name in expected:
        assert generated[name] == expected[name], name
    assert stack["services"]["handler"]["image"] == f"m2stack/handler:{hub}"
    # Limits really are there (not only equal because both are missing).
    assert all(spec.cpus and spec.memory and spec.pids for spec in generated.values())
    assert all(spec.read_only and spec.cap_drop == ("ALL",) for spec in generated.values())


def test_the_bare_stack_has_no_dispatcher_and_handlers_pull_from_every_front():
    base, merged = configs("gevent", "bare")
    assert base["services"]["dispatcher"]["scale"] == 0   # in the config, and left out of the stack
    handler = swarm_stack.convert(merged)["services"]["handler"]
    assert handler["environment"]["HANDLER_DISPATCHER"] == ""
    assert handler["environment"]["M2_REQUESTS_ENDPOINT"] == "tcp://tasks.mongrel2:9997"


def test_the_default_stack_points_every_handler_at_its_one_dispatcher():
    services = swarm_stack.convert(configs("gevent")[1])["services"]
    assert services["handler"]["environment"]["HANDLER_DISPATCHER"] == "tcp://dispatcher:9995"
    assert services["dispatcher"]["environment"]["M2_REQUESTS_ENDPOINT"] == "tcp://tasks.mongrel2:9997"
    # One task (Swarm's default for a replicated service: no count is written), DNS-found.
    assert "replicas" not in services["dispatcher"]["deploy"]
    assert services["dispatcher"]["deploy"]["endpoint_mode"] == "dnsrr"


def test_interpolated_settings_reach_the_stack():
    base, merged = configs("gevent", HANDLER_CPUS="0.5", M2_IDLE_TIMEOUT="8")
    stack = swarm_stack.convert(merged)
    assert stack["services"]["handler"]["deploy"]["resources"]["limits"]["cpus"] == "0.5"
    assert stack["services"]["mongrel2"]["environment"]["M2_IDLE_TIMEOUT"] == "8"
    assert stack["services"]["handler"]["deploy"]["replicas"] == 3
    assert stack["services"]["mongrel2"]["deploy"]["replicas"] == 2


def test_swarm_specifics():
    _, merged = configs("gevent")
    stack = swarm_stack.convert(merged)
    text = json.dumps(stack)
    assert "must-not-leak" not in text and '"DB_PASSWORD"' not in text
    assert stack["version"] == "3.9"   # Docker CLI < 23 refuses a file without one
    services = stack["services"]
    assert all(s["deploy"]["endpoint_mode"] == "dnsrr" for s in services.values())
    # The dispatcher is replaced at once (compose/swarm.yml says why), the rest after 5 s.
    assert {name: s["deploy"]["restart_policy"] for name, s in services.items()} == {
        "db": {"condition": "any"}, "mongrel2": {"condition": "any"}, "handler": {"condition": "any"},
        "dispatcher": {"condition": "any", "delay": "1s"}}
    assert services["db"]["deploy"]["placement"]["constraints"] == ["node.labels.m2stack.db == true"]
    # Labels only exclude: a swarm with no labels runs fronts and the dispatcher anywhere.
    assert services["mongrel2"]["deploy"]["placement"]["constraints"] == ["node.labels.m2stack.front != false"]
    assert services["dispatcher"]["deploy"]["placement"]["constraints"] == [
        "node.labels.m2stack.dispatcher != false"]
    assert {s["source"] for s in services["db"]["secrets"]} == {"db_password"}
    assert stack["secrets"]["db_password"] == {"name": "m2check_db_password", "external": True}
    assert stack["networks"]["back"] == {"driver": "overlay", "internal": True, "driver_opts": {"encrypted": "true"}}
    assert stack["networks"]["front"] == {"driver": "overlay", "attachable": True}
    assert {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 128 * 2**20}} in services["db"]["volumes"]
    assert "build" not in text and "depends_on" not in text and "security_opt" not in text


def test_no_encrypt_drops_the_option_and_only_it():
    _, merged = configs("gevent")
    notes: list[str] = []
    stack = swarm_stack.convert(merged, encrypt=False, notes=notes)
    assert stack["networks"]["back"] == {"driver": "overlay", "internal": True}
    assert stack["networks"]["front"] == {"driver": "overlay", "attachable": True}
    assert [n for n in notes if n.startswith("network ")] == ["network back: not encrypted (--no-encrypt)"]
    kept = swarm_stack.convert({"networks": {"n": {"driver_opts": {"encrypted": "", "mtu": "1400"}}}}, encrypt=False)
    assert kept["networks"]["n"] == {"driver": "overlay", "driver_opts": {"mtu": "1400"}}


@pytest.mark.parametrize("publish", ["host", "random", "ingress"])
def test_publishing(publish):
    _, merged = configs("gevent")
    mongrel2 = swarm_stack.convert(merged, publish=publish)["services"]["mongrel2"]
    port = mongrel2["ports"][0]
    assert port["target"] == 6767
    if publish == "host":
        assert port == {"target": 6767, "protocol": "tcp", "published": 6767, "mode": "host"}
        assert mongrel2["deploy"]["placement"]["max_replicas_per_node"] == 1
    elif publish == "random":
        assert port == {"target": 6767, "protocol": "tcp", "mode": "host"}
    else:
        assert port["mode"] == "ingress" and mongrel2["deploy"]["endpoint_mode"] == "vip"


def test_registry_prefix():
    _, merged = configs("eventlet")
    stack = swarm_stack.convert(merged, registry="127.0.0.1:5000")
    assert {s["image"] for s in stack["services"].values()} == {
        "127.0.0.1:5000/m2stack/postgres:latest", "127.0.0.1:5000/m2stack/mongrel2:latest",
        "127.0.0.1:5000/m2stack/handler:eventlet", "127.0.0.1:5000/m2stack/dispatcher:latest"}


def test_unknown_keys_stop_the_converter():
    with pytest.raises(swarm_stack.ConversionError, match="privileged"):
        swarm_stack.convert({"services": {"x": {"image": "i", "privileged": True}}})


@pytest.mark.parametrize("shape", SHAPES)
def test_dockers_own_loader_takes_it_whole(tmp_path, shape):
    """`docker stack config` is the loader `docker stack deploy` uses: it must accept the
    file and ignore nothing (it silently drops service-level tmpfs; warns on the rest)."""
    if subprocess.run(["docker", "stack", "config", "--help"], capture_output=True).returncode != 0:
        pytest.skip("this Docker CLI has no `docker stack config` (older than 25): deploying is the check")
    _, merged = configs("gevent", shape)
    path = tmp_path / "stack.json"
    stack = swarm_stack.convert(merged)
    path.write_text(json.dumps(stack))
    tmpfs = sum(v["type"] == "tmpfs" for s in stack["services"].values() for v in s["volumes"])
    result = subprocess.run(["docker", "stack", "config", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Ignoring" not in result.stderr + result.stdout, result.stderr
    # Every tmpfs mount survived the loader: read_only roots need them.
    # db 3 (/run/postgresql, /tmp, /dev/shm), mongrel2 1, handler 1, the dispatcher 1.
    dispatchers = shape == "dispatcher"
    assert tmpfs == 5 + dispatchers and len(re.findall(r"^ *- type: tmpfs$", result.stdout, re.M)) == tmpfs, \
        result.stdout
    assert result.stdout.count("pids:") == 3 + dispatchers
