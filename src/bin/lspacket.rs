//! `lspacket`: list and check packets, named or waiting in the storage bays.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("lspacket", syncreplica::cli::lspacket::run)
}
