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
}

const REPLICA_FILES: &[(&str, &str)] = &[
    (
        "DIR/.syncreplica/config.toml",
        "this replica's settings: exclude, soft_delete_days, resend_after (and per sibling under [siblings.NAME])",
    ),
    (
        "DIR/.syncreplica/state.db",
        "SQLite: the recorded state of every path, the operation log, the epoch table, the members and their public keys, the packet log",
    ),
    ("DIR/.syncreplica/signing_key", "this replica's ed25519 signing key (mode 0600)"),
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
                "syncreplica -record [-resend PATH…] [-replica DIR]",
                "syncreplica -export -out DIR [-maxsize SIZE] [-c TEXT | -nc] [-workdir DIR] [-fullcontent] [-replica DIR] TARGET…",
                "syncreplica -export {-resendall | -ack} -out DIR TARGET…",
                "syncreplica -export {-ship | -fship} [-sclass CLASS] [-pexpire WHEN] [-shipconf FILE] [-maxsize SIZE] TARGET…",
                "syncreplica -import [-remove] [-replica DIR] PACKET_OR_DIR…",
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
            ],
        },
        "mkreplica" => Manual {
            synopses: &[
                "mkreplica -init -family FAMILY [-replica DIR] NAME",
                "mkreplica -export -out DIR [-maxsize SIZE] [-c TEXT | -nc] [-replica DIR] NEWNAME",
                "mkreplica -import [-fingerprint HEX] [-key FILE] [-replica DIR] PACKET_OR_DIR…",
                "mkreplica -restore [-replica DIR] [SIBLING…]",
            ],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[
                ("Make a family of the tree in the current directory", "mkreplica -init -family projects boston"),
                ("A creation packet for a new member, on a stick", "mkreplica -export -out /media/usb ship"),
                (
                    "Make the new member from it, checking the fingerprint the sender read out",
                    "mkreplica -import -fingerprint HEX -key /secure/ship.key -replica /srv/projects /media/usb",
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
        },
        "lsreplica" => Manual {
            synopses: &["lsreplica [-long] [-fmt json] [-replica DIR]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("Members, keys, what each has confirmed", "lsreplica -long")],
        },
        "lsepoch" => Manual {
            synopses: &["lsepoch [-fmt json] [-replica DIR] [REPLICA…]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("This replica's row and its estimate of the ship's", "lsepoch boston ship")],
        },
        "chepoch" => Manual {
            synopses: &["chepoch [-replica DIR] [-force] REPLICA ORIGIN=EPOCH…"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[(
                "The ship lost everything of boston's after epoch 40: resend it with the next export",
                "chepoch ship boston=40",
            )],
        },
        "rmreplica" => Manual {
            synopses: &["rmreplica [-force] [-replica DIR] NAME"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[("The ship was decommissioned: remove it for good", "rmreplica ship")],
        },
        "chreplica" => Manual {
            synopses: &["chreplica -mirror UPSTREAM [-replica DIR]", "chreplica -nomirror [-replica DIR]"],
            files: REPLICA_FILES,
            environment: &[],
            examples: &[
                ("Keep the migrated server an exact copy of its source until cut-over", "chreplica -mirror oldserver"),
                ("Cut-over done: the new server's changes count from now on", "chreplica -nomirror"),
            ],
        },
        "mkorder" => Manual {
            synopses: &[
                "mkorder -data PACKET… [-ship | -fship] [-copy] [-sclass CLASS] [-pexpire WHEN] [-shipconf FILE] [DESTINATION…]",
            ],
            files: SHIPPING_FILES,
            environment: SHIPPING_ENV,
            examples: &[(
                "Send a returned packet again, at once",
                "mkorder -fship -data /var/spool/syncreplica/default/return/sync_boston_20261121T232549Z_ship_7.zip",
            )],
        },
        "shipping_server" => Manual {
            synopses: &[
                "shipping_server [-sclass CLASS] [-shipconf FILE] -poll [-interval SECS]",
                "shipping_server -listen [ADDR] [-poll -interval SECS] [-shipconf FILE]",
                "shipping_server [-shipconf FILE] ORDER…",
            ],
            files: SHIPPING_FILES,
            environment: SHIPPING_ENV,
            examples: &[
                ("A hub: receive packets and forward queued ones every minute", "shipping_server -listen 0.0.0.0:7421 -poll -interval 60"),
                ("One pass through the outgoing bays, for cron", "shipping_server -poll"),
            ],
        },
        other => panic!("no manual for {other}"),
    }
}
