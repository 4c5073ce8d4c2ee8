use std::path::PathBuf;

use clap::Parser;

/// Print a replica's epoch table.
///
/// Each row belongs to one member of the family and holds, for every origin
/// replica, the highest epoch of that origin's operations the member has.
/// This replica's own row is exact; the rows of its siblings are its
/// estimates, raised by exports and imports and repairable with chepoch.
#[derive(Debug, Parser)]
#[command(name = "lsepoch", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// Rows to print, by member name or replica id (default: all).
    #[arg(value_name = "REPLICA")]
    pub rows: Vec<String>,
}

use crate::replica::{self, Replica};

pub fn run(args: Args) -> anyhow::Result<()> {
    let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    out!(
        "{}",
        crate::cli::render::lsepoch::render_rows(&replica, &args.rows)?
    );
    Ok(())
}
