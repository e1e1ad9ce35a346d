#!/bin/bash
# The image's entry point: Prometheus with /etc/prometheus/prometheus.yml, or, when
# PROMETHEUS_SCRAPE_INTERVAL or PROMETHEUS_EVALUATION_INTERVAL is set, with a copy whose
# global intervals are these (written to /run/prometheus, a tmpfs: the root is read-only).
# Prometheus expands no variable in its configuration file, hence the copy. Arguments are
# passed on to Prometheus (a flag of yours: `command:` in compose).
set -euo pipefail
config=/etc/prometheus/prometheus.yml
set_interval() {   # set_interval KEY VALUE: VALUE replaces the global KEY in the copy
    [[ $2 =~ ^[1-9][0-9]*(ms|s|m|h)$ ]] || {
        echo "start.sh: $3=$2 is not a duration (e.g. 1s, 500ms, 1m)" >&2; exit 2; }
    sed -i "s/^  $1: .*/  $1: $2/" /run/prometheus/prometheus.yml
    grep -q "^  $1: $2\$" /run/prometheus/prometheus.yml || {
        echo "start.sh: no global $1 in $config to replace" >&2; exit 2; }
}
if [[ -n ${PROMETHEUS_SCRAPE_INTERVAL:-}${PROMETHEUS_EVALUATION_INTERVAL:-} ]]; then
    cp "$config" /run/prometheus/prometheus.yml
    [[ -z ${PROMETHEUS_SCRAPE_INTERVAL:-} ]] ||
        set_interval scrape_interval "$PROMETHEUS_SCRAPE_INTERVAL" PROMETHEUS_SCRAPE_INTERVAL
    [[ -z ${PROMETHEUS_EVALUATION_INTERVAL:-} ]] ||
        set_interval evaluation_interval "$PROMETHEUS_EVALUATION_INTERVAL" PROMETHEUS_EVALUATION_INTERVAL
    config=/run/prometheus/prometheus.yml
fi
exec /usr/bin/prometheus --config.file="$config" --storage.tsdb.path=/prometheus \
    --storage.tsdb.retention.time=2d --web.listen-address=:9090 "$@"
