//! Transfer encodings that make a packet's cost follow the change rather
//! than the file (SPEC.md §5.1 and §6.3.1):
//!
//! * [`RelativeFile`]: a file state whose chunk list is given relative to
//!   another file operation's (path-state kind 5). It exists only in
//!   transit: the receiver expands it into the full
//!   [`PathState::File`] before it checks seals or logs the operation, so
//!   the origin's seal, made over the full state, still verifies.
//! * [`Recipe`]: a chunk given as pieces of chunks the receiver holds plus
//!   the new bytes (chunk codec 2). The receiver rebuilds it and checks
//!   its SHA-256 like any chunk.

use serde::{Deserialize, Serialize};

use crate::ops::{ChunkRef, Extensions, Id, PathState, Timestamp};

/// The operation a [`RelativeFile`] is relative to: one the receiver holds
/// (in its log, or earlier in the same packet) whose state is a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationRef {
    pub origin: Id,
    pub epoch: u64,
}

/// One run of a relative chunk list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Run {
    /// `count` chunks of the base's list, from index `from`.
    Same { from: u64, count: u64 },
    /// Chunks given in full.
    New { chunks: Vec<ChunkRef> },
    /// One chunk, `count` times in a row (runs of zeros, repeated blocks).
    Repeat { chunk: ChunkRef, count: u64 },
}

/// A file state whose chunk list is relative to the file state of the
/// operation `base` (path-state kind [`FILE_RELATIVE`]). Everything else
/// is as in [`PathState::File`]; `size` is not carried, it is the sum of
/// the expanded chunk lengths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelativeFile {
    pub base: OperationRef,
    pub mode: u32,
    pub mtime: Timestamp,
    pub runs: Vec<Run>,
    pub ext: Extensions,
}

/// Path-state kind of a [`RelativeFile`] (SPEC.md §6.3).
pub const FILE_RELATIVE: u32 = 5;

/// The most chunk references an expanded list may hold: the most a file
/// operation of [`crate::MAX_OPERATION_LEN`] bytes can list (34 bytes
/// each at least), so an expansion never builds what no full operation
/// could carry.
pub const MAX_EXPANDED_CHUNKS: u64 = (crate::MAX_OPERATION_LEN / 34) as u64;

impl RelativeFile {
    /// `chunks` as runs relative to `base`: unchanged stretches by
    /// reference, repeated chunks by count, the rest in full.
    pub fn runs_between(base: &[ChunkRef], chunks: &[ChunkRef]) -> Vec<Run> {
        let mut first_at: std::collections::HashMap<&ChunkRef, usize> =
            std::collections::HashMap::new();
        for (at, chunk) in base.iter().enumerate().rev() {
            first_at.insert(chunk, at);
        }
        let mut runs = Vec::new();
        let mut fresh: Vec<ChunkRef> = Vec::new();
        // Where the last `Same` run ended in the base: the usual place the
        // next match continues (an edit in place, an insertion).
        let mut expected = 0usize;
        let mut i = 0;
        while i < chunks.len() {
            let chunk = &chunks[i];
            let start = if base.get(expected) == Some(chunk) {
                Some(expected)
            } else {
                first_at.get(chunk).copied()
            };
            let repeats = chunks[i..].iter().take_while(|c| *c == chunk).count();
            let same = start.map(|from| {
                let count = chunks[i..]
                    .iter()
                    .zip(&base[from..])
                    .take_while(|(a, b)| a == b)
                    .count();
                (from, count)
            });
            let run = match same {
                Some((from, count)) if count >= repeats || repeats < 3 => {
                    expected = from + count;
                    Some((
                        Run::Same {
                            from: from as u64,
                            count: count as u64,
                        },
                        count,
                    ))
                }
                _ if repeats >= 3 => Some((
                    Run::Repeat {
                        chunk: *chunk,
                        count: repeats as u64,
                    },
                    repeats,
                )),
                _ => None,
            };
            if let Some((run, taken)) = run {
                if !fresh.is_empty() {
                    runs.push(Run::New {
                        chunks: std::mem::take(&mut fresh),
                    });
                }
                runs.push(run);
                i += taken;
                continue;
            }
            fresh.push(*chunk);
            i += 1;
        }
        if !fresh.is_empty() {
            runs.push(Run::New { chunks: fresh });
        }
        runs
    }

    /// The transit state of this relative file (kind [`FILE_RELATIVE`]).
    pub fn to_state(&self) -> PathState {
        PathState::Unknown {
            kind: FILE_RELATIVE,
            body: postcard::to_stdvec(self).expect("relative file encodes"),
        }
    }

    /// Decodes the body of a kind-5 state, which must use every byte.
    pub fn decode(body: &[u8]) -> Result<RelativeFile, String> {
        match postcard::take_from_bytes::<RelativeFile>(body) {
            Ok((file, [])) => Ok(file),
            Ok((_, rest)) => Err(format!(
                "relative file state has {} trailing bytes",
                rest.len()
            )),
            Err(err) => Err(format!("relative file state: {err}")),
        }
    }

    /// The full file state, given the chunk list of the base's file
    /// state. Errors: a run reaching outside the base, or an expansion of
    /// more than [`MAX_EXPANDED_CHUNKS`] chunks.
    pub fn expand(&self, base: &[ChunkRef]) -> Result<PathState, String> {
        let mut total = 0u64;
        for run in &self.runs {
            let count = match run {
                Run::Same { from, count } => {
                    if from
                        .checked_add(*count)
                        .is_none_or(|end| end > base.len() as u64)
                    {
                        return Err(format!(
                            "run of {count} chunks from {from} reaches past the {} of its base",
                            base.len()
                        ));
                    }
                    *count
                }
                Run::New { chunks } => chunks.len() as u64,
                Run::Repeat { count, .. } => *count,
            };
            total = total.saturating_add(count);
        }
        if total > MAX_EXPANDED_CHUNKS {
            return Err(format!(
                "expands to {total} chunks, more than the {MAX_EXPANDED_CHUNKS} an operation may list"
            ));
        }
        let mut chunks = Vec::with_capacity(total as usize);
        for run in &self.runs {
            match run {
                Run::Same { from, count } => {
                    chunks.extend_from_slice(&base[*from as usize..(*from + *count) as usize])
                }
                Run::New { chunks: fresh } => chunks.extend_from_slice(fresh),
                Run::Repeat { chunk, count } => {
                    chunks.extend(std::iter::repeat_n(*chunk, *count as usize))
                }
            }
        }
        let size = chunks.iter().map(|c| u64::from(c.len)).sum();
        Ok(PathState::File {
            mode: self.mode,
            mtime: self.mtime,
            size,
            chunks,
            ext: self.ext.clone(),
        })
    }
}

/// One step of a [`Recipe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// `len` bytes of base `base` (an index into [`Recipe::bases`]) from
    /// `offset`.
    Copy { base: u32, offset: u32, len: u32 },
    /// The next `len` bytes of the recipe's literals.
    Literal { len: u32 },
}

/// A chunk given as pieces of chunks the receiver holds (its bases) and
/// new bytes: chunk codec 2 (SPEC.md §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    pub bases: Vec<ChunkRef>,
    pub steps: Vec<Step>,
    /// 0: `literals` are the bytes; 1: one zstd frame of them.
    pub literal_codec: u8,
    pub literals: Vec<u8>,
}

/// At most this many bases per recipe.
pub const MAX_RECIPE_BASES: usize = 16;

impl Recipe {
    /// Builds a recipe from steps and their literal bytes, compressing the
    /// literals where that saves.
    pub fn new(bases: Vec<ChunkRef>, steps: Vec<Step>, literals: Vec<u8>) -> Recipe {
        if let Ok(packed) = zstd::bulk::compress(&literals, 3) {
            if packed.len() + packed.len() / 32 < literals.len() {
                return Recipe {
                    bases,
                    steps,
                    literal_codec: 1,
                    literals: packed,
                };
            }
        }
        Recipe {
            bases,
            steps,
            literal_codec: 0,
            literals,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("recipe encodes")
    }

    /// Decodes a recipe (which must use every byte) and checks its shape
    /// against a chunk of `chunk_len` bytes: bases within
    /// [`MAX_RECIPE_BASES`], the steps build exactly `chunk_len` bytes,
    /// each copy lies within its base.
    pub fn decode(bytes: &[u8], chunk_len: u32) -> Result<Recipe, String> {
        let recipe = match postcard::take_from_bytes::<Recipe>(bytes) {
            Ok((recipe, [])) => recipe,
            Ok((_, rest)) => return Err(format!("recipe has {} trailing bytes", rest.len())),
            Err(err) => return Err(format!("recipe does not decode: {err}")),
        };
        if recipe.bases.is_empty() || recipe.bases.len() > MAX_RECIPE_BASES {
            return Err(format!("recipe has {} bases", recipe.bases.len()));
        }
        if recipe.literal_codec > 1 {
            return Err(format!("unknown literal codec {}", recipe.literal_codec));
        }
        let mut built = 0u64;
        for step in &recipe.steps {
            let len = match *step {
                Step::Copy { base, offset, len } => {
                    let Some(from) = recipe.bases.get(base as usize) else {
                        return Err(format!("copy from base {base}, which the recipe lacks"));
                    };
                    if u64::from(offset) + u64::from(len) > u64::from(from.len) {
                        return Err("copy reaches past the end of its base".into());
                    }
                    len
                }
                Step::Literal { len } => len,
            };
            if len == 0 {
                return Err("empty recipe step".into());
            }
            built += u64::from(len);
        }
        if built != u64::from(chunk_len) {
            return Err(format!(
                "recipe builds {built} bytes for a chunk of {chunk_len}"
            ));
        }
        Ok(recipe)
    }

    /// The bytes the literal steps need in total.
    fn literal_len(&self) -> usize {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Literal { len } => *len as usize,
                Step::Copy { .. } => 0,
            })
            .sum()
    }

    /// Builds the chunk from `bases` (the bytes of [`Recipe::bases`], in
    /// order, each already checked against its id). The caller checks the
    /// result against the chunk id.
    pub fn build(&self, bases: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let want = self.literal_len();
        let literals = match self.literal_codec {
            0 => std::borrow::Cow::Borrowed(&self.literals),
            _ => std::borrow::Cow::Owned(
                zstd::bulk::decompress(&self.literals, want)
                    .map_err(|err| format!("recipe literals: {err}"))?,
            ),
        };
        if literals.len() != want {
            return Err(format!(
                "recipe literals are {} bytes, its steps take {want}",
                literals.len()
            ));
        }
        let mut out = Vec::new();
        let mut at = 0usize;
        for step in &self.steps {
            match *step {
                Step::Copy { base, offset, len } => {
                    let from = bases
                        .get(base as usize)
                        .and_then(|b| b.get(offset as usize..(offset + len) as usize))
                        .ok_or("copy outside its base")?;
                    out.extend_from_slice(from);
                }
                Step::Literal { len } => {
                    out.extend_from_slice(&literals[at..at + len as usize]);
                    at += len as usize;
                }
            }
        }
        Ok(out)
    }
}

/// Informational operation kind of a [`ContentRequest`] (SPEC.md §6.2).
pub const CONTENT_REQUEST: u32 = 0x1_0002;

/// At most this many paths per content request.
pub const MAX_REQUESTED_PATHS: usize = 1024;

/// A content request (informational operation kind [`CONTENT_REQUEST`]):
/// its origin could not apply a packet from `to` because content the
/// packet relied on it holding was gone, and asks `to` to send `paths`
/// whole. `have` is the origin's epoch row when it asked: `to` sends again
/// from there. Relayed like any operation; acted on by `to` only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRequest {
    pub to: Id,
    pub paths: Vec<Vec<u8>>,
    pub have: std::collections::BTreeMap<Id, u64>,
}

impl ContentRequest {
    /// The change that carries this request.
    pub fn to_change(&self) -> crate::ops::Change {
        crate::ops::Change::Unknown {
            kind: CONTENT_REQUEST,
            body: postcard::to_stdvec(self).expect("request encodes"),
        }
    }

    /// The request a change carries, if it is a well-formed one.
    pub fn of(change: &crate::ops::Change) -> Option<ContentRequest> {
        match change {
            crate::ops::Change::Unknown {
                kind: CONTENT_REQUEST,
                body,
            } => match postcard::take_from_bytes::<ContentRequest>(body) {
                Ok((request, [])) if request.paths.len() <= MAX_REQUESTED_PATHS => Some(request),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8) -> ChunkRef {
        ChunkRef {
            id: [n; 32],
            len: u32::from(n) + 1,
        }
    }

    #[test]
    fn relative_lists_expand_to_the_list() {
        let base: Vec<ChunkRef> = (0..20).map(c).collect();
        let cases: Vec<Vec<ChunkRef>> = vec![
            base.clone(),
            vec![],
            (0..20).map(|n| if n == 7 { c(99) } else { c(n) }).collect(),
            [vec![c(50)], base.clone(), vec![c(0); 5]].concat(),
            (10..20).chain(0..10).map(c).collect(),
        ];
        for chunks in cases {
            let runs = RelativeFile::runs_between(&base, &chunks);
            let file = RelativeFile {
                base: OperationRef {
                    origin: Id([1; 16]),
                    epoch: 3,
                },
                mode: 0o644,
                mtime: Timestamp::default(),
                runs,
                ext: Extensions::default(),
            };
            let back = RelativeFile::decode(match &file.to_state() {
                PathState::Unknown {
                    kind: FILE_RELATIVE,
                    body,
                } => body,
                other => panic!("{other:?}"),
            })
            .unwrap();
            match back.expand(&base).unwrap() {
                PathState::File { chunks: got, .. } => assert_eq!(got, chunks),
                other => panic!("{other:?}"),
            }
        }
        let same = RelativeFile::runs_between(&base, &base);
        assert_eq!(same, vec![Run::Same { from: 0, count: 20 }]);
    }

    #[test]
    fn expansions_stay_within_the_base_and_the_cap() {
        let file = |runs| RelativeFile {
            base: OperationRef {
                origin: Id([1; 16]),
                epoch: 3,
            },
            mode: 0,
            mtime: Timestamp::default(),
            runs,
            ext: Extensions::default(),
        };
        assert!(file(vec![Run::Same { from: 1, count: 2 }])
            .expand(&[c(1), c(2)])
            .is_err());
        assert!(file(vec![Run::Same {
            from: u64::MAX,
            count: 2
        }])
        .expand(&[c(1)])
        .is_err());
        assert!(file(vec![Run::Repeat {
            chunk: c(1),
            count: u64::MAX
        }])
        .expand(&[])
        .is_err());
    }

    #[test]
    fn recipes_rebuild_and_are_checked() {
        let base = b"0123456789abcdef".to_vec();
        let bases = vec![ChunkRef {
            id: [7; 32],
            len: 16,
        }];
        let recipe = Recipe::new(
            bases,
            vec![
                Step::Copy {
                    base: 0,
                    offset: 0,
                    len: 4,
                },
                Step::Literal { len: 3 },
                Step::Copy {
                    base: 0,
                    offset: 10,
                    len: 6,
                },
            ],
            b"XYZ".to_vec(),
        );
        let decoded = Recipe::decode(&recipe.encode(), 13).unwrap();
        assert_eq!(decoded.build(&[base]).unwrap(), b"0123XYZabcdef");
        assert!(Recipe::decode(&recipe.encode(), 14).is_err());
        let mut outside = recipe.clone();
        outside.steps[2] = Step::Copy {
            base: 0,
            offset: 12,
            len: 6,
        };
        assert!(Recipe::decode(&outside.encode(), 13).is_err());
        let mut no_base = recipe;
        no_base.steps[0] = Step::Copy {
            base: 1,
            offset: 0,
            len: 4,
        };
        assert!(Recipe::decode(&no_base.encode(), 13).is_err());
    }
}
