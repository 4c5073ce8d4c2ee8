use std::path::{Path, PathBuf};

use clap::Parser;

/// List and check packets.
///
/// Prints MultiSite's listing of each packet file named, or of the packet
/// files (sync_* and repl_*) in each directory named: the path, the packet
/// type (Update or Replica Creation), the family, the comment, the targets
/// (marking the local replica and whether it can apply the packet now, is
/// waiting for earlier changes, or has applied it already), the fragment
/// (part k of n) and the packet sequence number. Every packet is fully
/// verified; a damaged one is listed as damaged, never skipped. In a
/// directory, a packet under another name (renamed on the way, such as an
/// e-mail attachment saved as attachment.zip) is listed too, with a note
/// giving its packet name (the imports skip it in a directory); when a
/// directory holds no packet, the files skipped there are named, each
/// with why it is not one.
///
/// Signatures are checked against the keys of the family members known to
/// the replica found from the current directory (or named with -replica),
/// and, when listing the storage bays, the shipping configuration's trusted
/// keys; otherwise a signer shows as an unknown key.
#[derive(Debug, Parser)]
#[command(name = "lspacket", version, after_help = LSPACKET_EXIT)]
pub struct Args {
    /// Add the packet id, sender, creation time, epoch range per origin, the
    /// sender's epoch row, format version, size, signature status, and the
    /// tree digest (entries, root, and the metadata items it covers and the
    /// sender preserves).
    #[arg(long, conflicts_with = "short")]
    pub long: bool,

    /// Print only the paths of the packets.
    #[arg(long)]
    pub short: bool,

    /// Output format: text (MultiSite's listing) or json (for scripts).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub fmt: super::Format,

    /// The replica whose family keys and epochs to check against. Without
    /// it, the current directory and its parents are searched; outside a
    /// replica, packets are still listed.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// With no PACKET_OR_DIR: list only this storage class's bays.
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// The shipping configuration whose bays are listed, instead of looking
    /// in $SYNCREPLICA_SHIPPING_CONF, the user's config directory and
    /// /etc/syncreplica/shipping.toml.
    #[arg(long, value_name = "FILE")]
    pub shipconf: Option<PathBuf>,

    /// Packet files or directories holding them. Without any, every packet
    /// in the storage bays is listed (outgoing, incoming and return bays of
    /// every class), with its shipping order: destinations left, expiry,
    /// failed attempts, and a destination whose link is outside its hours
    /// waiting until they open; returned packets are marked as expired. A
    /// packet delivered (removed) while the bays are listed is left out.
    /// Uploads
    /// received in part, kept for their senders to resume, follow
    /// ("Partial upload: NAME, HELD of SIZE bytes").
    #[arg(value_name = "PACKET_OR_DIR")]
    pub packets: Vec<PathBuf>,
}

const LSPACKET_EXIT: &str = "\
Options are written with one dash, as in MultiSite (-long); two dashes work as well.

Each packet that cannot be used here says why on its last line: not a packet (not a zip
archive, or a zip archive that is not a packet), damaged (truncated, or a hash or signature
that does not match), unreadable (permissions), signed by an unknown key, of another family,
of an unsupported packet format, or encrypted for others; the error line counts each kind.

Exit status:
  0  every packet listed is intact and signed by a family member (outside a replica: intact)
  1  a file listed cannot be used here (see above), or the command failed
  2  the command line was wrong: an option, a combination, or a value that names nothing
     there is (a member, a file to read, a replica at -replica DIR) or may not be named there";

use crate::cli;
use crate::cli::render::lspacket as listing;
use crate::cli::report::usage;
use crate::replica::{self, Replica};
use crate::ship::Shipping;
use crate::sync::epochs::LocalView;
use crate::sync::packets;
use shipping::bay::{Bay, BayStore, DirStore};
use shipping::ShippingOrder;

const NAME: &str = "lspacket";

/// A packet file to list, and where it sits when it is in a bay.
struct Entry {
    file: PathBuf,
    bay: Option<(String, Bay)>,
    order: Option<ShippingOrder>,
    /// Where the packet is when `file` is only a local copy of it (a
    /// packet in an S3 bay): `s3://bucket/prefix/bay/NAME`.
    remote: Option<String>,
    /// Found in a folder named on the command line under a name that is
    /// not a packet's (`attachment.zip`): the imports skip it there.
    renamed: bool,
}

impl Entry {
    /// A file named on the command line or found in a folder named.
    fn given(file: PathBuf, renamed: bool) -> Entry {
        Entry {
            file,
            bay: None,
            order: None,
            remote: None,
            renamed,
        }
    }
}

/// Runs the command.
pub fn run_ref(args: &Args) -> anyhow::Result<()> {
    // Inside a replica, check signatures against the family's keys and
    // mark the local target; outside one, list all the same.
    let replica = match replica::discover(args.replica.as_deref()) {
        Ok(root) => Some(Replica::open(&root)?),
        Err(crate::Error::NoReplica { .. }) if args.replica.is_none() => None,
        Err(err) => return Err(err.into()),
    };
    // The keys -import trusts: members' current keys and the keys their
    // rotations replaced (good for their epochs before the rotation).
    let mut book = match &replica {
        Some(replica) => Some(crate::sync::keys::KeyBook::load(replica.state())?),
        None => None,
    };
    let (mut keys, view): (Vec<[u8; 32]>, _) = match (&replica, &book) {
        (Some(replica), Some(book)) => (book.all_keys(), Some(LocalView::of(replica)?)),
        _ => (Vec::new(), None),
    };
    // Local copies of packets in S3 bays, removed when done.
    let copies = tempfile::tempdir()?;
    // Uploads received in part into the bays listed.
    let mut partials: Vec<(String, shipping::receive::Partial)> = Vec::new();
    let now = chrono::Utc::now();
    // Folders named that hold no packet, with the files skipped there
    // and why.
    let mut skipped: Vec<(PathBuf, Vec<packets::NotAPacket>)> = Vec::new();
    // The shipping configuration, when the bays are listed: says which
    // orders wait for their link's hours.
    let mut shipping_config = None;
    // What the hub trusts, when its bays are listed outside a replica.
    let mut hub_trust: Option<shipping::trust::Trust> = None;
    let entries = if args.packets.is_empty() {
        let shipping = Shipping::load(args.shipconf.as_deref())?;
        shipping_config = Some(shipping.config.clone());
        // The hub's trust, as its receiver has it: trusted_keys, the
        // trusted_replicas families' keys and the rotations it learned.
        match shipping::trust::trust(&shipping.config, &crate::ship_trust::ReplicaMembers) {
            Ok(trust) => {
                keys.extend(trust.keys.iter().copied());
                hub_trust = Some(trust);
            }
            Err(err) => errln!("{NAME}: warning: {err}"),
        }
        // Listing writes nothing: an S3 bay is checked with a listing, no
        // probe write, so read-only credentials do.
        shipping::bay::set_read_only();
        for class_name in shipping.classes(args.sclass.as_deref())? {
            let class = shipping.config.class(&class_name)?;
            // A bay that cannot be used as configured is said once, as
            // the error it is (not first as a warning about partials).
            if class.s3.is_some() {
                shipping::bay::open_bay(class, Bay::Outgoing)?;
            }
            match shipping::receive::list_partials(class, now) {
                Ok(list) => partials.extend(list.into_iter().map(|p| (class_name.clone(), p))),
                Err(err) if class.s3.is_some() => {
                    errln!("{NAME}: warning: partial uploads of class {class_name}: {err}")
                }
                Err(err) => errln!(
                    "{NAME}: warning: partial uploads in {}: {err}",
                    shipping::receive::partial_dir(class).display()
                ),
            }
        }
        bay_entries(&shipping, args.sclass.as_deref(), &copies)?
    } else {
        if args.sclass.is_some() {
            usage!(
                "-sclass selects storage bays to list; it cannot be combined with PACKET_OR_DIR"
            );
        }
        let mut entries = Vec::new();
        for given in &args.packets {
            let found = packets::collect_packet_files(std::slice::from_ref(given))?;
            let before = entries.len();
            entries.extend(found.into_iter().map(|file| Entry::given(file, false)));
            if given.is_dir() {
                // A packet renamed on the way is listed too, and said to
                // be skipped by the imports; other files are said when
                // the folder holds no packet.
                let (renamed, others) = packets::renamed_packets_in(given)?;
                entries.extend(renamed.into_iter().map(|file| Entry::given(file, true)));
                if entries.len() == before && !others.is_empty() {
                    skipped.push((given.clone(), others));
                }
            }
        }
        entries
    };
    if entries.is_empty() {
        if args.fmt == cli::Format::Json {
            print_json(Vec::new(), &partials, Default::default())?;
        } else {
            match skipped.is_empty() {
                true if !args.packets.is_empty() => outln!(
                    "No packet files in {}.",
                    args.packets
                        .iter()
                        .map(|p| crate::error::printable_path(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                true => outln!("No packets found."),
                false => print_skipped(&skipped),
            }
            print_partials(&partials, args.short, now);
        }
        return Ok(());
    }
    // A packet for this replica is decrypted as it is checked; one for
    // others is checked as a hub checks it (its contents stay sealed).
    // A user who may read the replica but not its private key (a
    // read-only user: the key is the owner's alone) still gets the
    // listing; packets encrypted to this replica are then said to be
    // unreadable by this user, and why.
    let mut key_unreadable = None;
    let decryption = match &replica {
        Some(replica) => match crate::sync::crypt::decryption(replica) {
            Ok(decryption) => decryption,
            Err(crate::error::Error::Io { path, cause })
                if cause.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                key_unreadable = Some(format!(
                    "this user may not read the replica's key {}",
                    crate::error::printable_path(&path)
                ));
                None
            }
            Err(err) => return Err(err.into()),
        },
        None => None,
    };
    let me = replica.as_ref().map(|r| r.identity.replica_id);
    let known_names: Vec<(String, String)> = match &replica {
        Some(replica) => replica
            .members()?
            .into_iter()
            .map(|m| {
                (
                    m.replica.to_hex(),
                    crate::error::printable(&m.name).escape_debug().to_string(),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    // A creation packet this replica was made from is sealed with a
    // passphrase nobody gives lspacket; once its signature is verified and
    // its epochs are applied here, it is listed as applied, not as
    // unreadable.
    let applied_here = |exam: &packet_format::Examination| {
        use packet_format::ErrorKind;
        let sealed = exam.error.as_ref().is_some_and(|err| {
            matches!(
                err.kind,
                ErrorKind::PassphraseNeeded | ErrorKind::WrongPassphrase
            )
        });
        sealed
            && matches!(
                exam.signature,
                Some(packet_format::SignatureStatus::Verified)
            )
            && exam.header.as_ref().is_some_and(|h| {
                h.targets.iter().any(|t| Some(t.id) == me)
                    && view.as_ref().is_some_and(|v| {
                        matches!(
                            v.readiness(h),
                            crate::sync::epochs::Readiness::Applied
                                | crate::sync::epochs::Readiness::Superseded { .. }
                        )
                    })
            })
    };
    // As -import does: a packet signed with a key not known here that
    // carries its sender's rotations leading to it is trusted for that
    // key (read from its operations when this replica can decrypt it,
    // else from its header's copy of them, SPEC.md §4.3).
    if let Some(book) = book.as_mut() {
        let mut unknown: std::collections::BTreeMap<crate::ops::Id, Vec<PathBuf>> =
            Default::default();
        let mut headers = std::collections::BTreeMap::new();
        for entry in &entries {
            let exam = packet_format::examine_packet(&entry.file, &keys);
            if let (None, Some(header)) = (&exam.error, &exam.header) {
                if crate::sync::keys::unknown_key(&exam.signature) {
                    unknown
                        .entry(header.packet_id)
                        .or_default()
                        .push(entry.file.clone());
                    headers.insert(header.packet_id, header.clone());
                }
            }
        }
        for (id, paths) in &unknown {
            let header = &headers[id];
            let found = crate::sync::keys::rotations_vouching(
                book,
                paths,
                header.signer_key,
                decryption.as_ref(),
            );
            if found.is_empty() {
                crate::sync::keys::header_vouching(book, header);
            }
        }
        keys = book.all_keys();
    }
    // As a hub's receiver does: a packet signed by a key the hub does not
    // trust whose header carries rotations leading to it from one it
    // does is verified with that key (shipping::trust::Trust::header_vouches).
    let mut vouched: std::collections::BTreeMap<PathBuf, [u8; 32]> = Default::default();
    if let (Some(trust), None) = (&hub_trust, &replica) {
        for entry in &entries {
            let exam = packet_format::examine_packet(&entry.file, &keys);
            if let (None, Some(header)) = (&exam.error, &exam.header) {
                if crate::sync::keys::unknown_key(&exam.signature)
                    && trust.header_vouches(&trust.keys, header).is_ok()
                {
                    vouched.insert(entry.file.clone(), header.signer_key);
                }
            }
        }
    }
    let exams: Vec<packet_format::Examination> = entries
        .iter()
        .map(|entry| {
            let with_signer;
            let keys = match vouched.get(&entry.file) {
                Some(signer) => {
                    with_signer = [keys.as_slice(), &[*signer]].concat();
                    &with_signer
                }
                None => &keys,
            };
            let exam = packet_format::examine_packet(&entry.file, keys);
            let for_me = exam.header.as_ref().is_some_and(|h| {
                h.encryption.is_some() && h.targets.iter().any(|t| Some(t.id) == me)
            });
            let exam = if for_me && exam.error.is_none() {
                packet_format::examine_packet_with(&entry.file, keys, decryption.as_ref())
            } else {
                exam
            };
            match applied_here(&exam) {
                true => packet_format::Examination {
                    error: None,
                    ..exam
                },
                false => exam,
            }
        })
        .collect();
    // A packet in a directory bay that was removed between the listing
    // and its examination (delivered by a server meanwhile) is no longer
    // there to list.
    let (entries, exams): (Vec<Entry>, Vec<packet_format::Examination>) = entries
        .into_iter()
        .zip(exams)
        .filter(|(entry, exam)| {
            let bay_file = entry.bay.is_some() && entry.remote.is_none();
            !(bay_file && exam.error.is_some() && !entry.file.exists())
        })
        .unzip();
    // One readiness rule with -import: a packet whose parts are not all
    // listed here waits for the rest.
    let mut view = view;
    if let Some(view) = view.as_mut() {
        for exam in exams.iter().filter(|exam| !listing::is_problem(exam)) {
            if let Some(header) = &exam.header {
                view.parts
                    .entry(header.packet_id)
                    .or_default()
                    .insert(header.part);
            }
        }
    }
    // The stale-copy rule of -import needs what this replica has seen of
    // each sender.
    let mut seen = std::collections::BTreeMap::new();
    if let Some(replica) = &replica {
        for header in exams.iter().filter_map(|e| e.header.as_ref()) {
            if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(header.sender.id) {
                slot.insert(crate::sync::family::SenderSeen::of(
                    replica,
                    &header.sender.id,
                )?);
            }
        }
    }
    // Packets named outside any replica have no keys to be checked
    // against: an unknown key there is "not checked", not a problem.
    let reader = listing::Reader {
        replica: me,
        family: replica
            .as_ref()
            .map(|r| (r.identity.family_id, r.identity.family_name.clone())),
        unchecked: replica.is_none() && !args.packets.is_empty(),
        hub: replica.is_none() && args.packets.is_empty(),
        key_unreadable,
        book,
        seen,
    };
    let mut counts: std::collections::BTreeMap<listing::Verdict, u64> = Default::default();
    // Files this replica should be able to use and cannot, by verdict.
    let mut problems: std::collections::BTreeMap<listing::Verdict, u64> = Default::default();
    let mut json = Vec::new();
    for (entry, exam) in entries.iter().zip(exams) {
        let judged = listing::judge(&exam, &reader);
        let standard = match entry.renamed {
            true => exam.header.as_ref().map(standard_name),
            false => None,
        };
        *counts.entry(judged.verdict).or_default() += 1;
        if judged.problem {
            *problems.entry(judged.verdict).or_default() += 1;
        }
        let returned = matches!(entry.bay, Some((_, Bay::Return)));
        // The hours windows shut now, for the order's text and JSON alike.
        let shut = match (&shipping_config, &entry.order, returned) {
            (Some(config), Some(order), false) => shut_windows(config, order, now),
            _ => ShutWindows::new(),
        };
        if args.fmt == cli::Format::Json {
            let mut value = listing::render_json(&exam, &judged, view.as_ref());
            if let Some(signature) = value
                .signature
                .as_mut()
                .filter(|_| judged.verdict == listing::Verdict::NotChecked)
            {
                signature.status = "not checked";
            }
            if let Some(remote) = &entry.remote {
                value.path = remote.clone();
            }
            if let Some((class, bay)) = &entry.bay {
                value.storage_class = Some(class.clone());
                value.bay = Some(bay.name().to_string());
            }
            value.order = entry.order.as_ref().map(|order| {
                let mut json = listing::render_order_json(&as_tried(order, &shut));
                json.waiting_for_hours = shut
                    .clone()
                    .into_iter()
                    .map(|(destination, (hop, hours, opens))| {
                        let until = shipping::order::format_time(&opens);
                        (destination, listing::WaitJson { hop, hours, until })
                    })
                    .collect();
                json
            });
            if entry.renamed {
                value.packet_name = exam.header.as_ref().map(standard_name);
            }
            json.push(value);
        } else if args.short {
            match &entry.remote {
                Some(remote) => outln!("{remote}"),
                None => outln!("{}", crate::error::printable_path(&entry.file)),
            }
        } else {
            let text = listing::render_text(exam, &judged, args.long, view.as_ref());
            let text = match &entry.remote {
                Some(remote) => text.replace(&entry.file.display().to_string(), remote),
                None => text,
            };
            // The listing names an origin only when the packet's header
            // does (its sender, its targets); the members this replica
            // knows are named by it too.
            let mut text = text;
            for (id, name) in &known_names {
                text = text
                    .replace(&format!("\n  {id}="), &format!("\n  {name}="))
                    .replace(
                        &format!("\n  {id}  first epoch"),
                        &format!("\n  {name}  first epoch"),
                    );
            }
            let text = match judged.verdict == listing::Verdict::NotChecked {
                true => text.replace(
                    "Signature: unknown key ",
                    "Signature: not checked (no replica here; use -replica DIR to check it); key fingerprint ",
                ),
                false => text,
            };
            out!("{text}");
            if let Some((class, bay)) = &entry.bay {
                outln!("Storage bay: {} (class {class})", bay.name());
            }
            if let Some(order) = &entry.order {
                out!(
                    "{}",
                    listing::render_order_text(&as_tried(order, &shut), returned)
                );
                print_windows(&shut);
            }
            if entry.renamed {
                outln!(
                    "Note: named unlike a packet (sync_*.zip, repl_*.zip), so syncreplica -import and \
                     mkreplica -import skip it in a folder: name the file itself, or rename it{}.",
                    match &standard {
                        Some(name) => format!(" to {}", crate::error::printable(name)),
                        None => String::new(),
                    }
                );
            }
            outln!();
        }
    }
    if args.fmt != cli::Format::Json && !args.short {
        print_skipped(&skipped);
    }
    if args.fmt == cli::Format::Json {
        let summary = counts.iter().map(|(v, n)| (v.json(), *n)).collect();
        print_json(json, &partials, summary)?;
    } else {
        print_partials(&partials, args.short, now);
    }
    if !problems.is_empty() {
        // Each kind of trouble by its own name: a file that is no packet
        // is not damaged, nor is a packet of another family.
        let kinds: Vec<String> = problems
            .iter()
            .map(|(verdict, n)| verdict.counted(*n))
            .collect();
        anyhow::bail!(
            "{} of {} cannot be used here: {}",
            problems.values().sum::<u64>(),
            cli::counted(entries.len() as u64, "file listed", "files listed"),
            kinds.join(", ")
        );
    }
    Ok(())
}

/// Every packet in the bays of the classes selected, with its order.
fn bay_entries(
    shipping: &Shipping,
    sclass: Option<&str>,
    copies: &tempfile::TempDir,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for class_name in shipping.classes(sclass)? {
        let class = shipping.config.class(&class_name)?;
        if class.s3.is_some() {
            for bay in Bay::ALL {
                let store = shipping::bay::open_bay(class, bay)?;
                if store.local_dir().is_some() {
                    // A return bay that is a directory: listed below.
                    continue;
                }
                let dir = copies.path().join(format!("{class_name}-{}", bay.name()));
                std::fs::create_dir_all(&dir)?;
                let local = DirStore::new(&dir);
                let mut names = store.list()?;
                listed(bay);
                names.sort_by(|a, b| packets::by_name_and_number(a.as_ref(), b.as_ref()));
                for name in names {
                    if shipping::order::packet_of(&name).is_some() {
                        continue;
                    }
                    // Servers delivering from the bay remove what they
                    // delivered: a packet gone since the listing is no
                    // longer there to list.
                    match shipping::bay::copy_between(store.as_ref(), &name, &local, &name) {
                        Ok(_) => {}
                        Err(err) if err.is_not_found() => continue,
                        Err(err) => return Err(err.into()),
                    }
                    let order = bay_order(store.as_ref(), &name);
                    entries.push(Entry {
                        file: dir.join(&name),
                        bay: Some((class_name.clone(), bay)),
                        order,
                        remote: Some(format!("{}/{name}", store.describe())),
                        renamed: false,
                    });
                }
            }
            if class.s3.as_ref().is_some_and(|s3| s3.return_url.is_some()) {
                continue;
            }
        }
        for (bay, dir) in [
            (Bay::Outgoing, class.outgoing_dir()),
            (Bay::Incoming, class.incoming_dir()),
            (Bay::Return, class.return_dir()),
        ] {
            if !dir.is_dir() || (class.s3.is_some() && bay != Bay::Return) {
                continue;
            }
            let store = DirStore::new(&dir);
            let files = packets::collect_packet_files(std::slice::from_ref(&dir))?;
            listed(bay);
            for file in files {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let order = bay_order(&store, &name);
                entries.push(Entry {
                    file,
                    bay: Some((class_name.clone(), bay)),
                    order,
                    remote: None,
                    renamed: false,
                });
            }
        }
    }
    Ok(entries)
}

/// Per destination whose next hop's `hours` window is shut: the hop, its
/// hours as written, and when the window opens.
type ShutWindows =
    std::collections::BTreeMap<String, (String, String, chrono::DateTime<chrono::Utc>)>;

/// Per destination of `order` whose link's `hours` window is shut at
/// `now`: the hop, its hours as written, and when the window opens.
fn shut_windows(
    config: &shipping::ShippingConfig,
    order: &ShippingOrder,
    now: chrono::DateTime<chrono::Utc>,
) -> ShutWindows {
    let mut shut = std::collections::BTreeMap::new();
    for destination in &order.destinations {
        let Ok(Some(next)) = config.next_hop(destination) else {
            continue;
        };
        let link = config.link(&next.name);
        if let (Err(opens), Some(hours)) = (link.window_at(now), link.hours) {
            shut.insert(destination.clone(), (next.name, hours.to_string(), opens));
        }
    }
    shut
}

/// `order` as it will be tried: a destination whose window is shut is not
/// tried before the window opens, whatever its backoff says.
fn as_tried(order: &ShippingOrder, shut: &ShutWindows) -> ShippingOrder {
    let mut order = order.clone();
    for (destination, attempts) in order.attempts.iter_mut() {
        if let Some((_, _, opens)) = shut.get(destination) {
            attempts.next_retry = attempts.next_retry.max(*opens);
        }
    }
    order
}

/// Says, per destination whose link's `hours` window is shut now, that
/// the order waits for it to open.
fn print_windows(shut: &ShutWindows) {
    for (destination, (hop, hours, opens)) in shut {
        outln!(
            "  delivery to {}: waits for {}'s hours ({hours}), until {}",
            crate::error::printable(destination),
            crate::error::printable(hop),
            shipping::order::format_time(opens)
        );
    }
}

/// Test hook: the pause point `lspacket-listed:BAY` (a bay's packets
/// are listed, none yet read), where a test removes one as a server
/// delivering it would.
fn listed(bay: Bay) {
    crate::sys::testhook::pause_point(
        &format!("lspacket-listed:{}", bay.name()),
        &crate::sys::stop::StopFlag::new(),
    );
}

/// The shipping order of packet `name` in `store`, if it has one; a
/// warning when it cannot be read (one removed since it was seen, with
/// its packet delivered meanwhile, is none).
fn bay_order(store: &dyn BayStore, name: &str) -> Option<ShippingOrder> {
    match store.exists(&shipping::order::order_name(name)) {
        Ok(true) => match ShippingOrder::load(store, name) {
            Ok(order) => Some(order),
            Err(err) if err.is_not_found() => None,
            Err(err) => {
                errln!("{NAME}: warning: {err}");
                None
            }
        },
        _ => None,
    }
}

/// The name the writer gives a packet with this header (SPEC.md §11): a
/// renamed packet's own name.
fn standard_name(header: &packet_format::Header) -> String {
    let target = header.targets.first();
    packet_format::packet_file_name(
        header.kind,
        &header.sender.name,
        header.created,
        target.map_or("", |t| t.name.as_str()),
        target.map_or(0, |t| t.seq),
        // A creation packet's header names the new member (SPEC.md §4.2).
        target.map(|t| t.name.as_str()),
        header.part,
        header.parts,
    )
}

/// Says, per folder named that holds no packet, which files were skipped
/// there and why.
fn print_skipped(skipped: &[(PathBuf, Vec<packets::NotAPacket>)]) {
    for (dir, others) in skipped {
        outln!(
            "No packets in {}; skipped {}, none of them a packet:",
            crate::error::printable_path(dir),
            cli::counted(others.len() as u64, "other file", "other files")
        );
        for (file, why) in others {
            outln!(
                "  {}: {why}",
                crate::error::printable_path(file.file_name().map_or(file.as_ref(), Path::new))
            );
        }
    }
}

/// Prints the partial uploads after the packets (not with -short, which
/// lists packet paths only).
fn print_partials(
    partials: &[(String, shipping::receive::Partial)],
    short: bool,
    now: chrono::DateTime<chrono::Utc>,
) {
    if short {
        return;
    }
    for (class, partial) in partials {
        out!("{}", listing::render_partial_text(class, partial, now));
    }
}

/// Prints the JSON listing (see [`listing::PacketList`]).
fn print_json(
    packets: Vec<listing::PacketJson>,
    partials: &[(String, shipping::receive::Partial)],
    summary: std::collections::BTreeMap<&'static str, u64>,
) -> anyhow::Result<()> {
    let list = listing::PacketList {
        version: listing::JSON_VERSION,
        packets,
        partials: partials
            .iter()
            .map(|(class, p)| listing::PartialJson {
                packet: p.packet.clone(),
                storage_class: class.clone(),
                held: p.held,
                size: p.size,
                sha256: p.sha256.clone(),
                modified: shipping::order::format_time(&p.modified),
            })
            .collect(),
        summary,
    };
    cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&list)?));
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.fmt == cli::Format::Json && (args.short || args.long) {
        usage!(
            "{} applies to the text listing; -fmt json always lists every field",
            if args.short { "-short" } else { "-long" }
        );
    }
    run_ref(&args)
}
