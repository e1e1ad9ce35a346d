"""What the Makefile runs with the host's python3 (3.9 or newer, it checks): the variants
table and the Compose v2 fetcher parse as Python 3.9, and the table's command line answers."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comparison import variants

ROOT = Path(__file__).resolve().parents[2]
HOST_SCRIPTS = ["loadtest/comparison/variants.py", "scripts/compose_v2.py"]


def makefile_minimum() -> tuple[int, int]:
    found = re.search(r"python_at_least,(\d+)\.(\d+)\),,\$\(error", (ROOT / "Makefile").read_text())
    assert found, "the Makefile's Python check"
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("script", HOST_SCRIPTS)
def test_host_scripts_parse_as_the_oldest_python_the_makefile_accepts(script):
    ast.parse((ROOT / script).read_text(), filename=script, feature_version=makefile_minimum())


def run_table(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "loadtest/comparison/variants.py"), *args],
                          capture_output=True, text=True)


def test_the_example_is_built_on_the_image_its_dockerfile_starts_from():
    assert run_table("prebuild", "notes-wsgi-eventlet").stdout.split() == [
        "-f", "docker-compose.yml", "-f", "compose/wsgi.yml", "-f", "compose/wsgi-eventlet.yml", "build", "wsgi"]
    assert run_table("prebuild", "mongrel2-gevent").stdout.strip() == ""
    builds = run_table("images").stdout.splitlines()
    for name, variant in variants.VARIANTS.items():
        if variant.built_on:  # its base is built by an earlier line of `make images`
            mine = builds.index(f"{variants.file_args(variant)} build {variant.app_service}")
            assert any(line.startswith(variants.file_args(variants.VARIANTS[variant.built_on]) + " build")
                       for line in builds[:mine]), name


def test_an_unknown_command_or_variant_says_so():
    assert run_table("nonsense").returncode == 2
    unknown = run_table("files", "no-such-variant")
    assert unknown.returncode == 1 and "unknown variant" in unknown.stderr


def makefile_list(name: str) -> list[str]:
    """A `NAME := a b \\ c` list of the Makefile."""
    found = re.search(rf"^{name} := ((?:.*\\\n)*.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, f"the Makefile's {name}"
    return found.group(1).replace("\\\n", " ").split()


def test_make_test_runs_every_e2e_module_once():
    """The timed phase is tests/e2e minus the modules moved beside the Swarm suite: a module in
    both lists would run twice, and a new module is timed unless it is put in one of them."""
    untimed, loose = makefile_list("E2E_UNTIMED"), makefile_list("E2E_LOOSE")
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests/e2e").glob("test_*.py"))
    assert not set(untimed) & set(loose), set(untimed) & set(loose)
    assert set(untimed) | set(loose) <= set(modules), (set(untimed) | set(loose)) - set(modules)
    recipe = (ROOT / "Makefile").read_text()
    assert "tests/e2e $(addprefix --ignore=,$(E2E_UNTIMED) $(E2E_LOOSE))" in recipe
    assert "pytest -q -p no:cacheprovider $(E2E_LOOSE)" in recipe
    assert "pytest -q -p no:cacheprovider $(E2E_UNTIMED)" in recipe
    assert untimed[0] == "tests/e2e/test_monitoring.py", "first: before the Swarm suite's first leave"
