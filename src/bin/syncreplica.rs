//! `syncreplica`: record and inspect a replica's changes.

use syncreplica::cli::{self, syncreplica::Args};
use syncreplica::export;
use syncreplica::replica::{self, Replica};
use syncreplica::scan::{self, ScanHooks};

const NAME: &str = "syncreplica";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(args))
}

fn export(replica: &mut Replica, args: &Args) -> anyhow::Result<()> {
    if args.ship || args.fship {
        anyhow::bail!(
            "-ship and -fship need storage bays and the shipping server, which this version does not have yet; \
             write the packets with -out DIR and carry them"
        );
    }
    if args.sclass.is_some() {
        anyhow::bail!("-sclass applies to -ship and -fship only");
    }
    if args.targets.is_empty() {
        anyhow::bail!("-export needs at least one TARGET (a sibling's name; lsreplica lists them)");
    }
    let max_size = cli::parse_size(&args.maxsize)?;
    let out = args.out.as_deref().expect("clap requires a destination");
    let lock = replica.lock("syncreplica -export")?;
    cli::print_lock_takeover(NAME, &lock);
    // Resolve targets before recording, so a typo changes nothing.
    export::resolve_targets(replica, &args.targets)?;
    let outcome = replica.scan(&mut ScanHooks::default())?;
    cli::print_warnings(NAME, &outcome.warnings);
    replica.record(&outcome)?;
    let request = export::ExportRequest {
        targets: &args.targets,
        out_dir: out,
        work_dir: args.workdir.as_deref(),
        max_size,
        comment: &args.comment,
    };
    for (target, result) in export::export_updates(replica, &request)? {
        match result {
            export::TargetExport::UpToDate => {
                println!(
                    "{} lacks nothing from this replica; no packet written.",
                    target.name
                )
            }
            export::TargetExport::Written(summary) => {
                println!(
                    "Exported to {} (packet sequence number {}): {} operation{}, {} file{} added or changed, {} deleted, {} chunk{} ({} bytes) shipped, {} reused from content {} has.",
                    target.name,
                    summary.sequence,
                    summary.operations,
                    plural(summary.operations),
                    summary.files_added_or_changed,
                    plural(summary.files_added_or_changed),
                    summary.deleted,
                    summary.chunks_sent,
                    plural(summary.chunks_sent),
                    summary.chunk_bytes_sent,
                    summary.chunks_reused,
                    target.name
                );
                for part in &summary.parts {
                    println!("  {} ({} bytes)", part.path.display(), part.size);
                }
            }
        }
    }
    Ok(())
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
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
    } else if args.export {
        export(&mut replica, &args)?;
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
