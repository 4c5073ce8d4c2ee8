#!/usr/bin/env bash
# Benchmark: a VM disk image, syncreplica packets against rsync batch mode
# (--only-write-batch / --read-batch) on the same data, in the same run.
#
# The image: SIZE_MIB (default 2048) in 1 MiB regions, 30 % holes, 40 %
# text-like, 30 % random, in a seeded random order.
#
#   1. creating a replica holding the image (mkreplica -export / -import
#      against rsync --sparse to an empty directory);
#   2. rewriting 1 % of the image's 4 KiB blocks with random data at random
#      places (syncreplica -export / -import against rsync batch from the
#      old image, read with and without --fsync).
#
# Prints packet bytes, wall time and peak RSS (/usr/bin/time -v) of each
# step, the space the image allocates at each receiver against the
# sender's, and the ratios syncreplica / rsync (below 1 is better for
# syncreplica).
#
# Usage: [BENCH_BIN=DIR] bench/vm_image.sh [SIZE_MIB]
set -euo pipefail
size_mib=${1:-2048}
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
mkdir "$work/src"

echo "making a $size_mib MiB disk image in $work/src ..."
python3 - "$work/src/disk.img" "$size_mib" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
text = bytearray()
while len(text) < 8 << 20:
    text += rng.choice(words) + b" "
text = bytes(text)
kinds = ["hole"] * 30 + ["text"] * 40 + ["random"] * 30
with open(path, "wb") as f:
    for region in range(mib):
        kind = rng.choice(kinds)
        if kind == "hole":
            continue
        f.seek(region << 20)
        if kind == "text":
            at = rng.randrange(0, len(text) - (1 << 20))
            f.write(text[at:at + (1 << 20)])
        else:
            f.write(rng.randbytes(1 << 20))
    f.truncate(mib << 20)
PY

# Helpers: `timed NAME cmd...` runs cmd under /usr/bin/time -v, keeping
# its wall time and peak RSS in $work/NAME.time. Each starts on a settled
# disk (`sync` first): otherwise what the step before left unflushed is
# written back during the next one, and its fsyncs wait for it.
timed() {
    local name=$1
    shift
    sync
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>&1 \
        || { cat "$work/$name.out" "$work/$name.time" >&2; exit 1; }
}
secs() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$work/$1.time"; }
rss_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$work/$1.time"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
allocated() { du -B1 -s "$1" | cut -f1; }
apparent() { du -sb "$1" | cut -f1; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }

row() { # label bytes export_step import_step
    printf '  %-22s %14s %10s %10s %10s %10s\n' "$1" "$2" "$(secs "$3")" "$(rss_mib "$3")" "$(secs "$4")" "$(rss_mib "$4")"
}
header() {
    printf '\n%s\n' "$1"
    printf '  %-22s %14s %10s %10s %10s %10s\n' "" "bytes" "export s" "exp MiB" "import s" "imp MiB"
}

echo "image: $(mib "$(apparent "$work/src/disk.img")") MiB long, $(mib "$(allocated "$work/src/disk.img")") MiB allocated"
sleep 2.1
"$bin/mkreplica" -init -family bench -replica "$work/src" alpha >/dev/null

# 1. Replica creation.
mkdir "$work/pk1"
timed sr_cexp "$bin/mkreplica" -export -out "$work/pk1" -keyout "$work/beta.key" -replica "$work/src" beta
timed sr_cimp "$bin/mkreplica" -import -replica "$work/beta" -key "$work/beta.key" "$work/pk1"
sr_bytes=$(du -cb "$work"/pk1/*.zip | tail -1 | cut -f1)
mkdir "$work/rs-empty" "$work/rs-dest"
timed rs_cexp rsync -a --sparse --exclude=.syncreplica --only-write-batch="$work/batch1" "$work/src/" "$work/rs-empty/"
timed rs_cimp rsync -a --sparse --read-batch="$work/batch1" "$work/rs-dest/"
rs_bytes=$(apparent "$work/batch1")
header "create a replica holding the image"
row syncreplica "$sr_bytes" sr_cexp sr_cimp
row rsync-batch "$rs_bytes" rs_cexp rs_cimp
printf '  %-22s %14s %10s %10s %10s %10s\n' ratio "$(ratio "$sr_bytes" "$rs_bytes")" \
    "$(ratio "$(secs sr_cexp)" "$(secs rs_cexp)")" "" "$(ratio "$(secs sr_cimp)" "$(secs rs_cimp)")" ""
cmp "$work/src/disk.img" "$work/beta/disk.img" && echo "  images equal: yes"
echo "  allocated: sender $(mib "$(allocated "$work/src/disk.img")") MiB," \
    "syncreplica receiver $(mib "$(allocated "$work/beta/disk.img")") MiB," \
    "rsync receiver $(mib "$(allocated "$work/rs-dest/disk.img")") MiB"
db=$(apparent "$work/src/.syncreplica/state.db")
echo "  recorded state (state.db) at the sender: $db bytes," \
    "$(awk -v d="$db" -v m="$size_mib" 'BEGIN { printf "%.0f", d / (m / 1024) }') bytes per GiB of image"
# The receiver's first scan reads the image once (written within the
# racy window); a one-time cost, outside the update's figures.
sleep 2.1
"$bin/syncreplica" -record -replica "$work/beta" >/dev/null
cp --sparse=always -a "$work/rs-dest" "$work/rs-dest-fsync"

# 2. Rewrite 1 % of the 4 KiB blocks with random data at random places.
python3 - "$work/src/disk.img" <<'PY' >"$work/rewritten"
import os, random, sys
path = sys.argv[1]
blocks = os.path.getsize(path) // 4096
rng = random.Random(7)
picked = rng.sample(range(blocks), blocks // 100)
with open(path, "r+b") as f:
    for block in picked:
        f.seek(block * 4096)
        f.write(rng.randbytes(4096))
print(len(picked) * 4096)
PY
rewritten=$(cat "$work/rewritten")
mkdir "$work/pk2"
timed sr_uexp "$bin/syncreplica" -export -out "$work/pk2" -replica "$work/src" beta
timed sr_uimp "$bin/syncreplica" -import -replica "$work/beta" "$work/pk2"
sr_bytes=$(du -cb "$work"/pk2/*.zip | tail -1 | cut -f1)
timed rs_uexp rsync -a --sparse --exclude=.syncreplica --only-write-batch="$work/batch2" "$work/src/" "$work/rs-dest/"
timed rs_uimp rsync -a --sparse --read-batch="$work/batch2" "$work/rs-dest/"
timed rs_uimpf rsync -a --sparse --fsync --read-batch="$work/batch2" "$work/rs-dest-fsync/"
rs_bytes=$(apparent "$work/batch2")
header "rewrite 1 % of the 4 KiB blocks ($rewritten bytes)"
row syncreplica "$sr_bytes" sr_uexp sr_uimp
row rsync-batch "$rs_bytes" rs_uexp rs_uimp
row "rsync-batch --fsync" "$rs_bytes" rs_uexp rs_uimpf
printf '  %-22s %14s %10s %10s %10s %10s\n' "ratio (rsync)" "$(ratio "$sr_bytes" "$rs_bytes")" \
    "$(ratio "$(secs sr_uexp)" "$(secs rs_uexp)")" "" "$(ratio "$(secs sr_uimp)" "$(secs rs_uimp)")" ""
printf '  %-22s %14s %10s %10s %10s %10s\n' "ratio (--fsync)" "" "" "" "$(ratio "$(secs sr_uimp)" "$(secs rs_uimpf)")" ""
echo "  packet / bytes rewritten: $(ratio "$sr_bytes" "$rewritten")"
cmp "$work/src/disk.img" "$work/beta/disk.img" && echo "  images equal: yes"
cmp "$work/src/disk.img" "$work/rs-dest/disk.img" && echo "  rsync images equal: yes"
echo "  allocated: sender $(mib "$(allocated "$work/src/disk.img")") MiB," \
    "syncreplica receiver $(mib "$(allocated "$work/beta/disk.img")") MiB," \
    "rsync receiver $(mib "$(allocated "$work/rs-dest/disk.img")") MiB"
