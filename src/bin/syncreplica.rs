//! `syncreplica`: record and inspect a replica's changes.

use syncreplica::cli::{self, syncreplica::Args};
use syncreplica::replica::{self, Replica};
use syncreplica::scan::{self, ScanHooks};
use syncreplica::{apply, export, import};

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
    export::check_max_size(max_size)?;
    let out = args.out.as_deref().expect("clap requires a destination");
    let lock = replica.lock("syncreplica -export")?;
    cli::print_lock_takeover(NAME, &lock);
    // Resolve targets before recording, so a typo changes nothing.
    export::resolve_targets(replica, &args.targets)?;
    let (outcome, _) = replica.record_local_changes()?;
    cli::print_warnings(NAME, &outcome.warnings);
    let progress = cli::progress_bar();
    let request = export::ExportRequest {
        targets: &args.targets,
        out_dir: out,
        work_dir: args.workdir.as_deref(),
        max_size,
        comment: &args.comment,
        progress: &progress,
        full_content: args.fullcontent,
    };
    let results = export::export_updates(replica, &request)?;
    progress.finish_and_clear();
    for (target, result) in results {
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

fn import(replica: &mut Replica, args: &Args) -> anyhow::Result<()> {
    if args.receive || args.sclass.is_some() {
        anyhow::bail!(
            "-receive and -sclass need storage bays and the shipping server, which this version does not have yet; \
             name the packets or their directory instead"
        );
    }
    if args.targets.is_empty() {
        anyhow::bail!("-import needs packet files or directories holding them");
    }
    let lock = replica.lock("syncreplica -import")?;
    cli::print_lock_takeover(NAME, &lock);
    let request = import::ImportRequest {
        sources: args.targets.iter().map(std::path::PathBuf::from).collect(),
        remove: args.remove,
        progress: cli::progress_bar(),
    };
    let outcomes = import::import(replica, &request)?;
    request.progress.finish_and_clear();
    let mut total = apply::ApplyReport::default();
    let mut problems = 0;
    let mut applied = 0;
    for outcome in &outcomes {
        match outcome {
            import::PacketOutcome::Applied {
                files,
                sender,
                report,
            } => {
                applied += 1;
                println!(
                    "Applied packet from {sender}: {} ({} added, {} changed, {} deleted, {} conflict{})",
                    display_files(files),
                    report.added,
                    report.changed,
                    report.deleted,
                    report.conflicts.len(),
                    plural(report.conflicts.len() as u64)
                );
                for note in &report.conflicts {
                    println!("  conflict: {note}");
                }
                total.added += report.added;
                total.changed += report.changed;
                total.deleted += report.deleted;
                total.bytes_written += report.bytes_written;
                total.conflicts.extend(report.conflicts.iter().cloned());
            }
            import::PacketOutcome::AlreadyApplied { files } => {
                println!("Already applied: {}", display_files(files))
            }
            import::PacketOutcome::Waiting { files, why } => {
                println!("Packet {} {why}", display_files(files))
            }
            import::PacketOutcome::LeftAlone { files, why } => {
                println!("Left alone: {} is {why}", display_files(files))
            }
            import::PacketOutcome::Refused { files, why } => {
                problems += 1;
                eprintln!("{NAME}: error: refused {}: {why}", display_files(files));
            }
        }
    }
    println!(
        "Import summary: {applied} packet{} applied; {} added, {} changed, {} deleted, {} in conflict; {} bytes written.",
        plural(applied),
        total.added,
        total.changed,
        total.deleted,
        total.conflicts.len(),
        total.bytes_written
    );
    if problems > 0 {
        anyhow::bail!(
            "{problems} packet{} refused; the replica is unchanged by them",
            plural(problems)
        );
    }
    Ok(())
}

fn display_files(files: &[std::path::PathBuf]) -> String {
    match files {
        [one] => one.display().to_string(),
        [first, ..] => format!("{} (+{} more parts)", first.display(), files.len() - 1),
        [] => String::new(),
    }
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
        if apply::is_pending(&replica)? {
            eprintln!(
                "{NAME}: warning: an import was interrupted and is not finished; \
                 run syncreplica -record or -import to finish it before reading this list"
            );
        }
        let outcome = replica.scan(&mut ScanHooks::default())?;
        cli::print_warnings(NAME, &outcome.warnings);
        print!(
            "{}",
            scan::render_status(&replica.identity.replica_name, &root, &outcome)
        );
    } else if args.export {
        export(&mut replica, &args)?;
    } else if args.import {
        import(&mut replica, &args)?;
    } else if args.record {
        let lock = replica.lock("syncreplica -record")?;
        cli::print_lock_takeover(NAME, &lock);
        let (outcome, summary) = replica.record_local_changes()?;
        cli::print_warnings(NAME, &outcome.warnings);
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
