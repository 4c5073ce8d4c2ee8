//! `lsepoch`: print the epoch table.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("lsepoch", syncreplica::cli::lsepoch::run)
}
