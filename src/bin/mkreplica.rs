//! `mkreplica`: create a replica family or a new member of one.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("mkreplica", syncreplica::cli::mkreplica::run)
}
