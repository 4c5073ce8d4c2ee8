//! `syncreplica`: record and inspect a replica's changes.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("syncreplica", syncreplica::cli::syncreplica::run)
}
