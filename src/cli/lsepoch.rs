use std::path::PathBuf;

use clap::Parser;

/// Print a replica's epoch table.
///
/// Each row belongs to one member of the family and holds, for every origin
/// replica, the highest epoch of that origin's operations the member has.
/// This replica's own row is exact; the rows of its siblings are its
/// estimates, raised by exports and imports and repairable with chepoch.
/// Beside each estimate, what that sibling confirmed having (the epoch row
/// its newest packet carried) and when it was last confirmed: an export resends what stays
/// unconfirmed for resend_after (see syncreplica).
#[derive(Debug, Parser)]
#[command(name = "lsepoch", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// Output format: text (MultiSite's listing) or json (for scripts; a
    /// "version" field gives the shape's version).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub fmt: super::Format,

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
    if args.fmt == super::Format::Json {
        let listing = crate::cli::render::lsepoch::table(&replica, &args.rows)?;
        outln!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    out!(
        "{}",
        crate::cli::render::lsepoch::render_rows(&replica, &args.rows)?
    );
    Ok(())
}
