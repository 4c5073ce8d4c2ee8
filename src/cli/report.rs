//! From a command's outcome to what the user sees: `COMMAND: error: …`, a
//! `hint:` line where one helps, and the documented exit code. Hints and
//! exit codes live here, not in the library's errors.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, PassphraseProblem, Refusal};

use super::{EXIT_FAILURE, EXIT_LOCKED, EXIT_SUCCESS, EXIT_USAGE};

/// A command line that clap accepted but that is still wrong (a
/// combination of options, a missing operand): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Returns early with a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::report::Usage(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// Set once standard output failed; later output is dropped.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
/// The first failure of standard output other than a closed pipe.
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes to standard output. A failure never stops the command midway
/// (an export must still write its shipping orders when `| head` has gone):
/// the output is dropped from then on, and [`report`] says what happened
/// once the command is done.
///
/// Control characters other than newlines and tabs are escaped
/// ([`crate::error::neutralized`]): whatever text from elsewhere the
/// output carries cannot drive the terminal. (Fields that could forge a
/// line, such as names from packets, are made
/// [`crate::error::printable`] where they are formatted.)
pub fn print(args: std::fmt::Arguments) {
    if STDOUT_FAILED.load(Ordering::Relaxed) || QUIET.load(Ordering::Relaxed) {
        return;
    }
    print_data(args);
}

/// Whether `-quiet` silences [`print`] (the summaries).
static QUIET: AtomicBool = AtomicBool::new(false);

/// `-quiet`: from now on [`print`] (`out!`, `outln!`: the summary lines)
/// writes nothing; warnings and errors still go to standard error, and
/// [`print_data`] (the JSON a script asked for) to standard output.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// [`print`] even under `-quiet`: for output that is the command's
/// result (JSON asked for with -fmt json).
pub fn print_data(args: std::fmt::Arguments) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let text = std::fmt::format(args);
    let text = crate::error::neutralized(&text, true);
    let written = crate::cli::above_progress(|| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    });
    if let Err(err) = written {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            let mut first = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(err);
        }
    }
}

/// Writes one line to standard error (see `errln!`), every control
/// character in it escaped, newlines included: a message is one line, and
/// text from elsewhere in it can neither drive the terminal nor start a
/// line of its own (a forged "Signature: verified").
pub fn print_err(args: std::fmt::Arguments) {
    let text = std::fmt::format(args);
    crate::cli::above_progress(|| {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(crate::error::neutralized(&text, false).as_bytes());
        let _ = stderr.write_all(b"\n");
    });
}

/// Prints `err` (if any) as `NAME: error: …` and an optional hint, and
/// returns the exit code. A closed standard output (`| head`) is not an
/// error, as in ripgrep: a command that otherwise succeeded exits 0. Any
/// other failure to write it (a full disk) is reported, exit 1.
pub fn report(name: &str, outcome: anyhow::Result<()>) -> ExitCode {
    let _ = std::io::stdout().lock().flush().map_err(|err| {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            let mut first = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(err);
        }
    });
    let err = match outcome {
        Ok(()) => {
            let failed = STDOUT_ERROR
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return match failed {
                Some(err) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "{name}: error: writing to standard output: {err}"
                    );
                    ExitCode::from(EXIT_FAILURE as u8)
                }
                None => ExitCode::from(EXIT_SUCCESS as u8),
            };
        }
        Err(err) => err,
    };
    let mut stderr = std::io::stderr().lock();
    // `{:#}` is the message with its causes, joined by ": "; the library's
    // errors print their cause in Display and expose no source, so nothing
    // is said twice.
    // One line, whatever names or paths from elsewhere the message holds.
    let message = format!("{err:#}");
    let message = crate::error::plain_os_errors(&message);
    let _ = writeln!(
        stderr,
        "{name}: error: {}",
        crate::error::neutralized(&message, false)
    );
    let library = err.chain().find_map(|e| e.downcast_ref::<Error>());
    // A shipping error passed on as it is (a bay that cannot be used).
    let shipping = || {
        err.chain()
            .find_map(|e| e.downcast_ref::<shipping::Error>())
            .and_then(shipping_hint)
    };
    if let Some(hint) = library.and_then(hint).or_else(shipping) {
        let _ = writeln!(stderr, "{name}: hint: {hint}");
    }
    let code = if err.chain().any(|e| e.is::<Usage>()) {
        let _ = writeln!(stderr, "{name}: hint: {name} -help lists the options");
        EXIT_USAGE
    } else {
        library.map_or(EXIT_FAILURE, exit_code)
    };
    ExitCode::from(code as u8)
}

/// Process exit code for a library error (documented in every man page).
///
/// The rule for 2 (the command line was wrong), beyond what clap refuses
/// and the combinations [`Usage`] refuses: a value typed on the command
/// line that names nothing there is (a member of the family, a file or
/// folder to read, a `-workdir`, a `-resendpath` path), that may not be
/// named there (this replica itself, a removed member, a member's name
/// for a new one, a `-keyout` file that exists), or that is not a value
/// of its kind (a size, an expiry, an epoch setting, a passphrase too
/// short), or that may not be used there (an -out folder or packets inside
/// the replica, a new replica inside one, a -out that is a file). A folder
/// that is no replica (named with -replica, or the current one) is 2 as
/// well: the command was run in the wrong place; so is a question asked
/// with no terminal to answer it (no -force, no -passphrase-file, no -key
/// where one is needed). What is wrong with
/// the replica, a packet, the disk or the network is 1.
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::Locked { .. } => EXIT_LOCKED,
        Error::BadSize { .. }
        | Error::BadExpiry { .. }
        | Error::MissingDirectory { .. }
        | Error::NoTerminal { .. }
        | Error::NeedsConfirmation { .. }
        | Error::UnknownReplica { .. }
        | Error::Member { .. }
        | Error::BadEpochSetting { .. }
        | Error::OwnEpochRow { .. }
        | Error::BadResendPath { .. }
        | Error::NotHeld { .. }
        | Error::BadReplicaDir { .. }
        | Error::NoReplica { .. }
        | Error::NoSuchFile { .. }
        | Error::BadArgument { .. }
        | Error::KeyOutExists { .. }
        | Error::KeyOutNoFolder { .. }
        // Packets to go inside the tree, a replica inside a replica, no
        // -key for a packet made with -keyout: a value not allowed there.
        | Error::PacketsInsideReplica { .. }
        | Error::AlreadyInReplica { .. }
        | Error::ContainsReplica { .. }
        | Error::MissingKeyFile { .. }
        | Error::RootOnUserReplica { .. } => EXIT_USAGE,
        Error::PassphraseFile { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            EXIT_USAGE
        }
        // A passphrase too short to be one is a value of the wrong kind,
        // from a file or typed at the terminal.
        Error::BadPassphrase {
            why: crate::error::PassphraseProblem::TooShort { .. },
            ..
        } => EXIT_USAGE,
        Error::Interrupted { signal } => 128 + signal,
        _ => EXIT_FAILURE,
    }
}

/// What to do about a refused packet, where there is something to do.
pub fn refusal_hint(refusal: &Refusal) -> Option<&'static str> {
    match refusal {
        Refusal::MissingContent { .. } => Some(
            "this replica asks the sender for that content whole with its next packet to it (a content request), and the packet's changes come with the answer; where packets only go one way, at the sender lower its estimate with chepoch to this replica's row (lsepoch here) and export again with -fullcontent",
        ),
        Refusal::NoSpace { .. } => Some(
            "free space on that filesystem (or move the replica to a larger one) and import the packet again",
        ),
        Refusal::Impersonation { .. } => Some(
            "a member is forging packets in another's name: check that member's site and key (lsreplica -long lists the keys)",
        ),
        Refusal::RetiredKey { .. } => Some(
            "the member's old key is in use after it was replaced: someone else may hold a copy of it; \
             check that member's site (lsreplica -long lists its current key and rotation); packets \
             it wrote before the rotation still apply",
        ),
        Refusal::NeedsNewer { .. } => Some(
            "upgrade syncreplica at this site (the sender's version writes what this one cannot apply) and import the packet again",
        ),
        Refusal::Cloned { .. } => Some(
            "keep one copy of that replica; at a sibling, make a new member with mkreplica -export under a new name, \
             import it where the other copy is, move that copy's changed files into it, and stop using the copy \
             (the refused packet stays where it is; lsreplica shows the alarm). If there is only one copy, \
             restored from a backup without mkreplica -restore, run mkreplica -restore there instead: \
             its next packet clears the alarm",
        ),
        Refusal::Removed { .. } => Some(
            "a removed member stays removed: if its changes are still wanted, copy its files into a \
             current member's replica, or make it a member again under a new name with mkreplica -export \
             (the refused packet stays where it is; lsreplica -long lists the removed members)",
        ),
        Refusal::NotAMember { .. } => {
            Some("lsreplica lists the members whose packets this replica accepts")
        }
        _ => None,
    }
}

/// A second line for the user: what to do about it.
pub fn hint(err: &Error) -> Option<String> {
    Some(match err {
        Error::BadReplicaDir { .. } => {
            "-replica DIR names a folder: a replica's root (or a folder inside it), or for mkreplica \
             -init and -import the folder the new replica is made in; lsreplica -replica DIR checks one"
                .into()
        }
        Error::NoReplica { start, named: true } => format!(
            "is {0} the right folder? mkreplica -import PACKET -replica {0} makes a replica there from a creation packet \
             (mkreplica -init -family FAMILY -replica {0} NAME starts a new family)",
            start.display()
        ),
        Error::NoReplica { .. } => {
            "run the command inside a replica, or name one with -replica DIR; mkreplica -import PACKET \
             makes one from a creation packet (mkreplica -init -family FAMILY NAME starts a new family)"
                .into()
        }
        Error::PacketsInsideReplica { rel, is_dir, .. } => format!(
            "use a folder outside the replica (a USB stick, /tmp), or keep the packets local: add the \
             line `{}` to the replica's .syncreplicaignore",
            match (rel.is_empty(), *is_dir) {
                (true, _) => "/sync_*.zip".to_string(),
                (false, true) => format!("/{}/", crate::tree::relpath::display(rel)),
                (false, false) => format!("/{}", crate::tree::relpath::display(rel)),
            }
        ),
        Error::AlreadyInReplica { .. } | Error::ContainsReplica { .. } => {
            "replicas cannot be nested; choose a directory outside any replica".into()
        }
        Error::IsReplicaRoot { name, .. } => format!(
            "mkreplica -init and -import make a new replica in a directory of its own: name an absent \
             or empty one outside any replica with -replica DIR (e.g. beside this one); to bring packets \
             into replica \"{}\", run syncreplica -import PACKET_OR_DIR inside it",
            crate::error::printable(name)
        ),
        Error::HostedAlready { root, .. } => format!(
            "to make another member, run mkreplica -export NEWNAME at a member, with a new name, and import \
             that packet; to make this one anew (the copy at {0} is damaged, or to be replaced), remove \
             {0} first; to have it elsewhere, move that folder (mv)",
            root.display()
        ),
        Error::KeyOutExists { path } => format!(
            "name another file with -keyout (e.g. in another folder); if {} is left from an earlier \
             mkreplica -export whose packet will never be imported, remove it and export again",
            path.display()
        ),
        Error::KeyOutNoFolder { folder, .. } => format!(
            "the folder is not made for you: check the name, or make it first, readable by you alone \
             (mkdir -m 700 {})",
            folder.display()
        ),
        Error::NoSuchFile { pattern: true, .. } => {
            "check the folder and the pattern: ls shows what is there".into()
        }
        Error::NoSuchFile { .. } => "check the name (ls shows what is there)".into(),
        Error::PassphraseFile { cause, .. } => match cause.kind() {
            std::io::ErrorKind::NotFound => {
                "check the name: -passphrase-file names a file whose first line is the passphrase \
                 (make one only you can read: umask 077; echo 'PASSPHRASE' > FILE)"
                    .into()
            }
            std::io::ErrorKind::PermissionDenied => {
                "the file must be readable by the user running the command (and by no one else: chmod 600 FILE)"
                    .into()
            }
            _ => "-passphrase-file names a file whose first line is the passphrase".into(),
        },
        Error::Locked { .. } => {
            "wait for that process to finish; a lock whose process has died is taken over automatically".into()
        }
        Error::BadSize { .. } => {
            "write a number of bytes with an optional k, m or g suffix, e.g. 50m".into()
        }
        Error::UnknownReplica { .. } => "lsreplica lists the family's members".into(),
        Error::Member { why, .. } if why.contains("removed") => {
            "lsreplica -long lists the family's members, the removed ones marked REMOVED".into()
        }
        // The example is a value that would be accepted: for an origin
        // that has recorded only up to N, ORIGIN=N.
        Error::BadEpochSetting { value, why } if why.contains("has recorded only up to epoch") => {
            let origin = value.split_once('=').map_or(value.as_str(), |(o, _)| o).trim();
            let most = why.rsplit(' ').next().unwrap_or("0");
            format!("an epoch of {origin} can be at most {most}, e.g. {origin}={most}")
        }
        Error::BadEpochSetting { .. } => {
            "write ORIGIN=EPOCH, e.g. boston=1300, with ORIGIN a member's name".into()
        }
        Error::SchemaVersion { found, known, .. } if found > known => {
            "use a newer syncreplica".into()
        }
        Error::SchemaVersion { .. } => {
            "the replica was made by an older syncreplica whose state this one cannot read; \
             make it again from a sibling (mkreplica -export there, mkreplica -import here)"
                .into()
        }
        Error::RootOnUserReplica { owner, .. } => format!(
            "run it as that user (e.g. sudo -u {owner} …); or, to have root keep owners, \
             set preserve in .syncreplica/config.toml (e.g. preserve = [\"owner\", \"group\", \
             \"acls\", \"xattrs\", \"hardlinks\", \"devices\"]): root then sets the recorded \
             values on disk; -status, -verify and lsreplica only read it and work as any user"
        ),
        Error::NotWritable {
            read_only_fs: false,
            ..
        } => "this command changes the replica: run it as a user who may write the replica's files (its owner); -status, lsepoch, lsreplica and lspacket only read it".into(),
        Error::NotWritable {
            read_only_fs: true,
            ..
        } => "this command changes the replica: remount its filesystem read-write first; -status, lsepoch, lsreplica and lspacket only read it".into(),
        Error::ScratchFull { mount, .. } => format!(
            "free space on {} (an import needs room there for its packets' operations, \
             about as much again as their packets, until it is done), then import again; \
             the packets are where they were",
            mount.display()
        ),
        Error::StateFull { mount, .. } => format!(
            "free space on {}, then run the command again",
            mount.display()
        ),
        Error::Refused(refusal) => return refusal_hint(refusal).map(str::to_string),
        Error::ChunkMissingLocally { .. } => {
            "run syncreplica -status to see what changed, then export again".into()
        }
        Error::NeedsUpgrade { member, .. } => format!(
            "upgrade syncreplica at \"{member}\" (the family's oldest version sets what every packet to it may \
             carry; lsreplica -long shows each member's packet format), then export again"
        ),
        Error::Restoring { .. } => {
            "import a packet from each sibling named (at each, syncreplica -export -ack THIS_REPLICA \
             sends one; its next export returns the forgotten changes); lsreplica -long shows the restore. \
             A member that will never send one (never made, or gone for good): run mkreplica -restore \
             again naming only the others (and rmreplica NAME once the restore is finished)"
                .into()
        }
        Error::NotHeld { .. } => {
            "-resendpath sends what this replica holds: run it at a sibling that has the path \
             (to resend a sibling what it has not confirmed, use -export -resend TARGET)"
                .into()
        }
        Error::BadResendPath { .. } => {
            "name the path relative to the replica root, as syncreplica -status prints it, e.g. docs/report.txt".into()
        }
        Error::BadCreationPacket { .. } => {
            "ask the sender for a new creation packet (mkreplica -export there) and check its fingerprint with them".into()
        }
        // Every part is written before the export is done, so the -maxsize
        // that would fit is computed from the room there (`free`, statvfs
        // of that filesystem): smaller parts split the same bytes, and
        // what failed needed more than is free, so none fits; below the
        // smallest part not even one part does.
        Error::NoRoomForPackets {
            role,
            options,
            free,
            ..
        } => format!(
            "{}: make room on that disk, or name as the {role} a directory on a disk with room \
             for all of it{}",
            match *free < packet_format::MIN_PART_SIZE {
                true => format!(
                    "no -maxsize fits: the smallest part (-maxsize {}k) is larger than the {} free there",
                    packet_format::MIN_PART_SIZE / 1024,
                    crate::error::human_size(*free)
                ),
                false => format!(
                    "no -maxsize fits: every part must be there at once, and together they need \
                     more than the {} free there (smaller parts only split the same bytes)",
                    crate::error::human_size(*free)
                ),
            },
            match *options {
                "-maxsize and -workdir" => "; -workdir DIR builds the parts on another disk first, \
                    so the -out disk needs room only for the parts themselves",
                _ => "",
            }
        ),
        Error::OutDirectory { .. }
        | Error::BadArgument {
            option: "-out", ..
        } => {
            "name with -out a directory this user can write to, or one that can be made (its parent exists on a writable filesystem)".into()
        }
        Error::MissingDirectory { .. } => {
            "it is not made for you (unlike -out): check the name, or mount the disk".into()
        }
        Error::BadKeyFile { .. } => {
            "name with -key the file mkreplica -export -keyout FILE wrote for this creation packet (without -key, NEWNAME.key beside the packet is read)".into()
        }
        Error::MissingKeyFile { .. } => {
            "this packet was made with mkreplica -export -keyout FILE: its keys are in that file (which may travel by another route); name it with -key FILE (without -key, NEWNAME.key beside the packet is read)".into()
        }
        Error::NeedsConfirmation { .. } => {
            "run it on a terminal to be asked, or add -force to do it without asking".into()
        }
        Error::NoTerminal { .. } => {
            "run it on a terminal to be asked, or put the passphrase on the first line of a file \
             only you can read and name it with -passphrase-file FILE; or, at mkreplica -export, \
             write the keys to a file of their own with -keyout FILE (then no passphrase is needed)"
                .into()
        }
        Error::BadPassphrase { why, .. } => match why {
            PassphraseProblem::NotText | PassphraseProblem::EmptyFirstLine => {
                "-passphrase-file reads the first line of its file (without the line end), as UTF-8 text: \
                 write the passphrase there (umask 077; echo 'PASSPHRASE' > FILE)"
                    .into()
            }
            PassphraseProblem::Empty => {
                "type the passphrase, then Enter (it is not shown as it is typed)".into()
            }
            PassphraseProblem::TooShort { min, .. } => format!(
                "choose a passphrase of at least {min} characters: it is all that protects the new member's \
                 keys on a lost stick (a few unrelated words are easy to tell by telephone and hard to guess)"
            ),
            PassphraseProblem::Differ => {
                "mkreplica -export asks for the new passphrase twice: type the same both times".into()
            }
            PassphraseProblem::Terminal(_) => {
                "put the passphrase on the first line of a file only you can read and name it with -passphrase-file FILE".into()
            }
        },
        Error::Packet(err)
            if matches!(
                err.kind,
                packet_format::ErrorKind::WrongPassphrase | packet_format::ErrorKind::PassphraseNeeded
            ) =>
        {
            "check the passphrase with whoever ran mkreplica -export (it is the one typed there, twice); nothing was created".into()
        }
        Error::NotEmpty {
            no_content: true, ..
        } => {
            "this creation packet carries no file content (a manifest): to make the member over a tree that holds the content already, use mkreplica -import -adopt -replica DIR; otherwise name an absent or empty directory with -replica DIR".into()
        }
        Error::NotEmpty { .. } => {
            "mkreplica -import makes the new replica in the current directory unless -replica DIR names another; it needs an absent or empty directory; to make the member over a tree that holds the content already, ask the sender for a manifest (mkreplica -export -manifest) and use mkreplica -import -adopt".into()
        }
        Error::ManifestNeedsAdopt { .. } => {
            "make the new member over a tree that holds the content already: mkreplica -import -adopt -replica DIR; or ask the sender for a packet with content (mkreplica -export without -manifest)".into()
        }
        Error::ShippingConfig { cause, .. } | Error::Shipping(cause) => return shipping_hint(cause),
        _ => return None,
    })
}

/// What to do about a shipping error, where there is something to do.
fn shipping_hint(err: &shipping::Error) -> Option<String> {
    Some(match err {
        shipping::Error::UnknownClass { .. } => {
            "storage classes are the [classes.NAME] tables of shipping.toml; without -sclass the class is \"default\"".into()
        }
        shipping::Error::UnknownDestination { destination, .. } => format!(
            "tell shipping.toml how to reach it: a table [destinations.{destination}] with url = \"http://HOST:7421\" \
             (or dir = \"/media/usb\"), or under [routes] a line HOP = [\"{destination}\"], or default_route = \"HOP\""
        ),
        shipping::Error::RouteLoop { .. } => {
            "a destination's route must end at a [destinations] entry; fix [routes] and default_route in shipping.toml".into()
        }
        shipping::Error::BayFull { .. } => {
            "make room on that disk, or name a directory with room in shipping.toml; the packet stays queued for the next shipping_server -poll".into()
        }
        shipping::Error::Config { .. } => {
            "shipping_server(1) and shipping/FORMAT.md describe every key".into()
        }
        shipping::Error::S3Access { hint, .. } => hint.clone(),
        _ => return None,
    })
}
