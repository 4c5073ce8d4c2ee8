//! `syncreplica`: record and inspect a replica's changes.

use syncreplica::cli::{self, syncreplica::Args};
use syncreplica::replica::{self, Replica};
use syncreplica::scan::{self, ScanHooks};

const NAME: &str = "syncreplica";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let root = replica::discover(args.replica.as_deref())?;
    let mut replica = Replica::open(&root)?;
    if args.status {
        let outcome = replica.scan(&mut ScanHooks::default())?;
        cli::print_warnings(NAME, &outcome.warnings);
        print!(
            "{}",
            scan::render_status(&replica.identity.replica_name, &root, &outcome)
        );
    } else if args.record {
        let lock = replica.lock("syncreplica -record")?;
        cli::print_lock_takeover(NAME, &lock);
        let outcome = replica.scan(&mut ScanHooks::default())?;
        cli::print_warnings(NAME, &outcome.warnings);
        let summary = replica.record(&outcome)?;
        match summary.epochs {
            Some((first, last)) => println!(
                "Recorded {} change{} in replica \"{}\" as epochs {first}-{last}.",
                outcome.changes.len(),
                if outcome.changes.len() == 1 { "" } else { "s" },
                replica.identity.replica_name
            ),
            None => println!(
                "Nothing to record in replica \"{}\"; the tree matches the recorded state.",
                replica.identity.replica_name
            ),
        }
        if summary.forgotten > 0 {
            println!(
                "Forgot {} path(s) that are now excluded; they stay local and are not deleted elsewhere.",
                summary.forgotten
            );
        }
    }
    Ok(())
}
