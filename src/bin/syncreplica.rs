//! `syncreplica`: record and inspect a replica's changes.

// mimalloc: a scan, a plan and a digest make and free a map of every
// recorded entry and many small paths; with glibc's allocator that was a
// tenth of a 1 % edit's export and import (bench/sync_vs_rsync.sh: import
// 0.50 s -> 0.46 s, plan 62 -> 40 ms on 20,000 files).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("syncreplica", syncreplica::cli::syncreplica::run)
}
