//! `chepoch`: change an estimate in the epoch table.

use syncreplica::cli::{self, chepoch::Args};
use syncreplica::replica::{self, Replica};
use syncreplica::sync::epochs;

const NAME: &str = "chepoch";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    let lock = replica.lock("chepoch")?;
    cli::print_lock_takeover(NAME, &lock);
    let (row, changes) = epochs::plan_change(&replica, &args.row, &args.settings)?;
    if !args.force {
        for change in &changes {
            println!("  {}: {} -> {}", change.origin.name, change.from, change.to);
        }
        if !cli::confirm(&format!("Change epochs in row \"{}\"?", row.name))? {
            anyhow::bail!(
                "not confirmed; row \"{}\" is unchanged (use -force to skip the question)",
                row.name
            );
        }
    }
    epochs::apply_change(&mut replica, &row, &changes)?;
    for change in &changes {
        println!(
            "Entry for {} in row \"{}\" changed from: {} to {}",
            change.origin.name, row.name, change.from, change.to
        );
    }
    Ok(())
}
