#!/usr/bin/env bash
# The stack on Docker Swarm: `make swarm-up`, `make swarm-down`, `make push` (docs/swarm.md).
#
#   scripts/swarm.sh up | down | push | stack-file
#
# Settings (environment, set by the Makefile): SWARM_STACK (m2stack), FRONTS (2),
# HANDLERS (2), HUB (gevent), DISPATCH (1, default: the dispatcher between fronts and
# handlers, docs/dispatcher.md; 0: the bare shape, compose/bare.yml), REGISTRY
# (host:port, empty: local images), SWARM_PUBLISH
# (host | random | ingress), HTTP_PUBLISH (6767), SWARM_ADVERTISE_ADDR (127.0.0.1, for a
# swarm made here), SWARM_WAIT (seconds, 300), SWARM_ENCRYPT (1: the `back` overlay
# encrypted, refused on a multi-node swarm whose kernel cannot; 0: not encrypted),
# COMPOSE (Compose v2), PYTHON.
#
# What `up` changes in the engine, it records on this node as labels, so `down` undoes
# exactly that, from any checkout: m2stack.swarm-created-by=<stack> (it ran `swarm init`;
# with m2stack.gwbridge-preexisting) and m2stack.db-labelled-by=<stack> (it put the
# m2stack.db=true label that pins the database here).
set -euo pipefail

cmd=${1:?usage: swarm.sh up|down|push|stack-file}
STACK=${SWARM_STACK:-m2stack}
FRONTS=${FRONTS:-2}
HANDLERS=${HANDLERS:-2}
HUB=${HUB:-gevent}
DISPATCH=${DISPATCH:-1}
REGISTRY=${REGISTRY:-}
PUBLISH=${SWARM_PUBLISH:-host}
HTTP_PUBLISH=${HTTP_PUBLISH:-6767}
ADVERTISE=${SWARM_ADVERTISE_ADDR:-127.0.0.1}
WAIT=${SWARM_WAIT:-300}
ENCRYPT=${SWARM_ENCRYPT:-1}
COMPOSE=${COMPOSE:-docker compose}
PYTHON=${PYTHON:-python3}
state_dir=build/swarm/$STACK
secret=${STACK}_db_password

say() { printf 'swarm: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case $STACK in '' | *[!a-z0-9_-]* | [!a-z0-9]*) die "SWARM_STACK must be [a-z0-9][a-z0-9_-]*, got '$STACK'" ;; esac
for n in FRONTS HANDLERS; do
    case ${!n} in '' | *[!0-9]*) die "$n must be a number, got '${!n}'" ;; esac
done
case $PUBLISH in host | random | ingress) ;; *) die "SWARM_PUBLISH must be host, random or ingress" ;; esac
case $DISPATCH in 0 | 1) ;; *) die "DISPATCH must be 1 (the dispatcher, default) or 0 (the bare shape), got '$DISPATCH'" ;; esac
case $ENCRYPT in 0 | 1) ;; *) die "SWARM_ENCRYPT must be 1 (default) or 0, got '$ENCRYPT'" ;; esac

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }
node_id() { docker info --format '{{.Swarm.NodeID}}'; }
node_label() { docker node inspect --format "{{index .Spec.Labels \"$2\"}}" "$1"; }
# A compose-built name (no registry) is never looked up on Docker Hub.
resolve_image() { if [ -n "$REGISTRY" ]; then echo always; else echo never; fi; }

# The variant's files (the table's: mongrel2-HUB-dispatch, or mongrel2-HUB, the bare
# shape, with DISPATCH=0), then the Swarm overlay.
compose_files() {
    local files variant="mongrel2-$HUB"
    [ "$DISPATCH" = 0 ] || variant="$variant-dispatch"
    files=$($PYTHON loadtest/comparison/variants.py files "$variant") || die "unknown HUB=$HUB"
    echo "$files -f compose/swarm.yml"
}

require_compose_v2() {
    local version
    version=$($COMPOSE version --short 2>/dev/null) || die "'$COMPOSE' does not run: make compose-v2"
    case $version in 1.*) die "COMPOSE='$COMPOSE' is Compose $version: the stack file is generated with Compose v2 (make compose-v2)" ;; esac
}

# The stack file: the compose files merged and interpolated by Compose v2, converted.
stack_file() {
    local publish=$1 out=$state_dir/stack.json
    require_compose_v2
    mkdir -p "$state_dir"
    # shellcheck disable=SC2046
    FRONTS=$FRONTS HANDLERS=$HANDLERS SWARM_STACK=$STACK HTTP_PUBLISH=$HTTP_PUBLISH \
        $COMPOSE -p "$STACK" $(compose_files) config --format json > "$state_dir/compose.json"
    $PYTHON scripts/swarm_stack.py --publish "$publish" --registry "$REGISTRY" \
        $([ "$ENCRYPT" = 1 ] || echo --no-encrypt) < "$state_dir/compose.json" > "$out.tmp"
    mv -f "$out.tmp" "$out"
    echo "$out"
}

# Can this kernel encrypt an overlay between nodes? Docker adds an IPsec state with
# rfc4106(gcm(aes)) for each peer: the same, in a throwaway network namespace. Prints
# "yes", "no: why", or "unknown: why" (no unshare, ip or user namespaces to try it with).
esp_probe() {
    local out
    command -v unshare > /dev/null && command -v ip > /dev/null || { echo "unknown: needs unshare and ip (iproute2)"; return; }
    if out=$(unshare -rn ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 \
            mode transport aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 2>&1); then
        echo yes
    elif unshare -rn true 2> /dev/null; then
        echo "no: $out"
    else
        echo "unknown: cannot make a network namespace here to try it"
    fi
}

# A multi-node swarm with an encrypted overlay on a kernel without ESP deploys green and
# then carries no request between nodes: refuse that, in one line, before deploying.
check_encryption() {
    local nodes probe
    [ "$ENCRYPT" = 1 ] || { say "SWARM_ENCRYPT=0: the back overlay is not encrypted between nodes (docs/swarm.md)"; return 0; }
    nodes=$(docker node ls -q | wc -l)
    [ "$nodes" -gt 1 ] || return 0   # one node: nothing crosses hosts, nothing to encrypt
    probe=$(esp_probe)
    case $probe in
        yes) ;;
        no:*) die "this kernel cannot encrypt overlay traffic between nodes (IPsec ESP with AES-GCM: ${probe#no: }): the encrypted back network would carry no request between the $nodes nodes; deploy with SWARM_ENCRYPT=0 on a trusted network, or on hosts with ESP (docs/swarm.md, \"Encryption\")" ;;
        *) say "could not check this kernel for ESP (${probe#unknown: }): if a node lacks it, requests between nodes hang; SWARM_ENCRYPT=0 turns encryption off (docs/swarm.md)" ;;
    esac
}

# Every service of the stack has all its replicas running (healthy: Swarm reports a task
# with a healthcheck as running only once it is healthy) and no update in progress.
wait_converged() {
    local deadline=$(( $(date +%s) + WAIT )) pending name replicas update
    while :; do
        pending=""
        while read -r name replicas; do
            update=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$name")
            case $update in
                rollback_completed | rollback_paused | paused)
                    docker service ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$name" | head -5 >&2
                    die "$name: update $update (see docker service ps $name)" ;;
            esac
            # A task failing again and again will not converge: say why now, not at the timeout.
            if [ "$(docker service ps --format '{{.CurrentState}}' "$name" | grep -c '^Failed')" -ge 3 ]; then
                docker service ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$name" | head -4 >&2
                docker service logs --tail 15 "$name" >&2 2>&1 || true
                die "$name: its tasks keep failing"
            fi
            replicas=${replicas%% *}
            if [ "${replicas%/*}" != "${replicas#*/}" ] || [ "$update" = updating ] || [ "$update" = rollback_started ]; then
                pending="$pending $name($replicas${update:+ $update})"
            fi
        done < <(docker service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}}')
        [ -z "$pending" ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            for name in $pending; do
                docker service ps --no-trunc --filter desired-state=running \
                    --format '{{.Name}} {{.CurrentState}} {{.Error}}' "${name%%(*}" >&2 || true
            done
            die "not converged after ${WAIT}s:$pending"
        fi
        sleep 1
    done
}

up() {
    local state me nodes publish file labelled port
    state=$(swarm_state)
    case $state in
        inactive)
            say "this engine is in no swarm: creating a single-node one (docker swarm init --advertise-addr $ADVERTISE); 'make swarm-down' leaves it again"
            local gw=false
            docker network inspect docker_gwbridge >/dev/null 2>&1 && gw=true
            docker swarm init --advertise-addr "$ADVERTISE" >/dev/null
            docker node update --label-add "m2stack.swarm-created-by=$STACK" \
                --label-add "m2stack.gwbridge-preexisting=$gw" "$(node_id)" >/dev/null ;;
        active)
            [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] \
                || die "this node is a swarm worker: run make swarm-up on a manager" ;;
        *) die "the engine's swarm state is '$state': fix it first (docker info)" ;;
    esac
    me=$(node_id)

    labelled=$(docker node ls -q | xargs docker node inspect --format '{{index .Spec.Labels "m2stack.db"}}' | grep -c '^true$' || true)
    if [ "$labelled" = 0 ]; then
        say "no node is labelled m2stack.db=true: labelling this one, the database and its volume live here"
        docker node update --label-add m2stack.db=true --label-add "m2stack.db-labelled-by=$STACK" "$me" >/dev/null
    fi

    if ! docker secret inspect "$secret" >/dev/null 2>&1; then
        # Random, never on disk or in any environment: only Swarm's encrypted store has it.
        od -An -tx1 -N24 /dev/urandom | tr -d ' \n' \
            | docker secret create --label "com.docker.stack.namespace=$STACK" "$secret" - >/dev/null
        say "created the secret $secret (a random database password)"
    fi

    check_encryption

    publish=$PUBLISH
    port=${HTTP_PUBLISH##*:}
    if [ "$publish" = host ]; then
        # The nodes a front may run on: ready, active, not labelled m2stack.front=false.
        nodes=$(docker node ls -q | xargs docker node inspect \
            --format '{{.Status.State}} {{.Spec.Availability}} {{index .Spec.Labels "m2stack.front"}}' \
            | awk '$1 == "ready" && $2 == "active" && $3 != "false"' | wc -l)
        if [ "$FRONTS" -gt "$nodes" ]; then
            say "FRONTS=$FRONTS on $nodes node(s): host port $port is one front's per node, so each front publishes a random host port instead (listed below); with a node per front every front publishes $port"
            publish=random
        fi
    fi
    [ "$HTTP_PUBLISH" = "$port" ] || say "HTTP_PUBLISH=$HTTP_PUBLISH: Swarm publishes on every address of the node, not only ${HTTP_PUBLISH%:*}"

    file=$(stack_file "$publish")
    say "deploying $file as stack $STACK: $FRONTS front(s), $([ "$DISPATCH" = 0 ] && echo "no dispatcher (bare)" || echo "the dispatcher"), $HANDLERS handler(s), hub $HUB${REGISTRY:+, images from $REGISTRY}"
    docker stack deploy --prune --resolve-image "$(resolve_image)" ${REGISTRY:+--with-registry-auth} \
        -c "$file" "$STACK" >&2
    wait_converged
    say "up: stack $STACK converged"
    docker service ls --filter "label=com.docker.stack.namespace=$STACK" >&2
    case $publish in
        host) say "each front's node answers http://<node>:$port/json" ;;
        ingress) say "every node answers http://<node>:$port/json (routing mesh)" ;;
        random)
            docker ps --filter "label=com.docker.swarm.service.name=${STACK}_mongrel2" --format '{{.Names}} {{.Ports}}' \
                | sed -n 's/^\([^ ]*\) .*0\.0\.0\.0:\([0-9]*\)->6767.*/  \1: http:\/\/127.0.0.1:\2\/json/p' >&2 ;;
    esac
}

# Wait until `probe` prints nothing (a list of what is left), at most $2 seconds.
wait_gone() {
    local probe=$1 timeout=$2 deadline left
    deadline=$(( $(date +%s) + timeout ))
    while left=$($probe) && [ -n "$left" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { say "still there after ${timeout}s: $left"; return 1; }
        sleep 1
    done
}
stack_containers() { docker ps -aq --filter "label=com.docker.stack.namespace=$STACK"; }
stack_networks() { docker network ls -q --filter "label=com.docker.stack.namespace=$STACK"; }

down() {
    local state me created gw node ok=0
    state=$(swarm_state)
    if [ "$state" != active ]; then
        say "the engine is in no swarm (state: $state): nothing to remove"
        rm -rf "$state_dir"
        return 0
    fi
    if docker stack ls --format '{{.Name}}' | grep -qx "$STACK"; then
        docker stack rm "$STACK" >&2
    fi
    wait_gone stack_containers 90 || ok=1
    # stack rm gives up on a network a container still used: try again now they are gone.
    for net in $(stack_networks); do docker network rm "$net" >/dev/null 2>&1 || true; done
    wait_gone stack_networks 30 || ok=1
    if docker secret inspect "$secret" >/dev/null 2>&1; then
        docker secret rm "$secret" >/dev/null || ok=1
    fi
    # The database's volume on this node (on a cluster, remove it on the db node too).
    for volume in $(docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK"); do
        docker volume rm "$volume" >/dev/null || ok=1
    done
    for node in $(docker node ls -q); do
        if [ "$(node_label "$node" m2stack.db-labelled-by)" = "$STACK" ]; then
            docker node update --label-rm m2stack.db --label-rm m2stack.db-labelled-by "$node" >/dev/null
            say "removed the m2stack.db label swarm-up had put on node $node"
        fi
    done
    me=$(node_id)
    created=$(node_label "$me" m2stack.swarm-created-by)
    gw=$(node_label "$me" m2stack.gwbridge-preexisting)
    if [ "$created" = "$STACK" ]; then
        if [ -n "$(docker service ls -q)" ] || [ "$(docker node ls -q | wc -l)" -gt 1 ]; then
            say "swarm-up created this swarm, but it now runs other services or nodes: staying in it"
        else
            # Leaving breaks the name resolution of every container on a bridge network
            # that exists now (Docker 20.10; docs/swarm.md): `make test` sets
            # SWARM_LEAVE_LOCK so that this waits until no e2e stack is up.
            if [ -n "${SWARM_LEAVE_LOCK:-}" ]; then
                flock -x "$SWARM_LEAVE_LOCK" docker swarm leave --force >/dev/null
            else
                docker swarm leave --force >/dev/null
            fi
            [ "$gw" = true ] || docker network rm docker_gwbridge >/dev/null 2>&1 || true
            say "left the single-node swarm swarm-up had created"
            say "containers started before this on bridge networks (make up's) no longer resolve names: recreate them, e.g. make down && make up (docs/swarm.md)"
        fi
    fi
    rm -rf "$state_dir"
    [ "$ok" = 0 ] && say "down: stack $STACK removed" || die "down: some of stack $STACK is left (see above)"
}

push() {
    local image
    [ -n "$REGISTRY" ] || die "push needs REGISTRY=host:port"
    require_compose_v2
    # The stack's images: not those of a service it leaves out (the bare shape's dispatcher).
    # shellcheck disable=SC2046
    for image in $($COMPOSE -p "$STACK" $(compose_files) config --format json | $PYTHON scripts/swarm_stack.py --images); do
        docker tag "$image" "$REGISTRY/$image"
        say "pushing $REGISTRY/$image"
        docker push -q "$REGISTRY/$image" >&2
    done
}

case $cmd in
    up) up ;;
    down) down ;;
    push) push ;;
    stack-file) stack_file "$PUBLISH" ;;
    *) die "unknown command '$cmd': up, down, push or stack-file" ;;
esac
