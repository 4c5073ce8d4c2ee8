//! `lsreplica`: list the family's members.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("lsreplica", syncreplica::cli::lsreplica::run)
}
