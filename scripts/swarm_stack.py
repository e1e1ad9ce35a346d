#!/usr/bin/env python3
"""The Swarm stack file, generated from the compose files: no second copy to drift.

    docker compose -f docker-compose.yml [-f compose/eventlet.yml] -f compose/swarm.yml \\
        config --format json | scripts/swarm_stack.py [--registry HOST:PORT] \\
        [--publish host|random|ingress] [--no-encrypt] [--images] > stack.json

(--images: the stack's images, one a line, instead of the file: what `make push` pushes.)

`docker compose config` merges the files and interpolates every variable; this turns the
result into what `docker stack deploy` honours (Docker's own Compose loader, schema 3.9,
so a Docker CLI 20.10 reads it too):

- mem_limit, cpus, pids_limit -> deploy.resources.limits (the loader forbids or rejects
  them at service level);
- tmpfs (silently dropped by the loader while read_only applies) -> tmpfs mounts. Swarm
  takes no uid or mode for them: they come up root-owned, mode 1777;
- shm_size (ignored) -> a tmpfs mount on /dev/shm of that size;
- restart (ignored) -> deploy.restart_policy;
- ports -> host-mode ports (default), random host ports, or the ingress mesh;
- build, depends_on, profiles and security_opt are dropped: Swarm has none of them
  (docs/swarm.md says what that costs and how the stack copes);
- a service of `scale: 0` (the dispatcher under compose/bare.yml) is left out: Compose
  runs no container of it, and Swarm would run one (scale is no Swarm key);
- any *PASSWORD variable is dropped: secrets reach tasks as files (*_FILE);
- networks become overlays, and names are left to the stack's namespace; with
  --no-encrypt, no overlay keeps the `encrypted` option (a kernel without ESP carries no
  traffic between nodes on an encrypted overlay: scripts/swarm.sh decides, docs/swarm.md).

A key this script does not know stops it: nothing is dropped without a rule here.
Standard library only. JSON is YAML, so the output is a valid stack file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STACK_VERSION = "3.9"  # deploy.resources.limits.pids needs 3.9 (Docker CLI 20.10+)

# Service keys Swarm honours as they are.
PASS = {
    "cap_add", "cap_drop", "command", "configs", "deploy", "entrypoint", "environment",
    "extra_hosts", "healthcheck", "hostname", "image", "init", "labels", "logging",
    "networks", "ports", "read_only", "secrets", "stop_grace_period", "stop_signal",
    "sysctls", "tty", "stdin_open", "ulimits", "user", "volumes", "working_dir",
}
# Keys with no meaning in a swarm, dropped (the loader would warn or refuse).
DROP = {"build", "container_name", "depends_on", "profiles", "pull_policy", "scale"}
# Mapped below.
MAPPED = {"cpus", "mem_limit", "mem_reservation", "pids_limit", "restart", "security_opt",
          "shm_size", "tmpfs"}

RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}


class ConversionError(ValueError):
    pass


def _bytes(value: Any) -> int:
    """compose config writes sizes as byte counts (strings or numbers)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConversionError(f"not a byte count: {value!r} (run through `docker compose config`)") from None


def _tmpfs_mount(spec: str) -> dict[str, Any]:
    # "/run/mongrel2:uid=10001,gid=10001,mode=0700": Swarm takes a size only.
    target, _, options = spec.partition(":")
    mount: dict[str, Any] = {"type": "tmpfs", "target": target}
    for option in filter(None, options.split(",")):
        name, _, value = option.partition("=")
        if name == "size":
            mount["tmpfs"] = {"size": _bytes(value)}
    return mount


def convert_service(name: str, service: dict[str, Any], *, registry: str, publish: str,
                    notes: list[str]) -> dict[str, Any]:
    unknown = set(service) - PASS - DROP - MAPPED
    if unknown:
        raise ConversionError(f"service {name}: no rule for {sorted(unknown)} in scripts/swarm_stack.py")
    out = {key: value for key, value in service.items() if key in PASS and value is not None}
    deploy = dict(out.get("deploy") or {})

    # Limits: what Compose set per container becomes the task's limits.
    limits = dict(deploy.get("resources", {}).get("limits") or {})
    if service.get("cpus") is not None:
        limits["cpus"] = str(float(service["cpus"]))
    if service.get("mem_limit") is not None:
        limits["memory"] = str(_bytes(service["mem_limit"]))
    if service.get("pids_limit") is not None:
        limits["pids"] = int(service["pids_limit"])
    resources = dict(deploy.get("resources") or {})
    if limits:
        resources["limits"] = limits
    if service.get("mem_reservation") is not None:
        resources.setdefault("reservations", {})["memory"] = str(_bytes(service["mem_reservation"]))
    if resources:
        deploy["resources"] = resources
    else:
        deploy.pop("resources", None)
    if not deploy.get("placement"):
        deploy.pop("placement", None)

    if "restart" in service and "restart_policy" not in deploy:
        condition = RESTART.get(str(service["restart"]).split(":")[0])
        if condition is None:
            raise ConversionError(f"service {name}: restart {service['restart']!r} has no Swarm equivalent")
        deploy["restart_policy"] = {"condition": condition}

    mounts = list(out.get("volumes") or [])
    tmpfs = service.get("tmpfs") or []
    for spec in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        mounts.append(_tmpfs_mount(spec))
    if service.get("shm_size") is not None:
        mounts.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": _bytes(service["shm_size"])}})
    if mounts:
        out["volumes"] = mounts

    for option in service.get("security_opt") or []:
        notes.append(f"{name}: security_opt {option!r} dropped: Swarm cannot set it per service "
                     "(dockerd --no-new-privileges sets it for every container of a node)")

    environment = dict(out.get("environment") or {})
    for key in sorted(environment):
        if key.endswith("PASSWORD"):
            del environment[key]   # never in a stack file: the *_FILE variable points at a secret
        elif environment[key] is None:
            del environment[key]   # a variable passed only when set (`APP:`), and it was not
    if environment:
        out["environment"] = environment

    if registry and "image" in out:
        out["image"] = f"{registry.rstrip('/')}/{out['image']}"

    ports = []
    for port in out.get("ports") or []:
        if isinstance(port, (str, int)):
            raise ConversionError(f"service {name}: short port syntax {port!r}: run through `docker compose config`")
        if port.get("host_ip"):
            notes.append(f"{name}: port {port['target']} bound to {port['host_ip']} in compose; "
                         "Swarm publishes on every address")
        entry: dict[str, Any] = {"target": int(port["target"]), "protocol": port.get("protocol", "tcp")}
        if publish == "random":
            entry["mode"] = "host"           # a free host port per task
        else:
            entry["published"] = int(port["published"])
            entry["mode"] = "host" if publish == "host" else "ingress"
        ports.append(entry)
    if ports:
        out["ports"] = ports
        if publish == "ingress":
            deploy["endpoint_mode"] = "vip"  # the routing mesh needs a VIP
        elif publish == "host":
            # One task per node can hold the port; more would wait for a node forever.
            deploy.setdefault("placement", {})["max_replicas_per_node"] = 1

    if deploy:
        out["deploy"] = deploy
    return out


def convert(config: dict[str, Any], *, registry: str = "", publish: str = "host",
            encrypt: bool = True, notes: list[str] | None = None) -> dict[str, Any]:
    """The stack file (a dict) for the output of `docker compose config --format json`."""
    if publish not in ("host", "random", "ingress"):
        raise ConversionError(f"publish must be host, random or ingress, not {publish!r}")
    notes = [] if notes is None else notes
    stack: dict[str, Any] = {
        "version": STACK_VERSION,
        "x-generated": "by scripts/swarm_stack.py from `docker compose config`: edit the compose files, not this",
        "services": {name: convert_service(name, service, registry=registry, publish=publish, notes=notes)
                     for name, service in sorted(config.get("services", {}).items())
                     if service.get("scale") != 0},
    }
    networks = {}
    for name, network in sorted((config.get("networks") or {}).items()):
        network = {k: v for k, v in (network or {}).items() if k not in ("name", "ipam") or network.get("external")}
        if not network.get("external"):
            network["driver"] = "overlay"
        options = network.get("driver_opts") or {}
        if not encrypt and "encrypted" in options:
            # Dropped, not set to "false": the overlay driver encrypts when the key is present.
            options = {k: v for k, v in options.items() if k != "encrypted"}
            notes.append(f"network {name}: not encrypted (--no-encrypt)")
            if options:
                network["driver_opts"] = options
            else:
                network.pop("driver_opts")
        networks[name] = network
    if networks:
        stack["networks"] = networks
    volumes = {name: {k: v for k, v in (volume or {}).items() if k != "name" or volume.get("external")}
               for name, volume in sorted((config.get("volumes") or {}).items())}
    if volumes:
        stack["volumes"] = volumes
    for kind in ("secrets", "configs"):
        if config.get(kind):
            stack[kind] = config[kind]
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default="", help="prefix every image with HOST:PORT")
    parser.add_argument("--publish", default="host", choices=("host", "random", "ingress"),
                        help="host: the compose port on each front's node (one front per node); "
                             "random: a free host port per front; ingress: the routing mesh")
    parser.add_argument("--no-encrypt", action="store_true",
                        help="drop the `encrypted` option of every overlay (for hosts without ESP)")
    parser.add_argument("--images", action="store_true", help="print the stack's images, one a line")
    args = parser.parse_args(argv)
    notes: list[str] = []
    try:
        stack = convert(json.load(sys.stdin), registry=args.registry, publish=args.publish,
                        encrypt=not args.no_encrypt, notes=notes)
    except (ConversionError, json.JSONDecodeError) as exc:
        print(f"swarm_stack: {exc}", file=sys.stderr)
        return 1
    if args.images:
        print("\n".join(sorted({service["image"] for service in stack["services"].values()})))
        return 0
    for note in dict.fromkeys(notes):
        print(f"swarm_stack: note: {note}", file=sys.stderr)
    json.dump(stack, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
