#!/usr/bin/env python3
"""Paired A/B of the door's served-where-received cycle between source trees, on a busy
machine. A benchmark, not a test: it asserts nothing.

Run in the test image, each tree (a checkout or `git worktree add DIR COMMIT`) mounted
side by side under /t:

    docker run --rm --read-only --tmpfs /tmp -v OLD:/t/old:ro -v NEW:/t/new:ro \\
      --entrypoint python3 m2stack/test:TAG /t/new/loadtest/hotpath_ab.py --hub gevent old new

Each round runs every tree's `door_cycle` (its own loadtest/hotpath.py and package) alone
in a fresh process, the order rotated each round. CPU time still moves with the load on
the machine, but slowly: the difference between the trees within one round cancels most
of it, so the per-round differences (and how often one tree was the faster) separate a
1 µs change where runs minutes apart do not. The first tree is the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# One tree's cycle, alone: its hotpath.py monkey-patches at import (it reads --hub).
CYCLE = """
import inspect, json, sys
sys.path.insert(0, sys.argv[1] + "/loadtest")
import hotpath
hub = hotpath.hub
if hasattr(hub, "install_handoff"):
    hub.install_handoff()  # older trees' door_cycle relied on an earlier step for it
context = hotpath.zmq.Context()
number, repeat = int(sys.argv[4]), int(sys.argv[5])
if "settings" in inspect.signature(hotpath.door_cycle).parameters:  # its older signature
    result = hotpath.door_cycle(context, hotpath.HandlerSettings(), number, repeat, inline=True)
else:
    result = hotpath.door_cycle(context, number, repeat, inline=True)
print(json.dumps(result))
"""


def one(tree: str, hub: str, number: int, repeat: int) -> float:
    env = dict(os.environ, PYTHONPATH=f"{tree}/services", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", CYCLE, tree, "--hub", hub, str(number), str(repeat)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.splitlines()[-1])["us"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="names under --root; the first is the reference")
    parser.add_argument("--root", default="/t")
    parser.add_argument("--hub", default="gevent")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--number", type=int, default=3200, help="requests per timed round of a run")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per run (their median is kept)")
    args = parser.parse_args()
    trees = args.trees
    figures: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name in trees[r % len(trees):] + trees[:r % len(trees)]:
            figures[name].append(one(f"{args.root}/{name}", args.hub, args.number, args.repeat))
        print(f"round {r + 1}: " + ", ".join(f"{name} {figures[name][-1]:.2f}" for name in trees),
              file=sys.stderr, flush=True)
    reference = figures[trees[0]]
    print(f"{args.hub}, whole cycle served where received, µs per request, {args.rounds} rounds:")
    for name in trees:
        runs = figures[name]
        line = f"  {name}: median {statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f})"
        if name != trees[0]:
            diffs = [a - b for a, b in zip(runs, reference, strict=True)]
            faster = sum(1 for d in diffs if d < 0)
            line += (f"; minus {trees[0]}, per round: median {statistics.median(diffs):+.2f}"
                     f" ({min(diffs):+.2f} to {max(diffs):+.2f}), faster in {faster}/{args.rounds}")
        print(line)
    print(json.dumps({"hub": args.hub, "runs": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
