//! Fixed-layout records inside the `chunks` and `operations` entries
//! (SPEC.md §5, §6). Little-endian, no varints: record headers are parsed
//! before anything is trusted, so they are kept trivial.

use crate::ops::ChunkId;

/// `chunk id (32) | chunk_len u32 | offset u32 | piece_len u32 | codec u8 | stored_len u32`
pub(crate) const CHUNK_RECORD_HEADER_LEN: usize = 32 + 4 + 4 + 4 + 1 + 4;
/// `total_len u32 | offset u32 | piece_len u32`
pub(crate) const OP_RECORD_HEADER_LEN: usize = 4 + 4 + 4;

/// Per-record codec of a chunk piece.
pub(crate) const CODEC_PLAIN: u8 = 0;
pub(crate) const CODEC_ZSTD: u8 = 1;
/// A [`crate::delta::Recipe`]: always a whole chunk, smaller than it.
pub(crate) const CODEC_RECIPE: u8 = 2;
/// A group of whole chunks compressed as one zstd frame (SPEC.md §5.2,
/// minor >= 8): its header's id is all zeros and its lengths are the
/// group's.
pub(crate) const CODEC_GROUP: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRecordHeader {
    pub id: ChunkId,
    pub chunk_len: u32,
    pub offset: u32,
    pub piece_len: u32,
    pub codec: u8,
    pub stored_len: u32,
}

impl ChunkRecordHeader {
    pub fn encode(&self) -> [u8; CHUNK_RECORD_HEADER_LEN] {
        let mut out = [0u8; CHUNK_RECORD_HEADER_LEN];
        out[..32].copy_from_slice(&self.id);
        out[32..36].copy_from_slice(&self.chunk_len.to_le_bytes());
        out[36..40].copy_from_slice(&self.offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.piece_len.to_le_bytes());
        out[44] = self.codec;
        out[45..49].copy_from_slice(&self.stored_len.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; CHUNK_RECORD_HEADER_LEN]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        ChunkRecordHeader {
            id: bytes[..32].try_into().unwrap(),
            chunk_len: u32_at(32),
            offset: u32_at(36),
            piece_len: u32_at(40),
            codec: bytes[44],
            stored_len: u32_at(45),
        }
    }

    /// Checks the header's own consistency; returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.codec == CODEC_GROUP {
            return self.check_group();
        }
        if self.chunk_len == 0 || self.chunk_len as usize > crate::MAX_CHUNK_LEN {
            return Err(format!("chunk length {} out of range", self.chunk_len));
        }
        if self.piece_len == 0 || self.offset as u64 + self.piece_len as u64 > self.chunk_len as u64
        {
            return Err(format!(
                "piece {}+{} does not fit a chunk of {}",
                self.offset, self.piece_len, self.chunk_len
            ));
        }
        match self.codec {
            CODEC_PLAIN if self.stored_len == self.piece_len => Ok(()),
            // zstd is only used where it helps, so it is always smaller.
            CODEC_ZSTD if self.stored_len < self.piece_len => Ok(()),
            CODEC_RECIPE if self.offset == 0 && self.piece_len == self.chunk_len => {
                if self.stored_len < self.piece_len {
                    Ok(())
                } else {
                    Err("stored length inconsistent with codec".into())
                }
            }
            CODEC_RECIPE => Err("a recipe must give a whole chunk".into()),
            CODEC_PLAIN | CODEC_ZSTD => Err("stored length inconsistent with codec".into()),
            other => Err(format!("unknown codec {other}")),
        }
    }

    fn check_group(&self) -> Result<(), String> {
        if self.id != [0u8; 32] {
            return Err("a chunk group's id field must be zero".into());
        }
        if self.chunk_len == 0 || self.chunk_len as usize > crate::MAX_GROUP_LEN {
            return Err(format!(
                "chunk group length {} out of range",
                self.chunk_len
            ));
        }
        if self.offset != 0 || self.piece_len != self.chunk_len {
            return Err("a chunk group is never split".into());
        }
        if self.stored_len >= self.piece_len {
            return Err("stored length inconsistent with codec".into());
        }
        Ok(())
    }
}

/// `chunk id (32) | chunk_len u32`: the head of each chunk inside a
/// decoded chunk group.
pub(crate) const GROUP_MEMBER_HEADER_LEN: usize = 32 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpRecordHeader {
    pub total_len: u32,
    pub offset: u32,
    pub piece_len: u32,
}

impl OpRecordHeader {
    pub fn encode(&self) -> [u8; OP_RECORD_HEADER_LEN] {
        let mut out = [0u8; OP_RECORD_HEADER_LEN];
        out[..4].copy_from_slice(&self.total_len.to_le_bytes());
        out[4..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.piece_len.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; OP_RECORD_HEADER_LEN]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        OpRecordHeader {
            total_len: u32_at(0),
            offset: u32_at(4),
            piece_len: u32_at(8),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.total_len == 0 || self.total_len as usize > crate::MAX_OPERATION_LEN {
            return Err(format!("operation length {} out of range", self.total_len));
        }
        if self.piece_len == 0 || self.offset as u64 + self.piece_len as u64 > self.total_len as u64
        {
            return Err(format!(
                "piece {}+{} does not fit an operation of {}",
                self.offset, self.piece_len, self.total_len
            ));
        }
        Ok(())
    }
}
