#!/usr/bin/env bash
# Family-size benchmark (issue 13, "Scale of the family"): for families of
# N members (default 10, 100 and 1000), every member makes one change that
# reaches the first member, "hub"; then hub changes one file and exports
# it to one member. Reports the header bytes of that packet (the signed
# header with the sender's epoch row, one entry per origin: target linear
# in N, at most 32 bytes per member) and the export's wall time (target:
# N = 1000 at most twice N = 10).
#
# The tree holds FILES files (default 1000) for every N, so that only the
# number of members differs: member i changes file i (or adds one past
# FILES).
#
# Usage: [FILES=1000] bench/family_scale.sh [N...]
#   SYNCREPLICA_BIN=DIR   use the programs in DIR (default: a release
#                         build of the workspace; PROFILE=debug uses
#                         target/debug as it is)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sizes=("$@")
files=${FILES:-1000}
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000)
if [ -n "${SYNCREPLICA_BIN:-}" ]; then
    bin=$SYNCREPLICA_BIN
elif [ "${PROFILE:-release}" = debug ]; then
    bin="$here/target/debug"
else
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bins
    bin="$here/target/release"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now_ms() { date +%s%3N; }

# Bytes of the `header` zip entry of a packet file.
header_bytes() {
    python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("header").file_size)' "$1"
}

printf '%6s %13s %16s %11s %14s\n' N header_bytes bytes_per_member export_ms family_setup_s
for n in "${sizes[@]}"; do
    dir="$work/n$n"
    mkdir -p "$dir/hub" "$dir/to-hub"
    start=$(now_ms)
    echo base >"$dir/hub/base.txt"
    for f in $(seq 1 $((files - 1))); do echo "file $f" >"$dir/hub/f$f.txt"; done
    (cd "$dir/hub" && "$bin/mkreplica" -init -family scale hub >/dev/null)
    for i in $(seq 1 $((n - 1))); do
        mkdir "$dir/c$i"
        (cd "$dir/hub" && "$bin/mkreplica" -export -out "$dir/c$i" -keyout "$dir/m$i.key" "m$i" >/dev/null)
        "$bin/mkreplica" -import -replica "$dir/m$i" -key "$dir/m$i.key" "$dir/c$i" >/dev/null
        rm -rf "$dir/c$i"
        # Each member's own change, so hub's row has an entry per origin.
        if [ "$i" -lt "$files" ]; then
            echo "from m$i" >"$dir/m$i/f$i.txt"
        else
            echo "from m$i" >"$dir/m$i/m$i.txt"
        fi
        (cd "$dir/m$i" && "$bin/syncreplica" -export -out "$dir/to-hub" hub >/dev/null)
    done
    (cd "$dir/hub" && "$bin/syncreplica" -import -remove "$dir/to-hub" >/dev/null)
    setup=$(( ($(now_ms) - start) / 1000 ))
    # The measured export: one changed file, to one member (m1, or the
    # hub's own creation target when N = 1).
    echo changed >"$dir/hub/base.txt"
    mkdir "$dir/out"
    target=m1
    best=
    for run in 1 2 3; do
        echo "change $run" >"$dir/hub/base.txt"
        rm -f "$dir/out"/*.zip
        t0=$(now_ms)
        (cd "$dir/hub" && "$bin/syncreplica" -export -out "$dir/out" "$target" >/dev/null)
        t=$(( $(now_ms) - t0 ))
        if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
    done
    packet=$(ls "$dir/out"/*.zip | head -1)
    bytes=$(header_bytes "$packet")
    per=$(awk -v b="$bytes" -v n="$n" 'BEGIN { printf "%.1f", b / n }')
    printf '%6s %13s %16s %11s %14s\n' "$n" "$bytes" "$per" "$best" "$setup"
    rm -rf "$dir"
done
