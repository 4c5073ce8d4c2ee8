use std::path::PathBuf;

use clap::Parser;

/// Create a replica family or a new member of one.
///
/// `mkreplica -init -family FAMILY NAME` creates a new family whose first
/// replica, NAME, is rooted at DIR (default: the current directory). Files
/// already in DIR become the replica's initial content and are recorded as
/// its first operations. The replica's state lives in DIR/.syncreplica/:
/// its identity, its ed25519 signing key (mode 0600), the family's members
/// and the state database.
///
/// `mkreplica -export -out DIR NEWNAME` (run in an existing replica) makes a
/// new member NEWNAME: it writes a replica-creation packet with all content
/// and the family's members into DIR (repl_<sender>_<time>_<NEWNAME>[_<k>of<n>].zip).
/// The new member's secret keys (signing and encryption) never travel in
/// the clear: by default they travel inside the packet, and the whole
/// packet (keys, content, path names) is encrypted to a passphrase (age's
/// scrypt), asked twice on the terminal or read from the first line of
/// -passphrase-file FILE, of at least 8 characters (it is all that
/// protects the keys on a lost stick); without a terminal and without -passphrase-file
/// the export refuses (exit 2) before doing anything. Tell the passphrase
/// to the new site by another route than the packet. With -keyout FILE the
/// keys go to FILE instead (made with mode 0600, never overwritten), to be
/// carried by another route, and the packet is encrypted to the new
/// member's key that FILE holds: no passphrase is asked. The packet may
/// travel by any route. Siblings learn the new member's public keys with
/// this replica's next updates. A file changed since the scan (still being
/// written) is left out of the packet, with a warning naming it: the new
/// replica is made without it, and the next syncreplica -export to
/// NEWNAME sends it (its new version, once recorded).
///
/// `mkreplica -import -replica DIR PACKET_OR_DIR...` creates the new replica
/// at DIR, which must be absent or empty, from the creation packet's parts.
/// It asks for the packet's passphrase on the terminal (or reads
/// -passphrase-file FILE); a wrong one is refused, with nothing created. A
/// packet made with -keyout needs its key file: -key FILE (default:
/// NEWNAME.key beside the packet). It prints
/// the fingerprint of the key that signed the packet, for checking out of
/// band; with -fingerprint it refuses a packet signed by any other key. It
/// names the creation packet it used, and refuses, creating nothing, when
/// the files and folders named hold more than one (for different new
/// members), listing them: name the files of the one to use. Each import
/// makes a distinct copy (its own incarnation id): importing one creation
/// packet twice makes two copies of one replica, and siblings refuse the
/// packets of whichever they hear from second (syncreplica -import). So a
/// second import on the same host is refused while the first copy is
/// there (each import is recorded in the user's data folder,
/// ~/.local/share/syncreplica/replicas/); once that copy is removed, the
/// packet makes the member anew. On another host it cannot be told.
/// Whoever signed it, the packet is checked as syncreplica -import checks
/// an update, and refused, with nothing made, unless it carries every
/// operation of every member from the first, each sealed by its origin,
/// its member list is the family's first member and the members those
/// operations add, its sender is its signer, and its epoch row claims no
/// more than it carries. Setuid and setgid bits are set only by a member
/// that runs as root and keeps owners, as in any import; what this member
/// cannot apply (device nodes, owners, groups and those bits when not
/// root) is said with a count ("not applied here:").
///
/// `mkreplica -export -manifest -out DIR NEWNAME` writes a manifest: a
/// creation packet with the family, the new member's identity and the
/// whole log (paths, modes, mtimes, chunk ids) but no content, for a new
/// member made over a tree that holds the content already, such as a
/// migrated server. A plain -import refuses it. `mkreplica -import -adopt
/// -replica DIR PACKET_OR_DIR...` makes the new member over the tree at
/// DIR (it must exist and not be a replica): a file whose content is the
/// family's (the same chunk ids) is kept as it is, not rewritten;
/// directories, symlinks, empty files and special files it lacks are made;
/// every path kept or made takes the recorded metadata (mode, owner,
/// group, ACLs, xattrs, hard links, times) as preserve keeps it; a file
/// with other content stays in place until the creator's answer replaces
/// it (the old version kept in .syncreplica/deleted/DAY/PATH); anything
/// else where the family has something else is set aside there at once,
/// never deleted; paths
/// its .syncreplicaignore excludes are left alone; local files the family
/// lacks stay, recorded by the next scan as this member's own. The files it
/// lacks or had other content for are asked for: its first packet to the
/// creator (syncreplica -export CREATOR) carries content requests, and the
/// creator's next export to it sends those files.
///
/// With -mirror, the new member (made by -import or -import -adopt) is a
/// mirror of the packet's sender: it records no change of its own; changed
/// metadata on one of the family's paths (mode, times, owner, group, ACLs,
/// xattrs, hard links) is set back, a file with new content is left in place until the family's version replaces
/// it, and any other local change there is set aside (.syncreplica/deleted/DAY/PATH, listed in the command's
/// report); the family's version is asked for again. Local paths the family lacks are left alone and never sent.
/// chreplica -nomirror makes it an ordinary member.
///
/// `mkreplica -restore [-replica DIR] [SIBLING...]`, run in a replica just
/// restored from a backup (an old copy of its directory, state folder
/// included), before anything else: such a replica has forgotten changes
/// it already sent, which its siblings hold. It is marked restored, and
/// until the restore is finished it records no change of its own (each
/// would be numbered like one its siblings hold): syncreplica -record
/// refuses, and -import and -export work without recording. Each
/// sibling's packets tell it which of its own changes that sibling holds;
/// its own packets tell each sibling that it was restored, and the
/// sibling's next export returns what it forgot. The restore finishes
/// with the import that leaves it waiting for nothing: a packet received
/// from each SIBLING named (default: every other current member it ever
/// received a packet from; the others are named and left out), and every
/// change of its own that any of them holds. It then numbers its changes
/// after the highest one any sibling has, so no change number is used
/// twice and no sibling raises a clone alarm. A change the restored copy
/// recorded before the restore, numbered like a different one a sibling
/// holds (made before the disk died), is set aside when that sibling's
/// copy comes back and logged again, renumbered after every change a
/// sibling holds, when the restore finishes: it travels as a new change,
/// and the import says so. lsreplica -long shows
/// what a restore waits for. The usual round: syncreplica -export -ack
/// SIBLING here, import it there; that sibling exports here; import it.
///
/// `mkreplica -rekey [-replica DIR]`, run in a replica, replaces its
/// signing key and its encryption key with new ones (say, when a copy of
/// its state folder or a backup of it went astray) and prints both new
/// fingerprints. The rotation is a change of this replica's own, at its
/// next epoch E, signed and sealed with the old key, so every sibling
/// can check it with the key it knows; it travels with this replica's
/// next packets (syncreplica -export) and through relays like any change.
/// From then on this replica signs and seals with the new key; a sibling
/// that has the rotation refuses any packet signed with the old key that
/// carries this replica's own changes after E (or says it holds them),
/// and any change after E sealed with the old key, whoever relays it:
/// packets carry no trustworthy time, so the rule is by epochs. Packets
/// already written before the rotation (in flight, their epochs all at or
/// below E) still apply everywhere. Siblings encrypt to the new key once
/// they have the rotation; packets encrypted to the old key before that
/// still open here: the old encryption key is kept, for reading only, in
/// .syncreplica/retired_encryption_keys (mode 0600), which an
/// administrator may delete once every sibling has confirmed epoch E of
/// this replica (lsreplica -long) and no packet written before is still
/// travelling. The old signing key is deleted. Refused while a restore
/// (-restore) is unfinished. A crash during -rekey leaves the old keys or
/// the new ones, never a mix: the next command finishes or undoes it.
/// Shipping servers verify the new key from the rotation the packets
/// carry; one that trusts this replica through trusted_keys in its
/// shipping.toml needs the new public key this prints added there, and a
/// restart (the server reads shipping.toml when it starts); the old key
/// is removed later, once the packets written before the rotation are
/// through (with the old key gone, that server refuses them). See
/// syncreplica-shipping(5), Key rotation.

#[derive(Debug, Parser)]
#[command(name = "mkreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
pub struct Args {
    /// Create a new replica family with NAME as its first member.
    #[arg(long, group = "mode", requires = "family")]
    pub init: bool,

    /// Write a replica-creation packet for a new member NAME (needs -out).
    #[arg(long, group = "mode", requires = "out")]
    pub export: bool,

    /// Create a replica from a creation packet's parts.
    #[arg(long, group = "mode")]
    pub import: bool,

    /// Mark this replica restored from a backup; it waits to hear from the
    /// SIBLINGs named (default: every other current member).
    #[arg(long, group = "mode")]
    pub restore: bool,

    /// Replace this replica's signing and encryption keys with new ones,
    /// announced to the family by a change signed with the old key (see
    /// above).
    #[arg(long, group = "mode")]
    pub rekey: bool,

    /// With -init: name of the new family.
    #[arg(long, value_name = "FAMILY")]
    pub family: Option<String>,

    /// With -export: the directory that receives the packet parts (the
    /// new member's keys travel inside them, or in the -keyout file); made
    /// if missing (once every check has
    /// passed). Unlike MultiSite's -out, which takes a file-name prefix,
    /// this names a folder: the files get their standard names in it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// With -export: largest size of one packet file, with an optional k, m
    /// or g suffix (at least 64k).
    #[arg(long, value_name = "SIZE", default_value = "2g", value_parser = super::max_size_arg)]
    pub maxsize: u64,

    /// With -export: comment stored in the packet (-c TEXT, as in MultiSite).
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

    /// With -export: write a manifest, a creation packet without content
    /// (the recorded state: paths, metadata, chunk ids), for a new member
    /// made over a tree that holds the content already (-import -adopt).
    #[arg(long, requires = "export")]
    pub manifest: bool,

    /// With -import: make the new member over the existing tree at -replica
    /// DIR (see above); with a manifest, the files it lacks are asked for.
    #[arg(long, requires = "import")]
    pub adopt: bool,

    /// With -import: make the new member a mirror of the packet's sender: it
    /// records no change of its own; the family's version always wins (see
    /// above). chreplica -nomirror makes it an ordinary member.
    #[arg(long, requires = "import")]
    pub mirror: bool,

    /// With -import: the SHA-256 fingerprint (64 hex digits) the packet's
    /// signing key must have, as printed by mkreplica -export at the sender.
    #[arg(long, value_name = "HEX", value_parser = super::fingerprint_arg)]
    pub fingerprint: Option<String>,

    /// With -export: write the new member's secret keys to FILE (made with
    /// mode 0600; never overwritten) instead of inside the packet, to be
    /// carried by another route; the packet is then encrypted to the new
    /// member's key and needs no passphrase.
    #[arg(long, value_name = "FILE", requires = "export")]
    pub keyout: Option<PathBuf>,

    /// With -export or -import: read the creation packet's passphrase from
    /// the first line of FILE instead of asking on the terminal. A new one
    /// (-export) has at least 8 characters; -import takes whatever opens
    /// the packet. Not with -keyout, whose packet is encrypted to the key
    /// file instead.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// With -import: the new member's key file, written by mkreplica
    /// -export -keyout FILE, for a packet made with -keyout (default:
    /// NEWNAME.key beside the packet).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// With -import: a path that stays local to the new member (gitignore
    /// syntax, relative to the replica root: "/hosts" at a replica of
    /// /etc); repeat for more. Paths it excludes are not written from the
    /// creation packet, and the new member's config.toml records it.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// With -import: what the new member keeps beyond content, mode and
    /// times, a comma-separated list out of owner, group, acls, xattrs,
    /// hardlinks, devices, specials (config.toml's preserve, written before
    /// anything is; default: what the running user can apply).
    #[arg(long, value_name = "LIST")]
    pub preserve: Option<String>,

    /// With -import: owners and ACL entries by number only (config.toml's
    /// numeric_ids = true, written before anything is), for a site whose
    /// user and group names map to other ids.
    #[arg(long)]
    pub numeric_ids: bool,

    /// Replica root: for -init and -import, where the new replica goes
    /// (default: the current directory); for -export, the exporting replica
    /// (default: found from the current directory up).
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// No progress line and no summary lines, only warnings and errors
    /// (on standard error). The progress line (bytes, percentage, rate,
    /// time left) is shown only when standard error is a terminal, once a
    /// step has run for a second.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// With -import and -rekey: output format, text or json (for scripts:
    /// one object with a "version" field instead of the summary lines; see
    /// JSON OUTPUT in the man page).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub fmt: super::Format,

    /// -init and -export: NAME of the new replica (letters, digits, '_', '-',
    /// '.'). -import: the creation packet's parts, or directories holding them.
    /// -restore: the siblings to wait for.
    #[arg(
        value_name = "NAME | PACKET_OR_DIR | SIBLING",
        required_unless_present_any = ["restore", "rekey"]
    )]
    pub names: Vec<String>,
}

use std::path::Path;

use crate::cli;
use crate::cli::report::usage;
use crate::error::printable;
use crate::replica::{self, Replica};
use crate::sync::creation;
use crate::sync::packets;
use packet_format::{LogicalPacket, PacketKind};

/// The comment a manifest's header carries (before the user's own, if
/// any): what `lspacket` shows of it.
const MANIFEST_COMMENT: &str =
    "manifest: no file content, for mkreplica -import -adopt over a tree that is already there";

const NAME: &str = "mkreplica";

/// The one replica NAME operand, checked against the name alphabet: a bad
/// name typed on the command line is a usage error (exit 2).
fn single_name(args: &Args) -> anyhow::Result<&str> {
    match args.names.as_slice() {
        [name] => {
            name_operand("replica", name)?;
            Ok(name)
        }
        _ => usage!("expected one replica NAME, got {}", args.names.len()),
    }
}

/// Refuses a `what` name (replica, family) typed on the command line that
/// packet file names cannot carry, as a usage error naming what it is.
fn name_operand(what: &str, name: &str) -> anyhow::Result<()> {
    match crate::store::identity::validate_name(name) {
        Ok(()) => Ok(()),
        Err(crate::error::Error::BadName { why, .. }) => usage!(
            "invalid {what} name \"{}\": {why}",
            crate::error::printable(name)
        ),
        Err(other) => Err(other.into()),
    }
}

fn init(args: &Args) -> anyhow::Result<()> {
    let name = single_name(args)?;
    let family = args.family.as_deref().expect("clap requires -family");
    name_operand("family", family)?;
    let dir = match &args.replica {
        Some(dir) => {
            // A file there is the user's mistake (exit 2), said as such.
            replica::check_replica_dir(dir, false)?;
            dir.clone()
        }
        None => std::env::current_dir()?,
    };
    let report = replica::init(&dir, family, name)?;
    for pid in &report.cleaned_up {
        outln!("Removed the unfinished state folder of an earlier mkreplica killed before it finished (process {pid}).");
    }
    // Nothing was recorded before: a path the first scan could not read
    // is not recorded at all (review 14e item 9d: it said "left as
    // recorded").
    for warning in &report.scan.warnings {
        let said = warning
            .to_string()
            .replace(", left as recorded", ", not recorded");
        errln!("{NAME}: warning: {said}");
    }
    let replica = &report.replica;
    outln!(
        "Created replica \"{}\" of new family \"{}\" at {}.",
        replica.identity.replica_name,
        replica.identity.family_name,
        replica.root.display()
    );
    outln!("  family id:       {}", replica.identity.family_id);
    outln!("  replica id:      {}", replica.identity.replica_id);
    outln!("  key fingerprint: {}", report.fingerprint);
    match report.record.epochs {
        Some((first, last)) => outln!(
            "Recorded the initial content ({}) as {}.",
            super::counted(report.scan.changes.len() as u64, "entry", "entries"),
            super::epochs(first, last)
        ),
        None => outln!("The directory was empty; nothing recorded yet."),
    }
    Ok(())
}

fn export(args: &Args) -> anyhow::Result<()> {
    let name = single_name(args)?;
    let out = args.out.as_deref().expect("clap requires -out");
    let max_size = args.maxsize;
    let stop = cli::stop_on_signals()?;
    let mut replica =
        Replica::open(&replica::discover(args.replica.as_deref())?)?.lock("mkreplica -export")?;
    cli::print_lock_takeover(NAME, &replica);
    cli::finish_interrupted(NAME, &mut replica)?;
    // Everything is checked before anything is recorded or created; a
    // missing -out is then made, as syncreplica -export makes one.
    let keys_out = match &args.keyout {
        Some(file) => creation::KeysOut::File(file.clone()),
        // A placeholder for the checks; the passphrase is asked after them.
        None => creation::KeysOut::Passphrase(std::sync::Arc::new(String::new().into())),
    };
    creation::check_export(&replica, name, out, max_size, &keys_out)?;
    // Asked before the long part, and before anything is recorded.
    let keys_out = match keys_out {
        creation::KeysOut::Passphrase(_) => {
            creation::KeysOut::Passphrase(super::passphrase::obtain(
                args.passphrase_file.as_deref(),
                true,
                "mkreplica -export (the creation packet is encrypted to one)",
            )?)
        }
        file => file,
    };
    // Made if missing (removed again if the export fails before a packet
    // is there), writable, with room: checked before the scan records.
    let _created_out = cli::prepare_out(out, None, "-out directory")?;
    let (outcome, summary) = crate::sync::record::record_local_changes(&mut replica)?;
    cli::print_warnings(NAME, &outcome.warnings);
    cli::warn_missing(NAME, &replica.identity.replica_name, &summary.missing);
    // A manifest says so in the header's comment, in the clear: the
    // contents are encrypted, and `lspacket` of a creation packet
    // otherwise tells a manifest from a tree of empty files by nothing
    // (review 14e item 9c).
    let comment = match (args.manifest, args.comment.as_str()) {
        (false, comment) => comment.to_string(),
        (true, "") => MANIFEST_COMMENT.to_string(),
        (true, comment) => format!("{MANIFEST_COMMENT}; {comment}"),
    };
    let made = creation::export_creation(
        &mut replica,
        name,
        out,
        max_size,
        &comment,
        args.manifest,
        &keys_out,
        &stop,
    )
    .map_err(|err| {
        crate::sync::export::when_no_room(
            err,
            &[(out, "-out directory")],
            || format!("writing the creation packet for \"{name}\""),
            "-maxsize",
        )
    })?;
    match args.manifest {
        true => outln!(
            "Wrote the manifest (a replica-creation packet without content, for mkreplica -import -adopt) \
             for new member \"{name}\" of family \"{}\" ({}):",
            replica.identity.family_name,
            cli::counted(made.files as u64, "file", "files"),
        ),
        false => outln!(
            "Wrote the replica-creation packet for new member \"{name}\" of family \"{}\" ({}, {} bytes of content):",
            replica.identity.family_name,
            cli::counted(made.files as u64, "file", "files"),
            made.chunk_bytes
        ),
    }
    for part in &made.parts {
        outln!("  {} ({} bytes)", part.path.display(), part.size);
    }
    for path in &made.held_back {
        cli::warn_busy_file(
            NAME,
            path,
            &format!(
                "the creation packet goes without it, and {name} gets it (its new version, once recorded) with the next syncreplica -export to {name}"
            ),
        );
    }
    match &made.key_file {
        Some(key_file) => {
            outln!(
                "New member's secret keys: {} (mode 0600); the packet is encrypted to the key it holds.",
                key_file.display()
            );
            outln!("  Carry it separately from the packet, or by a trusted route: mkreplica -import -key FILE needs it.");
        }
        None => {
            outln!(
                "The packet, with the new member's secret keys, is encrypted to the passphrase."
            );
            outln!("  Tell it to the new site by another route than the packet: mkreplica -import asks for it.");
        }
    }
    // Even under -quiet: the receiving site needs it to check the packet.
    cli::report::print_data(format_args!(
        "Packet signed by key with fingerprint {}\n",
        made.fingerprint
    ));
    cli::report::print_data(format_args!(
        "  At the new site, check it with: mkreplica -import -fingerprint {} ...\n",
        made.fingerprint
    ));
    Ok(())
}

fn import(args: &Args) -> anyhow::Result<()> {
    if args.family.is_some() || args.out.is_some() {
        usage!("-family and -out do not apply to -import");
    }
    // Before any packet is read: a file named as the new replica's folder
    // (or, to adopt, a folder that is not there) is a usage mistake.
    if let Some(dir) = &args.replica {
        replica::check_replica_dir(dir, args.adopt)?;
    }
    let paths: Vec<PathBuf> = args.names.iter().map(PathBuf::from).collect();
    let files = packets::collect_packet_files(&paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no packet files (repl_*) found in {}",
            args.names.join(", ")
        );
    }
    // Which creation packets are there: exactly one may be, or which new
    // member to make is a guess.
    let mut creations: Vec<(packet_format::Header, Vec<PathBuf>)> = Vec::new();
    let mut first_problem = None;
    let checking = bytes_phase("checking packets", &files);
    for file in &files {
        let exam = packet_format::examine_packet(file, &[]);
        advance_by_size(file);
        match exam.header {
            Some(header) if header.kind == PacketKind::ReplicaCreation => {
                match creations
                    .iter_mut()
                    .find(|(h, _)| h.packet_id == header.packet_id)
                {
                    Some((_, parts)) => parts.push(file.clone()),
                    None => creations.push((header, vec![file.clone()])),
                }
            }
            Some(_) => {
                first_problem.get_or_insert_with(|| {
                    format!(
                        "{} is not a replica-creation packet but an update packet \
                         (syncreplica -import brings update packets into an existing replica)",
                        file.display()
                    )
                });
            }
            None => {
                first_problem.get_or_insert_with(|| {
                    // The error's kind only: it names the file again.
                    let why = match packets::not_a_packet(file) {
                        Some(why) => format!("not a packet: {why}"),
                        None => exam
                            .error
                            .as_ref()
                            .map(|e| e.kind.to_string())
                            .unwrap_or_default(),
                    };
                    format!("{}: {why}", file.display())
                });
            }
        }
    }
    drop(checking);
    let files: Vec<PathBuf> = match creations.as_slice() {
        [] => anyhow::bail!(
            "{}",
            first_problem.unwrap_or_else(|| "no replica-creation packet found".into())
        ),
        [(_, parts)] => parts.clone(),
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|(header, parts)| {
                    format!(
                        "  {}{}: for new member \"{}\" of family \"{}\", from {}, written {}",
                        crate::error::printable_path(&parts[0]),
                        if parts.len() > 1 {
                            format!(" (+{} more parts)", parts.len() - 1)
                        } else {
                            String::new()
                        },
                        crate::error::printable(
                            &header
                                .targets
                                .first()
                                .map(|t| t.name.clone())
                                .unwrap_or_default()
                        ),
                        crate::error::printable(&header.family.name),
                        crate::error::printable(&header.sender.name),
                        crate::sys::clock::format_time_ns(header.created.as_nanos_saturating())
                    )
                })
                .collect();
            // One line each on stderr (each made printable by errln!),
            // then the error: a message with newlines would be escaped.
            errln!("{NAME}: the replica-creation packets found:");
            for line in &listed {
                errln!("{NAME}:   {line}");
            }
            anyhow::bail!(
                "{} hold{} {} different replica-creation packets (listed above), so which replica to make \
                 is ambiguous; nothing was created. Name the files of the one to use (all its parts), or a \
                 folder that holds only that one",
                args.names.join(", "),
                if args.names.len() == 1 { "s" } else { "" },
                several.len(),
            );
        }
    };
    let header = &creations[0].0;
    let fingerprint = header.signer_fingerprint();
    if let Some(expected) = &args.fingerprint {
        if !expected.trim().eq_ignore_ascii_case(&fingerprint) {
            anyhow::bail!(
                "{} is signed by key {fingerprint}, not by the expected {}; nothing was created",
                files[0].display(),
                expected.trim()
            );
        }
    }
    let signer = header.signer_key;
    let packet_id = header.packet_id;
    let dir = match &args.replica {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    // Before a passphrase is asked: a new replica cannot go there, and
    // one this host holds already is not made twice.
    replica::refuse_nesting_of_new(&dir)?;
    if let Some(target) = header.targets.first() {
        if let Some(copy) = crate::store::hosted::copies_of(&target.id)
            .into_iter()
            .next()
        {
            return Err(crate::error::Error::HostedAlready {
                name: target.name.clone(),
                root: copy.root,
                made: copy.made,
            }
            .into());
        }
    }
    if let Some(key) = &args.key {
        if !key.exists() {
            return Err(crate::error::Error::no_such_file(key, Some("-key")).into());
        }
    }
    // The header names the new member, in the clear (SPEC.md §4.2): its
    // key file's default name is known before anything is decrypted.
    let target_name = header
        .targets
        .first()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    crate::store::identity::validate_name(&target_name)?;
    let key_file = match &args.key {
        Some(key) => key.clone(),
        None => files[0]
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{target_name}.key")),
    };
    let decryption = match &header.encryption {
        None => None,
        Some(encryption) if encryption.passphrase => {
            let passphrase = super::passphrase::obtain(
                args.passphrase_file.as_deref(),
                false,
                "mkreplica -import (the creation packet is encrypted to one)",
            )?;
            Some(std::sync::Arc::new(packet_format::Decryption::new(
                Vec::new(),
                Some((*passphrase).clone()),
            )))
        }
        // Made with -keyout: encrypted to the key the key file holds.
        Some(_) => {
            let (key_id, _, encryption_key) = creation::read_key_file(&key_file)?;
            // Said as such, not as a packet this key cannot open.
            if header.targets.first().map(|t| t.id) != Some(key_id) {
                return Err(crate::error::Error::BadKeyFile {
                    path: key_file,
                    what: format!(
                        "this is the key of another replica, not of new replica \"{}\" in the packet",
                        crate::error::printable(&target_name)
                    ),
                }
                .into());
            }
            let Some(identity) = encryption_key else {
                return Err(crate::error::Error::BadKeyFile {
                    path: key_file,
                    what: "it holds no encryption_key, and the packet is encrypted".into(),
                }
                .into());
            };
            let identity = identity
                .parse::<age::x25519::Identity>()
                .expect("read_key_file checked it");
            Some(std::sync::Arc::new(packet_format::Decryption::new(
                vec![identity],
                None,
            )))
        }
    };
    let mut parts = Vec::new();
    let verifying = bytes_phase("verifying the creation packet", &files);
    for file in &files {
        // As a library error, so a wrong passphrase gets its hint.
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        let part =
            crate::sync::import::verify_with_progress(file, size, &[signer], decryption.as_ref())
                .map_err(crate::error::Error::Packet)?;
        if part.header().packet_id == packet_id {
            parts.push(part);
        }
    }
    drop(verifying);
    let packet = LogicalPacket::assemble(parts)?;
    let new_name = packet.parts()[0]
        .creation()
        .map(|c| c.new_replica.name.clone())
        .unwrap_or_default();
    // A name from a packet is hostile until checked: it becomes a file name.
    crate::store::identity::validate_name(&new_name)?;
    if args.adopt {
        return adopt(args, &packet, &files, &dir, &key_file);
    }
    let made =
        creation::import_creation(&packet, &dir, &key_file, args.mirror, &own_settings(args)?)?;
    note_hosted(&made.replica.identity.replica_id, &made.replica.root);
    outln!(
        "Used the creation packet {}{} for new member \"{}\".",
        crate::error::printable_path(&files[0]),
        if files.len() > 1 {
            format!(" (+{} more parts)", files.len() - 1)
        } else {
            String::new()
        },
        crate::error::printable(&new_name)
    );
    for pid in &made.cleaned_up {
        outln!("Removed the half-made tree of an earlier mkreplica -import killed before it finished (process {pid}); started again.");
    }
    outln!(
        "Created replica \"{}\" of family \"{}\" at {} from {}'s creation packet ({}).",
        made.replica.identity.replica_name,
        made.replica.identity.family_name,
        made.replica.root.display(),
        crate::error::printable(&made.sender),
        super::counted(made.files as u64, "file", "files")
    );
    if !made.not_carried.is_empty() {
        let names: Vec<String> = made
            .not_carried
            .iter()
            .map(|p| crate::tree::relpath::display(p))
            .collect();
        outln!(
            "Left out {} file{} that {} found changed while it wrote the packet ({}); its next update brings {}.",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            crate::error::printable(&made.sender),
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        );
    }
    print_creation_excludes(&made.excludes);
    for note in &made.conflicts {
        outln!("  conflict: {note}");
    }
    for note in &made.not_applied {
        outln!("  not applied here: {note}");
    }
    print_mirror_of(args, &made.sender);
    if args.fingerprint.is_some() {
        outln!(
            "The packet's signing key matched the expected fingerprint {}.",
            made.fingerprint
        );
    } else {
        outln!(
            "The packet was signed by key fingerprint {}.",
            made.fingerprint
        );
        outln!("  Compare it with the one mkreplica -export printed at the sender.");
    }
    if args.fmt == cli::Format::Json {
        let json = crate::cli::render::transfer::CreationImportJson {
            version: crate::cli::render::transfer::JSON_VERSION,
            replica: made.replica.identity.replica_name.clone(),
            replica_id: made.replica.identity.replica_id.to_hex(),
            family: made.replica.identity.family_name.clone(),
            family_id: made.replica.identity.family_id.to_hex(),
            root: made.replica.root.display().to_string(),
            packets: files.iter().map(|f| f.display().to_string()).collect(),
            sender: made.sender.clone(),
            files: made.files as u64,
            not_carried: made
                .not_carried
                .iter()
                .map(|p| crate::tree::relpath::display(p))
                .collect(),
            conflicts: made.conflicts.clone(),
            not_applied: made.not_applied.clone(),
            fingerprint: made.fingerprint.clone(),
            fingerprint_checked: args.fingerprint.is_some(),
        };
        cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    Ok(())
}

/// The new member's own settings from `-exclude`, `-preserve`,
/// `-numeric-ids`; an unknown preserve item is a usage error naming it.
fn own_settings(args: &Args) -> anyhow::Result<crate::store::config::OwnSettings> {
    let preserve = match &args.preserve {
        None => None,
        Some(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            if let Err(why) = crate::tree::meta::Preserve::from_names(&names, args.numeric_ids) {
                usage!("-preserve {list}: {why} (a comma-separated list; an empty one keeps nothing beyond content, mode and times)");
            }
            Some(names)
        }
    };
    Ok(crate::store::config::OwnSettings {
        exclude: args.exclude.clone(),
        preserve,
        numeric_ids: args.numeric_ids,
    })
}

/// What a creation import's `-exclude` patterns did: how many of the
/// family's paths they left out, and one warning per pattern that named the
/// root's absolute path or matched nothing (review 14c item 5).
fn print_creation_excludes(excludes: &creation::CreationExcludes) {
    if excludes.excluded > 0 {
        outln!(
            "  left out: {} this replica excludes (-exclude, kept in its config.toml)",
            super::counted(excludes.excluded, "path", "paths")
        );
    }
    warn_creation_excludes(excludes);
}

/// One warning per `-exclude` pattern that named the root's absolute path
/// or matched nothing.
fn warn_creation_excludes(excludes: &creation::CreationExcludes) {
    use crate::tree::scan::{ScanWarning, WarningKind};
    // Stored relative in config.toml: said once, here.
    for (written, taken) in &excludes.root_prefixed {
        outln!(
            "  -exclude {written}: names this replica's root; kept in its config.toml as \
             \"{taken}\" (patterns are relative to the replica root)"
        );
    }
    let mut warnings: Vec<ScanWarning> = Vec::new();
    warnings.extend(
        excludes
            .unmatched
            .iter()
            .filter(|p| !excludes.root_prefixed.iter().any(|(_, taken)| taken == *p))
            .map(|pattern| ScanWarning {
                path: pattern.as_bytes().to_vec(),
                kind: WarningKind::UnmatchedExclude,
            }),
    );
    cli::print_warnings(NAME, &warnings);
}

fn adopt(
    args: &Args,
    packet: &LogicalPacket,
    files: &[PathBuf],
    dir: &Path,
    key_file: &Path,
) -> anyhow::Result<()> {
    let (replica, made) = crate::sync::adopt::adopt_creation(
        packet,
        dir,
        key_file,
        args.mirror,
        &own_settings(args)?,
    )?;
    note_hosted(&replica.identity.replica_id, &replica.root);
    let sender = printable(&made.sender);
    outln!(
        "Used the creation packet {}{}.",
        crate::error::printable_path(&files[0]),
        if files.len() > 1 {
            format!(" (+{} more parts)", files.len() - 1)
        } else {
            String::new()
        },
    );
    outln!(
        "Adopted {} as replica \"{}\" of family \"{}\" from {sender}'s creation packet.",
        replica.root.display(),
        printable(&replica.identity.replica_name),
        printable(&replica.identity.family_name),
    );
    outln!(
        "  kept as they were: {} ({} with metadata set to the recorded one)",
        super::counted(made.kept, "file", "files"),
        super::counted(made.metadata_fixed, "path", "paths")
    );
    if made.made > 0 {
        outln!(
            "  made: {} (directories, symlinks, empty files, special files)",
            super::counted(made.made, "entry", "entries")
        );
    }
    for (path, kept) in &made.set_aside {
        outln!(
            "  set aside: {} (not the family's version), kept as {}",
            crate::tree::relpath::display(path),
            crate::error::printable_path(kept)
        );
    }
    if made.excluded > 0 {
        outln!(
            "  left alone: {} this replica excludes",
            super::counted(made.excluded, "path", "paths")
        );
    }
    warn_creation_excludes(&made.exclude_warnings);
    if made.local_only > 0 && args.mirror {
        // A mirror never records its own (sync::mirror): they stay local.
        outln!(
            "  the family lacks {} here: left alone, never recorded or sent (a mirror; syncreplica -status lists them)",
            super::counted(made.local_only, "path", "paths")
        );
    } else if made.local_only > 0 {
        outln!(
            "  the family lacks {} here: kept, recorded as this replica's own by its next scan",
            super::counted(made.local_only, "path", "paths")
        );
    }
    if !made.in_place.is_empty() {
        outln!(
            "  left in place until {sender}'s answer replaces {}: {} with other content here{}",
            if made.in_place.len() == 1 {
                "it"
            } else {
                "them"
            },
            super::counted(made.in_place.len() as u64, "file", "files"),
            match made.in_place.first() {
                Some(first) => format!(
                    " (\"{}\"{})",
                    crate::tree::relpath::display(first),
                    if made.in_place.len() > 1 { ", ..." } else { "" }
                ),
                None => String::new(),
            }
        );
    }
    for note in &made.notes {
        outln!("  note: {note}");
    }
    for note in &made.not_applied {
        outln!("  not applied here: {note}");
    }
    print_mirror_of(args, &made.sender);
    if made.asked.is_empty() {
        outln!("The tree holds every file of the family's; nothing to ask for.");
    } else {
        outln!(
            "Asked {sender} for {} (missing here, or other content here): \
             syncreplica -export -out DIR {sender} here, import it there; {sender}'s next export to \"{}\" brings them.",
            super::counted(made.asked.len() as u64, "file", "files"),
            printable(&replica.identity.replica_name),
        );
    }
    if args.fingerprint.is_some() {
        outln!(
            "The packet's signing key matched the expected fingerprint {}.",
            made.fingerprint
        );
    } else {
        outln!(
            "The packet was signed by key fingerprint {}.",
            made.fingerprint
        );
        outln!("  Compare it with the one mkreplica -export printed at the sender.");
    }
    Ok(())
}

/// Records the member made at `root` as held on this host
/// ([`crate::store::hosted`]), so a second import of its creation packet
/// here is refused; a failure only warns.
fn note_hosted(replica: &crate::ops::Id, root: &Path) {
    if let Err(err) = crate::store::hosted::record(replica, root) {
        errln!(
            "{NAME}: warning: cannot record the new replica among this host's ({err}): a second import \
             of its creation packet here would not be refused"
        );
    }
}

fn print_mirror_of(args: &Args, sender: &str) {
    if args.mirror {
        outln!(
            "It is a mirror of {}: it records no change of its own, and the family's version always \
             wins here (local changes to the family's paths are undone); chreplica -nomirror makes it an \
             ordinary member.",
            printable(sender)
        );
    }
}

fn restore(args: &Args) -> anyhow::Result<()> {
    if args.family.is_some() || args.out.is_some() {
        usage!("-family and -out do not apply to -restore");
    }
    let mut replica =
        Replica::open(&replica::discover(args.replica.as_deref())?)?.lock("mkreplica -restore")?;
    cli::print_lock_takeover(NAME, &replica);
    let (wait, never_heard) = crate::sync::family::start_restore(&mut replica, &args.names)?;
    if !never_heard.is_empty() {
        let names: Vec<String> = never_heard.iter().map(|n| format!("\"{n}\"")).collect();
        outln!(
            "Not waiting for {}: no packet from {} was ever imported here (a one-way link or a \
             member that never sent one); name the siblings to wait for to include {}.",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" },
            if names.len() == 1 { "it" } else { "them" }
        );
    }
    if crate::sync::family::finish_restore_if_done(&mut replica)?.is_some() {
        outln!(
            "Replica \"{}\" has no sibling to wait for; nothing to restore.",
            printable(&replica.identity.replica_name)
        );
        return Ok(());
    }
    outln!(
        "Marked replica \"{}\" restored from a backup; it records no change of its own until it \
         has {wait}.",
        printable(&replica.identity.replica_name)
    );
    outln!(
        "  Next: syncreplica -export -ack -out DIR SIBLING here for each, import it there, export from there \
         to \"{}\" and import that here.",
        printable(&replica.identity.replica_name)
    );
    Ok(())
}

/// `mkreplica -rekey`.
fn rekey(args: &Args) -> anyhow::Result<()> {
    if args.family.is_some() || args.out.is_some() || !args.names.is_empty() {
        usage!(
            "-rekey takes no NAME, -family or -out: it replaces the keys of the replica it runs in"
        );
    }
    let mut replica =
        Replica::open(&replica::discover(args.replica.as_deref())?)?.lock("mkreplica -rekey")?;
    cli::print_lock_takeover(NAME, &replica);
    let done = crate::sync::keys::rekey(&mut replica)?;
    let fingerprint = crate::store::identity::fingerprint(&done.new_key);
    let old_fingerprint = crate::store::identity::fingerprint(&done.old_key);
    if args.fmt == cli::Format::Json {
        let json = crate::cli::render::transfer::RekeyJson {
            version: 1,
            replica: replica.identity.replica_name.clone(),
            replica_id: replica.identity.replica_id.to_hex(),
            epoch: done.epoch,
            fingerprint,
            previous_fingerprint: old_fingerprint,
            encryption_key: done.encryption_key,
            public_key: hex::encode(done.new_key),
        };
        cli::report::print_data(format_args!("{}\n", serde_json::to_string_pretty(&json)?));
        return Ok(());
    }
    outln!(
        "Replaced the keys of replica \"{}\" at its epoch {} (signed with the old key).",
        printable(&replica.identity.replica_name),
        done.epoch
    );
    outln!("  Signing key fingerprint: {fingerprint}");
    outln!("  (was {old_fingerprint})");
    outln!("  Encryption key: {}", done.encryption_key);
    outln!(
        "  Public signing key (add it to trusted_keys in a shipping server's shipping.toml and \
         restart the server; remove the old key once the packets written before now are through): {}",
        hex::encode(done.new_key)
    );
    outln!(
        "  Siblings take the new keys with this replica's next packets (syncreplica -export); from then \
         on they refuse the old key for its changes after epoch {}. Packets encrypted to the old key \
         still open here (.syncreplica/{}).",
        done.epoch,
        crate::store::identity::RETIRED_KEYS_FILE
    );
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.fmt == cli::Format::Json && !args.import && !args.rekey {
        usage!("-fmt json applies to -import and -rekey only");
    }
    // Refused, not ignored: a user who gives both believes the packet is
    // protected by the passphrase.
    if args.passphrase_file.is_some() && args.keyout.is_some() {
        usage!(
            "-passphrase-file and -keyout do not go together: with -keyout FILE the creation packet is \
             encrypted to the new member's key, which FILE holds, not to a passphrase (the new site \
             imports it with -key FILE); give one of them"
        );
    }
    if args.passphrase_file.is_some() && !(args.export || args.import) {
        usage!("-passphrase-file applies to -export and -import only");
    }
    if args.key.is_some() && !args.import {
        usage!(
            "-key applies to -import only (at -export, -keyout FILE writes the new member's keys to a file)"
        );
    }
    // Refused, not ignored (review 14c item 4): a user who gives it at the
    // exporting site believes the new member will keep those paths.
    if !args.exclude.is_empty() && (args.init || args.export || args.restore || args.rekey) {
        usage!(
            "-exclude applies to -import only: it names paths that stay local to the new member, \
             given where the creation packet is imported (mkreplica -import -exclude PATTERN; an \
             existing replica lists them in .syncreplica/config.toml or .syncreplicaignore)"
        );
    }
    if (args.preserve.is_some() || args.numeric_ids)
        && (args.init || args.export || args.restore || args.rekey)
    {
        usage!(
            "-preserve and -numeric-ids apply to -import only: they are the new member's own \
             settings, given where the creation packet is imported (an existing replica sets \
             them in .syncreplica/config.toml)"
        );
    }
    // An unknown preserve item is refused before anything is read.
    own_settings(&args)?;
    cli::report::set_quiet(args.quiet || args.fmt == cli::Format::Json);
    cli::show_progress(args.quiet);
    if args.init {
        init(&args)
    } else if args.restore {
        restore(&args)
    } else if args.rekey {
        rekey(&args)
    } else if args.export {
        export(&args)
    } else {
        import(&args)
    }
}

/// A progress phase over the bytes of `files` (each read whole).
fn bytes_phase(what: &str, files: &[PathBuf]) -> crate::sys::progress::Phase {
    let total = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    crate::sys::progress::phase(what, crate::sys::progress::Unit::Bytes, Some(total))
}

/// Counts `file`'s bytes as done in the current phase.
fn advance_by_size(file: &Path) {
    crate::sys::progress::advance(std::fs::metadata(file).map_or(0, |m| m.len()));
}
