#!/bin/sh
# Wait until every container of a compose project is running and healthy.
# (`docker compose up --wait` does this for `make up`; the e2e tests bring stacks up with
# `up -d` and wait here, so they can report which service never became healthy.)
# usage: wait-healthy.sh PROJECT [TIMEOUT_SECONDS]
set -eu
project="$1"
timeout="${2:-180}"
deadline=$(( $(date +%s) + timeout ))
while :; do
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
    pending=""
    for id in $ids; do
        state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
        case "$state" in
            *" running healthy"|*" running none") ;;
            *" exited "*|*" dead "*) echo "wait-healthy: $state" >&2; pending="$pending ${state%% *}" ;;
            *) pending="$pending ${state%% *}" ;;
        esac
    done
    if [ -n "$ids" ] && [ -z "$pending" ]; then
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        # The logs first and the summary last, so a reader that keeps only the tail sees it.
        for name in $pending; do echo "--- ${name#/}:" >&2; docker logs --tail 20 "${name#/}" 2>&1 | cut -c1-300 >&2 || true; done
        for id in $ids; do
            docker inspect -f '{{.Name}} {{.State.Status}} restarts={{.RestartCount}} exit={{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" >&2
        done
        echo "wait-healthy: not healthy after ${timeout}s:$pending" >&2
        exit 1
    fi
    sleep 1
done
