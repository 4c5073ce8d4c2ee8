//! `rmreplica`: remove a member from the family for good.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("rmreplica", syncreplica::cli::rmreplica::run)
}
