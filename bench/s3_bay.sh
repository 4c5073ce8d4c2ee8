#!/usr/bin/env bash
# Storage bays on S3 against storage bays in a directory, in the same run:
#
#   upload   UPLOADS concurrent HTTP uploads of SIZE_MIB packets to a hub
#            `shipping_server -listen` that stores and forwards them (each
#            verified in full, then written with its order into the hub's
#            outgoing bay); the hub's peak memory (VmHWM; target: at most
#            100 MiB with 50 uploads of 10 MiB);
#   forward  `shipping_server -poll` working through those orders to a
#            receiving server (directory bay): one server, and for the S3
#            bay also three servers sharing it (orders claimed one by one);
#            peak memory of each forwarding server.
#
# The S3 service is the Ceph RADOS Gateway of `.ci/ceph-rgw` on 127.0.0.1
# (started if it is not running; never stopped here). Release build with
# the `s3` feature.
#
# Usage: bench/s3_bay.sh [UPLOADS] [SIZE_MIB]
set -euo pipefail
uploads=${1:-50}
size_mib=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
eval "$(bash "$here/.ci/ceph-rgw" start)"
cargo build --release --quiet --features syncreplica/s3,shipping/s3 \
    --manifest-path "$here/Cargo.toml" --bin shipping_server --bin mkreplica --bin syncreplica
bin="$here/target/release"
work=$(mktemp -d "${SCRATCH:-/tmp}/s3-bay-bench.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v bytes="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", bytes / 1048576 / (b - a) }'; }
peak_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }

# Starts a shipping_server with config $1 and further arguments; sets
# $started_pid and $started_addr (for -listen).
start_server() {
    local conf=$1 log=$2
    shift 2
    "$bin/shipping_server" -shipconf "$conf" "$@" >"$log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
    started_addr=
    if [[ " $* " == *" -listen "* ]]; then
        for _ in $(seq 200); do grep -q "listening on" "$log" && break; sleep 0.05; done
        started_addr=$(grep -o 'listening on [^ ]*' "$log" | cut -d' ' -f3)
    fi
}
stop_server() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# UPLOADS distinct signed packets of about SIZE_MIB each (incompressible),
# from real exports between two replicas of one family.
mkdir -p "$work/a" "$work/creation" "$work/out"
head -c $((size_mib * 1048576 - 4096)) /dev/urandom >"$work/a/payload.bin"
(cd "$work/a" && "$bin/mkreplica" -init -family load sender >/dev/null)
"$bin/mkreplica" -export -replica "$work/a" -out "$work/creation" -keyout "$work/receiver.key" receiver >/dev/null
"$bin/mkreplica" -import -replica "$work/b" -key "$work/receiver.key" "$work/creation" >/dev/null 2>&1
for _ in $(seq "$uploads"); do
    head -c $((size_mib * 1048576 - 4096)) /dev/urandom >"$work/a/payload.bin"
    "$bin/syncreplica" -export -replica "$work/a" -out "$work/out" receiver >/dev/null
done
packets=("$work/out"/sync_*.zip)
total=$(cat "${packets[@]}" | wc -c)
echo "${#packets[@]} packets of about $((total / ${#packets[@]})) bytes; $uploads concurrent uploads, $total bytes in all"

# The receiving end of every forward: a server with a directory bay.
cat >"$work/receiver.toml" <<EOF
max_connections_per_peer = 64
local_replicas = ["receiver"]
trusted_replicas = ["$work/b"]
[classes.default]
storage_bay = "$work/receiver-bay"
return_bay = "$work/receiver-bay/return"
EOF

# Hub configuration $1 (file) with the class lines $2, forwarding to the
# receiver at $3.
hub_conf() {
    cat >"$1" <<EOF
max_connections_per_peer = $((uploads < 1024 ? uploads : 1024))
trusted_replicas = ["$work/b"]
$2
[destinations.receiver]
url = "http://$3"
EOF
}

results=()
# One bay kind: $1 label, $2 class lines, $3 forwarding servers.
run_case() {
    local label=$1 class=$2 forwarders=$3
    rm -rf "$work/receiver-bay" "$work/codes"
    start_server "$work/receiver.toml" "$work/receiver.log" -listen 127.0.0.1:0
    local receiver_pid=$started_pid receiver_addr=$started_addr
    hub_conf "$work/hub.toml" "$class" "$receiver_addr"

    # Upload: the hub only listens (nothing forwarded yet).
    start_server "$work/hub.toml" "$work/hub.log" -listen 127.0.0.1:0
    local hub_pid=$started_pid start end
    start=$(now)
    local curls=()
    for packet in "${packets[@]}"; do
        curl -sS -o /dev/null -w '%{http_code}\n' -T "$packet" \
            "http://$started_addr/packets/$(basename "$packet")" >>"$work/codes" &
        curls+=($!)
    done
    wait "${curls[@]}"
    end=$(now)
    local up_rate up_peak created
    up_rate=$(rate "$total" "$start" "$end")
    up_peak=$(peak_mib "$hub_pid")
    created=$(grep -c '^201$' "$work/codes" || true)
    stop_server "$hub_pid"

    # Forward: FORWARDERS pollers on the hub's bay until the receiver has
    # every packet.
    local pollers=() i
    start=$(now)
    for i in $(seq "$forwarders"); do
        start_server "$work/hub.toml" "$work/poll-$i.log" -poll -interval 1
        pollers+=("$started_pid")
    done
    local deadline=$((SECONDS + 900))
    while [ "$(find "$work/receiver-bay/incoming" -maxdepth 1 -name 'sync_*.zip' 2>/dev/null | wc -l)" -lt "$uploads" ]; do
        [ $SECONDS -lt $deadline ] || { echo "$label: forwarding did not finish" >&2; cat "$work"/poll-*.log >&2; exit 1; }
        sleep 0.1
    done
    end=$(now)
    local fw_rate fw_peak=0 p
    fw_rate=$(rate "$total" "$start" "$end")
    for p in "${pollers[@]}"; do
        local m
        m=$(peak_mib "$p")
        [ "$m" -gt "$fw_peak" ] && fw_peak=$m
        stop_server "$p"
    done
    local repeated
    repeated=$(grep -c 'accepted PUT.*: 200 ' "$work/receiver.log" || true)
    stop_server "$receiver_pid"
    results+=("$(printf '%-26s %10s %10s %12s %10s %10s %8s' "$label" "$up_rate" "$up_peak" "$created/$uploads" "$fw_rate" "$fw_peak" "$repeated")")
}

run_case "directory bay" "[classes.default]
storage_bay = \"$work/hub-bay\"
return_bay = \"$work/hub-bay/return\"" 1

s3_class() {
    cat <<EOF
[classes.default]
storage_bay = "s3://$SYNCREPLICA_TEST_S3_BUCKET/bench-$1/bay"
return_bay = "s3://$SYNCREPLICA_TEST_S3_BUCKET/bench-$1/return"
endpoint = "$SYNCREPLICA_TEST_S3_ENDPOINT"
region = "$AWS_REGION"
allow_http = true
EOF
}
run_case "S3 bay, 1 forwarder" "$(s3_class "$$-1")" 1
run_case "S3 bay, 3 forwarders" "$(s3_class "$$-3")" 3

echo
printf '%-26s %10s %10s %12s %10s %10s %8s\n' "" "upload" "hub peak" "stored" "forward" "fwd peak" "repeats"
printf '%-26s %10s %10s %12s %10s %10s %8s\n' "" "MiB/s" "MiB" "(201)" "MiB/s" "MiB" ""
for line in "${results[@]}"; do echo "$line"; done
echo
echo "Peak memory is VmHWM of the hub (upload) and of the busiest forwarding server; target: at most 100 MiB."
