#!/usr/bin/env bash
# Benchmark: a scan of 100,000 unchanged files (`syncreplica -status`) beside
# `find DIR -printf '%s %T@\n' | wc -l` on the same tree, in the same run.
# Prints both times and the ratio. Target: at most 3x find.
#
# Usage: bench/scan_vs_find.sh [FILES] [RUNS]
set -euo pipefail
files=${1:-100000}
runs=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin mkreplica --bin syncreplica
bin="$here/target/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/tree"

echo "making $files files in $tree ..."
python3 - "$tree" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per_dir = 100
for i in range(n):
    d = os.path.join(root, f"d{i // (per_dir * per_dir):03d}", f"e{(i // per_dir) % per_dir:03d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.txt"), "w") as f:
        f.write(f"file {i}\n" * (1 + i % 7))
PY
# Let the files' timestamps leave the racy window before they are recorded.
sleep 3
start=$(date +%s.%N)
"$bin/mkreplica" -init -family bench -replica "$tree" site >/dev/null
end=$(date +%s.%N)
echo "initial record (mkreplica -init): $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s"

time_best() {
    local best=""
    for _ in $(seq "$runs"); do
        local s e t
        s=$(date +%s%N)
        "$@" >/dev/null
        e=$(date +%s%N)
        t=$(( (e - s) / 1000 ))
        if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
    done
    echo "$best"
}
find_cmd() { find "$tree" -printf '%s %T@\n' | wc -l; }
status_cmd() { "$bin/syncreplica" -status -replica "$tree"; }

# Warm the cache for both.
find_cmd >/dev/null; status_cmd >/dev/null
status_cmd | head -1
find_us=$(time_best find_cmd)
scan_us=$(time_best status_cmd)
echo "files:                     $files"
echo "find -printf | wc -l:      $((find_us / 1000)) ms (best of $runs)"
echo "syncreplica -status:       $((scan_us / 1000)) ms (best of $runs)"
echo "ratio scan/find:           $(awk -v a="$scan_us" -v b="$find_us" 'BEGIN { printf "%.2f", a / b }')x (target <= 3x)"
