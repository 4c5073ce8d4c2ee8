//! Packet file names (SPEC.md §11).
//!
//! Names are for people and for ordering in a directory listing; readers
//! never trust them (everything they say is also in the signed header).

use crate::header::{CreationPayload, Header, PacketKind};
use crate::ops::Timestamp;

/// Longest replica name kept in a file name, in bytes.
const MAX_NAME_PART: usize = 64;

/// The file name of one physical packet:
///
/// * update: `sync_<sender>_<YYYYMMDDTHHMMSSZ>_<target>_<seq>[_<k>of<n>].zip`
///   (the first target; one export to several targets writes one packet
///   each, in the same second, so the target keeps the names apart)
/// * replica creation: `repl_<sender>_<YYYYMMDDTHHMMSSZ>_<new replica>[_<k>of<n>].zip`
///
/// `_<k>of<n>` is present only when the logical packet has more than one
/// part. Replica names are reduced to `[A-Za-z0-9.-_]` (others become `-`)
/// so that a name can never carry a path separator.
#[allow(clippy::too_many_arguments)]
pub fn packet_file_name(
    kind: PacketKind,
    sender: &str,
    created: Timestamp,
    target: &str,
    seq: u64,
    new_replica: Option<&str>,
    part: u32,
    parts: u32,
) -> String {
    let stamp = utc_timestamp(created.secs);
    let sender = sanitize(sender);
    let mut name = match kind {
        PacketKind::ReplicaCreation => format!(
            "repl_{sender}_{stamp}_{}",
            sanitize(new_replica.unwrap_or("new"))
        ),
        PacketKind::Update => format!("sync_{sender}_{stamp}_{}_{seq}", sanitize(target)),
        PacketKind::Unknown(code) => {
            format!("pkt{code}_{sender}_{stamp}_{}_{seq}", sanitize(target))
        }
    };
    if parts > 1 {
        name.push_str(&format!("_{part}of{parts}"));
    }
    name.push_str(".zip");
    name
}

/// True for the file names [`packet_file_name`] makes for updates and
/// replica creations (`sync_*.zip`, `repl_*.zip`): what a directory of
/// packets, a storage bay or an upload is looked at for. It says nothing of
/// the content, which only verification can vouch for.
pub fn is_packet_file_name(name: &str) -> bool {
    (name.starts_with("sync_") || name.starts_with("repl_")) && name.ends_with(".zip")
}

/// The file name the writer gave the part whose (verified) header is
/// `header`; `creation` is its creation payload, for replica-creation
/// packets. Everything it says comes from signed data, so a receiver can
/// insist on it: a packet stored under any other name could squat the
/// name of another packet, or be stored twice.
pub fn canonical_file_name(header: &Header, creation: Option<&CreationPayload>) -> String {
    packet_file_name_for(
        header,
        header.part,
        header.parts,
        creation.map(|c| c.new_replica.name.as_str()),
    )
}

/// File name for part `part` of `parts` of the packet described by `header`.
pub(crate) fn packet_file_name_for(
    header: &Header,
    part: u32,
    parts: u32,
    new_replica: Option<&str>,
) -> String {
    let seq = header.targets.first().map_or(0, |target| target.seq);
    let target = header
        .targets
        .first()
        .map_or("", |target| target.name.as_str());
    packet_file_name(
        header.kind,
        &header.sender.name,
        header.created,
        target,
        seq,
        new_replica,
        part,
        parts,
    )
}

fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(MAX_NAME_PART);
    if out.is_empty() {
        out.push_str("unnamed");
    }
    if out.starts_with('.') {
        out.replace_range(..1, "-");
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for a time in seconds since the Unix epoch (any
/// `i64`; years beyond 9999 take more digits).
pub fn utc_timestamp(secs: i64) -> String {
    let (date, (h, m, s)) = utc_parts(secs);
    format!(
        "{:04}{:02}{:02}T{h:02}{m:02}{s:02}Z",
        date.0, date.1, date.2
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a time in seconds since the Unix epoch,
/// for listings.
pub fn utc_display(secs: i64) -> String {
    let (date, (h, m, s)) = utc_parts(secs);
    format!(
        "{:04}-{:02}-{:02} {h:02}:{m:02}:{s:02} UTC",
        date.0, date.1, date.2
    )
}

fn utc_parts(secs: i64) -> ((i64, u32, u32), (i64, i64, i64)) {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    (
        civil_from_days(days),
        (of_day / 3600, of_day / 60 % 60, of_day % 60),
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        let t = Timestamp::new(1_763_683_200, 0).unwrap(); // 2025-11-21T00:00:00Z
        assert_eq!(utc_timestamp(t.secs + 3_723), "20251121T010203Z");
        // Far from 1970, both ways: what an i64 of nanoseconds cannot hold.
        assert_eq!(utc_timestamp(13_569_465_600), "24000101T000000Z");
        assert_eq!(utc_timestamp(-11_676_096_000), "16000101T000000Z");
        assert_eq!(
            packet_file_name(PacketKind::Update, "boston", t, "ship", 7, None, 1, 1),
            "sync_boston_20251121T000000Z_ship_7.zip"
        );
        assert_eq!(
            packet_file_name(PacketKind::Update, "a/../b c", t, "x/y", 7, None, 2, 3),
            "sync_a-..-b-c_20251121T000000Z_x-y_7_2of3.zip"
        );
        assert_eq!(
            packet_file_name(
                PacketKind::ReplicaCreation,
                "hub",
                t,
                "",
                0,
                Some(".x"),
                1,
                1
            ),
            "repl_hub_20251121T000000Z_-x.zip"
        );
        assert_eq!(utc_timestamp(0), "19700101T000000Z");
        assert_eq!(utc_timestamp(-1), "19691231T235959Z");
    }
}

/// Temporary part files are `.syncpkt-<HOST>-<PID>-<RANDOM>.partial`.
pub const PARTIAL_PREFIX: &str = ".syncpkt-";
/// See [`PARTIAL_PREFIX`].
pub const PARTIAL_SUFFIX: &str = ".partial";

/// This host's id in temporary part names: 16 hex digits of a SHA-256 of
/// the machine id (`/etc/machine-id`, else `/var/lib/dbus/machine-id`) and
/// the host name, so containers sharing a machine id still differ. A stick
/// may be written by several hosts at once; only a part of this host can be
/// proved abandoned (its process is gone).
pub fn this_host_id() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let mut machine = read("/etc/machine-id");
        if machine.trim().is_empty() {
            machine = read("/var/lib/dbus/machine-id");
        }
        let hostname = read("/proc/sys/kernel/hostname");
        let mut sha = Sha256::new();
        sha.update(b"syncreplica host\0");
        sha.update(machine.trim().as_bytes());
        sha.update(b"\0");
        sha.update(hostname.trim().as_bytes());
        hex::encode(&sha.finalize()[..8])
    })
}

/// The prefix of the temporary part files this process writes.
pub fn partial_prefix() -> String {
    format!("{PARTIAL_PREFIX}{}-{}-", this_host_id(), std::process::id())
}

/// Who wrote a temporary part file, as its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialOwner {
    /// [`this_host_id`] of the host that wrote it.
    pub host: String,
    pub pid: u32,
}

/// True for a temporary part file's name (any version's).
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX)
}

/// The writer of a temporary part file, if its name says (names from
/// before host and pid were recorded do not).
pub fn partial_owner(name: &str) -> Option<PartialOwner> {
    let rest = name
        .strip_prefix(PARTIAL_PREFIX)?
        .strip_suffix(PARTIAL_SUFFIX)?;
    let mut fields = rest.splitn(3, '-');
    let host = fields.next()?;
    let pid = fields.next()?;
    fields.next()?;
    if host.len() != 16 || !host.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(PartialOwner {
        host: host.to_string(),
        pid: pid.parse().ok()?,
    })
}

#[cfg(test)]
mod partial_tests {
    use super::*;

    #[test]
    fn a_partial_name_says_who_wrote_it() {
        let name = format!("{}Ab3xYz{PARTIAL_SUFFIX}", partial_prefix());
        assert!(is_partial_name(&name));
        let owner = partial_owner(&name).unwrap();
        assert_eq!(owner.host, this_host_id());
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(partial_owner(".syncpkt-Ab3xYz.partial"), None);
        assert_eq!(partial_owner(".syncpkt-nothex0123456789-1-x.partial"), None);
    }
}
