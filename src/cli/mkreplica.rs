use std::path::PathBuf;

use clap::Parser;

/// Create a replica family or a new member of one.
///
/// `mkreplica -init -family FAMILY NAME` creates a new family whose first
/// replica, NAME, is rooted at DIR (default: the current directory). Files
/// already in DIR become the replica's initial content and are recorded as
/// its first operations. The replica's state lives in DIR/.syncreplica/:
/// its identity, its ed25519 signing key (mode 0600), the family's members
/// and the state database.
#[derive(Debug, Parser)]
#[command(name = "mkreplica", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// Create a new replica family with NAME as its first member.
    #[arg(long, required = true)]
    pub init: bool,

    /// Name of the new family.
    #[arg(long, value_name = "FAMILY", requires = "init")]
    pub family: String,

    /// Root of the new replica (default: the current directory). It must not
    /// be inside another replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// Name of the new replica: letters, digits, '_', '-' and '.'.
    #[arg(value_name = "NAME")]
    pub name: String,
}
