//! `mkreplica`: create a replica family.

use syncreplica::cli::{self, mkreplica::Args};
use syncreplica::replica;

const NAME: &str = "mkreplica";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let dir = match &args.replica {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let report = replica::init(&dir, &args.family, &args.name)?;
    cli::print_warnings(NAME, &report.scan.warnings);
    let replica = &report.replica;
    println!(
        "Created replica \"{}\" of new family \"{}\" at {}.",
        replica.identity.replica_name,
        replica.identity.family_name,
        replica.root.display()
    );
    println!("  family id:       {}", replica.identity.family_id);
    println!("  replica id:      {}", replica.identity.replica_id);
    println!("  key fingerprint: {}", report.fingerprint);
    match report.record.epochs {
        Some((first, last)) => println!(
            "Recorded the initial content ({} entries) as epochs {first}-{last}.",
            report.scan.changes.len()
        ),
        None => println!("The directory was empty; nothing recorded yet."),
    }
    Ok(())
}
