//! `mkorder`: submit packet files to the shipping system.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("mkorder", syncreplica::cli::mkorder::run)
}
