#!/usr/bin/env bash
# Three Docker Swarm nodes on this one machine: the ground a multi-node test will stand
# on (not part of `make test` yet; docs/swarm.md, "More than one machine"). Needs root,
# dockerd, iproute2, util-linux.
#
#   scripts/multinode.sh up | down | status
#   scripts/multinode.sh registry-up           a registry on the host daemon: pushed to at
#                                              127.0.0.1:REGISTRY_PORT, pulled from by the
#                                              nodes at MULTINODE_NET.1:REGISTRY_PORT
#   scripts/multinode.sh kill-daemon N         node N's dockerd SIGKILLed: its containers run on
#   scripts/multinode.sh start-daemon N        dockerd started again in node N's namespaces
#   scripts/multinode.sh poweroff N            node N gone as a machine goes: its link down first
#                                              (peers hear nothing, not even a reset), then every
#                                              process of it SIGKILLed
#
# Each node is a dockerd (with its own containerd) in a network namespace of its own,
# wired by a veth to a bridge that lives in one more namespace. The only thing added to
# the root namespace is one veth, MULTINODE_NET.1/24, so that the host can reach the
# nodes (the test's client, and the registry the nodes pull from). The nodes have no
# default route: nothing they send can leave the private /24.
#
# `down` removes everything `up` made (daemons, containerd, container processes,
# namespaces, veths, mounts, cgroups, the data roots) and fails if anything is left. It
# never touches the host daemon's swarm state: the host daemon is only asked to run (and
# remove) the registry container `up` does not make; tests make it.
set -euo pipefail

cmd=${1:?usage: multinode.sh up|down|status|registry-up|kill-daemon N|start-daemon N|poweroff N}
NODES=3
BASE=${MULTINODE_DIR:-/tmp/m2stack-multinode}
NET=${MULTINODE_NET:-10.241.0}      # a /24 of our own, only on veths this script makes
PREFIX=m2mn                         # namespaces, links and cgroups are named m2mn-*
HOST_LINK=$PREFIX-host              # the host's end, in the root namespace
BRIDGE_NS=$PREFIX-br
REGISTRY_PORT=${MULTINODE_REGISTRY_PORT:-5041}  # not make registry-up's 5000: both may run
REGISTRY_NAME=$PREFIX-registry

say() { printf 'multinode: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
node_ip() { echo "$NET.$((10 + $1))"; }
node_ns() { echo "$PREFIX-n$1"; }
on() { local n=$1; shift; docker -H "unix://$BASE/n$n/docker.sock" "$@"; }

start_dockerd() {
    local n=$1 dir=$BASE/n$1
    # nsenter into the holder's namespaces: a restarted dockerd finds the same ones.
    nsenter -t "$(cat "$dir/holder.pid")" -n -m -u dockerd --config-file "$dir/daemon.json" \
        >> "$dir/dockerd.log" 2>&1 < /dev/null &
}

wait_dockerd() {
    local n=$1 i
    for i in $(seq 1 120); do
        on "$n" info > /dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -n 5 "$BASE/n$n/dockerd.log" >&2
    die "node $n: dockerd did not come up"
}

wire() {
    ip netns add "$BRIDGE_NS"
    ip -n "$BRIDGE_NS" link set lo up
    ip -n "$BRIDGE_NS" link add br0 type bridge
    ip -n "$BRIDGE_NS" link set br0 up
    ip link add "$HOST_LINK" type veth peer name uplink netns "$BRIDGE_NS"
    ip -n "$BRIDGE_NS" link set uplink master br0 up
    ip addr add "$NET.1/24" dev "$HOST_LINK"
    ip link set "$HOST_LINK" up
    local n ns
    for n in $(seq 1 $NODES); do
        ns=$(node_ns "$n")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$BRIDGE_NS" link add "n$n" type veth peer name eth0 netns "$ns"
        ip -n "$BRIDGE_NS" link set "n$n" master br0 up
        ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

start_node() {
    local n=$1 dir=$BASE/n$1
    mkdir -p "$dir/data" "$dir/exec"
    # deprecated-key-path: a key per daemon, hence an engine ID of its own (the flag is refused).
    cat > "$dir/daemon.json" <<EOF
{"data-root": "$dir/data", "exec-root": "$dir/exec", "pidfile": "$dir/docker.pid",
 "hosts": ["unix://$dir/docker.sock"], "storage-driver": "fuse-overlayfs",
 "cgroup-parent": "/$PREFIX-n$n", "bip": "10.243.$n.1/24",
 "default-address-pools": [{"base": "10.244.0.0/16", "size": 24}],
 "insecure-registries": ["$NET.0/24"], "log-level": "warn",
 "deprecated-key-path": "$dir/key.json"}
EOF
    # The holder owns the node's network, mount and UTS namespaces. `ip netns exec`
    # remounts /sys, which hides the cgroup hierarchies dockerd needs: mount them again,
    # in this mount namespace only.
    ip netns exec "$(node_ns "$n")" unshare --uts sh -c "
        hostname $PREFIX-n$n
        mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
        for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
            mkdir /sys/fs/cgroup/\$c; mount -t cgroup -o \$c cgroup /sys/fs/cgroup/\$c; done
        mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
        mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
        mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
        exec sleep infinity" < /dev/null > "$dir/holder.log" 2>&1 &
    echo $! > "$dir/holder.pid"
    local i
    for i in $(seq 1 50); do
        [ "$(cat "/proc/$(cat "$dir/holder.pid")/comm" 2>/dev/null)" = sleep ] && break
        sleep 0.1
    done
    start_dockerd "$n"
}

make_swarm() {
    # A 2 s heartbeat: a node whose dockerd died is Down after a few seconds, not 15.
    on 1 swarm init --advertise-addr "$(node_ip 1)" --listen-addr "$(node_ip 1):2377" \
        --data-path-addr "$(node_ip 1)" --default-addr-pool 10.242.0.0/16 \
        --default-addr-pool-mask-length 24 --dispatcher-heartbeat 2s > /dev/null
    local token n
    token=$(on 1 swarm join-token -q worker)
    for n in $(seq 2 $NODES); do
        on "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" \
            --listen-addr "$(node_ip "$n"):2377" --data-path-addr "$(node_ip "$n")" "$(node_ip 1):2377" > /dev/null
    done
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, dockerd)"
    if [ -e "$BASE" ] || ip netns list | grep -q "^$PREFIX-" || ip link show "$HOST_LINK" > /dev/null 2>&1; then
        die "nodes from an earlier run exist ($BASE, or namespaces $PREFIX-*): run scripts/multinode.sh down"
    fi
    if ip route show | grep -q "^$NET\."; then
        die "$NET.0/24 is routed on this machine already: set MULTINODE_NET to a free /24"
    fi
    trap 'say "up failed: tearing down"; down || true' ERR
    trap 'say "interrupted: tearing down"; down || true; exit 130' INT TERM
    mkdir -p "$BASE"
    wire
    local n
    for n in $(seq 1 $NODES); do start_node "$n"; done
    for n in $(seq 1 $NODES); do wait_dockerd "$n"; done
    make_swarm
    trap - ERR INT TERM
    say "up: $NODES nodes, n1 manager at $(node_ip 1), the host at $NET.1; docker -H unix://$BASE/nN/docker.sock"
}

# What is left of the nodes, one item a line (nothing: all gone).
leftovers() {
    ip netns list | grep -o "^$PREFIX-[a-z0-9]*" | sed 's/^/namespace /' || true
    ip -br link show "$HOST_LINK" 2>/dev/null | sed 's/^/link /' || true
    pgrep -f "$BASE/" | sed 's/^/process /' || true
    grep -F "$BASE" /proc/self/mountinfo | awk '{print "mount " $5}' || true
    ls -d /sys/fs/cgroup/*/"$PREFIX"-n* 2>/dev/null | sed 's/^/cgroup /' || true
    [ ! -e "$BASE" ] || echo "directory $BASE"
    docker ps -aq --filter "name=^$REGISTRY_NAME\$" | sed 's/^/registry container /' || true
    pushed_tags | sed 's/^/image tag /' || true
}

# What `make push REGISTRY=127.0.0.1:REGISTRY_PORT` tagged on the host daemon.
pushed_tags() {
    docker images --format '{{.Repository}}:{{.Tag}}' | grep "^127\.0\.0\.1:$REGISTRY_PORT/" || true
}

registry_up() {
    ip link show "$HOST_LINK" > /dev/null 2>&1 || die "registry-up: no nodes (scripts/multinode.sh up first)"
    # Its store is a tmpfs: nothing of it outlives the container.
    docker run -d --name "$REGISTRY_NAME" --read-only --cap-drop ALL --security-opt no-new-privileges \
        --tmpfs /tmp --tmpfs /var/lib/docker-registry:uid=10003,gid=10003,mode=0700 \
        -p "127.0.0.1:$REGISTRY_PORT:5000" -p "$NET.1:$REGISTRY_PORT:5000" m2stack/registry:latest > /dev/null
    local i
    for i in $(seq 1 50); do
        curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/" > /dev/null 2>&1 && break
        sleep 0.2
    done
    say "registry-up: push to 127.0.0.1:$REGISTRY_PORT, the nodes pull from $NET.1:$REGISTRY_PORT"
}

kill_daemon() {
    local n=$1 pid
    pid=$(cat "$BASE/n$n/docker.pid")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

start_daemon() {
    start_dockerd "$1"
    wait_dockerd "$1"
}

poweroff() {
    local n=$1 i pids
    ip -n "$(node_ns "$n")" link set eth0 down
    for i in 1 2 3 4 5; do
        pids=$(node_pids "$n" | sort -u)
        [ -n "$pids" ] || return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    done
    die "poweroff: processes of node $n survive SIGKILL: $pids"
}

# Every process of a node: in its network namespace (holder, dockerd, containerd, shims)
# or in its containers' cgroups (their processes have network namespaces of their own).
node_pids() {
    local n=$1
    ip netns pids "$(node_ns "$n")" 2>/dev/null || true
    cat /sys/fs/cgroup/*/"$PREFIX-n$n"/cgroup.procs /sys/fs/cgroup/*/"$PREFIX-n$n"/*/cgroup.procs 2>/dev/null || true
    pgrep -f "$BASE/n$n/" || true
}

down() {
    local n pid i pids
    for n in $(seq 1 $NODES); do
        pid=$(cat "$BASE/n$n/docker.pid" 2>/dev/null || true)
        [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    done
    # dockerd stops its containers on SIGTERM (10 s grace at most); then force what is left.
    for i in $(seq 1 40); do
        pgrep -f "dockerd --config-file $BASE/" > /dev/null || break
        sleep 0.5
    done
    for i in 1 2 3; do
        pids=$(for n in $(seq 1 $NODES); do node_pids "$n"; done | sort -u)
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    done
    docker rm -f "$REGISTRY_NAME" > /dev/null 2>&1 || true
    pushed_tags | xargs -r docker rmi > /dev/null 2>&1 || true
    for n in $(seq 1 $NODES); do ip netns del "$(node_ns "$n")" 2>/dev/null || true; done
    ip netns del "$BRIDGE_NS" 2>/dev/null || true
    ip link del "$HOST_LINK" 2>/dev/null || true
    # Mounts dockerd made live in the holders' mount namespaces and went with them; any in
    # this namespace (none expected) are detached before the data roots go.
    grep -F "$BASE" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    for n in $(seq 1 $NODES); do
        for i in 1 2 3 4 5; do
            ls -d /sys/fs/cgroup/*/"$PREFIX-n$n" > /dev/null 2>&1 || break
            find /sys/fs/cgroup/*/"$PREFIX-n$n" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.5
        done
    done
    rm -rf "$BASE"
    local left
    left=$(leftovers)
    [ -z "$left" ] || { printf '%s\n' "$left" >&2; die "down: the above is left"; }
    say "down: nothing of the nodes is left"
}

status() {
    local left
    left=$(leftovers)
    if [ -z "$left" ]; then echo "no nodes"; else printf '%s\n' "$left"; fi
}

case $cmd in
    up) up ;;
    down) down ;;
    status) status ;;
    registry-up) registry_up ;;
    kill-daemon) kill_daemon "${2:?node number}" ;;
    start-daemon) start_daemon "${2:?node number}" ;;
    poweroff) poweroff "${2:?node number}" ;;
    *) die "unknown command '$cmd': up, down, status, registry-up, kill-daemon, start-daemon or poweroff" ;;
esac
