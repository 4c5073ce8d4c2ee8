#!/usr/bin/env bash
# Load benchmark: UPLOADS concurrent HTTP uploads of SIZE_MIB packets to
# one `shipping_server -listen`, which verifies each in full (signature,
# every entry's SHA-256) and stores it durably before answering. Reports
# the throughput, the server's peak memory (VmHWM; target: under 100 MiB,
# because uploads stream to disk) and, as the peer measured in the same
# run, the same uploads to an rsync daemon on the same host.
#
# Usage: bench/shipping_load.sh [UPLOADS] [SIZE_MIB]
set -euo pipefail
uploads=${1:-50}
size_mib=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in rsync curl; do
    if ! command -v "$tool" >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
    fi
done
cargo build --release --quiet --workspace --manifest-path "$here/Cargo.toml"
bin="$here/target/release"
work=$(mktemp -d)
server_pid=
rsync_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    [ -n "$rsync_pid" ] && kill "$rsync_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v bytes="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", bytes / 1048576 / (b - a) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# UPLOADS distinct signed packets of about SIZE_MIB each (incompressible
# content), from real exports between two replicas of one family: a
# shipping server stores a packet only under the name its signed header
# implies, and the same packet only once.
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

# All uploads come from 127.0.0.1: let that one address have them all.
cat >"$work/shipping.toml" <<EOF
max_connections_per_peer = $((uploads < 1024 ? uploads : 1024))
local_replicas = ["receiver"]
trusted_replicas = ["$work/b"]
[classes.default]
storage_bay = "$work/bay"
return_bay = "$work/bay/return"
EOF
"$bin/shipping_server" -shipconf "$work/shipping.toml" -listen 127.0.0.1:0 >"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.05; done
addr=$(grep -o 'listening on [^ ]*' "$work/server.log" | cut -d' ' -f3)

start=$(now)
for packet in "${packets[@]}"; do
    curl -sS -o /dev/null -w '%{http_code}\n' -T "$packet" "http://$addr/packets/$(basename "$packet")" >>"$work/codes" &
done
wait $(jobs -p | grep -v "^$server_pid$") 2>/dev/null || true
end=$(now)
peak_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
stored=$(ls "$work/bay/incoming" | grep -c '\.zip$' || true)
created=$(grep -c '^201$' "$work/codes" || true)
sr_rate=$(rate "$total" "$start" "$end")

# The peer: the same bytes to an rsync daemon (no signature check).
mkdir -p "$work/rsync-in"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/rsyncd.conf" <<EOF
pid file = $work/rsyncd.pid
use chroot = no
uid = $(id -un)
gid = $(id -gn)
max connections = 0
[in]
path = $work/rsync-in
read only = no
EOF
rsync --daemon --no-detach --config="$work/rsyncd.conf" --address=127.0.0.1 --port="$port" &
rsync_pid=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
start=$(now)
pids=()
for packet in "${packets[@]}"; do
    rsync -q "$packet" "rsync://127.0.0.1:$port/in/$(basename "$packet")" &
    pids+=($!)
done
wait "${pids[@]}"
sync
end=$(now)
rs_rate=$(rate "$total" "$start" "$end")
rs_stored=$(ls "$work/rsync-in" | wc -l)

echo
printf '%-28s %12s %10s\n' "" "MiB/s" "stored"
printf '%-28s %12s %10s\n' "shipping_server (verified)" "$sr_rate" "$stored/$uploads"
printf '%-28s %12s %10s\n' "rsync daemon" "$rs_rate" "$rs_stored/$uploads"
printf '%-28s %12s\n' "ratio shipping/rsync" "$(ratio "$sr_rate" "$rs_rate")"
echo
echo "shipping_server: $created uploads answered 201; peak memory (VmHWM) $((peak_kib / 1024)) MiB (target < 100 MiB)"
