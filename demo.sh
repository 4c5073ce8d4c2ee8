#!/usr/bin/env bash
# Builds syncreplica and runs the main job end to end in a temporary folder,
# printing each real command before it runs. Nothing outside the temporary
# folder changes.
#   1. create two replicas (mkreplica -init, then -export/-import);
#   2. edit both sides, including a conflict;
#   3. export with -maxsize into a folder (the "USB stick");
#   4. list the packets (lspacket);
#   5. import them;
#   6. check that both trees are equal;
#   7. ship a change over HTTP through a shipping_server (on 127.0.0.1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The first build takes minutes on a small machine: say so, and let cargo
# show its progress rather than leave a silent terminal.
echo "Building syncreplica (release; the first build takes a few minutes)..."
cargo build --release --workspace --manifest-path "$here/Cargo.toml"
export PATH="$here/target/release:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/syncreplica-demo.XXXXXX")
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"

show() {
    printf '\n$'; printf ' %q' "$@"; printf '\n'
    "$@"
}

echo "# 1. Two replicas: boston, and ship from a creation packet."
mkdir -p boston/docs boston/bin usb
echo "Quarterly report, draft 1" > boston/docs/report.txt
printf '#!/bin/sh\necho hello\n' > boston/bin/hello.sh
head -c 300000 /dev/urandom > boston/docs/scan.pdf
printf '127.0.0.1 boston.local\n' > boston/hosts.local
printf 'hosts.local\n' > boston/.syncreplicaignore
show mkreplica -init -family projects -replica boston boston
# The creation packet carries ship's secret keys, encrypted to a passphrase
# (asked twice on the terminal; read from a file here, so the demo runs
# unattended). The new site is told it by another route than the packet.
( umask 077; head -c 18 /dev/urandom | base64 > passphrase )
show mkreplica -export -out usb -replica boston -passphrase-file passphrase ship
show mkreplica -import -replica ship -passphrase-file passphrase usb
rm -f usb/* passphrase
show lsreplica -replica boston

echo
echo "# 2. Edits on both sides; both change docs/report.txt: a conflict."
echo "Quarterly report, boston's draft 2" > boston/docs/report.txt
chmod +x boston/bin/hello.sh
mv boston/docs/scan.pdf boston/docs/scan-q3.pdf
mkdir -p boston/archive/empty
sleep 1
echo "Quarterly report, ship's draft 2 (written later)" > ship/docs/report.txt
ln -s docs/report.txt ship/latest
show syncreplica -status -replica boston

echo
echo "# 3. Export into a folder, in packets of at most 64k."
show syncreplica -export -out usb -maxsize 64k -comment "weekly sync" -replica boston ship
show syncreplica -export -out usb -maxsize 64k -replica ship boston

echo
echo "# 4. What is on the stick?"
show lspacket -replica ship usb

echo
echo "# 5. Import at both ends (each takes the packets meant for it)."
show syncreplica -import -remove -replica ship usb
show syncreplica -import -remove -replica boston usb
# One more round carries the conflict copy made on each side.
show syncreplica -export -out usb -replica boston ship
show syncreplica -export -out usb -replica ship boston
show syncreplica -import -remove -replica ship usb
show syncreplica -import -remove -replica boston usb

echo
echo "# 6. Are the trees equal?"
show ls -l ship/docs
if diff -r --no-dereference --exclude=.syncreplica --exclude=.syncreplicaignore --exclude=hosts.local boston ship; then
    echo "The trees are equal (hosts.local is excluded, and .syncreplicaignore is boston's own: both stay local)."
else
    echo "The trees differ!" >&2
    exit 1
fi
show lsepoch -replica boston

echo
echo "# 7. Over the network: ship's shipping_server receives packets over HTTP,"
echo "#    boston ships with -fship, ship imports what arrived (-receive)."
cat > ship-shipping.toml <<EOF
local_replicas = ["ship"]
trusted_replicas = ["$work/ship"]
[classes.default]
storage_bay = "$work/ship-bays"
return_bay = "$work/ship-bays/return"
EOF
show cat ship-shipping.toml
printf '\n$ shipping_server -shipconf ship-shipping.toml -listen 127.0.0.1:0 &\n'
shipping_server -shipconf ship-shipping.toml -listen 127.0.0.1:0 > server.log &
server=$!
for _ in $(seq 100); do grep -q "listening on" server.log && break; sleep 0.05; done
cat server.log
addr=$(grep -o 'listening on [^ ]*' server.log | cut -d' ' -f3)
cat > boston-shipping.toml <<EOF
[classes.default]
storage_bay = "$work/boston-bays"
return_bay = "$work/boston-bays/return"
[destinations.ship]
url = "http://$addr"
EOF
show cat boston-shipping.toml
echo "Minutes of the Monday meeting" > boston/docs/minutes.txt
show syncreplica -export -fship -shipconf boston-shipping.toml -replica boston ship
show lspacket -shipconf ship-shipping.toml -replica ship
show syncreplica -import -receive -shipconf ship-shipping.toml -replica ship
kill -TERM "$server"; wait "$server" || true; server=
cat server.log
if diff -r --no-dereference --exclude=.syncreplica --exclude=.syncreplicaignore --exclude=hosts.local boston ship; then
    echo "The trees are equal again: the change travelled over HTTP."
else
    echo "The trees differ!" >&2
    exit 1
fi
