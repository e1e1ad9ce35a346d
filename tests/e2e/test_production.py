"""Production properties, each proven on real containers under load, bounded in time.

Behind Mongrel2 these run on the bare shape (compose/bare.yml), the comparison's subject:
there Mongrel2 loses requests queued to a handler that dies and never times a request out,
so what is asserted here is what the handlers and the compose set-up add. The default
shape, behind the dispatcher, is test_dispatch.py's, which runs some of these too. The
properties that do not depend on Mongrel2 (graceful stop under load, the 504 deadline,
the bad-input catalogue, the lock-down, metrics) run on the WSGI variants too, which
copy the hardening into their own compose service.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest
import requests

from comparison.variants import VARIANTS
from stack import (
    CLOSED,
    COMPOSE,
    DEMO,
    HUNG,
    IDLE_TIMEOUT,
    MONGREL2,
    REQUEST_TIMEOUT,
    ROOT,
    SHARED,
    GaugeWatch,
    Load,
    Stack,
    kill_9,
    p99,
    report,
    starved_figures,
    starved_handler,
    wait_outcomes,
)
from streams import MAX_REQUEST_BODY_BYTES
from support import parse_head, send_raw, wait_until

WAIT_BOUND = IDLE_TIMEOUT + 2 + 2   # reaper limit + 2 ticks of 1 s + scheduling slack
LONG_MS = 3000          # a request that stays in flight while a test acts (< REQUEST_TIMEOUT)

# The session's shared demo stacks (4 handlers or 2 Gunicorn workers), see conftest.py.
every_variant = pytest.mark.parametrize(argvalues=DEMO, **SHARED)
behind_mongrel2 = pytest.mark.parametrize(argvalues=MONGREL2, **SHARED)


@pytest.fixture
def stack(demo_stack):
    return demo_stack


def in_flight_on_each(stack: Stack, count: int, watch: GaugeWatch) -> dict[str, float]:
    """Wait until `count` requests are inside the app processes at once; the gauges then."""
    return watch.wait(lambda values: sum(v or 0 for v in values.values()) == count, 20,
                      f"{count} requests in flight")


# -- 1. graceful scale-down ------------------------------------------------------------------

@behind_mongrel2
def test_scale_down_and_up_under_load_loses_nothing(stack):
    with Load(stack.url + "/sleep?ms=20", clients=8, timeout=WAIT_BOUND) as load:
        wait_outcomes(load, 100, "served by 4 handlers")
        stack.scale(2)
        assert len(stack.container_ids("handler")) == 2
        wait_outcomes(load, 100, "served by 2 handlers")
        stack.scale(4)
        stack.wait_healthy(120)
        wait_outcomes(load, 100, "served by 4 handlers again")
    outcomes = load.snapshot()
    closed = [o for o in outcomes if o.result == CLOSED]
    report("scale 4->2->4", requests=len(outcomes), outcomes=dict(load.counts),
           slowest_s=round(load.slowest, 2), closed_after_s=[round(o.seconds, 2) for o in closed])
    assert HUNG not in load.counts and load.slowest < WAIT_BOUND
    # Every other answer is a 200: a 500, a 502 or a refused connection fails the test.
    assert [o for o in outcomes if o.result not in (200, CLOSED)] == [], load.counts
    # PUSH/PULL has no acknowledgement: a request mongrel2 had already written to the
    # stopping handler's connection when it disconnected is lost, and mongrel2's reaper
    # closes its client connection after the idle timeout (README, "Scale-down is not
    # perfectly lossless"). At most one per stopped handler (2 here).
    assert len(closed) <= 2, load.counts
    for outcome in closed:
        assert IDLE_TIMEOUT - 1 <= outcome.seconds <= WAIT_BOUND, outcome


# -- 2. a handler killed -----------------------------------------------------------------------

@behind_mongrel2
def test_sigkilled_handler_loses_only_what_it_held_and_is_restarted(stack):
    handlers = stack.app_ids()
    restarts = {cid: stack.inspect(cid)["RestartCount"] for cid in handlers}
    # Requests that stay in flight while the victim is chosen and killed: its in-flight
    # gauge, read then, is exactly what it holds (no client can send another meanwhile).
    with GaugeWatch(stack, handlers) as watch, \
            Load(stack.url + f"/sleep?ms={LONG_MS}", clients=8, timeout=WAIT_BOUND + 5) as load:
        gauges = in_flight_on_each(stack, 8, watch)
        victim = max(handlers, key=lambda cid: gauges[cid])
        held = int(gauges[victim])
        watch.stop()
        pid = stack.inspect(victim)["State"]["Pid"]
        killed_at = time.monotonic()
        kill_9(pid)
        # every request sent before the kill has an outcome: answered, or closed by the reaper
        wait_until(lambda: len([o for o in load.started_before(killed_at)]) == 8, WAIT_BOUND + 5,
                   "the requests in flight at the kill to end")
        wait_until(lambda: stack.inspect(victim)["RestartCount"] == restarts[victim] + 1, 30,
                   "the restart policy to restart the victim")
        stack.wait_healthy(60)
        wait_outcomes(load, 16, "served after the restart")
    before = load.started_before(killed_at)
    lost = [o for o in before if o.result != 200]
    report("SIGKILL of 1 of 4 handlers", requests=len(load.outcomes), outcomes=dict(load.counts),
           held_by_victim=held, lost=len(lost), lost_after_s=[round(o.seconds, 2) for o in lost],
           bound_s=WAIT_BOUND)
    assert held >= 1, gauges
    assert len(before) == 8
    # exactly what the victim held is lost, each closed by mongrel2 after the idle timeout
    assert len(lost) == held, (held, [(o.result, round(o.seconds, 2)) for o in lost])
    for outcome in lost:
        assert outcome.result == CLOSED and IDLE_TIMEOUT - 1 <= outcome.seconds <= WAIT_BOUND, outcome
    assert [o for o in load.started_after(killed_at) if o.result != 200] == [], load.counts
    assert HUNG not in load.counts and load.slowest < WAIT_BOUND
    assert {cid: stack.inspect(cid)["RestartCount"] for cid in handlers} == {
        **restarts, victim: restarts[victim] + 1}
    assert all(stack.get("/json").status_code == 200 for _ in range(20))


# -- 2b. a handler starved of CPU ------------------------------------------------------------------

@behind_mongrel2
def test_round_robin_gives_a_cpu_starved_handler_its_quarter(stack):
    """Mongrel2 round-robins with no regard to load (the dispatcher's case, README
    "Production notes"); test_dispatch.py runs the same measurement through the dispatcher."""
    run = starved_handler(stack)
    report(f"{stack.name} (round-robin): one of 4 handlers at 0.02 CPU, /sleep?ms=20 x 16 clients",
           **starved_figures(run))
    assert run["share"] >= 0.18, run["served_by"]   # a quarter, give or take 200 samples' noise
    # Every client waits on it a quarter of the time: the tail and the rate follow it
    # (8-12x the p99, -58 % measured); the dispatcher's bounds are 3x and -25 %.
    assert p99(run["starved"]) > p99(run["fast"]) * 3, starved_figures(run)
    assert len(run["starved"]) < 0.75 * len(run["fast"]), starved_figures(run)


# -- 3. mongrel2 killed ---------------------------------------------------------------------------

@behind_mongrel2
def test_mongrel2_killed_under_load_serves_again_within_5_seconds(stack):
    handlers_before = {cid: stack.inspect(cid)["State"]["StartedAt"] for cid in stack.app_ids()}
    mongrel2_id, = stack.container_ids("mongrel2")
    restarts = stack.inspect(mongrel2_id)["RestartCount"]
    with Load(stack.url + "/json", clients=4, timeout=WAIT_BOUND) as load:
        wait_outcomes(load, 20, "served before the kill")
        pid = stack.inspect(mongrel2_id)["State"]["Pid"]
        killed_at = time.monotonic()
        kill_9(pid)
        # Requests sent from now on can only be answered by the restarted mongrel2.
        wait_until(lambda: any(o.result == 200 for o in load.started_after(killed_at)), 30,
                   "a request to succeed after the kill")
        steady = killed_at + 5
        wait_until(lambda: len(load.started_after(steady)) >= 40 and time.monotonic() > steady, 30,
                   "requests 5 s after the kill")
    recovered = min(o.ended for o in load.started_after(killed_at) if o.result == 200) - killed_at
    report("mongrel2 SIGKILL", requests=len(load.outcomes), outcomes=dict(load.counts),
           first_success_after_kill_s=round(recovered, 2))
    assert stack.inspect(mongrel2_id)["RestartCount"] == restarts + 1
    assert recovered < 5, f"first success {recovered:.1f}s after the kill"
    handlers_after = {cid: stack.inspect(cid)["State"]["StartedAt"] for cid in stack.app_ids()}
    assert handlers_after == handlers_before, "handlers were restarted"
    # While it was down, connections failed fast; no HTTP error, nothing hung; then all 200.
    assert [o for o in load.snapshot() if isinstance(o.result, int) and o.result != 200] == [], load.counts
    assert HUNG not in load.counts
    assert [o for o in load.started_after(steady) if o.result != 200] == [], load.counts


# -- 4. graceful stop under load ---------------------------------------------------------------------

@every_variant
def test_graceful_stop_under_load_finishes_what_is_in_flight(stack):
    """SIGTERM (`docker stop`) to an app container holding requests: each of them is
    answered, and the process exits 0 within the grace period (not SIGKILLed)."""
    results: dict[int, int | str] = {}

    def one(index: int) -> None:
        try:
            results[index] = requests.get(stack.url + f"/sleep?ms={LONG_MS}", timeout=WAIT_BOUND).status_code
        except requests.RequestException as exc:
            results[index] = repr(exc)

    ids = stack.app_ids()
    clients = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    with GaugeWatch(stack, ids) as watch:
        for client in clients:
            client.start()
        gauges = in_flight_on_each(stack, 8, watch)
    victim = max(ids, key=lambda cid: gauges[cid])
    held = int(gauges[victim])
    started = time.monotonic()
    stopped = subprocess.run(["docker", "stop", "-t", "15", victim], capture_output=True, text=True)
    stop_took = time.monotonic() - started
    for client in clients:
        client.join(WAIT_BOUND + 5)
    state = stack.inspect(victim)["State"]
    try:
        report(f"docker stop of a {stack.app_service} container holding {held} requests",
               stop_took_s=round(stop_took, 2), exit_code=state["ExitCode"], results=results)
        assert stopped.returncode == 0, stopped.stderr
        assert held >= 1 and sorted(results) == list(range(8))
        assert all(status == 200 for status in results.values()), results
        assert state["ExitCode"] == 0 and not state["OOMKilled"], state
        if stack.front_door == "mongrel2":  # the other handlers serve on meanwhile
            assert all(stack.get("/json").status_code == 200 for _ in range(20))
        else:  # nothing else serves: refused at once, never held
            with pytest.raises(requests.ConnectionError):
                requests.get(stack.url + "/json", timeout=5)
    finally:  # the module's other tests share this stack
        subprocess.run(["docker", "start", victim], capture_output=True, check=True)
        stack.wait_healthy(90)


# -- 5. bad input ------------------------------------------------------------------------------------

HUGE = "9" * 400


def post(path: str, content_type: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get(target: str, *extra: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in extra) + "\r\n").encode()


APP, MONGREL2_ITSELF, GUNICORN = "app", "mongrel2", "gunicorn"
TRICKLED = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"  # one byte every 200 ms
OVERSIZED = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST_BODY_BYTES + 1) + b"a" * 65_536)

# (name, raw request, (status, answered by) behind Mongrel2, (status, answered by) under
# Gunicorn). "app" answers carry the app's JSON error body; the others come from the
# server's own HTTP parser, before the app. Adding a case is one line.
BAD_INPUT = [
    ("malformed JSON", post("/echo", "application/json", b'{"a":'), (400, APP), (400, APP)),
    ("invalid UTF-8 in JSON", post("/echo", "application/json", b'{"a":"\xff"}'), (400, APP), (400, APP)),
    ("invalid UTF-8 in path", get("/caf%C3"), (400, APP), (400, APP)),
    ("invalid UTF-8 in query", get("/json?q=%FF"), (400, APP), (400, APP)),
    ("wrong content type", post("/echo", "text/plain", b"{}"), (415, APP), (415, APP)),
    # Declared one byte over MAX_REQUEST_BODY_BYTES (100 MiB), 64 KiB sent: the app's 413 at once.
    ("oversized body", OVERSIZED, (413, APP), (413, APP)),
    ("oversized header", get("/json", "X-Big: " + "a" * 100_000), (400, MONGREL2_ITSELF), (431, GUNICORN)),
    ("CR in a header value", b"GET /json HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n\r\n",
     (400, MONGREL2_ITSELF), (400, GUNICORN)),
    ("path traversal on /static/", get("/static/../../etc/passwd"), (404, MONGREL2_ITSELF), (404, APP)),
    ("encoded path traversal", get("/static/%2e%2e/%2e%2e/etc/passwd"), (404, MONGREL2_ITSELF), (404, APP)),
    ("CR/LF bound for a response header", get("/redirect?to=/%0D%0ASet-Cookie:%20x=1"), (400, APP), (400, APP)),
    ("absolute redirect target", get("/redirect?to=//evil.example"), (400, APP), (400, APP)),
    ("negative number", get("/sleep?ms=-5"), (400, APP), (400, APP)),
    ("huge number", get("/sleep?ms=" + HUGE), (400, APP), (400, APP)),
    ("non-numeric number", get("/sleep?ms=abc"), (400, APP), (400, APP)),
    ("unknown method", b"BREW /json HTTP/1.1\r\nHost: x\r\n\r\n", (405, APP), (405, APP)),
    ("method not allowed", b"DELETE /json HTTP/1.1\r\nHost: x\r\n\r\n", (405, APP), (405, APP)),
    ("unknown route", get("/no/such/thing"), (404, APP), (404, APP)),
    ("malformed percent-encoding", get("/json?x=%zz"), (400, MONGREL2_ITSELF), (400, APP)),
    # A client that trickles its request: Mongrel2 answers 400; Gunicorn closes the
    # connection without an answer once its keep-alive time (5 s) has passed.
    ("request line only, trickled", None, (400, MONGREL2_ITSELF), (None, GUNICORN)),
]


def answered_by_the_server_itself(answered_by: str, headers: dict[str, str]) -> bool:
    if answered_by == MONGREL2_ITSELF:
        return headers["server"].startswith("Mongrel2")
    return "server" not in headers and headers["content-type"] == "text/html"  # Gunicorn's page


@every_variant
@pytest.mark.parametrize("name, raw, behind_mongrel2, under_gunicorn", BAD_INPUT,
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_with_the_right_status(stack, name, raw, behind_mongrel2, under_gunicorn):
    status, answered_by = behind_mongrel2 if stack.front_door == "mongrel2" else under_gunicorn
    trickle = 0.0
    if raw is None:
        raw, trickle = TRICKLED, 0.2
    started = time.monotonic()
    response = send_raw("127.0.0.1", stack.port, raw, trickle=trickle, timeout=WAIT_BOUND)
    assert time.monotonic() - started < WAIT_BOUND
    if status is None:  # closed with no answer at all
        assert response == b""
    else:
        head, _, body = response.partition(b"\r\n\r\n")
        got, headers = parse_head(head)
        assert got == status, response[:300]
        if answered_by == APP:
            assert headers["content-type"] == "application/json"
            assert headers["x-front-door"] == stack.front_door and headers["x-hub"] == stack.hub
            error = json.loads(body)["error"]
            assert error["status"] == status and error["message"]
        else:  # the server's own answer: the app never saw it
            assert "x-hub" not in headers and answered_by_the_server_itself(answered_by, headers), head
    assert stack.get("/json").status_code == 200  # and everything keeps serving


# Garbage for mongrel2's response socket. Mongrel2 1.12.2 logs "Skipped invalid message
# from handler" for the first and the third (the others, unparseable as a response to any
# of its connections, it drops without a word); none is sent back to a client.
GARBAGE = [b"", b"garbage", b"no-such-uuid 3:1 2, HTTP/1.1 200 OK\r\n\r\n", b"\xff" * 1000, b"x 99999:1, "]
SKIPPED = "Skipped invalid message from handler"

ROGUE = """
import sys, zmq
context = zmq.Context()
rogue = context.socket(zmq.XPUB)   # XPUB: it sees mongrel2 subscribe, so nothing is sent too early
rogue.connect("tcp://mongrel2:9996")
assert rogue.poll(20000), "mongrel2 never subscribed"
subscription = rogue.recv()
assert subscription[:1] == b"\\x01"
ident = subscription[1:]  # mongrel2 subscribes to its own ident: only replies to it get in
for message in %r:
    rogue.send(message)           # filtered out by the subscription: never reaches mongrel2
    rogue.send(ident + b" " + message)  # addressed to it, and malformed
rogue.close(linger=5000)
context.term()
print("sent", flush=True)
"""


@behind_mongrel2
def test_malformed_zeromq_messages_from_inside_the_network_are_dropped(stack):
    """A rogue container on the internal network publishes garbage to mongrel2's
    response socket; mongrel2 skips it and the stack keeps serving."""
    mongrel2_id, = stack.container_ids("mongrel2")
    restarts = stack.inspect(mongrel2_id)["RestartCount"]  # an earlier test of the module killed it
    skipped_before = stack.container_logs(mongrel2_id).count(SKIPPED)
    image = stack.inspect(stack.app_ids()[0])["Config"]["Image"]
    result = subprocess.run(["docker", "run", "--rm", "--network", stack.network("back"), "--read-only",
                             "--cap-drop", "ALL", "--entrypoint", "python3", image, "-c", ROGUE % (GARBAGE,)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "sent", result.stderr
    # Mongrel2 logs the malformed ones addressed to it (not every shape gets a line of its own).
    wait_until(lambda: stack.container_logs(mongrel2_id).count(SKIPPED) > skipped_before, 10,
               "mongrel2 to log the invalid messages")
    assert all(stack.get("/json").status_code == 200 for _ in range(10))
    assert stack.inspect(mongrel2_id)["RestartCount"] == restarts, "the garbage crashed mongrel2"


@every_variant
def test_slow_request_gets_504_within_the_request_timeout(stack):
    started = time.monotonic()
    response = stack.get("/sleep?ms=20000", timeout=WAIT_BOUND)
    waited = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"] == {"status": 504, "message": "the handler did not finish in time",
                                        "details": {"timeout_seconds": float(REQUEST_TIMEOUT)}}
    assert REQUEST_TIMEOUT - 0.5 < waited < REQUEST_TIMEOUT + 2
    assert stack.get("/json").status_code == 200


# -- 6. locked down -------------------------------------------------------------------------------------

@every_variant
def test_containers_are_locked_down(stack):
    ids = stack.container_ids()
    services = {stack.inspect(cid)["Config"]["Labels"]["com.docker.compose.service"] for cid in ids}
    assert services == {"db", stack.app_service, *(["mongrel2"] if stack.front_door == "mongrel2" else []),
                        *(["dispatcher"] if stack.variant.dispatched else [])}
    published = {}
    for cid in ids:
        info = stack.inspect(cid)
        name = info["Name"]
        host = info["HostConfig"]
        user = info["Config"]["User"]
        assert user and user.split(":")[0] not in ("", "0", "root"), f"{name} runs as root"
        assert host["ReadonlyRootfs"], f"{name} has a writable root filesystem"
        assert [c.upper() for c in host["CapDrop"] or []] == ["ALL"], name
        assert not host.get("CapAdd"), f"{name} adds capabilities"
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), name
        assert host["NanoCpus"] > 0 and host["Memory"] > 0 and (host["PidsLimit"] or 0) > 0, name
        assert host["RestartPolicy"]["Name"] == "unless-stopped", name
        assert not host["Privileged"], name
        for port, bindings in (host["PortBindings"] or {}).items():
            published[info["Config"]["Labels"]["com.docker.compose.service"]] = (port, bindings)
    front = "mongrel2" if stack.front_door == "mongrel2" else stack.app_service
    assert published == {front: ("6767/tcp", [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}])}
    network = subprocess.run(["docker", "network", "inspect", stack.network("back")],
                             capture_output=True, text=True, check=True)
    assert json.loads(network.stdout)[0]["Internal"] is True
    if stack.front_door == "mongrel2":
        mongrel2_id, = stack.container_ids("mongrel2")
        config = subprocess.run(["docker", "exec", mongrel2_id, "cat", "/run/mongrel2/mongrel2.conf"],
                                capture_output=True, text=True, check=True).stdout
        assert re.search(r'control_port="ipc://[^"]+"', config)  # never a TCP port others could reach


# -- 7. observable -----------------------------------------------------------------------------------------

@behind_mongrel2
def test_request_id_follows_the_request_into_json_logs(stack):
    response = stack.get("/json", headers={"X-Request-Id": "trace-me-0001"})
    assert response.headers["X-Request-Id"] == "trace-me-0001"
    handler_id = response.headers["X-Handler-Id"]
    logged_by, = [cid for cid in stack.app_ids() if handler_id == f"{cid[:12]}:1"]

    def logged():
        return [json.loads(line) for line in stack.container_logs(logged_by).splitlines()
                if "trace-me-0001" in line]

    entry, = wait_until(logged, 10, "the request id in the logs of the handler that answered")
    assert entry["request_id"] == "trace-me-0001" and entry["status"] == 200
    assert entry["message"] == "request" and entry["method"] == "GET" and entry["path"] == "/json"
    assert entry["conn_id"].isdigit()


@every_variant
def test_metrics_count_exactly_what_was_served(stack):
    labels = {"route": "/json", "method": "GET", "status": "200"}
    before = stack.metric("m2stack_requests_total", **labels)
    for _ in range(10):
        assert stack.get("/json").status_code == 200
    assert stack.metric("m2stack_requests_total", **labels) - before == 10
    for cid in stack.app_ids():
        metrics = stack.scrape(cid)
        assert metrics.value("m2stack_hub_info", front_door=stack.front_door, hub=stack.hub) == 1.0
        assert metrics.has("m2stack_event_loop_lag_seconds") and metrics.has("m2stack_in_flight_requests")


# -- 8. nothing secret in an image ----------------------------------------------------------------------

# Words that name a secret, followed by a value (an empty one, or a reference like
# $DB_PASSWORD, is not a secret).
SECRET = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)[A-Z_]*=(?!\s|$|\"\"|''|\$)\S+"
                    r"|BEGIN [A-Z ]*PRIVATE KEY", re.IGNORECASE)


def compose_images() -> set[str]:
    """Every image the compose files name: the base file with each variant's overlays,
    and every other overlay in compose/ on the base file."""
    combinations = {tuple(v.files) for v in VARIANTS.values()}
    covered = {file for files in combinations for file in files}
    combinations |= {("docker-compose.yml", str(path.relative_to(ROOT)))
                     for path in sorted((ROOT / "compose").glob("*.yml"))
                     if str(path.relative_to(ROOT)) not in covered}
    images = set()
    for files in combinations:
        command = [*COMPOSE]
        for file in files:
            command += ["-f", str(ROOT / file)]
        out = subprocess.run([*command, "config"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, (files, out.stderr[-2000:])
        images |= set(re.findall(r"^    image: ['\"]?([^'\"\s]+)", out.stdout, re.MULTILINE))
    return images


def test_no_secret_is_baked_into_an_image(docker_available):
    images = compose_images()
    assert "m2stack/postgres:latest" in images and len(images) >= 10, sorted(images)
    dotenv = ROOT / ".env"
    own = re.findall(r"^DB_PASSWORD=(.+)$", dotenv.read_text(), re.MULTILINE) if dotenv.exists() else []
    for image in sorted(images):
        inspected = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
        assert inspected.returncode == 0, f"{image} is not built: {inspected.stderr}"
        config = json.loads(inspected.stdout)[0]["Config"]
        history = subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
                                 capture_output=True, text=True, check=True).stdout
        for env in config.get("Env") or []:
            assert not SECRET.search(env), f"{image}: {env}"
        for line in history.splitlines():
            assert not SECRET.search(line), f"{image} history: {line[:300]}"
        everything = json.dumps(config) + history
        for password in own:  # the one `make env` wrote for this checkout
            assert password.strip() not in everything, f"{image} carries the DB_PASSWORD of .env"
