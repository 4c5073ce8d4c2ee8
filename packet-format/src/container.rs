//! The zip container (SPEC.md §3): its one layout, written by
//! [`ZipLayout`] and checked strictly by [`scan`].
//!
//! There is exactly one accepted layout: local entries back to back from
//! offset 0, each a fixed local header and Stored data, then the central
//! directory, then an end record with no comment, then end of file. Every
//! optional field has one fixed value. The writer and the reader share the
//! constants below, so what one writes is what the other accepts. General
//! zip readers are lenient about duplicates, prefixes, gaps and trailing
//! bytes; ours is not, because every byte it tolerates is a byte an attacker
//! may use.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

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

/// One entry as the central directory lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WrittenEntry {
    pub name: String,
    pub local_offset: u32,
    pub crc32: u32,
    pub size: u32,
}

impl WrittenEntry {
    /// Offset just past this entry's data.
    pub fn end(&self) -> u64 {
        self.local_offset as u64 + LOCAL_HEADER_LEN + self.name.len() as u64 + self.size as u64
    }
}

/// An entry being streamed: its CRC-32 and size are patched into the local
/// header when it is finished.
struct OpenEntry {
    crc: crc32fast::Hasher,
    size: u64,
}

/// Writes the canonical layout of SPEC.md §3, byte for byte: Stored entries
/// from offset 0, fixed header fields, no data descriptors (so a streamed
/// entry's CRC-32 and size are written into its local header afterwards),
/// no extra fields, no comments, no Zip64.
pub(crate) struct ZipLayout<W: Write + Seek> {
    out: W,
    /// Where the next byte goes (always the end of what was written).
    position: u64,
    entries: Vec<WrittenEntry>,
    open: Option<OpenEntry>,
}

fn layout_error(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// Zip fields are 32 bits; a part is at most 2 GiB (SPEC.md §3, §10).
fn fits_u32(value: u64, what: impl FnOnce() -> String) -> io::Result<u32> {
    u32::try_from(value)
        .map_err(|_| layout_error(format!("{} ({value}) does not fit a zip field", what())))
}

fn local_header(name: &str, crc32: u32, size: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(LOCAL_HEADER_LEN as usize + name.len());
    header.extend_from_slice(&LOCAL_SIG.to_le_bytes());
    header.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // flags
    header.extend_from_slice(&0u16.to_le_bytes()); // method: Stored
    header.extend_from_slice(&0u16.to_le_bytes()); // time
    header.extend_from_slice(&DOS_DATE.to_le_bytes());
    header.extend_from_slice(&crc32.to_le_bytes());
    header.extend_from_slice(&size.to_le_bytes()); // compressed
    header.extend_from_slice(&size.to_le_bytes()); // uncompressed
    header.extend_from_slice(&(name.len() as u16).to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    header.extend_from_slice(name.as_bytes());
    header
}

fn central_header(entry: &WrittenEntry) -> Vec<u8> {
    let mut header = Vec::with_capacity(CENTRAL_HEADER_LEN as usize + entry.name.len());
    header.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
    header.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
    header.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // flags
    header.extend_from_slice(&0u16.to_le_bytes()); // method: Stored
    header.extend_from_slice(&0u16.to_le_bytes()); // time
    header.extend_from_slice(&DOS_DATE.to_le_bytes());
    header.extend_from_slice(&entry.crc32.to_le_bytes());
    header.extend_from_slice(&entry.size.to_le_bytes()); // compressed
    header.extend_from_slice(&entry.size.to_le_bytes()); // uncompressed
    header.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    header.extend_from_slice(&0u16.to_le_bytes()); // comment length
    header.extend_from_slice(&0u16.to_le_bytes()); // disk number
    header.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    header.extend_from_slice(&EXTERNAL_ATTRIBUTES.to_le_bytes());
    header.extend_from_slice(&entry.local_offset.to_le_bytes());
    header.extend_from_slice(entry.name.as_bytes());
    header
}

impl<W: Write + Seek> ZipLayout<W> {
    /// Starts a zip at offset 0 of `out`, which must be empty.
    pub fn new(out: W) -> ZipLayout<W> {
        ZipLayout {
            out,
            position: 0,
            entries: Vec::new(),
            open: None,
        }
    }

    /// Continues a zip whose `entries` (all finished, as returned by
    /// [`ZipLayout::into_entries`]) are already in `out`: seeks past the
    /// last one, where the next entry goes.
    pub fn resume(mut out: W, entries: Vec<WrittenEntry>) -> io::Result<ZipLayout<W>> {
        let position = entries.last().map_or(0, WrittenEntry::end);
        out.seek(SeekFrom::Start(position))?;
        Ok(ZipLayout {
            out,
            position,
            entries,
            open: None,
        })
    }

    fn check_new_entry(&self, name: &str) -> io::Result<u32> {
        if !is_valid_entry_name(name.as_bytes()) {
            return Err(layout_error(format!(
                "entry name {name:?} is not 1 to {MAX_NAME_LEN} of [a-z_]"
            )));
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(layout_error(format!(
                "entry {name:?} would be entry {}, more than {MAX_ENTRIES}",
                self.entries.len() + 1
            )));
        }
        fits_u32(self.position, || format!("offset of entry {name:?}"))
    }

    /// Writes a whole entry whose bytes are at hand.
    pub fn add_entry(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.finish_entry()?;
        let local_offset = self.check_new_entry(name)?;
        let size = fits_u32(bytes.len() as u64, || format!("size of entry {name:?}"))?;
        let crc32 = crc32fast::hash(bytes);
        self.out.write_all(&local_header(name, crc32, size))?;
        self.out.write_all(bytes)?;
        let entry = WrittenEntry {
            name: name.to_string(),
            local_offset,
            crc32,
            size,
        };
        self.position = entry.end();
        self.entries.push(entry);
        Ok(())
    }

    /// Starts an entry whose bytes follow through [`Write`]; it ends with
    /// the next entry, [`ZipLayout::finish_entry`] or the end of the zip.
    pub fn start_entry(&mut self, name: &str) -> io::Result<()> {
        self.finish_entry()?;
        let local_offset = self.check_new_entry(name)?;
        self.out.write_all(&local_header(name, 0, 0))?;
        self.entries.push(WrittenEntry {
            name: name.to_string(),
            local_offset,
            crc32: 0,
            size: 0,
        });
        self.position += LOCAL_HEADER_LEN + name.len() as u64;
        self.open = Some(OpenEntry {
            crc: crc32fast::Hasher::new(),
            size: 0,
        });
        Ok(())
    }

    /// Ends the streamed entry, if any: writes its CRC-32 and sizes into
    /// its local header.
    pub fn finish_entry(&mut self) -> io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let entry = self.entries.last_mut().expect("an open entry is listed");
        entry.size = fits_u32(open.size, || format!("size of entry {:?}", entry.name))?;
        entry.crc32 = open.crc.finalize();
        let mut patch = [0u8; 12];
        patch[0..4].copy_from_slice(&entry.crc32.to_le_bytes());
        patch[4..8].copy_from_slice(&entry.size.to_le_bytes());
        patch[8..12].copy_from_slice(&entry.size.to_le_bytes());
        // CRC-32, compressed and uncompressed size are at 14..26.
        self.out
            .seek(SeekFrom::Start(entry.local_offset as u64 + 14))?;
        self.out.write_all(&patch)?;
        self.out.seek(SeekFrom::Start(self.position))?;
        Ok(())
    }

    /// Ends the last entry and hands back the output and the entries, to
    /// [`ZipLayout::resume`] later; no central directory is written.
    pub fn into_entries(mut self) -> io::Result<(W, Vec<WrittenEntry>)> {
        self.finish_entry()?;
        Ok((self.out, self.entries))
    }

    /// Ends the last entry, writes the central directory and the end
    /// record, and hands back the output (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.finish_entry()?;
        let cd_offset = fits_u32(self.position, || "offset of the central directory".into())?;
        let mut central = Vec::new();
        for entry in &self.entries {
            central.extend_from_slice(&central_header(entry));
        }
        let cd_size = fits_u32(central.len() as u64, || {
            "size of the central directory".into()
        })?;
        fits_u32(
            self.position + central.len() as u64 + END_RECORD_LEN,
            || "size of the zip".into(),
        )?;
        let count = self.entries.len() as u16;
        let mut end = Vec::with_capacity(END_RECORD_LEN as usize);
        end.extend_from_slice(&END_SIG.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes()); // this disk
        end.extend_from_slice(&0u16.to_le_bytes()); // disk of the central directory
        end.extend_from_slice(&count.to_le_bytes()); // entries on this disk
        end.extend_from_slice(&count.to_le_bytes()); // entries
        end.extend_from_slice(&cd_size.to_le_bytes());
        end.extend_from_slice(&cd_offset.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes()); // comment length
        self.out.write_all(&central)?;
        self.out.write_all(&end)?;
        Ok(self.out)
    }
}

/// Bytes of the entry started by [`ZipLayout::start_entry`].
impl<W: Write + Seek> Write for ZipLayout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("zip data written outside an entry"));
        };
        let n = self.out.write(buf)?;
        open.crc.update(&buf[..n]);
        open.size += n as u64;
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn scan_bytes(bytes: &[u8]) -> Result<Vec<EntryLocation>, ErrorKind> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        scan(&mut file, bytes.len() as u64)
    }

    #[test]
    fn streamed_and_whole_entries_are_the_same_bytes() {
        let mut whole = ZipLayout::new(Cursor::new(Vec::new()));
        whole.add_entry("chunks", b"hello, world").unwrap();
        whole.add_entry("header", b"").unwrap();
        let whole = whole.finish().unwrap().into_inner();

        let mut streamed = ZipLayout::new(Cursor::new(Vec::new()));
        streamed.start_entry("chunks").unwrap();
        streamed.write_all(b"hello, ").unwrap();
        streamed.write_all(b"world").unwrap();
        let (out, entries) = streamed.into_entries().unwrap();
        let mut resumed = ZipLayout::resume(out, entries).unwrap();
        resumed.start_entry("header").unwrap();
        let streamed = resumed.finish().unwrap().into_inner();
        assert_eq!(whole, streamed);

        let entries = scan_bytes(&whole).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "chunks");
        assert_eq!(entries[0].crc32, crc32fast::hash(b"hello, world"));
        assert_eq!(entries[0].data_offset, LOCAL_HEADER_LEN + 6);
        assert_eq!(entries[1].size, 0);
        let overhead: u64 = ["chunks", "header"].iter().map(|n| entry_overhead(n)).sum();
        assert_eq!(whole.len() as u64, overhead + 12 + END_RECORD_LEN);
    }

    #[test]
    fn refuses_what_the_layout_does_not_allow() {
        let mut zip = ZipLayout::new(Cursor::new(Vec::new()));
        let err = zip.add_entry("Chunks", b"").unwrap_err();
        assert!(err.to_string().contains("\"Chunks\""), "{err}");
        let err = zip.write_all(b"x").unwrap_err();
        assert!(err.to_string().contains("outside an entry"), "{err}");
        for _ in 0..MAX_ENTRIES {
            zip.add_entry("x", b"").unwrap();
        }
        let err = zip.add_entry("extra", b"").unwrap_err();
        assert!(err.to_string().contains("\"extra\""), "{err}");
    }
}
