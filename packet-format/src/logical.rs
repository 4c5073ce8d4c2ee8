//! Reassembling a logical packet from its verified parts.

use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, Result};
use crate::header::Header;
use crate::ops::{ChunkId, ChunkRef, Id, Operation};
use crate::reader::{
    decode_operation, ChunkPieces, OperationRecord, OperationRecords, VerifiedPacket,
};

/// All parts of one logical packet, each verified, in part order.
pub struct LogicalPacket {
    parts: Vec<VerifiedPacket>,
}

impl LogicalPacket {
    /// Puts verified parts in order and checks they are all the parts of one
    /// logical packet from one signer.
    pub fn assemble(mut parts: Vec<VerifiedPacket>) -> Result<LogicalPacket> {
        let Some(first) = parts.first() else {
            return Err(ErrorKind::IncompleteLogicalPacket("no parts".into()).at(""));
        };
        let first_path = first.path().to_path_buf();
        parts.sort_by_key(|p| p.header().part);
        let reference = parts[0].header().clone();
        for (index, part) in parts.iter().enumerate() {
            let header = part.header();
            let same = header.packet_id == reference.packet_id
                && header.signer_key == reference.signer_key
                && header.kind == reference.kind
                && header.family.id == reference.family.id
                && header.sender.id == reference.sender.id
                && header.parts == reference.parts;
            if !same {
                return Err(ErrorKind::IncompleteLogicalPacket(
                    "parts belong to different logical packets".into(),
                )
                .at(part.path()));
            }
            if part.seals() != parts[0].seals() {
                return Err(ErrorKind::IncompleteLogicalPacket(
                    "parts carry different seals".into(),
                )
                .at(part.path()));
            }
            if header.part != index as u32 + 1 {
                return Err(ErrorKind::IncompleteLogicalPacket(format!(
                    "part {} is missing or duplicated",
                    index + 1
                ))
                .at(part.path()));
            }
        }
        if parts.len() as u64 != reference.parts as u64 {
            return Err(ErrorKind::IncompleteLogicalPacket(format!(
                "{} of {} parts present",
                parts.len(),
                reference.parts
            ))
            .at(first_path));
        }
        Ok(LogicalPacket { parts })
    }

    /// The origin seals of the packet's operations (SPEC.md §7).
    pub fn seals(&self) -> &[crate::seals::Seal] {
        self.parts[0].seals()
    }

    pub fn parts(&self) -> &[VerifiedPacket] {
        &self.parts
    }

    /// The first part's header (the parts agree on everything but the
    /// part number, entry pins and record counts).
    pub fn header(&self) -> &Header {
        self.parts[0].header()
    }

    /// All operations, in stream order, with split ones reassembled.
    pub fn operations(&self) -> LogicalOperations<'_> {
        LogicalOperations {
            parts: &self.parts,
            next_part: 0,
            current: None,
            pending: None,
            done: false,
            last_epoch: std::collections::BTreeMap::new(),
        }
    }

    /// As [`LogicalPacket::chunks`], with `bases` giving the chunks that
    /// recipes (chunk codec 2) are built from; each built chunk is checked
    /// against its SHA-256.
    pub fn chunks_with<'a>(&'a self, bases: &'a mut BaseChunks<'a>) -> LogicalChunks<'a> {
        let mut chunks = self.chunks();
        chunks.bases = Some(bases);
        chunks
    }

    /// All chunks, in stream order, with split ones reassembled and checked
    /// against their SHA-256.
    ///
    /// A chunk given as a recipe (codec 2) needs chunks held elsewhere:
    /// this iterator ends with [`ErrorKind::MissingBase`] at the first one;
    /// see [`LogicalPacket::chunks_with`].
    pub fn chunks(&self) -> LogicalChunks<'_> {
        LogicalChunks {
            parts: &self.parts,
            next_part: 0,
            current: None,
            pending: None,
            bases: None,
            done: false,
        }
    }
}

/// Iterator over the operations of a logical packet.
pub struct LogicalOperations<'a> {
    parts: &'a [VerifiedPacket],
    next_part: usize,
    current: Option<OperationRecords>,
    /// An operation being reassembled: total length and bytes so far.
    pending: Option<(u32, Vec<u8>)>,
    done: bool,
    /// Per origin, the epoch of its last operation so far.
    last_epoch: std::collections::BTreeMap<Id, u64>,
}

impl LogicalOperations<'_> {
    /// The next operation, checked against the header's epoch ranges
    /// (SPEC.md §4): each origin's operations are exactly its range, in
    /// order, each epoch once.
    fn step(&mut self) -> Result<Option<Operation>> {
        let ranges = &self.parts[0].header().epoch_ranges;
        let Some(op) = self.step_raw()? else {
            for (origin, range) in ranges {
                if self.last_epoch.get(origin) != Some(&range.last) {
                    return Err(self.ranges(format!(
                        "origin {origin} should end at epoch {}, ends at {}",
                        range.last,
                        self.last_epoch.get(origin).copied().unwrap_or(0)
                    )));
                }
            }
            return Ok(None);
        };
        let Some(range) = ranges.get(&op.origin) else {
            return Err(self.ranges(format!(
                "operation {} of origin {} has no range",
                op.epoch, op.origin
            )));
        };
        let expected = match self.last_epoch.get(&op.origin) {
            None => range.first,
            Some(last) => last.saturating_add(1),
        };
        if op.epoch != expected || op.epoch > range.last {
            return Err(self.ranges(format!(
                "origin {}: epoch {} where {expected} belongs (range {}..={})",
                op.origin, op.epoch, range.first, range.last
            )));
        }
        self.last_epoch.insert(op.origin, op.epoch);
        Ok(Some(op))
    }

    fn ranges(&self, what: String) -> crate::Error {
        let part = &self.parts[self.next_part.saturating_sub(1)];
        ErrorKind::EpochRanges(what).at(part.path())
    }

    fn step_raw(&mut self) -> Result<Option<Operation>> {
        loop {
            let Some(records) = self.current.as_mut() else {
                if self.next_part == self.parts.len() {
                    if self.pending.is_some() {
                        return Err(self.broken("last operation is incomplete"));
                    }
                    return Ok(None);
                }
                self.current = Some(self.parts[self.next_part].operation_records()?);
                self.next_part += 1;
                continue;
            };
            match records.next() {
                None => self.current = None,
                Some(record) => match record? {
                    OperationRecord::Whole(op) => {
                        if self.pending.is_some() {
                            return Err(self.broken("split operation interrupted"));
                        }
                        return Ok(Some(op));
                    }
                    OperationRecord::Piece {
                        total_len,
                        offset,
                        bytes,
                    } => {
                        let buffer = match self.pending.take() {
                            None if offset == 0 => {
                                let mut buffer = Vec::with_capacity(total_len as usize);
                                buffer.extend_from_slice(&bytes);
                                buffer
                            }
                            Some((total, mut buffer))
                                if total == total_len && buffer.len() == offset as usize =>
                            {
                                buffer.extend_from_slice(&bytes);
                                buffer
                            }
                            _ => return Err(self.broken("operation pieces out of order")),
                        };
                        if buffer.len() == total_len as usize {
                            let op = decode_operation(&buffer).map_err(|d| self.broken(&d))?;
                            return Ok(Some(op));
                        }
                        self.pending = Some((total_len, buffer));
                    }
                },
            }
        }
    }

    fn broken(&self, what: &str) -> crate::Error {
        let part = &self.parts[self.next_part.saturating_sub(1)];
        ErrorKind::IncompleteLogicalPacket(what.into()).at(part.path())
    }
}

impl Iterator for LogicalOperations<'_> {
    type Item = Result<Operation>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.step().transpose();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }
}

/// Where a reader finds the bases of recipes: the bytes of a chunk it
/// holds, already checked against the chunk's id and length, or `None`.
pub type BaseChunks<'a> = dyn FnMut(&ChunkRef) -> Option<Vec<u8>> + 'a;

/// Iterator over the chunks of a logical packet: `(id, bytes)`.
pub struct LogicalChunks<'a> {
    parts: &'a [VerifiedPacket],
    next_part: usize,
    current: Option<ChunkPieces>,
    pending: Option<(ChunkId, u32, Vec<u8>)>,
    done: bool,
    bases: Option<&'a mut BaseChunks<'a>>,
}

impl LogicalChunks<'_> {
    fn step(&mut self) -> Result<Option<(ChunkId, Vec<u8>)>> {
        loop {
            let Some(pieces) = self.current.as_mut() else {
                if self.next_part == self.parts.len() {
                    if self.pending.is_some() {
                        return Err(self.broken("last chunk is incomplete"));
                    }
                    return Ok(None);
                }
                self.current = Some(self.parts[self.next_part].chunk_pieces()?);
                self.next_part += 1;
                continue;
            };
            let Some(piece) = pieces.next() else {
                self.current = None;
                continue;
            };
            let piece = piece?;
            if piece.recipe {
                if self.pending.is_some() {
                    return Err(self.broken("split chunk interrupted"));
                }
                return self.rebuild(piece).map(Some);
            }
            if piece.is_whole() {
                if self.pending.is_some() {
                    return Err(self.broken("split chunk interrupted"));
                }
                return Ok(Some((piece.id, piece.data)));
            }
            let buffer = match self.pending.take() {
                None if piece.offset == 0 => piece.data,
                Some((id, len, mut buffer))
                    if id == piece.id
                        && len == piece.chunk_len
                        && buffer.len() == piece.offset as usize =>
                {
                    buffer.extend_from_slice(&piece.data);
                    buffer
                }
                _ => return Err(self.broken("chunk pieces out of order")),
            };
            if buffer.len() == piece.chunk_len as usize {
                if Sha256::digest(&buffer).as_slice() != piece.id {
                    let part = &self.parts[self.next_part - 1];
                    return Err(ErrorKind::ChunkDigestMismatch {
                        chunk: hex::encode(piece.id),
                    }
                    .at(part.path()));
                }
                return Ok(Some((piece.id, buffer)));
            }
            self.pending = Some((piece.id, piece.chunk_len, buffer));
        }
    }

    fn broken(&self, what: &str) -> crate::Error {
        let part = &self.parts[self.next_part.saturating_sub(1)];
        ErrorKind::IncompleteLogicalPacket(what.into()).at(part.path())
    }
}

impl LogicalChunks<'_> {
    /// Builds a chunk from its recipe and the bases, and checks it.
    fn rebuild(&mut self, piece: crate::reader::ChunkPiece) -> Result<(ChunkId, Vec<u8>)> {
        let path = self.parts[self.next_part - 1].path().to_path_buf();
        let chunk = hex::encode(piece.id);
        let malformed = |detail: String| {
            ErrorKind::MalformedRecord {
                name: crate::ENTRY_CHUNKS.into(),
                detail: format!("chunk {chunk}: {detail}"),
            }
            .at(&path)
        };
        let recipe =
            crate::delta::Recipe::decode(&piece.data, piece.chunk_len).map_err(malformed)?;
        let mut bases = Vec::with_capacity(recipe.bases.len());
        for base in &recipe.bases {
            let found = self.bases.as_mut().and_then(|find| find(base));
            let Some(bytes) = found else {
                return Err(ErrorKind::MissingBase {
                    chunk: chunk.clone(),
                    base: hex::encode(base.id),
                }
                .at(&path));
            };
            bases.push(bytes);
        }
        let data = recipe.build(&bases).map_err(malformed)?;
        if data.len() != piece.chunk_len as usize || Sha256::digest(&data).as_slice() != piece.id {
            return Err(ErrorKind::ChunkDigestMismatch { chunk }.at(&path));
        }
        Ok((piece.id, data))
    }
}

impl Iterator for LogicalChunks<'_> {
    type Item = Result<(ChunkId, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.step().transpose();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }
}
