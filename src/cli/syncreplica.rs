use std::path::PathBuf;

use clap::Parser;

/// Record, export and inspect a replica's changes.
///
/// syncreplica keeps directory-tree replicas of one family in step between
/// sites that are poorly connected or not connected at all. Local edits are
/// found by a scan, which compares the tree with the recorded state and
/// records each change as an operation in the replica's operation log,
/// numbered 1, 2, 3... per origin replica (its epochs).
///
/// -export scans first, then writes, for each TARGET, the operations that
/// target lacks according to this replica's epoch table (third replicas'
/// operations included, so a hub forwards them) into signed packets of at
/// most -maxsize bytes each, and raises its estimates of the targets. Only
/// the content each target lacks is shipped: renamed and copied files, and
/// chunks repeated within the export, travel once or not at all. When a
/// target lacks nothing it says so and writes nothing. A file changed
/// since the scan (still being written) holds back the change that needs
/// its content and those after it, with a warning naming it: the packet
/// ships what comes before, and the next export, which records the file's
/// new version, sends the rest.
///
/// Every packet carries its sender's epoch row, which its receiver keeps
/// as that sibling's confirmation of what it has (lsepoch shows it beside
/// the estimate). What was sent to a sibling but is still unconfirmed
/// resend_after (config.toml, default 7 days, per sibling too) after it
/// was sent goes again with the next -export to that sibling, and the
/// export says so: a lost packet needs no chepoch. Only siblings that have
/// sent this replica a packet confirm; on a one-way link nothing is resent
/// by itself. -resend resends every unconfirmed change at once; -ack
/// writes a packet with no changes, only this replica's row, for a
/// sibling that has nothing else to send back.
///
/// -import verifies every packet found in the PACKET_OR_DIR arguments in
/// full (signature by a current family member, every entry's digest) before
/// anything is applied, then applies them in sequence order, whatever order
/// they are found in: a packet that depends on changes not yet received
/// waits (and is applied in the same run once its predecessor is), one
/// already applied is reported, one for another family or replica is left
/// alone. Local changes are recorded right before the first packet is
/// applied (an import that applies nothing records nothing) and take part
/// in conflict detection: concurrent changes to one path get one
/// deterministic winner (a modification beats a deletion, then the newest
/// mtime), and the losing content is kept beside the file as
/// NAME.sync-conflict-YYYYMMDD-HHMMSS-REPLICA.EXT. Files an import deletes
/// or replaces are kept under .syncreplica/deleted/ for soft_delete_days.
/// Each packet is applied atomically: an import killed at any point leaves
/// every path old or new, and running it again finishes the job. A packet
/// whose new content does not fit in the free space of the replica's
/// filesystem is refused before anything is staged. A path too long for
/// this replica's root (root, "/" and path over 4,095 bytes) is not made
/// here, and the import says so. A disk step that fails after a packet's
/// commit (a folder the user may not write) leaves that path at its older
/// version and is reported ("not applied here"); the other packets are
/// applied, the command exits 1, and -status lists the path until a later
/// packet writes it (once the cause is fixed, -resendpath PATH at a sibling
/// sends it again).
///
/// Every packet also carries a digest of its sender's recorded tree at the
/// epoch row it carries, leaving out what either side excludes. An import
/// that leaves this replica at exactly that version compares it with its
/// own: "verified in step with X at epoch row R" (lsreplica -long shows the
/// last one), or a warning naming the sibling, the version and
/// `syncreplica -verify X`, which lists the paths that differ. An
/// encrypted packet carries only the digest's root (per-path digests would
/// name paths in the header every hop reads): -verify X then says the
/// paths cannot be told; one packet from X written with -noencrypt (an
/// -ack will do) lets it list them.
/// -verify alone reads every recorded file back from disk and reports
/// silent damage: content that changed while its size and mtime stayed as
/// recorded (bit rot, an edit that restored the time stamp), which the
/// scan's fast path does not see.
///
/// -status only reads the replica: it works for a user who may read it but
/// not write it, and on a read-only filesystem. It also lists the paths an
/// import could not write.
///
/// The operation log keeps oplog_keep_days of history (config.toml,
/// default 180 days): each -export, and -scrub alone, deletes from it the
/// operations older than that which every member still in the family has
/// confirmed holding (a removed member holds nothing back), whole runs of
/// one origin from its first epoch on, and says what went. A checkpoint
/// signed by this replica stands for them: creation packets (mkreplica
/// -export) carry it instead, and their receiver accepts the shorter
/// history; the recorded state of every path stays, so a replica made
/// after a scrub is the same tree. A sibling that would need scrubbed
/// operations again (its row lowered with chepoch, a restore from an old
/// backup) is refused with a message: make it anew from a creation packet.
#[derive(Debug, Parser)]
#[command(name = "syncreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
#[command(group = clap::ArgGroup::new("destination").args(["out", "ship", "fship"]))]
pub struct Args {
    /// List local changes not yet recorded, like `git status`, without
    /// recording them.
    #[arg(long, group = "mode")]
    pub status: bool,

    /// Scan the tree and record every local change in the operation log.
    #[arg(long, group = "mode")]
    pub record: bool,

    /// Delete from the operation log what every member confirmed holding
    /// and is older than oplog_keep_days, and say what went (each -export
    /// does it too).
    #[arg(long, group = "mode")]
    pub scrub: bool,

    /// Write the operations each TARGET lacks into packets (see -out).
    #[arg(long, group = "mode", requires = "destination")]
    pub export: bool,

    /// Verify and apply the packets in PACKET_OR_DIR...
    #[arg(long, group = "mode")]
    pub import: bool,

    /// Read every recorded file back from disk, re-hashing its content, and
    /// report what differs from what was recorded: silent damage (same
    /// size and mtime, other content: bit rot, an edit that restored the
    /// time stamp) and ordinary unrecorded changes. With a SIBLING: also
    /// compare this replica's recorded tree with the tree digest of that
    /// sibling's last packet and list the paths that differ (in a large
    /// tree, the deepest folders that digest reaches). Only reads;
    /// exits 1 when it finds damage or a difference at the same version
    /// (a digest of another version is "not comparable yet": exit 0).
    #[arg(long, group = "mode")]
    pub verify: bool,

    /// With -import: import the packets waiting in the incoming bay of the
    /// storage class (-sclass; default: every class), where shipping_server
    /// puts what it receives for local replicas. Packets applied or found
    /// already applied are removed from the bay; waiting ones and other
    /// replicas' stay.
    #[arg(long, conflicts_with = "targets")]
    pub receive: bool,

    /// With -import: remove packet files once applied or found already
    /// applied (files in named directories are otherwise left in place).
    #[arg(long)]
    pub remove: bool,

    /// With -export: the directory that receives the packet files, under
    /// their standard names (sync_<sender>_<time>_<target>_<seq>[_<k>of<n>].zip);
    /// created if missing, once every other check has passed. Unlike
    /// MultiSite's -out, which takes a file-name prefix
    /// (-out /media/usb/update1), this names a folder. A folder inside
    /// the replica is refused unless the replica excludes it (its packets
    /// would be recorded and replicated as files); so is importing packets
    /// from inside it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// With -export: put the packet parts into the storage class's outgoing
    /// bay, each with a shipping order for its target; the next
    /// `shipping_server -poll` delivers them along the configured routes.
    #[arg(long)]
    pub ship: bool,

    /// With -export: like -ship, then deliver at once to the first hop
    /// (later hops are forwarded by the shipping servers on the way). A
    /// failed delivery stays queued for `shipping_server -poll`, and the
    /// command exits 1 (the export itself is recorded).
    #[arg(long)]
    pub fship: bool,

    #[command(flatten)]
    pub bays: super::BayOptions,

    /// Storage class for -ship, -fship (default: "default") and -receive
    /// (default: every class).
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// Largest size of one packet file, overhead included, with an optional
    /// k, m or g suffix (at least 64k). Larger exports are split into parts,
    /// a large file spanning parts. Default: 2g.
    #[arg(long, value_name = "SIZE", value_parser = super::max_size_arg)]
    pub maxsize: Option<u64>,

    /// With -export: ship the content of every change whole, even chunks
    /// the target is believed to hold already, and none as changes to
    /// chunks it holds (for a target whose import reported missing
    /// content).
    #[arg(long)]
    pub fullcontent: bool,

    /// With -export: write the packets in the clear, readable by anyone who
    /// holds them (default: encrypted to each target's key, as the config's
    /// `encrypt = true`). Every listing of such a packet says "not
    /// encrypted".
    #[arg(long)]
    pub noencrypt: bool,

    /// Comment stored in the packets, shown by lspacket (-c TEXT, as in MultiSite).
    #[arg(
        long,
        short = 'c',
        value_name = "TEXT",
        default_value = "",
        hide_default_value = true
    )]
    pub comment: String,

    /// No comment (MultiSite's -nc, -ncomment): the default.
    #[arg(long = "ncomment", visible_alias = "nc", conflicts_with = "comment")]
    pub ncomment: bool,

    /// Directory where packets are written before they are moved to -out
    /// (default: the -out directory; parts appear there complete).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// With -record or -export: record the state of PATH (relative to the
    /// replica root, as -status prints it) and of everything recorded below
    /// it again, as new changes, so that exports send them, content
    /// included, to every sibling: for a sibling that lacks them since an
    /// exclude was lifted there (its -status and -record name them). A
    /// sibling that changed one meanwhile sees a conflict. Repeat for
    /// several paths.
    #[arg(long, value_name = "PATH")]
    pub resendpath: Vec<PathBuf>,

    /// With -export: send each TARGET again, now, every change it has not
    /// confirmed (those sent since the last packet from it that had them),
    /// without waiting for resend_after. Resending is harmless: the target
    /// skips what it has. (-resendall is an old name of it.)
    #[arg(long, alias = "resendall")]
    pub resend: bool,

    /// With -export: write for each TARGET a small packet that carries no
    /// changes, only this replica's epoch row, to confirm what it received
    /// (so the target does not resend it after resend_after).
    #[arg(long, conflicts_with_all = ["resend", "fullcontent", "resendpath"])]
    pub ack: bool,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// No progress line and no summary lines: only warnings and errors
    /// (on standard error), and the JSON asked for with -fmt json. The
    /// progress line (bytes, percentage, rate, time left) is shown only
    /// when standard error is a terminal, once a step has run for a second.
    #[arg(long, short = 'q', conflicts_with = "status")]
    pub quiet: bool,

    /// With -status, -export and -import: output format, text or json
    /// (for scripts: one object with a "version" field instead of the
    /// listing or the summary lines; warnings and errors still go to
    /// standard error; see JSON OUTPUT in the man page).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub fmt: super::Format,

    /// With -export: the siblings to export to, by name or replica id.
    /// With -import: packet files, or directories holding them.
    /// With -verify: at most one sibling to compare with.
    #[arg(value_name = "TARGET | PACKET_OR_DIR")]
    pub targets: Vec<String>,
}

use crate::cli;
use crate::cli::report::usage;
use crate::error::{printable, printable_path};
use crate::replica::{self, Replica};
use crate::ship;
use crate::sync::{apply, export, import, record};
use crate::tree::scan::ScanHooks;

const NAME: &str = "syncreplica";

/// -maxsize when not given: 2 GiB, below what FAT32 sticks can hold.
const DEFAULT_MAX_SIZE: u64 = 2 << 30;

/// Scrubs the log (`sync::scrub`) with the replica's `oplog_keep_days`,
/// printing a line per origin scrubbed; returns what went.
fn scrub_log(
    replica: &mut crate::replica::LockedReplica,
) -> anyhow::Result<Vec<crate::sync::scrub::Scrubbed>> {
    let keep = u64::from(replica.config.oplog_keep_days);
    let now = crate::sys::clock::now_ns_for_waiting();
    let scrubbed = crate::sync::scrub::scrub(replica, keep, now)?;
    let names: std::collections::HashMap<crate::ops::Id, String> = replica
        .members()?
        .into_iter()
        .map(|m| (m.replica, m.name))
        .collect();
    for done in &scrubbed {
        let name = names
            .get(&done.origin)
            .map_or_else(|| done.origin.to_string(), |n| printable(n).into_owned());
        outln!(
            "Scrubbed {} of \"{name}\" ({}, {} bytes) from the operation log: every member \
             confirmed holding them and they are older than {}; a signed checkpoint stands \
             for them.",
            cli::counted(done.operations, "operation", "operations"),
            cli::epochs(done.from, done.through),
            done.bytes,
            cli::counted(keep, "day", "days"),
        );
    }
    Ok(scrubbed)
}

fn export(replica: Replica, args: &Args) -> anyhow::Result<()> {
    let shipping_by_bay = args.ship || args.fship;
    let max_size = args.maxsize.unwrap_or(DEFAULT_MAX_SIZE);
    // Everything about shipping is checked before anything is recorded.
    let shipping = if shipping_by_bay {
        let shipping = ship::Shipping::load(args.bays.shipconf.as_deref())?;
        let class = shipping.class_name(args.sclass.as_deref())?;
        // A target no route leads to is refused before the bay is made.
        let targets = export::resolve_targets(&replica, &args.targets)?;
        shipping.check_routes(targets.iter().map(|t| t.name.as_str()))?;
        let expires = match &args.bays.pexpire {
            Some(text) => Some(ship::parse_expiry(text, chrono::Utc::now())?),
            None => None,
        };
        let outgoing = shipping.export_dir(&class)?;
        Some((shipping, class, expires, outgoing))
    } else {
        None
    };
    let out = match &shipping {
        Some((_, _, _, outgoing)) => outgoing.as_path(),
        None => args.out.as_deref().expect("clap requires a destination"),
    };
    let resend = resend_paths(&replica, args)?;
    let stop = cli::stop_on_signals()?;
    let mut replica = replica.lock("syncreplica -export")?;
    cli::print_lock_takeover(NAME, &replica);
    cli::finish_interrupted(NAME, &mut replica)?;
    // Everything is checked before anything is recorded or created, so a
    // refused export changes nothing.
    // Option values first: a mistyped one is a usage error (exit 2).
    cli::check_workdir(args.workdir.as_deref())?;
    export::resolve_targets(&replica, &args.targets)?;
    export::check_max_size(max_size)?;
    // Then where packets go: outside the tree (or excluded there), made
    // if missing (and removed again if no packet goes there), writable,
    // with room; all before the scan records anything.
    if shipping.is_none() {
        cli::check_packets_outside_tree(&replica, out, "-out directory")?;
    }
    // A class on S3 stages its packets in a local directory of the
    // program's own: made and removed without a word (the packets are
    // said to be queued in the bucket).
    let staged = shipping
        .as_ref()
        .is_some_and(|(shipping, class, _, dir)| shipping.is_staging(class, dir));
    let _created_out = cli::prepare_out(
        out,
        args.workdir.as_deref(),
        match &shipping {
            Some(_) if staged => cli::OUT_UNSAID,
            Some(_) => "outgoing bay",
            None => "-out directory",
        },
    )?;
    // Parts an interrupted export left without an order: queued now, and
    // with -fship delivered with this export's.
    let adopted = match &shipping {
        Some((shipping, class, expires, _)) => {
            adopt_unordered(&mut replica, shipping, class, *expires)?
        }
        None => Vec::new(),
    };
    let (outcome, summary, waiting) = crate::sync::record::record_for_export(&mut replica)?;
    cli::print_warnings(NAME, &outcome.warnings);
    if waiting > 0 {
        errln!(
            "{NAME}: warning: this replica is being restored from a backup: {} not recorded yet \
             (it would be numbered like a change a sibling may hold); this export sends what was \
             recorded before, and the first export after the restore finishes sends the rest",
            cli::counted(waiting as u64, "local change is", "local changes are")
        );
    }
    resend_now(&mut replica, &resend)?;
    cli::print_mirror(&summary);
    cli::warn_missing(NAME, &replica.identity.replica_name, &summary.missing);
    // With -ship, each target's parts are queued before its estimates are
    // raised: a kill in between leaves them queued and the estimates low
    // (the next export sends the operations again), never estimates that
    // count on parts nothing will ship.
    let orders: std::cell::RefCell<Vec<shipping::order::ShippingOrder>> =
        std::cell::RefCell::new(adopted);
    let queue = |target: &crate::store::state::Member,
                 parts: &[packet_format::WrittenPart]|
     -> crate::error::Result<()> {
        let Some((shipping, class, expires, _)) = &shipping else {
            return Ok(());
        };
        let packets: Vec<(String, Vec<String>)> = parts
            .iter()
            .map(|p| (p.file_name.clone(), vec![target.name.clone()]))
            .collect();
        let names: Vec<String> = packets.iter().map(|(name, _)| name.clone()).collect();
        shipping.upload_staged(class, &names)?;
        let made = shipping.order_packets(class, &packets, *expires, chrono::Utc::now())?;
        orders.borrow_mut().extend(made);
        Ok(())
    };
    // Parts staged for an S3 bay are named where they went: the bucket.
    let remote = match &shipping {
        Some((shipping, class, _, _)) if staged => Some(shipping.outgoing(class)?.describe()),
        _ => None,
    };
    let request = export::ExportRequest {
        targets: &args.targets,
        out_dir: out,
        out_role: match &shipping {
            Some(_) if staged => "local staging directory of the S3 outgoing bay",
            Some(_) => "outgoing bay",
            None => "-out directory",
        },
        work_dir: args.workdir.as_deref(),
        max_size,
        comment: &args.comment,
        full_content: args.fullcontent,
        noencrypt: args.noencrypt,
        before_commit: Some(&queue),
        stop: &stop,
        after_target: Some(&|target, result| {
            print_target_export(target, result, remote.as_deref())
        }),
        mode: if args.ack {
            export::Mode::AckOnly
        } else if args.resend {
            export::Mode::ResendAll
        } else {
            export::Mode::Normal
        },
    };
    // Each target is reported as it is done (`print_target_export`).
    let results = export::export_updates(&mut replica, &request)?;
    if !args.ack && args.fmt != cli::Format::Json {
        for (target, result) in &results {
            if matches!(result, export::TargetExport::UpToDate) {
                note_unconfirmed(&replica, target)?;
            }
        }
    }
    // Then the history every member confirmed, kept oplog_keep_days.
    scrub_log(&mut replica)?;
    // The replica is not needed for shipping: other commands need not wait
    // for a slow link.
    drop(replica);
    let orders = orders.into_inner();
    if args.fmt == cli::Format::Json {
        use crate::cli::render::transfer;
        let json = transfer::ExportJson {
            version: transfer::JSON_VERSION,
            targets: results
                .iter()
                .map(|(target, result)| transfer::target_json(&target.name, result))
                .collect(),
            queued: orders
                .iter()
                .map(|order| transfer::QueuedJson {
                    packet: order.packet.clone(),
                    destinations: order.destinations.clone(),
                    expires: shipping::order::format_time(&order.expires),
                })
                .collect(),
        };
        cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    if let Some((shipping, class, _, _)) = &shipping {
        if let Some(first) = orders.first() {
            // A class on S3: the packets were staged locally and are now
            // in the bucket; say where.
            let bay = match shipping.config.class(class).map(|c| c.s3.is_some()) {
                Ok(true) => format!(", in {}", shipping.outgoing(class)?.describe()),
                _ => String::new(),
            };
            outln!(
                "Queued {} packet file{} for shipping in storage class {class}{bay} (expires {}).",
                orders.len(),
                plural(orders.len() as u64),
                shipping::order::format_time(&first.expires)
            );
        }
        if args.fship && !orders.is_empty() {
            let names: Vec<String> = orders.iter().map(|o| o.packet.clone()).collect();
            let report = shipping.forward_now(class, &names, &|line| outln!("  {line}"))?;
            // As mkorder -fship and shipping_server -poll: a delivery that
            // failed is a failure (exit 1), even though the export itself
            // is complete and recorded.
            if !report.is_clean() {
                anyhow::bail!(
                    "the export is recorded and its packets are queued, but -fship failed: {}; \
                     shipping_server -poll retries them",
                    report.summary()
                );
            }
        } else if !orders.is_empty() {
            outln!("shipping_server -poll delivers them.");
        }
    }
    Ok(())
}

/// Says to whom a packet is encrypted, or that it is not, and why.
fn print_encryption(target: &str, summary: &export::ExportSummary) {
    use crate::sync::crypt::Plain;
    match &summary.encryption {
        None => {}
        Some(Ok(_)) => outln!("  Encrypted for: {}", printable(target)),
        Some(Err(Plain::Asked)) => {
            outln!("  Not encrypted (-noencrypt or encrypt = false in the config).")
        }
        Some(Err(Plain::NoKey)) => outln!(
            "  Not encrypted: {} has announced no encryption key yet (it gets one with its next export).",
            printable(target)
        ),
    }
}

/// For a target that lacks nothing as far as its estimates go: says how
/// many changes it was sent and has not confirmed, and whether anything
/// will resend them (`resend_after`, a one-way link), with the command
/// that resends them now.
fn note_unconfirmed(
    replica: &replica::LockedReplica,
    target: &crate::store::state::Member,
) -> anyhow::Result<()> {
    let state = replica.state();
    let estimate = state.epoch_row(&target.replica)?;
    let confirmed = state.confirmed_row(&target.replica)?;
    let me = replica.identity.replica_id;
    let own = state.epoch_row(&me)?;
    let unconfirmed: u64 = estimate
        .iter()
        .map(|(origin, believed)| {
            let believed = (*believed).min(own.get(origin).copied().unwrap_or(0));
            believed.saturating_sub(confirmed.get(origin).map_or(0, |c| c.epoch))
        })
        .sum();
    if unconfirmed == 0 {
        return Ok(());
    }
    let name = printable(&target.name);
    let after = replica.config.resend_after_for(&target.name);
    // "it" for one change, "them" for more.
    let (it, goes) = if unconfirmed == 1 {
        ("it", "it goes")
    } else {
        ("them", "they go")
    };
    let when = if state.heard(&target.replica)?.is_none() {
        format!("nothing resends {it} by itself: {name} never sent a packet here (a one-way link confirms nothing)")
    } else if after.0.is_none() {
        format!("resend_after is never for {name}, so nothing resends {it} by itself")
    } else {
        format!("{goes} again by itself once unconfirmed for resend_after = {after}")
            .replace("they go again by itself", "they go again by themselves")
    };
    outln!(
        "  {} sent to {name} not confirmed yet; {when}; syncreplica -export -resend {name} sends {it} again now.",
        cli::counted(unconfirmed, "change", "changes"),
    );
    Ok(())
}

/// Says what an export did for one target, as soon as it is done. Parts
/// staged for an S3 outgoing bay are named by their place there
/// (`remote`/NAME).
fn print_target_export(
    target: &crate::store::state::Member,
    result: &export::TargetExport,
    remote: Option<&str>,
) {
    let print_part = |part: &packet_format::WrittenPart| match remote {
        Some(bay) => outln!("  {bay}/{} ({} bytes)", part.file_name, part.size),
        None => outln!("  {} ({} bytes)", printable_path(&part.path), part.size),
    };
    match result {
        export::TargetExport::UpToDate => {
            outln!(
                "{} lacks nothing from this replica; no packet written.",
                printable(&target.name)
            )
        }
        export::TargetExport::Written(summary) if summary.ack_only => {
            outln!(
                "Wrote an acknowledgement for {} (packet sequence number {}): no changes, only this replica's epoch row.",
                printable(&target.name),
                summary.sequence
            );
            for part in &summary.parts {
                print_part(part);
            }
        }
        export::TargetExport::Written(summary) => {
            print_resent(&target.name, &summary.resent);
            // The content's size and what it cost in the packet: a chunk
            // sent as changes costs a fraction of its size.
            let recipes = match summary.chunks_as_recipes {
                0 => String::new(),
                n => format!(" ({n} as changes to chunks it has)"),
            };
            outln!(
                "Exported to {} (packet sequence number {}): {} operation{}, {} file{} added or changed, {} deleted, {} chunk{} ({} bytes) shipped in {} packet bytes{recipes}, {} reused ({} bytes) from content {} has.",
                printable(&target.name),
                summary.sequence,
                summary.operations,
                plural(summary.operations),
                summary.files_added_or_changed,
                plural(summary.files_added_or_changed),
                summary.deleted,
                summary.chunks_sent,
                plural(summary.chunks_sent),
                summary.chunk_bytes_sent,
                summary.chunk_bytes_carried,
                summary.chunks_reused,
                summary.chunk_bytes_reused,
                printable(&target.name)
            );
            if summary.answered > 0 {
                outln!(
                    "  {} path{} {} asked for (a content request) sent whole.",
                    summary.answered,
                    plural(summary.answered),
                    printable(&target.name)
                );
            }
            print_encryption(&target.name, summary);
            for part in &summary.parts {
                print_part(part);
            }
            if let Some(held) = &summary.held_back {
                warn_held_back(&target.name, held);
            }
        }
        export::TargetExport::HeldBack(held) => {
            outln!(
                "No packet written for {}: the first change it lacks needs a file that changed since the scan.",
                printable(&target.name)
            );
            warn_held_back(&target.name, held);
        }
    }
}

/// Says what an export sends again, and why: resending is never silent.
fn print_resent(target: &str, resent: &[export::Resend]) {
    for resend in resent {
        let count = resend.last - resend.first + 1;
        let why = match &resend.reason {
            export::ResendReason::Asked => "asked for with -resend".to_string(),
            export::ResendReason::TellRefusedCopy { alarm_ns } => format!(
                "{} is cloned (clone alarm of {}): the copy whose packets are refused finds this \
                 change differs from its own and learns it is that copy; the accepted copy skips it",
                printable(target),
                crate::sys::clock::format_time_ns(*alarm_ns)
            ),
            export::ResendReason::Unconfirmed { sent_ns, after } => format!(
                "sent {} and not confirmed by {} within resend_after = {after}",
                crate::sys::clock::format_time_ns(*sent_ns),
                printable(target)
            ),
        };
        outln!(
            "Resending to {} {} of {} ({}): {why}.",
            printable(target),
            cli::counted(count, "change", "changes"),
            printable(&resend.origin.name),
            cli::epochs(resend.first, resend.last)
        );
    }
}

/// Says which busy file held an export back, and that the rest follows.
fn warn_held_back(target: &str, held: &export::HeldBack) {
    cli::warn_busy_file(
        NAME,
        &held.path,
        &format!(
            "the export to {target} stops before the first change that needs its content; the {} remaining change{} follow{} with the next export, once the file's new version is recorded",
            held.operations,
            plural(held.operations),
            if held.operations == 1 { "s" } else { "" },
        ),
    );
}

/// Finishes what an export killed after writing its parts into the
/// outgoing bay left undone: queues those without a shipping order, and
/// records as sent the complete ones not in the packet log (their
/// estimates were not raised, so the next export would send them again).
/// Says so.
fn adopt_unordered(
    replica: &mut replica::LockedReplica,
    shipping: &ship::Shipping,
    class: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<Vec<shipping::order::ShippingOrder>> {
    let found = shipping.packets_from(class, &replica.identity.replica_id)?;
    let mut adopted = Vec::new();
    let unordered: Vec<PathBuf> = found
        .iter()
        .filter(|(_, _, ordered)| !ordered)
        .map(|(path, _, _)| path.clone())
        .collect();
    if !unordered.is_empty() {
        let queued = ship::submit_files(
            shipping,
            class,
            &unordered,
            &[],
            expires,
            false,
            chrono::Utc::now(),
        )?;
        for item in &queued {
            outln!(
                "Queued {}, left without a shipping order by an interrupted export, for {}.",
                item.order.packet,
                item.order.destinations.join(", ")
            );
        }
        adopted.extend(queued.into_iter().map(|item| item.order));
    }
    let mut by_packet: std::collections::BTreeMap<_, Vec<&(PathBuf, packet_format::Header, bool)>> =
        Default::default();
    for item in &found {
        by_packet.entry(item.1.packet_id).or_default().push(item);
    }
    for parts in by_packet.values() {
        let header = &parts[0].1;
        let complete = (1..=header.parts).all(|k| parts.iter().any(|(_, h, _)| h.part == k));
        if complete {
            let first = parts
                .iter()
                .find(|(_, h, _)| h.part == 1)
                .and_then(|(p, _, _)| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            export::record_adopted(replica, header, &first)?;
        }
    }
    Ok(adopted)
}

/// `-verify [SIBLING]`: the tree read back from disk against the recorded
/// state, then (with a sibling) the recorded state against the sibling's
/// last digest.
fn verify(replica: &Replica, sibling: Option<&String>) -> anyhow::Result<()> {
    use crate::tree::relpath;
    let sibling = match sibling {
        Some(name) => Some(
            crate::sync::export::resolve_targets(replica, std::slice::from_ref(name))?.remove(0),
        ),
        None => None,
    };
    let report = crate::sync::digest::verify_disk(replica)?;
    let silent = report.mismatches.iter().filter(|m| m.silent).count() as u64;
    for mismatch in &report.mismatches {
        if mismatch.silent {
            outln!(
                "damaged: {}: {}",
                relpath::display(&mismatch.path),
                mismatch.what
            );
        } else {
            outln!(
                "not as recorded: {}: {}",
                relpath::display(&mismatch.path),
                mismatch.what
            );
        }
    }
    outln!(
        "Read {} ({} bytes) back from disk: {} recorded entr{} (digest {}), on disk {}.",
        cli::counted(report.files_read, "file", "files"),
        report.bytes_read,
        report.recorded.entries,
        if report.recorded.entries == 1 {
            "y"
        } else {
            "ies"
        },
        short_digest(&report.recorded.root),
        // The summary counts what the lines above found: never "the same"
        // after a line that says otherwise (the root's own entry, for one,
        // is not in the digest: review 14b item 8).
        match (
            report.mismatches.len() as u64,
            report.disk.root == report.recorded.root
        ) {
            (0, true) => "the same".to_string(),
            (0, false) => format!("digest {}", short_digest(&report.disk.root)),
            (n, true) => format!(
                "{} as listed above (the digest, which leaves that out, is the same)",
                cli::counted(n, "path differs", "paths differ")
            ),
            (n, false) => format!(
                "digest {}: {} as listed above",
                short_digest(&report.disk.root),
                cli::counted(n, "path differs", "paths differ")
            ),
        }
    );
    let mut problems = Vec::new();
    if silent > 0 {
        errln!(
            "{NAME}: WARNING: {} changed behind the scan's back (same size and mtime as \
             recorded, other content): bit rot, or an edit that restored the file's time",
            cli::counted(silent, "file", "files")
        );
        errln!(
            "{NAME}: hint: have a sibling send them again (there: syncreplica -record \
             -resendpath PATH…, then -export to this replica), or restore them from a backup; \
             -record does not see them (size, mtime and ctime are as recorded)"
        );
        problems.push(cli::counted(silent, "damaged file", "damaged files"));
    }
    let changed = report.mismatches.len() as u64 - silent;
    if changed > 0 {
        outln!(
            "{} not as recorded: ordinary local changes, which syncreplica -record records.",
            cli::counted(changed, "path is", "paths are")
        );
    }
    if let Some(member) = sibling {
        let name = printable(&member.name);
        match crate::sync::digest::against_sibling(replica, &member.replica)? {
            None => match replica.state().heard(&member.replica)? {
                None => outln!(
                    "Nothing received from {name} yet: there is no tree digest of its to compare \
                     with (its packets carry one; import one with syncreplica -import)."
                ),
                Some(heard) => outln!(
                    "No tree digest from {name} yet: its last packet here ({}) carries none \
                     (packets of format 2.2 on carry one; a member running an older syncreplica \
                     sends none).",
                    heard.packet
                ),
            },
            Some(found) => {
                outln!(
                    "Last digest from {name}: at epoch row {}, in {} ({}).",
                    found.row,
                    found.received.packet,
                    found.received.outcome
                );
                if let Some(own) = &found.own_row {
                    outln!(
                        "This replica now holds epoch row {own}: differences include the changes \
                         made since on either side."
                    );
                }
                if found.own_row.is_some() && !found.differing.is_empty() && found.root_only {
                    // Another version, and a digest of the root alone (an
                    // encrypted packet's): nothing to list.
                    outln!(
                        "Not comparable yet: {name}'s last digest is of another version than this \
                         replica holds, and carries only the root digest (its packets are \
                         encrypted), so which paths differ cannot be told; the changes made since \
                         on either side differ by nature."
                    );
                    outln!(
                        "To compare, bring both to the same version: export this replica's changes \
                         to {name}, import its next packet here, then run -verify {name} again."
                    );
                } else if found.own_row.is_some() && !found.differing.is_empty() {
                    // Another version: the changes made since on either
                    // side differ by nature, and say nothing of damage.
                    outln!(
                        "Not comparable yet: {name}'s last digest is of another version than this \
                         replica holds. Paths that differ, changes made since included:"
                    );
                    for path in &found.differing {
                        outln!("  {}", differing_line(path, &found.root_differs));
                    }
                    outln!(
                        "To compare, bring both to the same version: export this replica's changes \
                         to {name}, import its next packet here, then run -verify {name} again."
                    );
                } else if found.differing.is_empty() {
                    // Compared now, whatever the import said of that digest
                    // then (review 14e item 7: "not compared: …" and then
                    // "the same" read as a contradiction).
                    let then = if found.received.outcome.starts_with("not compared") {
                        " (compared now: the import that brought the digest had not compared it)"
                    } else {
                        ""
                    };
                    outln!("In step with {name}: the recorded trees are the same{then}.");
                } else if found.root_only {
                    outln!(
                        "Differs from {name}, but which paths cannot be told: {name}'s packets \
                         carry only the root digest, because they are encrypted (per-path digests \
                         would name paths in the header, which every hop can read). To list them, \
                         have {name} send one packet in the clear: at {name}, syncreplica -export \
                         -ack -noencrypt -out DIR {me}; import it here and run -verify {name} again.",
                        me = printable(&replica.identity.replica_name)
                    );
                    if found.patterns_differ {
                        outln!(
                            "(Its last digest also assumed other exclude patterns of this \
                             replica's: excluded paths may be all that differs.)"
                        );
                    } else {
                        problems.push(format!("differs from {name}"));
                    }
                } else if found.patterns_differ {
                    // What this replica excludes and the sibling did not
                    // know of would show as differences: no alarm, as at
                    // import ("not compared").
                    outln!(
                        "Not compared with {name}: its last digest assumed other exclude patterns \
                         of this replica's (it learns them from this replica's next packet; \
                         syncreplica -export -ack {name} sends one). Paths that differ, excluded \
                         ones included:"
                    );
                    for path in &found.differing {
                        outln!("  {}", differing_line(path, &found.root_differs));
                    }
                } else {
                    outln!(
                        "Differs from {name} at (a path, or a folder where {name}'s digest does \
                         not go deeper):"
                    );
                    for path in &found.differing {
                        outln!("  {}", differing_line(path, &found.root_differs));
                    }
                    problems.push(format!("differs from {name}"));
                }
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("verify: {}", problems.join("; "));
    }
    Ok(())
}

/// One path of `-verify SIBLING`'s list: the empty path is the replica
/// root itself when its own entry differs (`root_differs`: in what, format
/// 2.11), else somewhere in the tree below a node the digest carries.
fn differing_line(path: &[u8], root_differs: &[&str]) -> String {
    match (path.is_empty(), root_differs.is_empty()) {
        (false, _) => crate::tree::relpath::display(path),
        (true, false) => format!(
            ". (the replica root itself: its {} {} from the sibling's)",
            root_differs.join(", "),
            if root_differs.len() == 1 {
                "differs"
            } else {
                "differ"
            }
        ),
        (true, true) => ". (the root folder itself: its mode, owner or times)".to_string(),
    }
}

/// The first 16 hex digits of a digest, as listings show it.
fn short_digest(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..8])
}

/// The report file of an import's packet, for a line that says the
/// rest of a list is there.
fn report_file(report: &apply::ApplyReport) -> String {
    report
        .report_file
        .as_ref()
        .map_or("the import's report file".to_string(), |f| {
            f.display().to_string()
        })
}

/// One packet's tree digest compared: verified in step is one line; a
/// difference is a loud warning with the command that lists where.
fn report_digest(check: &crate::sync::digest::Check) {
    use crate::sync::digest::Outcome;
    match &check.outcome {
        Outcome::Verified => outln!(
            "  verified in step with {} at epoch row {} ({} entr{})",
            check.sender,
            check.row,
            check.entries,
            if check.entries == 1 { "y" } else { "ies" }
        ),
        Outcome::Differs => {
            errln!(
                "{NAME}: WARNING: this replica's tree differs from {}'s at the same version \
                 (epoch row {}): both hold the same changes but not the same files",
                check.sender,
                check.row
            );
            if check.root_only {
                errln!(
                    "{NAME}: hint: `syncreplica -verify {0}` checks this replica's files against \
                     what it recorded; which paths differ from {0}'s cannot be told from this \
                     packet (encrypted: it carries only the root digest): a packet from {0} \
                     written with -noencrypt (syncreplica -export -ack -noencrypt there) lets \
                     -verify {0} list them",
                    check.sender
                );
            } else {
                errln!(
                    "{NAME}: hint: `syncreplica -verify {}` lists the paths that differ and \
                     checks this replica's files against what it recorded",
                    check.sender
                );
            }
        }
        Outcome::NotCompared(_) => {}
        Outcome::Failed(why) => errln!(
            "{NAME}: warning: the packet from {} is applied, but its tree digest could not be \
             compared with this replica's: {why}",
            check.sender
        ),
    }
}

fn import(replica: Replica, args: &Args) -> anyhow::Result<()> {
    let mut fetched = ship::Fetched::default();
    let sources: Vec<std::path::PathBuf> = if args.receive {
        let shipping = ship::Shipping::load(args.bays.shipconf.as_deref())?;
        let classes = shipping.classes(args.sclass.as_deref())?;
        let (files, from_s3) = shipping.incoming_packets(&classes)?;
        fetched = from_s3;
        if files.is_empty() {
            outln!(
                "No packets in the incoming bay{} {} (from {}).",
                plural(classes.len() as u64),
                shipping.incoming_places(&classes)?.join(", "),
                shipping.source
            );
            if args.fmt == cli::Format::Json {
                print_import_json(&[])?;
            }
            return Ok(());
        }
        files
    } else {
        args.targets.iter().map(std::path::PathBuf::from).collect()
    };
    if !args.receive {
        say_empty_folders(&sources)?;
    }
    // Files named on the command line (not found in a folder): one that is
    // not for this replica is an error, not a skip.
    let named: Vec<std::path::PathBuf> = if args.receive {
        Vec::new()
    } else {
        sources
            .iter()
            .filter(|p| p.is_file())
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    let is_named = |files: &[std::path::PathBuf]| {
        files.iter().any(|f| {
            std::fs::canonicalize(f)
                .map(|c| named.contains(&c))
                .unwrap_or(false)
        })
    };
    if !args.receive {
        for source in &sources {
            // A name that names nothing is the first thing to say (exit 2),
            // wherever it was typed; inside a replica too.
            if let Err(cause) = std::fs::metadata(source) {
                if cause.kind() == std::io::ErrorKind::NotFound {
                    return Err(crate::error::Error::no_such_file(source, None).into());
                }
            }
            let role = match source.is_dir() {
                true => "packet folder",
                false => "packet",
            };
            cli::check_packets_outside_tree(&replica, source, role)?;
        }
    }
    let mut replica = replica.lock("syncreplica -import")?;
    cli::print_lock_takeover(NAME, &replica);
    cli::finish_interrupted(NAME, &mut replica)?;
    let request = import::ImportRequest {
        sources,
        remove: args.remove || args.receive,
    };
    let outcomes = match import::import(&mut replica, &request) {
        Ok(outcomes) => outcomes,
        // Exit 1 promises nothing half-changed: say so when a committed
        // packet's disk steps are what failed.
        Err(err) if apply::is_pending(&replica).unwrap_or(false) => {
            return Err(anyhow::Error::from(err).context(
                "a packet is committed but not all of its changes are on disk yet \
                 (the next syncreplica -record or -import finishes them once this is fixed)",
            ));
        }
        Err(err) => return Err(err.into()),
    };
    // Packets fetched from an S3 incoming bay: what the import consumed
    // leaves the bucket too.
    for problem in fetched.settle() {
        errln!("{NAME}: warning: removing an imported packet from its bay: {problem}");
    }
    let mut total = apply::ApplyReport::default();
    // What was not made or applied here is said once for the command, with
    // counts summed over its packets (review 14c item 6).
    let mut total_unapplied = crate::tree::meta::Unapplied::default();
    let mut failed_steps: Vec<Vec<u8>> = Vec::new();
    // Failed steps beyond those held (and listed) per packet.
    let mut failed_more = 0u64;
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
                outln!(
                    "Applied packet from {}: {} ({} added, {} changed, {} deleted, {} conflict{})",
                    printable(sender),
                    display_files(files),
                    report.added,
                    report.changed,
                    report.deleted,
                    report.conflicts.len() as u64 + report.conflicts_more,
                    plural(report.conflicts.len() as u64 + report.conflicts_more)
                );
                for note in &report.conflicts {
                    outln!("  conflict: {note}");
                }
                if report.conflicts_more > 0 {
                    outln!(
                        "  conflict: and {} more, not shown: every conflict of this packet is in {}",
                        report.conflicts_more,
                        report_file(report)
                    );
                }
                for note in &report.requests {
                    outln!("  content request: {note}");
                }
                let special = apply::special_not_made_note(report.not_made_special);
                for note in report.not_made.iter().filter(|note| **note != special) {
                    outln!("  not applied here: {note}");
                }
                total.not_made_special += report.not_made_special;
                total_unapplied.merge((*report.unapplied).clone());
                for name in &report.members_added {
                    outln!("  new member of the family: \"{}\"", printable(name));
                }
                for name in &report.members_removed {
                    outln!(
                        "  member removed from the family (rmreplica): \"{}\"; its packets are refused from now on",
                        printable(name)
                    );
                }
                for (name, epoch) in &report.members_rekeyed {
                    outln!(
                        "  member's keys replaced (mkreplica -rekey): \"{}\" at its epoch {epoch}; packets to it are encrypted to its new key, and its old key is good only for its changes up to {epoch}",
                        printable(name)
                    );
                }
                cli::report_failed(NAME, &report.failed);
                if report.failed_more > 0 {
                    errln!(
                        "{NAME}: error: not applied here: and {} more steps, not shown: every failed step of this packet is in {} (and syncreplica -status lists them)",
                        report.failed_more,
                        report_file(report)
                    );
                }
                failed_steps.extend(report.failed.iter().map(|f| f.path.clone()));
                failed_more += report.failed_more;
                total.conflicts_more += report.conflicts_more;
                total.added += report.added;
                total.changed += report.changed;
                total.deleted += report.deleted;
                total.bytes_written += report.bytes_written;
                total.bytes_from_packets += report.bytes_from_packets;
                total.bytes_copied += report.bytes_copied;
                total.bytes_as_holes += report.bytes_as_holes;
                total.bytes_linked += report.bytes_linked;
                total.conflicts.extend(report.conflicts.iter().cloned());
            }
            import::PacketOutcome::AlreadyApplied { files } => {
                outln!("Already applied: {}", display_files(files))
            }
            import::PacketOutcome::Acknowledged { files, sender } => {
                outln!(
                    "Acknowledgement from {}: {} (no changes; its epoch row is noted as what it has)",
                    printable(sender),
                    display_files(files)
                )
            }
            import::PacketOutcome::Waiting { files, why, .. } => {
                outln!("Packet {} {why}", display_files(files))
            }
            import::PacketOutcome::LeftAlone {
                files,
                why,
                not_for_us: true,
            } if is_named(files) => {
                problems += 1;
                errln!(
                    "{NAME}: error: {} is not for replica \"{}\": it is {why}",
                    display_files(files),
                    printable(&replica.identity.replica_name)
                );
            }
            import::PacketOutcome::LeftAlone { files, why, .. } => {
                outln!("Left alone: {} is {why}", display_files(files))
            }
            import::PacketOutcome::Refused { files, why } => {
                problems += 1;
                // A packet-format error names the file itself.
                let why_text = match why {
                    crate::error::Refusal::Damaged(err) => err.kind.to_string(),
                    other => other.to_string(),
                };
                errln!(
                    "{NAME}: error: refused {}: {why_text}",
                    display_files(files)
                );
                if let Some(hint) = crate::cli::report::refusal_hint(why) {
                    errln!("{NAME}: hint: {hint}");
                }
            }
            import::PacketOutcome::Digest(check) => report_digest(check),
            import::PacketOutcome::Note { note } => outln!("Note: {note}"),
            import::PacketOutcome::NotRemoved { .. } => {}
        }
    }
    if total.not_made_special > 0 {
        outln!(
            "  not applied here: {}",
            apply::special_not_made_note(total.not_made_special)
        );
    }
    for note in apply::unapplied_notes(&total_unapplied) {
        outln!("  not applied here: {note}");
    }
    if args.fmt == cli::Format::Json {
        print_import_json(&outcomes)?;
    }
    // What the files made or changed took: the packets' bytes, the
    // bytes copied from content held here (a file changed in one place
    // is written whole), the zeros left as holes.
    let mut holes = match total.bytes_as_holes {
        0 => String::new(),
        n => format!(", {n} left as holes"),
    };
    // New names of hard-link sets: links, not bytes written.
    if total.bytes_linked > 0 {
        // A byte count, said as one (review 14e item 9a).
        holes += &format!(
            "; {} bytes linked as new names of hard-link sets, not written",
            total.bytes_linked
        );
    }
    outln!(
        "Import summary: {applied} packet{} applied; {} added, {} changed, {} deleted, {} in conflict; {} bytes written ({} from the packets, {} copied from content held here{holes}).",
        plural(applied),
        total.added,
        total.changed,
        total.deleted,
        total.conflicts.len() as u64 + total.conflicts_more,
        total.bytes_from_packets + total.bytes_copied,
        total.bytes_from_packets,
        total.bytes_copied,
    );
    let mut not_removed = 0;
    for outcome in &outcomes {
        if let import::PacketOutcome::NotRemoved { error, .. } = outcome {
            not_removed += 1;
            errln!("{NAME}: error: applied, but could not remove the packet file {error}");
        }
    }
    if let Some(end) = crate::sync::family::finish_restore_if_done(&mut replica)? {
        outln!(
            "Restore finished: every sibling waited for was heard from and this replica holds again \
             every change of its own they hold; it records changes again, numbered after them."
        );
        if end != crate::sync::family::RestoreEnd::default() {
            outln!("  The restore {end}; the next export sends them as new changes.");
        }
    } else if let Some(wait) = crate::sync::family::restore_wait(&replica)? {
        outln!("Restore from a backup unfinished: this replica waits for {wait}.");
    }
    // Checked after the packets: one of them may have brought the paths.
    let excludes = replica.excludes()?;
    if let Some(missing) = record::missing_since_excludes_changed(&replica, &excludes)? {
        cli::warn_missing(NAME, &replica.identity.replica_name, &missing);
    }
    if problems > 0 {
        anyhow::bail!(
            "{problems} packet{} refused; the replica is unchanged by them",
            plural(problems)
        );
    }
    if !failed_steps.is_empty() {
        cli::hint_failed(NAME, &replica.identity.replica_name, &failed_steps);
        let failed = failed_steps.len() as u64 + failed_more;
        anyhow::bail!(
            "{failed} path{} could not be written; the packets are applied but for {}, and the replica goes on (syncreplica -status lists {})",
            plural(failed),
            if failed == 1 { "it" } else { "them" },
            if failed == 1 { "it" } else { "them" },
        );
    }
    if not_removed > 0 {
        anyhow::bail!(
            "{not_removed} packet file{} could not be removed; remove {} by hand",
            plural(not_removed),
            if not_removed == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// Prints `-import -fmt json` (see [`crate::cli::render::transfer`]).
fn print_import_json(outcomes: &[import::PacketOutcome]) -> anyhow::Result<()> {
    let json = crate::cli::render::transfer::import_json(outcomes);
    cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&json)?));
    Ok(())
}

/// The `-resendpath` paths, checked against the replica before anything is
/// recorded.
fn resend_paths(replica: &Replica, args: &Args) -> anyhow::Result<Vec<Vec<u8>>> {
    let paths = args
        .resendpath
        .iter()
        .map(|p| record::resend_path(p.as_os_str()))
        .collect::<crate::error::Result<Vec<_>>>()?;
    record::check_resend(replica, &paths)?;
    Ok(paths)
}

/// Re-asserts the `-resendpath` paths (after local changes are recorded), and
/// says so.
fn resend_now(replica: &mut replica::LockedReplica, paths: &[Vec<u8>]) -> anyhow::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let resent = record::resend(replica, paths)?;
    for path in &resent.gone {
        errln!(
            "{NAME}: warning: -resendpath '{}': deleted since the command started; nothing resent for it",
            crate::tree::relpath::display(path)
        );
    }
    if let Some((first, last)) = resent.epochs {
        outln!(
            "Recorded {} again as {}, to be sent to every sibling with their content.",
            cli::counted(resent.paths as u64, "path", "paths"),
            cli::epochs(first, last)
        );
    }
    Ok(())
}

/// Says which folders named on the command line hold no packet file, and
/// which files there were skipped for their names: an import that finds
/// nothing is never silent.
fn say_empty_folders(sources: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use crate::sync::packets;
    for dir in sources.iter().filter(|source| source.is_dir()) {
        if !packets::collect_packet_files(std::slice::from_ref(dir))?.is_empty() {
            continue;
        }
        let others = packets::other_files_in(dir)?;
        match others.len() {
            0 => outln!("No packet files in {}.", printable_path(dir)),
            n => {
                let shown: Vec<String> = others
                    .iter()
                    .take(5)
                    .map(|n| printable(n).into_owned())
                    .collect();
                outln!(
                    "No packet files in {}; skipped {}: {}{} (packets are named sync_*.zip or repl_*.zip; \
                     name a renamed one on the command line, or look at it with lspacket FILE).",
                    printable_path(dir),
                    cli::counted(n as u64, "other file", "other files"),
                    shown.join(", "),
                    if n > 5 { ", …" } else { "" }
                );
            }
        }
    }
    Ok(())
}

/// Packet files as shown: their names may come from elsewhere (a bay
/// that shipping_server filled), so they are made printable.
fn display_files(files: &[std::path::PathBuf]) -> String {
    match files {
        [one] => printable_path(one),
        [first, ..] => format!(
            "{} (+{})",
            printable_path(first),
            cli::counted(files.len() as u64 - 1, "more part", "more parts")
        ),
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

/// Usage errors clap cannot express: checked before the replica is
/// looked up, so a wrong command line says so wherever it is run.
fn check_usage(args: &Args) -> anyhow::Result<()> {
    if !(args.resendpath.is_empty() || args.record || args.export) {
        usage!("-resendpath applies to -record and -export only");
    }
    if (args.resend || args.ack) && !args.export {
        usage!(
            "-resend and -ack apply to -export only (to record a path again so that exports send it, use -resendpath PATH)"
        );
    }
    if !args.export {
        let given: Vec<&str> = [
            ("-out", args.out.is_some()),
            ("-maxsize", args.maxsize.is_some()),
            ("-workdir", args.workdir.is_some()),
            ("-fullcontent", args.fullcontent),
            ("-noencrypt", args.noencrypt),
            ("-comment", !args.comment.is_empty() || args.ncomment),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if !given.is_empty() {
            usage!(
                "{} appl{} to -export only",
                given.join(", "),
                if given.len() == 1 { "ies" } else { "y" }
            );
        }
    }
    if args.fmt == cli::Format::Json && !(args.status || args.export || args.import) {
        usage!("-fmt json applies to -status, -export and -import");
    }
    if (args.status || args.record || args.scrub) && !args.targets.is_empty() {
        usage!(
            "-status, -record and -scrub take no operands (got {})",
            args.targets.join(" ")
        );
    }
    if args.verify && args.targets.len() > 1 {
        usage!(
            "-verify takes at most one SIBLING (got {})",
            args.targets.join(" ")
        );
    }
    if args.export {
        if !(args.ship || args.fship) && (args.sclass.is_some() || args.bays.pexpire.is_some()) {
            usage!("-sclass and -pexpire apply to -ship and -fship only, not to -out");
        }
        if args.targets.is_empty() {
            usage!("-export needs at least one TARGET (a sibling's name; lsreplica lists them)");
        }
    }
    if args.import {
        if !args.receive && args.sclass.is_some() {
            usage!("-sclass applies to -import -receive only");
        }
        if args.bays.pexpire.is_some() {
            usage!("-pexpire applies to -export -ship and -fship only");
        }
        if !args.receive && args.targets.is_empty() {
            usage!(
                "-import needs packet files or directories holding them, or -receive for the incoming bays"
            );
        }
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    check_usage(&args)?;
    // With -fmt json the JSON is the output: the summary lines would
    // break it.
    cli::report::set_quiet(args.quiet || args.fmt == cli::Format::Json);
    cli::show_progress(args.quiet);
    let root = replica::discover(args.replica.as_deref())?;
    let replica = Replica::open(&root)?;
    if args.status || args.export {
        cli::warn_config(NAME, &replica)?;
        cli::warn_self_clone(NAME, &replica)?;
    }
    if args.status {
        if apply::is_pending(&replica)? {
            errln!(
                "{NAME}: warning: an import was interrupted and is not finished; \
                 run syncreplica -record or -import to finish it before reading this list"
            );
        }
        let outcome = replica.scan(&mut ScanHooks::default())?;
        cli::print_warnings(NAME, &outcome.warnings);
        // What this replica keeps grew: the values never applied here are
        // left out until a command that takes the lock sets them.
        let now = replica
            .wanted_preserve()
            .kept_bits(rustix::process::geteuid().is_root());
        if let Some(grown) = replica
            .state()
            .kept_items()?
            .and_then(|then| crate::sync::kept::grown_words(then, now))
        {
            match crate::replica::refuse_root_on_user_replica(&replica) {
                // Root is refused this member's locked commands: it says
                // so rather than promise what the next one would do.
                Err(crate::error::Error::RootOnUserReplica { owner, uid, .. }) => errln!(
                    "{NAME}: note: {grown}: values never applied here are not local changes; \
                     this member belongs to {owner} (uid {uid}), so -record, -import and -export \
                     are refused as root until it is run as {owner} or preserve is set in \
                     .syncreplica/config.toml"
                ),
                _ => errln!(
                    "{NAME}: note: {grown}: the next -record, -import or -export sets the recorded \
                     values on disk (values never applied here are not local changes)"
                ),
            }
        }
        let excludes = replica.excludes()?;
        let missing =
            record::missing_since_excludes_changed(&replica, &excludes)?.unwrap_or_default();
        let failed = replica.state().failed_steps()?;
        let mirror_of = match replica.state().mirror_upstream()? {
            Some(upstream) => Some(crate::sync::mirror::upstream_name(&replica, upstream)?),
            None => None,
        };
        // What a mirror's next command does with each change.
        let fates = match mirror_of {
            Some(_) => crate::sync::mirror::fates(&replica, &outcome.changes)?,
            None => Vec::new(),
        };
        let mirror = mirror_of
            .as_deref()
            .map(|upstream| (upstream, fates.as_slice()));
        if args.fmt == cli::Format::Json {
            let json = crate::cli::render::status::status_json(
                &replica.identity.replica_name,
                &root,
                &outcome,
                &missing,
                &failed,
                mirror,
            );
            cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&json)?));
            return Ok(());
        }
        out!(
            "{}",
            crate::cli::render::status::render_status(
                &replica.identity.replica_name,
                &root,
                &outcome,
                &missing,
                &failed,
                mirror,
            )
        );
        cli::warn_missing(NAME, &replica.identity.replica_name, &missing);
    } else if args.export {
        export(replica, &args)?;
    } else if args.import {
        import(replica, &args)?;
    } else if args.verify {
        verify(&replica, args.targets.first())?;
    } else if args.scrub {
        let mut replica = replica.lock("syncreplica -scrub")?;
        cli::print_lock_takeover(NAME, &replica);
        cli::finish_interrupted(NAME, &mut replica)?;
        let scrubbed = scrub_log(&mut replica)?;
        if scrubbed.is_empty() {
            outln!(
                "Nothing to scrub in replica \"{}\": no operation older than {} that every \
                 member still in the family has confirmed holding (lsepoch shows what each \
                 confirmed).",
                replica.identity.replica_name,
                cli::counted(u64::from(replica.config.oplog_keep_days), "day", "days")
            );
            // Who holds it back, by name: what each has not confirmed.
            let me = replica.identity.replica_id;
            let names: std::collections::HashMap<crate::ops::Id, String> = replica
                .members()?
                .into_iter()
                .map(|m| (m.replica, printable(&m.name).into_owned()))
                .collect();
            let name =
                |id: &crate::ops::Id| names.get(id).cloned().unwrap_or_else(|| id.to_string());
            for (member, lacks) in crate::sync::scrub::holding_back(replica.state(), &me)? {
                let what: Vec<String> = lacks
                    .iter()
                    .map(|(origin, confirmed, held)| {
                        if *confirmed == 0 {
                            format!("nothing of {} (this replica holds {held})", name(origin))
                        } else {
                            format!("{} up to {confirmed} of {held}", name(origin))
                        }
                    })
                    .collect();
                outln!(
                    "  held back by \"{}\": it confirmed {}",
                    name(&member),
                    what.join(", ")
                );
            }
        }
    } else if args.record {
        let resend = resend_paths(&replica, &args)?;
        let mut replica = replica.lock("syncreplica -record")?;
        cli::print_lock_takeover(NAME, &replica);
        cli::finish_interrupted(NAME, &mut replica)?;
        let (outcome, summary) = crate::sync::record::record_local_changes(&mut replica)?;
        cli::print_warnings(NAME, &outcome.warnings);
        // What a mirror undid comes first, the summary after it.
        cli::print_mirror(&summary);
        let undone = summary.mirror.as_ref().is_some_and(|u| {
            !u.set_aside.is_empty()
                || !u.left_in_place.is_empty()
                || !u.metadata_restored.is_empty()
        });
        match summary.epochs {
            Some((first, last)) => outln!(
                "Recorded {} in replica \"{}\" as {}.",
                cli::counted(outcome.changes.len() as u64, "change", "changes"),
                replica.identity.replica_name,
                cli::epochs(first, last)
            ),
            None if undone => outln!(
                "Recorded nothing in replica \"{}\": a mirror records no change of its own; \
                 the changes above were undone.",
                replica.identity.replica_name
            ),
            None => outln!(
                "Nothing to record in replica \"{}\"; the tree matches the recorded state.",
                replica.identity.replica_name
            ),
        }
        if summary.forgotten > 0 {
            outln!(
                "Forgot {} path(s) that are now excluded; they stay local and are not deleted elsewhere.",
                summary.forgotten
            );
        }
        resend_now(&mut replica, &resend)?;
        cli::warn_missing(NAME, &replica.identity.replica_name, &summary.missing);
    }
    Ok(())
}
