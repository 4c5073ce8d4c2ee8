//! `chepoch`: change an estimate in the epoch table.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("chepoch", syncreplica::cli::chepoch::run)
}
