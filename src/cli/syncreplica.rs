use std::path::PathBuf;

use clap::Parser;

/// Record and inspect a replica's local changes.
///
/// syncreplica keeps directory-tree replicas of one family in step between
/// sites that are poorly connected or not connected at all. Local edits are
/// found by a scan, which compares the tree with the recorded state and
/// records each change as an operation in the replica's operation log,
/// numbered 1, 2, 3... per origin replica (its epochs).
#[derive(Debug, Parser)]
#[command(name = "syncreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
pub struct Args {
    /// List local changes not yet recorded, like `git status`, without
    /// recording them.
    #[arg(long, group = "mode")]
    pub status: bool,

    /// Scan the tree and record every local change in the operation log.
    #[arg(long, group = "mode")]
    pub record: bool,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,
}
