#!/usr/bin/env bash
# Adoption benchmark (issue 14, "Adopting an existing tree"): a migrated
# server already holds a copy of its source's tree of FILES files (default
# 20000) that differs in 1 % of them (half edited there, half missing).
# Reports the bytes shipped to make it a member (the manifest, the new
# member's first packet with its content requests, the creator's answer)
# next to the tree's size, the size of the differing files, and the batch
# `rsync -aHAX --only-write-batch` writes for the same difference. Checks
# with rsync that the trees are the same afterwards.
#
# Usage: [FILES=20000] bench/adopt.sh
#   SYNCREPLICA_BIN=DIR   use the programs in DIR (default: a release
#                         build of the workspace; PROFILE=debug uses
#                         target/debug as it is)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
files=${FILES:-20000}
if [ -n "${SYNCREPLICA_BIN:-}" ]; then
    bin=$SYNCREPLICA_BIN
elif [ "${PROFILE:-release}" = debug ]; then
    bin="$here/target/debug"
else
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bins
    bin="$here/target/release"
fi
command -v rsync >/dev/null || { echo "adopt.sh: rsync is needed" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now_ms() { date +%s%3N; }
bytes_in() { du -sb --apparent-size "$@" | awk '{s += $1} END {print s}'; }

# The source: FILES files of 1 to 16 KiB of text-like content in 100
# folders, deterministic.
python3 - "$work/src" "$files" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(14)
words = [("w%d" % i).encode() for i in range(5000)]
for i in range(n):
    d = os.path.join(root, "d%02d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    size = rng.randint(1024, 16384)
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(out[:size])
EOF
(cd "$work/src" && "$bin/mkreplica" -init -family bench source >/dev/null)

# The migrated copy: 1 % of the files differ, half edited (a line
# changed in the middle), half missing.
cp -a "$work/src" "$work/dst"
rm -rf "$work/dst/.syncreplica"
differing=$((files / 100))
python3 - "$work/dst" "$files" "$differing" >"$work/differing" <<'EOF'
import os, random, sys
root, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1414)
for j, i in enumerate(sorted(rng.sample(range(n), k))):
    rel = os.path.join("d%02d" % (i % 100), "f%05d" % i)
    path = os.path.join(root, rel)
    if j % 2:
        os.remove(path)
    else:
        data = bytearray(open(path, "rb").read())
        mid = len(data) // 2
        data[mid:mid + 40] = b"edited on the migrated server, not at source"[:40]
        open(path, "wb").write(data)
    print(rel)
EOF
tree_bytes=$(cd "$work/src" && find . -path ./.syncreplica -prune -o -type f -print0 | du -cb --apparent-size --files0-from=- | tail -1 | cut -f1)
diff_bytes=$(cd "$work/src" && tr '\n' '\0' <"$work/differing" | du -cb --apparent-size --files0-from=- | tail -1 | cut -f1)

# rsync's answer to the same difference (before the adoption changes dst).
rsync -aHAX --exclude=/.syncreplica --only-write-batch="$work/rsync.batch" "$work/src/" "$work/dst/" >/dev/null
rsync_bytes=$(bytes_in "$work/rsync.batch")

mkdir "$work/manifest" "$work/to-source" "$work/to-dst"
start=$(now_ms)
(cd "$work/src" && "$bin/mkreplica" -export -manifest -out "$work/manifest" -keyout "$work/migrated.key" migrated >/dev/null)
"$bin/mkreplica" -import -adopt -replica "$work/dst" -key "$work/migrated.key" "$work/manifest" >"$work/adopt.out"
adopt_ms=$(($(now_ms) - start))
(cd "$work/dst" && "$bin/syncreplica" -export -out "$work/to-source" source >/dev/null)
(cd "$work/src" && "$bin/syncreplica" -import "$work/to-source" >/dev/null)
(cd "$work/src" && "$bin/syncreplica" -export -out "$work/to-dst" migrated >/dev/null)
(cd "$work/dst" && "$bin/syncreplica" -import "$work/to-dst" >/dev/null)
total_ms=$(($(now_ms) - start))
manifest_bytes=$(bytes_in "$work"/manifest/repl_*)
request_bytes=$(bytes_in "$work"/to-source/*)
answer_bytes=$(bytes_in "$work"/to-dst/*)
shipped=$((manifest_bytes + request_bytes + answer_bytes))

left=$(rsync -rlptc --omit-dir-times --omit-link-times --dry-run --itemize-changes --delete \
    --exclude=/.syncreplica "$work/src/" "$work/dst/" | wc -l)

echo "adopting a tree of $files files that differs in $differing of them (1 %):"
printf '  %-44s %12s\n' "tree size (file content)" "$tree_bytes"
printf '  %-44s %12s\n' "differing files' size at the source" "$diff_bytes"
printf '  %-44s %12s\n' "manifest (mkreplica -export -manifest)" "$manifest_bytes"
printf '  %-44s %12s\n' "new member's first packet (content requests)" "$request_bytes"
printf '  %-44s %12s\n' "creator's answer (the differing files)" "$answer_bytes"
printf '  %-44s %12s\n' "syncreplica total shipped" "$shipped"
printf '  %-44s %12s\n' "rsync -aHAX --only-write-batch" "$rsync_bytes"
printf '  %-44s %12s\n' "adopt wall time (export+adopt, ms)" "$adopt_ms"
printf '  %-44s %12s\n' "round trip wall time (ms)" "$total_ms"
grep -E "kept as they were|Asked" "$work/adopt.out" | sed 's/^/  /'
if [ "$left" -ne 0 ]; then
    echo "adopt.sh: the trees still differ in $left paths" >&2
    exit 1
fi
echo "  trees the same afterwards (rsync -rlptc --dry-run --delete prints nothing)"
