//! `syncreplica`: record and inspect a replica's changes.

use syncreplica::cli::{self, syncreplica::Args};
use syncreplica::replica::{self, Replica};
use syncreplica::ship;
use syncreplica::sync::{apply, export, import};
use syncreplica::tree::scan::{self, ScanHooks};

const NAME: &str = "syncreplica";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(args))
}

fn export(replica: &mut Replica, args: &Args) -> anyhow::Result<()> {
    let shipping_by_bay = args.ship || args.fship;
    if !shipping_by_bay && (args.sclass.is_some() || args.bays.pexpire.is_some()) {
        anyhow::bail!("-sclass and -pexpire apply to -ship and -fship only, not to -out");
    }
    if args.targets.is_empty() {
        anyhow::bail!("-export needs at least one TARGET (a sibling's name; lsreplica lists them)");
    }
    let max_size = cli::parse_size(&args.maxsize)?;
    export::check_max_size(max_size)?;
    // Everything about shipping is checked before anything is recorded.
    let shipping = if shipping_by_bay {
        let shipping = ship::Shipping::load(args.bays.shipconf.as_deref())?;
        let class = shipping.class_name(args.sclass.as_deref())?;
        let expires = match &args.bays.pexpire {
            Some(text) => Some(ship::parse_expiry(text, chrono::Utc::now())?),
            None => None,
        };
        let outgoing = shipping.outgoing(&class)?.dir().to_path_buf();
        Some((shipping, class, expires, outgoing))
    } else {
        None
    };
    let out = match &shipping {
        Some((_, _, _, outgoing)) => outgoing.as_path(),
        None => args.out.as_deref().expect("clap requires a destination"),
    };
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
    let mut shipped: Vec<(String, Vec<String>)> = Vec::new();
    for (target, result) in &results {
        if let export::TargetExport::Written(summary) = result {
            for part in &summary.parts {
                shipped.push((part.file_name.clone(), vec![target.name.clone()]));
            }
        }
    }
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
    // The replica is not needed for shipping: other commands need not wait
    // for a slow link.
    drop(lock);
    if let Some((shipping, class, expires, _)) = &shipping {
        let orders = shipping
            .order_packets(class, &shipped, *expires, chrono::Utc::now())
            .map_err(|err| {
                anyhow::anyhow!(
                    "the packets were written to {} but not queued: {err}; queue them with mkorder -data PACKET",
                    out.display()
                )
            })?;
        if let Some(first) = orders.first() {
            println!(
                "Queued {} packet file{} for shipping in storage class {class} (expires {}).",
                orders.len(),
                plural(orders.len() as u64),
                shipping::order::format_time(&first.expires)
            );
        }
        if args.fship && !orders.is_empty() {
            let names: Vec<String> = orders.iter().map(|o| o.packet.clone()).collect();
            let report = shipping.forward_now(class, &names, &|line| println!("  {line}"))?;
            if !report.is_clean() {
                eprintln!(
                    "{NAME}: warning: {}; the packets stay queued and shipping_server -poll retries them",
                    report.summary()
                );
            }
        } else if !orders.is_empty() {
            println!("shipping_server -poll delivers them.");
        }
    }
    Ok(())
}

fn import(replica: &mut Replica, args: &Args) -> anyhow::Result<()> {
    if !args.receive && args.sclass.is_some() {
        anyhow::bail!("-sclass applies to -import -receive only");
    }
    if args.bays.pexpire.is_some() {
        anyhow::bail!("-pexpire applies to -export -ship and -fship only");
    }
    let sources: Vec<std::path::PathBuf> = if args.receive {
        let shipping = ship::Shipping::load(args.bays.shipconf.as_deref())?;
        let classes = shipping.classes(args.sclass.as_deref())?;
        let files = shipping.incoming_packets(&classes)?;
        if files.is_empty() {
            println!(
                "No packets in the incoming bay{} ({}).",
                plural(classes.len() as u64),
                shipping.source
            );
            return Ok(());
        }
        files
    } else {
        if args.targets.is_empty() {
            anyhow::bail!(
                "-import needs packet files or directories holding them, or -receive for the incoming bays"
            );
        }
        args.targets.iter().map(std::path::PathBuf::from).collect()
    };
    let lock = replica.lock("syncreplica -import")?;
    cli::print_lock_takeover(NAME, &lock);
    let request = import::ImportRequest {
        sources,
        remove: args.remove || args.receive,
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
