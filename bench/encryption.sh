#!/usr/bin/env bash
# Benchmark (issue 15): export and import time of one tree with and without
# encryption, in the same run. Replica A holds the tree (the generator of
# bench/sync_vs_rsync.sh: FILES files, about TOTAL_MIB MiB, a quarter
# incompressible); B and C are empty members made from A before the tree
# was there. A exports the tree to B encrypted and to C with -noencrypt;
# B and C import. Prints the four times and the ratios (target: encryption
# adds at most 10 %).
#
# Usage: [BENCH_BIN=DIR] bench/encryption.sh [FILES] [TOTAL_MIB]
set -euo pipefail
files=${1:-20000}
total_mib=${2:-500}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BENCH_BIN:-}" ]; then
    bin=$BENCH_BIN
else
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin syncreplica --bin mkreplica
    bin="$here/target/release"
fi
# Three copies of the tree and two packets: put them where there is room
# (BENCH_DIR, default the system's temporary folder).
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-encryption.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

mkdir -p "$work/A" "$work/pk-b" "$work/pk-c" "$work/mk"
(cd "$work/A" && "$bin/mkreplica" -init -family bench A >/dev/null)
for m in B C; do
    mkdir -p "$work/mk/$m"
    # The keys by a file of their own, so no passphrase is asked.
    (cd "$work/A" && "$bin/mkreplica" -export -out "$work/mk/$m" -keyout "$work/mk/$m.key" "$m" >/dev/null)
    "$bin/mkreplica" -import -replica "$work/$m" -key "$work/mk/$m.key" "$work/mk/$m" >/dev/null
    # Each announces its encryption key to A.
    mkdir -p "$work/hello-$m"
    (cd "$work/$m" && "$bin/syncreplica" -export -out "$work/hello-$m" A >/dev/null)
    (cd "$work/A" && "$bin/syncreplica" -import "$work/hello-$m" >/dev/null)
done

echo "making $files files, about $total_mib MiB, in $work/A ..."
python3 - "$work/A/tree" "$files" "$total_mib" <<'PY'
import os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
avg = total // n
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:02d}", f"e{(i // 50) % 20:02d}")
    os.makedirs(d, exist_ok=True)
    size = max(1, int(rng.expovariate(1 / avg)))
    if i % 4 == 0:
        data = rng.randbytes(size)
    else:
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words) + b" "
        data = bytes(out[:size])
    with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
        f.write(data)
PY
(cd "$work/A" && "$bin/syncreplica" -record >/dev/null)

t0=$(now); (cd "$work/A" && "$bin/syncreplica" -export -out "$work/pk-b" B | grep -c "Encrypted for: B" >/dev/null); t1=$(now)
(cd "$work/A" && "$bin/syncreplica" -export -noencrypt -out "$work/pk-c" C >/dev/null); t2=$(now)
(cd "$work/B" && "$bin/syncreplica" -import "$work/pk-b" >/dev/null); t3=$(now)
(cd "$work/C" && "$bin/syncreplica" -import "$work/pk-c" >/dev/null); t4=$(now)
enc_export=$(elapsed "$t0" "$t1"); plain_export=$(elapsed "$t1" "$t2")
enc_import=$(elapsed "$t2" "$t3"); plain_import=$(elapsed "$t3" "$t4")
echo "packet bytes: encrypted $(du -sb "$work/pk-b" | cut -f1), plain $(du -sb "$work/pk-c" | cut -f1)"
echo "export: encrypted ${enc_export}s, plain ${plain_export}s, ratio $(ratio "$enc_export" "$plain_export")"
echo "import: encrypted ${enc_import}s, plain ${plain_import}s, ratio $(ratio "$enc_import" "$plain_import")"
