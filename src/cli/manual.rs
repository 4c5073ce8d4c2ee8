//! What the man pages say beyond the clap definitions: each command's
//! synopses (one line per mode, as the README's commands table writes
//! them), and its FILES, ENVIRONMENT and EXAMPLES sections. The pages in
//! `man/` are rendered from these and from the clap definitions by the
//! man-page staleness test; another test parses every synopsis and
//! example here as written.

/// One command's manual sections beyond its options.
#[derive(Debug, Clone, Copy)]
pub struct Manual {
    /// Synopsis lines; `[…]` optional, `{a | b}` alternatives, `…`
    /// repetition, upper-case words are placeholders.
    pub synopses: &'static [&'static str],
    /// (path, what it is).
    pub files: &'static [(&'static str, &'static str)],
    /// (variable, what it does).
    pub environment: &'static [(&'static str, &'static str)],
    /// (what it does, command line).
    pub examples: &'static [(&'static str, &'static str)],
    /// The JSON OUTPUT section: (the command line that prints it, the
    /// object's fields). Each object has a "version" field.
    pub json: &'static [(&'static str, &'static str)],
}

/// What every JSON output shares, said once per page.
pub const JSON_COMMON: &str = "Times are RFC 3339 in UTC (2026-11-30T12:04:20Z); a list with nothing in it is [], never left out; null marks a value that does not apply. \"version\" is raised only when a field changes meaning or goes; new fields may be added without it.";

const REPLICA_FILES: &[(&str, &str)] = &[
    (
        "DIR/.syncreplica/config.toml",
        "this replica's settings: exclude, soft_delete_days, resend_after (and per sibling under [siblings.NAME]), preserve (what it keeps beyond content, mode and times: owner, group, acls, xattrs, hardlinks, devices, specials), numeric_ids, oplog_keep_days",
    ),
    (
        "DIR/.syncreplica/state.db",
        "SQLite: the recorded state of every path, the operation log, the epoch table, the members and their public keys, the packet log",
    ),
    ("DIR/.syncreplica/signing_key", "this replica's ed25519 signing key (mode 0600)"),
    (
        "DIR/.syncreplica/encryption_key",
        "this replica's age X25519 identity, which packets to it are encrypted to (mode 0600)",
    ),
    (
        "DIR/.syncreplica/retired_encryption_keys",
        "the age identities mkreplica -rekey replaced, kept only to decrypt packets encrypted to them before the siblings had the rotation (mode 0600); may be deleted once every sibling has confirmed the rotation's epoch and no older packet is travelling",
    ),
    ("DIR/.syncreplica/identity.toml", "family and replica names and ids"),
    ("DIR/.syncreplica/lock", "the process lock: one process at a time changes a replica"),
    (
        "DIR/.syncreplica/deleted/",
        "files an import deleted or replaced, by day, kept for soft_delete_days",
    ),
    (
        "DIR/.syncreplicaignore",
        "this replica's own exclude patterns (gitignore syntax; #include PATH adds a replicated file's)",
    ),
];

const SHIPPING_FILES: &[(&str, &str)] = &[(
    "~/.config/syncreplica/shipping.toml, /etc/syncreplica/shipping.toml",
    "the shipping configuration: storage classes and their bays, routes, destinations, trusted keys (see syncreplica-shipping(5))",
)];

const SHIPPING_ENV: &[(&str, &str)] = &[(
    "SYNCREPLICA_SHIPPING_CONF",
    "the shipping configuration to use when -shipconf is not given",
)];

/// The manual of command `name` (one of [`super::all_commands`]).
pub fn manual(name: &str) -> Manual {
    match name {
        "syncreplica" => Manual {
            synopses: &[
                "syncreplica -status [-fmt json] [-replica DIR]",
                "syncreplica -record [-resendpath PATH…] [-quiet] [-replica DIR]",
                "syncreplica -scrub [-quiet] [-replica DIR]",
                "syncreplica -verify [-replica DIR] [SIBLING]",
                "syncreplica -export -out DIR [-maxsize SIZE] [-c TEXT | -nc] [-workdir DIR] [-fullcontent] [-noencrypt] [-fmt json] [-quiet] [-replica DIR] TARGET…",
                "syncreplica -export {-resend | -ack} -out DIR TARGET…",
                "syncreplica -export {-ship | -fship} [-sclass CLASS] [-pexpire WHEN] [-shipconf FILE] [-maxsize SIZE] TARGET…",
                "syncreplica -import [-remove] [-fmt json] [-quiet] [-replica DIR] PACKET_OR_DIR…",
                "syncreplica -import -receive [-sclass CLASS] [-shipconf FILE]",
            ],
            files: REPLICA_FILES,
            environment: SHIPPING_ENV,
            examples: &[
                ("What changed since the last record", "syncreplica -status"),
                (
                    "Changes for the ship, in parts of at most 50 MiB, onto a USB stick",
                    "syncreplica -export -out /media/usb -maxsize 50m ship",
                ),
                ("Apply what the stick holds for this replica, then remove it", "syncreplica -import -remove /media/usb"),
                ("Queue changes for the shipping server and hand them to the first hop", "syncreplica -export -fship ship"),
                ("A script's view of an import", "syncreplica -import -fmt json /media/usb"),
            ],
            json: &[
                (
                    "syncreplica -status -fmt json",
                    "{version: 1, replica, root, changes: [{change (\"new\", \"modified\", \"mode changed\", \"touched\", \"metadata\" (owner, group, ACLs, xattrs or hard links only), \"type changed\", \"deleted\"), path, was (\"file\", \"directory\", \"symlink\" or null), now, old_mode, new_mode (permission bits or null), mirror (on a mirror only: \"set back\", \"left in place\", \"set aside\" or \"left alone\", what its next -record or -import does)}], newly_excluded: [PATH], missing: [PATH], not_applied: [{path, step, source, at, error}], mirror_of (on a mirror only: its upstream)}",
                ),
                (
                    "syncreplica -export -fmt json",
                    "{version: 1, targets: [{target, outcome (\"written\", \"acknowledgement\", \"up to date\", \"held back\"), sequence (null when nothing was written), operations, files_added_or_changed, deleted, chunks_sent, chunk_bytes_sent, chunks_as_recipes, chunks_reused, answered, parts: [{path, size}], resent: [{origin, first, last, reason (\"asked\", \"unconfirmed\", \"tell_refused_copy\": the target's first change, once after a clone alarm about it), sent}], held_back: {path, operations} or null}], queued: [{packet, destinations, expires}] (with -ship, -fship)}. Printed once every target is done; a failed -fship delivery still exits 1 after it.",
                ),
                (
                    "syncreplica -import -fmt json",
                    "{version: 1, packets: [{files: [PATH], outcome (\"applied\", \"already applied\", \"acknowledgement\", \"waiting\", \"left alone\", \"refused\"), sender, why (for waiting, left alone, refused), changes: {added, changed, deleted, bytes_written, conflicts: [NOTE], conflicts_more, not_made: [NOTE], not_applied: [NOTE], failed: [NOTE], failed_more, report_file} (for applied, else null)}], applied, added, changed, deleted, conflicts, bytes_written, bytes_from_packets, bytes_copied, bytes_as_holes, notes: [NOTE]}. A packet's conflicts and failed lists hold at most 1000 notes each; conflicts_more and failed_more count the rest, and report_file (else null) is the file in .syncreplica/reports/ that has every note of a list that overflowed; the top-level conflicts counts them all. Printed before the exit status is decided: an import that refused a packet prints it and exits 1.",
                ),
            ],
        },
        "mkreplica" => Manual {
            synopses: &[
                "mkreplica -init -family FAMILY [-replica DIR] NAME",
                "mkreplica -export -out DIR [-passphrase-file FILE | -keyout FILE] [-maxsize SIZE] [-c TEXT | -nc] [-quiet] [-replica DIR] NEWNAME",
                "mkreplica -import [-fingerprint HEX] [-passphrase-file FILE | -key FILE] [-exclude PATTERN]… [-preserve LIST] [-numeric-ids] [-mirror] [-fmt json] [-quiet] [-replica DIR] PACKET_OR_DIR…",
                "mkreplica -export -manifest -out DIR [-passphrase-file FILE | -keyout FILE] [-replica DIR] NEWNAME",
                "mkreplica -import -adopt [-mirror] [-fingerprint HEX] [-passphrase-file FILE | -key FILE] [-exclude PATTERN]… [-preserve LIST] [-numeric-ids] -replica DIR PACKET_OR_DIR…",
                "mkreplica -restore [-replica DIR] [SIBLING…]",
                "mkreplica -rekey [-fmt json] [-replica DIR]",
            ],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[
                ("Make a family of the tree in the current directory", "mkreplica -init -family projects boston"),
                ("A creation packet for a new member, on a stick; its keys in a file of their own, carried by another route", "mkreplica -export -out /media/usb -keyout /secure/ship.key ship"),
                (
                    "Make the new member from it, checking the fingerprint the sender read out",
                    "mkreplica -import -fingerprint HEX -key /secure/ship.key -replica /srv/projects /media/usb",
                ),
                (
                    "Replace this replica's keys (a copy of its state folder went astray); its next packets tell the family",
                    "mkreplica -rekey",
                ),
            ],
            json: &[
                (
                    "mkreplica -import -fmt json",
                    "{version: 1, replica, replica_id, family, family_id, root, packets: [PART], sender, files, not_carried: [PATH], conflicts: [NOTE], not_applied: [NOTE], fingerprint, fingerprint_checked}",
                ),
                (
                    "mkreplica -rekey -fmt json",
                    "{version: 1, replica, replica_id, epoch (this replica's own epoch of the rotation: the old key is good for its changes up to it), fingerprint (the new signing key's), previous_fingerprint, encryption_key (the new age recipient), public_key (the new signing key, 64 hex digits, for a shipping server's trusted_keys)}",
                ),
            ],
        },
        "lspacket" => Manual {
            synopses: &[
                "lspacket [-long | -short] [-fmt json] [-replica DIR] PACKET_OR_DIR…",
                "lspacket [-sclass CLASS] [-shipconf FILE]",
            ],
            files: SHIPPING_FILES,
            environment: SHIPPING_ENV,
            examples: &[
                ("What is on the stick, and can it be applied here?", "lspacket /media/usb"),
                ("Every packet in the storage bays, with its shipping order", "lspacket"),
            ],
            json: &[(
                "lspacket -fmt json",
                "{version: 2, packets: [{path, size, status (\"intact\", \"not checked\", \"encrypted for others\", \"not a packet\", \"unreadable\", \"damaged\", \"unsupported format\", \"unknown key\", \"replaced key\", \"another family\"), problem (what is wrong, in words, or null), signature: {status (\"verified\", \"unknown key\", \"bad\", \"not checked\"), fingerprint} or null, and when the header could be read: type, family: {name, id}, sender: {name, id}, packet_id, comment, part, parts, created, format_version, targets: [{name, id, sequence, local, status}], epoch_ranges: {ORIGIN_ID: {first, last}}, sender_incarnation, tree_digest: {root, entries, patterns, assumed_target_patterns, nodes, metadata: {covered, preserved} (metadata items: \"owner\", \"group\", \"acls\", \"xattrs\", \"hardlinks\", \"times\", \"root\" (the replica root's own entry, format 2.11); null before format 2.7)} or null, rotations: [{member (id), epoch, new_fingerprint, old_fingerprint}] (the sender's key rotations the header carries, format 2.12; rotations_error says why when they do not hold together); in a storage bay also storage_class, bay and order: {destinations, created, expires, attempts: {DESTINATION: {failures, last_attempt, last_error, next_retry (not before the destination's hours open)}}, waiting_for_hours: {DESTINATION: {hop, hours, until}} (destinations whose next hop's hours window is shut now)}; found in a directory under a name that is not a packet's (renamed), also packet_name: the name its writer gave it}], summary: {STATUS: how many packets have it}}. Version 1 had damaged (what is wrong) where version 2 has status and problem. Always every field: -long and -short are refused with -fmt json (exit 2).",
            )],
        },
        "lsreplica" => Manual {
            synopses: &["lsreplica [-long] [-fmt json] [-replica DIR] [NAME…]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("Members, keys, what each has confirmed", "lsreplica -long")],
            json: &[(
                "lsreplica -fmt json",
                "{version: 1, family, family_id, members: [{name, replica_id, key_fingerprint, public_key, encryption_key (its age recipient, age1..., what packets to it are encrypted to; null: none known), this_replica, last_sent: {file, sequence, at} or null, last_received (the same), last_heard, unconfirmed: [{origin, first, last}], epoch_row: {ORIGIN: EPOCH}, clone_alarms: [{at, packet, what}], format_version, incarnation (this copy's own for this replica, the accepted copy's for the others; what a clone alarm names), restore_waits_for, removed, verified: {at, packet, epoch_row, entries, outcome} or null, last_digest (the same)}]}. Always every field (-long or not).",
            )],
        },
        "lsepoch" => Manual {
            synopses: &["lsepoch [-fmt json] [-replica DIR] [REPLICA…]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("This replica's row and its estimate of the ship's", "lsepoch boston ship")],
            json: &[(
                "lsepoch -fmt json",
                "{version: 1, family, family_id, replica, rows: [{replica, replica_id, exact (this replica's own row), origins: [{origin, origin_id, epoch, confirmed, confirmed_at}]}]}",
            )],
        },
        "chepoch" => Manual {
            synopses: &["chepoch [-replica DIR] [-force] REPLICA ORIGIN=EPOCH…"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[(
                "The ship lost everything of boston's after epoch 40: resend it with the next export",
                "chepoch ship boston=40",
            )],
            json: &[],
        },
        "rmreplica" => Manual {
            synopses: &["rmreplica [-force] [-replica DIR] NAME"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("The ship was decommissioned: remove it for good", "rmreplica ship")],
            json: &[],
        },
        "chreplica" => Manual {
            synopses: &["chreplica -mirror UPSTREAM [-replica DIR]", "chreplica -nomirror [-replica DIR]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[
                ("Keep the migrated server an exact copy of its source until cut-over", "chreplica -mirror oldserver"),
                ("Cut-over done: the new server's changes count from now on", "chreplica -nomirror"),
            ],
            json: &[],
        },
        "mkorder" => Manual {
            synopses: &[
                "mkorder -data PACKET [-data PACKET]… [-ship | -fship] [-copy] [-sclass CLASS] [-pexpire WHEN] [-shipconf FILE] [-quiet] [DESTINATION…]",
            ],
            files: SHIPPING_FILES,
            environment: SHIPPING_ENV,
            examples: &[(
                "Send a returned packet again, at once",
                "mkorder -fship -data /var/spool/syncreplica/default/return/sync_boston_20261121T232549Z_ship_7.zip",
            )],
            json: &[],
        },
        "shipping_server" => Manual {
            synopses: &[
                "shipping_server [-sclass CLASS] [-shipconf FILE] -poll [-interval SECS]",
                "shipping_server -listen [ADDR] [-poll -interval SECS] [-shipconf FILE]",
                "shipping_server [-shipconf FILE] [-quiet] ORDER…",
            ],
            files: SHIPPING_FILES,
            environment: SHIPPING_ENV,
            examples: &[
                ("A hub: receive packets and forward queued ones every minute", "shipping_server -listen 0.0.0.0:7421 -poll -interval 60"),
                ("One pass through the outgoing bays, for cron", "shipping_server -poll"),
            ],
            json: &[],
        },
        other => panic!("no manual for {other}"),
    }
}
