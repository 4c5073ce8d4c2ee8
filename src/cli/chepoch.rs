use std::path::PathBuf;

use clap::Parser;

/// Change this replica's estimate of what a sibling has.
///
/// Sets entries of REPLICA's row in the epoch table: for each ORIGIN=EPOCH,
/// the estimate that REPLICA has ORIGIN's operations up to EPOCH. Lowering an
/// estimate makes the next export resend what a lost packet carried. The
/// local replica's own row is exact and cannot be changed. Asks for
/// confirmation unless -force is given.
///
/// Lost packets mostly repair themselves: each sibling's packets confirm
/// what it has, and an export resends what stays unconfirmed for
/// resend_after (config.toml), or at once with syncreplica -export
/// -resend. chepoch is still needed when that cannot help: a sibling
/// that never sends packets back (a one-way link) and lost one, where
/// -resend would resend everything it never confirmed; a sibling
/// restored from an old backup, whose confirmed row is now too high; a
/// sibling's resend_after set to never; or to stop resending to a
/// sibling known to have the changes by another route (raise its row).
#[derive(Debug, Parser)]
#[command(name = "chepoch", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// Change without asking for confirmation.
    #[arg(long)]
    pub force: bool,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// The sibling whose row to change, by name or replica id.
    #[arg(value_name = "REPLICA")]
    pub row: String,

    /// New estimates, as ORIGIN=EPOCH with ORIGIN a member's name or id.
    #[arg(value_name = "ORIGIN=EPOCH", required = true, value_parser = super::epoch_setting_arg)]
    pub settings: Vec<String>,
}

use crate::cli;
use crate::error::printable;
use crate::replica::{self, Replica};
use crate::sync::epochs;

const NAME: &str = "chepoch";

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Checked, and confirmed, on the replica opened for reading: a refused
    // or unconfirmed change touches nothing (not even the lock file), and
    // no lock is held while the question waits for an answer.
    let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    let (row, changes) = epochs::plan_change(&replica, &args.row, &args.settings)?;
    if !args.force {
        cli::require_terminal_to_confirm(format!("changing row \"{}\"", printable(&row.name)))?;
        for change in &changes {
            outln!(
                "  {}: {} -> {}",
                printable(&change.origin.name),
                change.from,
                change.to
            );
        }
        if !cli::confirm(&format!(
            "Change epochs in row \"{}\"?",
            printable(&row.name)
        ))? {
            anyhow::bail!(
                "not confirmed; row \"{}\" is unchanged (use -force to skip the question)",
                row.name
            );
        }
    }
    let mut replica = replica.lock("chepoch")?;
    cli::print_lock_takeover(NAME, &replica);
    // Planned again under the lock: an import or export may have moved
    // the row since the question was asked.
    let (row, locked_changes) = epochs::plan_change(&replica, &args.row, &args.settings)?;
    if !args.force && locked_changes != changes {
        anyhow::bail!(
            "row \"{}\" changed while the question waited (an import or export ran); it is unchanged: run chepoch again",
            row.name
        );
    }
    epochs::apply_change(&mut replica, &row, &locked_changes)?;
    for change in &locked_changes {
        outln!(
            "Entry for {} in row \"{}\" changed from: {} to {}",
            printable(&change.origin.name),
            printable(&row.name),
            change.from,
            change.to
        );
    }
    Ok(())
}
