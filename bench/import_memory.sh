#!/usr/bin/env bash
# Benchmark: peak RSS and time of `syncreplica -import` of one packet of N
# small operations (forged by examples/forge_ops.rs, sealed and signed by a
# real member, as a long-disconnected sibling sends), for each N given.
#
# Kinds of packet:
#   one      N versions of one directory: the operations are the load, the
#            result is one path.
#   deleted  N tombstones of distinct paths never made: N entries written,
#            no disk work.
#   dirs     N directories made on disk (slow; off unless asked for).
#   files    N small files of their own content, each staged and placed
#            (slowest; off unless asked for).
#   spread   N/2 folders of their own (200-byte names), a directory made in
#            each: N/2 folders changed on disk and fsynced (off unless
#            asked for).
#   deep     a chain of N nested directories (N at most 2,047; off unless
#            asked for).
#   conflicts  the receiver first makes and records N directories of its
#            own (mode 0755); the packet gives the same paths mode 0700,
#            concurrently: N conflicts, each a line of the report (off
#            unless asked for).
# Baseline: the peak RSS of `syncreplica -status` (a scan, which holds the
# recorded entries) on the replica the `deleted` (or `conflicts`) import
# left, which holds N entries: what the replica costs anyway for that many
# paths.
#
# Usage: bench/import_memory.sh [N...]   (default: 100000 1000000)
#        KINDS="one deleted dirs" bench/import_memory.sh 100000
#        BIN=/path/to/other/build bench/import_memory.sh   (its mkreplica and
#        syncreplica, e.g. an earlier version's, to compare)
set -euo pipefail
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100000 1000000)
kinds=${KINDS:-one deleted}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml" \
    --bin mkreplica --bin syncreplica --example forge_ops
bin=${BIN:-"$here/target/release"}
forge="$here/target/release/examples/forge_ops"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints "PEAK_MB WALL_SECONDS CPU_SECONDS" of a command (CPU: user + system,
# steadier than wall time on a shared machine), failing if it fails.
measure() {
    local out="$work/time.txt"
    if ! /usr/bin/time -v "$@" >"$work/cmd.out" 2>"$out"; then
        cat "$work/cmd.out" "$out" >&2
        return 1
    fi
    local kb secs cpu
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$out" |
        awk -F: '{ t = 0; for (i = 1; i <= NF; i++) t = t * 60 + $i; print t }')
    cpu=$(awk -F': ' '/User time|System time/ { t += $2 } END { printf "%.2f", t }' "$out")
    echo "$((kb / 1024)) $secs $cpu"
}

printf '%-8s %10s %10s %10s %10s %10s\n' kind ops packet_KB peak_MB wall_s cpu_s
for n in "${counts[@]}"; do
    for kind in $kinds; do
        run="$work/$kind-$n"
        mkdir -p "$run/a" "$run/bay"
        "$bin/mkreplica" -init -family bench -replica "$run/a" a >/dev/null
        "$bin/mkreplica" -export -out "$run/bay" -keyout "$run/b.key" -replica "$run/a" b >/dev/null
        "$bin/mkreplica" -import -replica "$run/b" -key "$run/b.key" "$run/bay" >/dev/null
        rm -f "$run/bay"/*
        if [ "$kind" = conflicts ]; then
            # The receiver's own folders, as forge_ops names them.
            (cd "$run/b" && umask 022 &&
                seq 0 $((n - 1)) | awk '{ printf "d%03d/%07d\n", $1 % 1000, $1 }' |
                xargs mkdir -p)
            "$bin/syncreplica" -record -replica "$run/b" >/dev/null
        fi
        packet=$("$forge" "$run/a" "$run/b" "$run/bay" "$n" "$kind")
        size=$(( $(stat -c %s "$packet") / 1024 ))
        read -r mb secs cpu < <(measure "$bin/syncreplica" -import -replica "$run/b" "$packet")
        printf '%-8s %10s %10s %10s %10s %10s\n' "$kind" "$n" "$size" "$mb" "$secs" "$cpu"
        if [ "$kind" = deleted ] || [ "$kind" = conflicts ]; then
            read -r mb secs cpu < <(measure "$bin/syncreplica" -status -replica "$run/b")
            printf '%-8s %10s %10s %10s %10s %10s\n' "baseline" "$n" "-" "$mb" "$secs" "$cpu"
        fi
        rm -rf "$run"
    done
done
