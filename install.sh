#!/bin/sh
# Installs syncreplica's commands, their man pages and their bash, zsh and
# fish completions.
#
#   ./install.sh [--prefix DIR] [--s3] [--binaries DIR]
#
#   --prefix DIR    install below DIR (default: /usr/local):
#                     DIR/bin                                 the ten commands
#                     DIR/share/man/man1, man5                their man pages
#                     DIR/share/bash-completion/completions   bash completions
#                     DIR/share/zsh/site-functions            zsh completions
#                     DIR/share/fish/vendor_completions.d     fish completions
#   --s3            build with storage bays on S3 (the cargo feature s3:
#                   about 130 more crates); not with --binaries
#   --binaries DIR  install the commands already built in DIR, instead of
#                   building them with `cargo build --release --locked`
#
# DESTDIR is honoured, for packagers: files go below $DESTDIR$PREFIX.
set -eu

prefix=/usr/local
binaries=
features=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
                  prefix=$2; shift 2 ;;
        --binaries) [ $# -ge 2 ] || { echo "install.sh: --binaries needs a directory" >&2; exit 2; }
                  binaries=$2; shift 2 ;;
        --s3) features="--features s3"; shift ;;
        -h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see ./install.sh --help)" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
commands="syncreplica mkreplica lsreplica lspacket lsepoch chepoch rmreplica chreplica mkorder shipping_server"

if [ -n "$binaries" ] && [ -n "$features" ]; then
    echo "install.sh: --s3 chooses how the commands are built; with --binaries nothing is built (build them with cargo build --release --features s3)" >&2
    exit 2
fi
if [ -z "$binaries" ]; then
    # $features is one word pair or empty: split on purpose.
    # shellcheck disable=SC2086
    (cd "$here" && cargo build --release --locked --bins $features)
    binaries=$here/target/release
fi
# Everything is checked before anything is copied: no half installation.
for command in $commands; do
    [ -x "$binaries/$command" ] || { echo "install.sh: $binaries/$command: not found or not executable" >&2; exit 1; }
    [ -f "$here/man/$command.1" ] || { echo "install.sh: $here/man/$command.1: not found" >&2; exit 1; }
done
[ -f "$here/man/syncreplica-shipping.5" ] || { echo "install.sh: $here/man/syncreplica-shipping.5: not found" >&2; exit 1; }

root=${DESTDIR:-}$prefix
for command in $commands; do
    install -D -m 755 "$binaries/$command" "$root/bin/$command"
    install -D -m 644 "$here/man/$command.1" "$root/share/man/man1/$command.1"
    install -D -m 644 "$here/completions/bash/$command" "$root/share/bash-completion/completions/$command"
    install -D -m 644 "$here/completions/zsh/_$command" "$root/share/zsh/site-functions/_$command"
    install -D -m 644 "$here/completions/fish/$command.fish" "$root/share/fish/vendor_completions.d/$command.fish"
done
install -D -m 644 "$here/man/syncreplica-shipping.5" "$root/share/man/man5/syncreplica-shipping.5"
echo "Installed $(echo $commands | wc -w) commands, their man pages and completions below $root."
case ":${PATH:-}:" in
    *":$prefix/bin:"*) ;;
    *) echo "Add $prefix/bin to PATH to run them." ;;
esac
