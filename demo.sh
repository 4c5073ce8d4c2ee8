#!/usr/bin/env bash
# Builds syncreplica and runs a demo in a temporary folder, printing each
# real command before it runs. Nothing outside the temporary folder changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
export PATH="$here/target/release:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/syncreplica-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

show() {
    printf '\n$ %s\n' "$*"
    "$@"
}

site="$work/boston"
mkdir -p "$site/docs" "$site/bin"
echo "Quarterly report, draft 1" > "$site/docs/report.txt"
printf '#!/bin/sh\necho hello\n' > "$site/bin/hello.sh"
printf '127.0.0.1 boston.local\n' > "$site/hosts.local"
printf 'hosts.local\n*.tmp\n' > "$site/.syncreplicaignore"
cd "$site"

show mkreplica -init -family projects boston
show lsreplica -long

# Local edits of every kind.
echo "Quarterly report, draft 2" > docs/report.txt
chmod +x bin/hello.sh
mv docs/report.txt docs/report-q3.txt
ln -s docs/report-q3.txt latest
mkdir -p archive/empty
echo scratch > notes.tmp

show syncreplica -status
show syncreplica -record
show syncreplica -status
show lsepoch
