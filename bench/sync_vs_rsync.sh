#!/usr/bin/env bash
# Benchmark: syncreplica packets against rsync batch mode
# (--only-write-batch / --read-batch) on the same data, in the same run.
#
#   1. creating a replica of a tree of about 500 MiB in about 20,000 files
#      (mkreplica -export / -import against rsync to an empty directory,
#      and the export against `tar | zstd -3 -T0` of the same tree);
#   2. editing 1% of those files, in EDIT_ROUNDS rounds (3 unless set)
#      (syncreplica -export / -import against rsync batch from the old
#      tree, read with and without --fsync; the median of the rounds'
#      export + import ratios is the figure for the target).
#
# Prints packet bytes, export time and import time for both, and the ratios
# syncreplica / rsync (below 1 is better for syncreplica).
#
# Usage: [BENCH_BIN=DIR] [EDIT_ROUNDS=N] bench/sync_vs_rsync.sh [FILES] [TOTAL_MIB]
set -euo pipefail
files=${1:-20000}
total_mib=${2:-500}
here=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v rsync >/dev/null; then
    apt-get update -qq && apt-get install -y -qq rsync >/dev/null
fi
# BENCH_BIN: a folder holding the binaries to measure (e.g. copies of an
# earlier build), instead of building this tree's.
if [ -n "${BENCH_BIN:-}" ]; then
    bin=$BENCH_BIN
else
    cargo build --release --quiet --manifest-path "$here/Cargo.toml"
    bin="$here/target/release"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "making $files files, about $total_mib MiB, in $work/src ..."
python3 - "$work/src" "$files" "$total_mib" <<'PY'
import os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
avg = total // n
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:02d}", f"e{(i // 50) % 20:02d}")
    os.makedirs(d, exist_ok=True)
    size = max(1, int(rng.expovariate(1 / avg)))
    if i % 4 == 0:  # a quarter incompressible (media, archives)
        data = rng.randbytes(size)
    else:           # the rest text-like
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words) + b" "
        data = bytes(out[:size])
    with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
        f.write(data)
PY
du -sh "$work/src"

now() { date +%s.%N; }
# Each timed step starts on a settled disk: without `sync`, what the step
# before left unflushed (rsync and tar do not fsync; `cp -a` makes the
# --fsync copy before the edit rounds) is written back during the next
# step, and that step's fsyncs wait for it: a step was charged for its
# predecessor's writes.
settle() { sync; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
bytes_in() { du -sb "$1" | cut -f1; }

report() { # label sr_bytes sr_export sr_import rs_bytes rs_export rs_import
    printf '\n%s\n' "$1"
    printf '  %-12s %14s %12s %12s\n' "" "bytes" "export s" "import s"
    printf '  %-12s %14s %12s %12s\n' syncreplica "$2" "$3" "$4"
    printf '  %-12s %14s %12s %12s\n' rsync-batch "$5" "$6" "$7"
    printf '  %-12s %14s %12s %12s\n' ratio "$(ratio "$2" "$5")" "$(ratio "$3" "$6")" "$(ratio "$4" "$7")"
}

sleep 2.1
"$bin/mkreplica" -init -family bench -replica "$work/src" alpha >/dev/null

# 1. Replica creation.
mkdir "$work/pk1"
settle; t0=$(now); "$bin/mkreplica" -export -out "$work/pk1" -keyout "$work/beta.key" -replica "$work/src" beta >/dev/null; t1=$(now)
settle; t2=$(now); "$bin/mkreplica" -import -replica "$work/beta" -key "$work/beta.key" "$work/pk1" >/dev/null; t3=$(now)
# The new replica's first scan reads every file once: all were written
# moments before, within the racy window. A one-time cost, shown apart.
sleep 2.1
settle; t8=$(now); "$bin/syncreplica" -record -replica "$work/beta" >/dev/null; t9=$(now)
sr_bytes=$(du -cb "$work"/pk1/*.zip | tail -1 | cut -f1)
mkdir "$work/rs-empty"
settle; t4=$(now); rsync -a --exclude=.syncreplica --only-write-batch="$work/batch1" "$work/src/" "$work/rs-empty/"; t5=$(now)
mkdir "$work/rs-dest"
settle; t6=$(now); rsync -a --read-batch="$work/batch1" "$work/rs-dest/"; t7=$(now)
report "create a replica ($files files)" "$sr_bytes" "$(elapsed "$t0" "$t1")" "$(elapsed "$t2" "$t3")" \
    "$(bytes_in "$work/batch1")" "$(elapsed "$t4" "$t5")" "$(elapsed "$t6" "$t7")"
diff -r --exclude=.syncreplica "$work/src" "$work/beta" >/dev/null && echo "  trees equal: yes"
echo "  first scan at the new replica (reads every file once): $(elapsed "$t8" "$t9") s"
# The issue's other yardstick for creation: tar piped to zstd -3 on every
# core, the bytes and the time to write them.
settle; t10=$(now); tar -C "$work/src" --exclude=.syncreplica -cf - . | zstd -q -3 -T0 -o "$work/tree.tar.zst"; t11=$(now)
tz_bytes=$(bytes_in "$work/tree.tar.zst")
printf '  %-12s %14s %12s\n' "tar|zstd -3" "$tz_bytes" "$(elapsed "$t10" "$t11")"
printf '  %-12s %14s %12s\n' "ratio" "$(ratio "$sr_bytes" "$tz_bytes")" "$(ratio "$(elapsed "$t0" "$t1")" "$(elapsed "$t10" "$t11")")"

# 2. Edit 1% of the files: a few bytes changed in the middle of each, in
# EDIT_ROUNDS rounds (3 unless set), each on other files. One round's
# figures move by 10-15 % from run to run on a shared 2-core machine, both
# tools' alike; the median of the rounds' ratios is the figure to compare
# with the target (export + import <= 1.0x rsync's, import with --fsync).
# The first round is also a replica's first import of the day (it makes
# that day's folder of kept versions).
rounds=${EDIT_ROUNDS:-3}
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "bench/sync_vs_rsync.sh: EDIT_ROUNDS must be a whole number from 1 on, not '$rounds'" >&2
    exit 2
fi
sum_ratios=()
# rsync --fsync applies each round's batch to a tree of its own, copied
# once here: removing and copying 500 MiB in every round made the next
# round's steps wait for the freed blocks' discards.
cp -a "$work/rs-dest" "$work/rs-dest-fsync"
for round in $(seq 1 "$rounds"); do
# One draw of files for all the rounds, each round taking its own slice:
# no file is edited twice.
python3 - "$work/src" "$round" "$rounds" <<'PY'
import os, random, sys
root, round_, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) if ".syncreplica" not in d for f in fs)
n = len(paths) // 100
picked = random.Random(7).sample(paths, min(len(paths), n * rounds))
for p in picked[n * (round_ - 1):n * round_]:
    with open(p, "r+b") as f:
        data = f.read()
        at = len(data) // 2
        f.seek(at)
        f.write(b"EDITED!" if len(data) > 8 else b"E")
PY
# Edited more than 2 s before the scans, as a person's edits are: a file
# changed within the last 2 s is read again by the next scan (its time
# cannot tell a later change in the same tick), which would charge the
# next round's export for this round's edits.
sleep 2.1
rm -rf "$work/pk2" "$work/batch2" "$work/batch2.sh"
mkdir "$work/pk2"
settle; t0=$(now); "$bin/syncreplica" -export -out "$work/pk2" -replica "$work/src" beta >/dev/null; t1=$(now)
settle; t2=$(now); "$bin/syncreplica" -import -replica "$work/beta" "$work/pk2" >/dev/null; t3=$(now)
sr_bytes=$(du -cb "$work"/pk2/*.zip | tail -1 | cut -f1)
settle; t4=$(now); rsync -a --exclude=.syncreplica --only-write-batch="$work/batch2" "$work/src/" "$work/rs-dest/"; t5=$(now)
settle; t6=$(now); rsync -a --read-batch="$work/batch2" "$work/rs-dest/"; t7=$(now)
settle; t12=$(now); rsync -a --fsync --read-batch="$work/batch2" "$work/rs-dest-fsync/"; t13=$(now)
report "edit 1% of the files (round $round of $rounds)" "$sr_bytes" "$(elapsed "$t0" "$t1")" "$(elapsed "$t2" "$t3")" \
    "$(bytes_in "$work/batch2")" "$(elapsed "$t4" "$t5")" "$(elapsed "$t6" "$t7")"
for tree in beta rs-dest rs-dest-fsync; do
    diff -r --exclude=.syncreplica "$work/src" "$work/$tree" >/dev/null ||
        { echo "  $tree differs from the source after round $round" >&2; exit 1; }
done
echo "  trees equal: yes (syncreplica, rsync, rsync --fsync)"
printf '  %-12s %14s %12s %12s\n' "rsync --fsync" "" "" "$(elapsed "$t12" "$t13")"
printf '  %-12s %14s %12s %12s\n' "ratio" "" "" "$(ratio "$(elapsed "$t2" "$t3")" "$(elapsed "$t12" "$t13")")"
sr_sum=$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "%.2f", (b - a) + (d - c) }')
rs_sum=$(awk -v a="$t4" -v b="$t5" -v c="$t12" -v d="$t13" 'BEGIN { printf "%.2f", (b - a) + (d - c) }')
sum_ratios+=("$(ratio "$sr_sum" "$rs_sum")")
printf '  export + import: syncreplica %s s, rsync %s s (import with --fsync), ratio %s\n' \
    "$sr_sum" "$rs_sum" "${sum_ratios[-1]}"
done
printf '\nedit 1%%: export + import ratio per round: %s; median %s\n' "${sum_ratios[*]}" \
    "$(printf '%s\n' "${sum_ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
