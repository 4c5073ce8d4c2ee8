//! `chreplica`: make this replica a mirror, or an ordinary member again.

fn main() -> std::process::ExitCode {
    syncreplica::cli::main("chreplica", syncreplica::cli::chreplica::run)
}
