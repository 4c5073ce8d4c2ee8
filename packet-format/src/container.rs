//! Strict check of the zip container (SPEC.md §3).
//!
//! Packets are written by the `zip` crate with every optional field fixed,
//! so the reader accepts exactly one layout: local entries back to back from
//! offset 0, then the central directory, then an end record with no comment,
//! then end of file. General zip readers are lenient about duplicates,
//! prefixes, gaps and trailing bytes; ours is not, because every byte it
//! tolerates is a byte an attacker may use.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::error::ErrorKind;

pub(crate) const LOCAL_HEADER_LEN: u64 = 30;
pub(crate) const CENTRAL_HEADER_LEN: u64 = 46;
pub(crate) const END_RECORD_LEN: u64 = 22;
const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
/// "Version needed to extract": 1.0, plain stored entries.
const VERSION_NEEDED: u16 = 10;
/// "Version made by": Unix, 1.0.
const VERSION_MADE_BY: u16 = 0x030a;
/// DOS date of 1980-01-01, the zip epoch; entry times carry no information.
const DOS_DATE: u16 = 0x0021;
/// Unix regular file, mode 0644, in the high half.
const EXTERNAL_ATTRIBUTES: u32 = 0o100644 << 16;
/// No packet needs more entries; bounds the central directory we read.
pub(crate) const MAX_ENTRIES: usize = 16;
pub(crate) const MAX_NAME_LEN: usize = 32;

/// Zip overhead of one entry named `name`: local header + central header.
pub(crate) fn entry_overhead(name: &str) -> u64 {
    LOCAL_HEADER_LEN + CENTRAL_HEADER_LEN + 2 * name.len() as u64
}

/// Where one entry's bytes are in the file.
#[derive(Clone, Debug)]
pub(crate) struct EntryLocation {
    pub name: String,
    pub data_offset: u64,
    pub size: u64,
    pub crc32: u32,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn non_canonical(what: impl Into<String>) -> ErrorKind {
    ErrorKind::NonCanonicalZip(what.into())
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), ErrorKind> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                ErrorKind::Truncated("file ends inside a zip record".into())
            } else {
                ErrorKind::io("reading zip structure", err)
            }
        })
}

/// Entry names are short lowercase ASCII words; anything else is refused
/// before it can reach a message or a comparison.
pub(crate) fn is_valid_entry_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.iter().all(|b| b.is_ascii_lowercase() || *b == b'_')
}

/// Checks the whole zip structure of a file of `len` bytes and returns its
/// entries in file order.
pub(crate) fn scan(file: &mut File, len: u64) -> Result<Vec<EntryLocation>, ErrorKind> {
    if len < END_RECORD_LEN {
        return Err(ErrorKind::Truncated(format!("only {len} bytes")));
    }
    let end_offset = len - END_RECORD_LEN;
    let mut end = [0u8; END_RECORD_LEN as usize];
    read_at(file, end_offset, &mut end)?;
    if u32_at(&end, 0) != END_SIG || u16_at(&end, 20) != 0 {
        return Err(diagnose_missing_end(file, len));
    }
    let (disk, cd_disk) = (u16_at(&end, 4), u16_at(&end, 6));
    let (count_here, count) = (u16_at(&end, 8) as usize, u16_at(&end, 10) as usize);
    let (cd_size, cd_offset) = (u32_at(&end, 12) as u64, u32_at(&end, 16) as u64);
    if disk != 0 || cd_disk != 0 || count_here != count {
        return Err(non_canonical("multi-disk archive"));
    }
    if count == 0 || count > MAX_ENTRIES {
        return Err(non_canonical(format!("{count} entries")));
    }
    if cd_offset.checked_add(cd_size) != Some(end_offset) {
        return Err(non_canonical(
            "central directory does not end at the end record",
        ));
    }
    if cd_size > (count * (CENTRAL_HEADER_LEN as usize + MAX_NAME_LEN)) as u64 {
        return Err(non_canonical("central directory too large"));
    }
    let mut central = vec![0u8; cd_size as usize];
    read_at(file, cd_offset, &mut central)?;

    let mut entries: Vec<EntryLocation> = Vec::with_capacity(count);
    let mut at = 0usize;
    let mut expected_offset = 0u64;
    for _ in 0..count {
        let fixed = central
            .get(at..at + CENTRAL_HEADER_LEN as usize)
            .ok_or_else(|| non_canonical("central directory shorter than its entry count"))?;
        if u32_at(fixed, 0) != CENTRAL_SIG {
            return Err(non_canonical("bad central directory signature"));
        }
        let canonical = u16_at(fixed, 4) == VERSION_MADE_BY
            && u16_at(fixed, 6) == VERSION_NEEDED
            && u16_at(fixed, 8) == 0 // flags: no encryption, no data descriptor
            && u16_at(fixed, 10) == 0 // method: Stored
            && u16_at(fixed, 12) == 0
            && u16_at(fixed, 14) == DOS_DATE
            && u16_at(fixed, 30) == 0 // extra field length
            && u16_at(fixed, 32) == 0 // comment length
            && u16_at(fixed, 34) == 0 // disk number
            && u16_at(fixed, 36) == 0 // internal attributes
            && u32_at(fixed, 38) == EXTERNAL_ATTRIBUTES;
        if !canonical {
            return Err(non_canonical(
                "central directory field differs from the spec",
            ));
        }
        let crc32 = u32_at(fixed, 16);
        let (packed, size) = (u32_at(fixed, 20) as u64, u32_at(fixed, 24) as u64);
        let name_len = u16_at(fixed, 28) as usize;
        let local_offset = u32_at(fixed, 42) as u64;
        if packed != size {
            return Err(non_canonical("compressed and uncompressed sizes differ"));
        }
        let name_bytes = central
            .get(at + CENTRAL_HEADER_LEN as usize..at + CENTRAL_HEADER_LEN as usize + name_len)
            .ok_or_else(|| non_canonical("central directory shorter than its entries"))?;
        if !is_valid_entry_name(name_bytes) {
            return Err(ErrorKind::UnexpectedEntry {
                name: String::from_utf8_lossy(name_bytes).into_owned(),
            });
        }
        let name = String::from_utf8(name_bytes.to_vec()).expect("checked ASCII");
        if entries.iter().any(|e| e.name == name) {
            return Err(ErrorKind::DuplicateEntry { name });
        }
        if local_offset != expected_offset {
            return Err(non_canonical(format!(
                "entry {name:?} is not where the previous one ends"
            )));
        }
        let data_offset = local_offset + LOCAL_HEADER_LEN + name_len as u64;
        check_local_header(file, local_offset, &name, crc32, size)?;
        expected_offset = data_offset + size;
        if expected_offset > cd_offset {
            return Err(non_canonical(format!(
                "entry {name:?} overlaps the central directory"
            )));
        }
        entries.push(EntryLocation {
            name,
            data_offset,
            size,
            crc32,
        });
        at += CENTRAL_HEADER_LEN as usize + name_len;
    }
    if at != central.len() {
        return Err(non_canonical("bytes left over in the central directory"));
    }
    if expected_offset != cd_offset {
        return Err(non_canonical("gap before the central directory"));
    }
    Ok(entries)
}

fn check_local_header(
    file: &mut File,
    offset: u64,
    name: &str,
    crc32: u32,
    size: u64,
) -> Result<(), ErrorKind> {
    let mut local = vec![0u8; LOCAL_HEADER_LEN as usize + name.len()];
    read_at(file, offset, &mut local)?;
    let matches = u32_at(&local, 0) == LOCAL_SIG
        && u16_at(&local, 4) == VERSION_NEEDED
        && u16_at(&local, 6) == 0
        && u16_at(&local, 8) == 0
        && u16_at(&local, 10) == 0
        && u16_at(&local, 12) == DOS_DATE
        && u32_at(&local, 14) == crc32
        && u32_at(&local, 18) as u64 == size
        && u32_at(&local, 22) as u64 == size
        && u16_at(&local, 26) as usize == name.len()
        && u16_at(&local, 28) == 0
        && &local[LOCAL_HEADER_LEN as usize..] == name.as_bytes();
    if matches {
        Ok(())
    } else {
        Err(non_canonical(format!(
            "local header of {name:?} differs from the central directory or the spec"
        )))
    }
}

/// No end record at the very end: tell trailing garbage (an end record
/// further back) from truncation or a file that is no zip at all.
fn diagnose_missing_end(file: &mut File, len: u64) -> ErrorKind {
    // An end record with a comment of up to 64 KiB may sit this far back.
    let window = len.min(END_RECORD_LEN + 0xffff);
    let mut tail = vec![0u8; window as usize];
    if let Err(err) = read_at(file, len - window, &mut tail) {
        return err;
    }
    for start in (0..=tail.len() - END_RECORD_LEN as usize).rev() {
        if u32_at(&tail, start) == END_SIG {
            let record_end = len - window + start as u64 + END_RECORD_LEN;
            let comment = u16_at(&tail, start + 20) as u64;
            if record_end + comment == len {
                return non_canonical("archive has a comment");
            }
            return ErrorKind::TrailingGarbage {
                bytes: len - record_end,
            };
        }
    }
    ErrorKind::Truncated("no end-of-central-directory record".into())
}
