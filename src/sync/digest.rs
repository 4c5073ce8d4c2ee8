//! Proof of convergence (issue 13): a Merkle digest of a replica's tree.
//!
//! Every update packet carries its sender's digest of the tree it has
//! recorded at the epoch row in its header ([`TreeDigest`], SPEC.md §4).
//! A receiver that, once the packet is applied, holds exactly that row
//! computes its own digest the same way and compares: equal means both
//! replicas hold the same tree (recorded as "verified in step"); different
//! is a loud warning naming the command that lists where they differ.
//!
//! Sites exclude different paths. The digest covers only the paths that
//! neither side excludes: the sender leaves out what its own patterns and
//! the target's (as last heard, from the target's packets) exclude, and
//! says which target patterns it assumed (their hash); the receiver
//! leaves out what its own patterns and the sender's (carried in full)
//! exclude, and compares only when its patterns hash as the sender
//! assumed. So a local exclude never raises a false alarm: until the
//! sender has heard the new patterns the receiver says "not compared".
//!
//! The leaf of a live entry covers its kind, content (the chunk list's
//! hash), permission bits and a file's mtime, and (format 2.7, SPEC.md
//! §4.1.1) the metadata items both sides preserve: directory and symlink
//! times, owners, ACLs, xattrs and hard-link sets as the sender's and the
//! target's `preserve` keep them. Each packet's digest says what its
//! sender preserves; a sender covers what it preserves and the target
//! preserves as it last heard (nothing, until it has heard), and a
//! receiver compares only when it preserves everything covered, so
//! members with different `preserve` settings raise no false alarm. The
//! setuid/setgid bits, which a member that does not keep owners cannot
//! set, are never covered.

use std::collections::BTreeMap;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use packet_format::{DigestNode, TreeDigest, MAX_DIGEST_NODES};
use sha2::{Digest, Sha256};

use crate::ops::{ChunkRef, PathState};
use crate::tree::excludes::SHARED_MARK;

/// SHA-256 of a pattern list, each line followed by `\n`: what a
/// [`TreeDigest`]'s `assumed` holds.
pub fn patterns_hash(patterns: &[String]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for pattern in patterns {
        hash.update(pattern.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize().into()
}

/// The paths left out of a digest: those any of several sites' pattern
/// lists excludes (a path, or one of its parents, matching).
pub struct Filter {
    matchers: Vec<Gitignore>,
}

impl Filter {
    /// A filter for the pattern lists of [`crate::tree::excludes::Excludes::patterns`]
    /// form (local patterns, then [`SHARED_MARK`] and the shared ones; each
    /// part matched on its own, as the scan does, so a negation in one never
    /// undoes the other's patterns). A line that does not parse is skipped:
    /// a sibling's patterns are not this replica's to refuse.
    pub fn of(lists: &[&[String]]) -> Filter {
        let mut matchers = Vec::new();
        for list in lists {
            for part in list.split(|line| line == SHARED_MARK) {
                if part.is_empty() {
                    continue;
                }
                let mut builder = GitignoreBuilder::new("/");
                for line in part {
                    let _ = builder.add_line(None, line);
                }
                if let Ok(matcher) = builder.build() {
                    matchers.push(matcher);
                }
            }
        }
        Filter { matchers }
    }

    /// Whether `rel` (replica-relative) is left out.
    pub fn excludes(&self, rel: &[u8], is_dir: bool) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(rel));
        self.matchers
            .iter()
            .any(|m| m.matched_path_or_any_parents(path, is_dir).is_ignore())
    }
}

/// The hash of a file's content as its chunk list names it.
pub fn content_id(chunks: &[ChunkRef]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for chunk in chunks {
        hash.update(chunk.id);
        hash.update(chunk.len.to_le_bytes());
    }
    hash.finalize().into()
}

/// The leaf of one live entry (SPEC.md §4); `None` for a deletion or a
/// state kind this version does not know (left out on both sides).
pub fn leaf(state: &PathState) -> Option<[u8; 32]> {
    Some(Sha256::digest(leaf_bytes(state)?).into())
}

/// The bytes a 2.2 leaf hashes (SPEC.md §4.1).
fn leaf_bytes(state: &PathState) -> Option<Vec<u8>> {
    let mut hash: Vec<u8> = Vec::new();
    match state {
        PathState::File {
            mode,
            mtime,
            size,
            chunks,
            ..
        } => {
            hash.extend_from_slice(b"file\0");
            hash.extend_from_slice(&(mode & 0o1777).to_le_bytes());
            hash.extend_from_slice(&mtime.secs.to_le_bytes());
            hash.extend_from_slice(&mtime.nanos.to_le_bytes());
            hash.extend_from_slice(&size.to_le_bytes());
            hash.extend_from_slice(&content_id(chunks));
        }
        PathState::Directory { mode, .. } => {
            hash.extend_from_slice(b"dir\0");
            hash.extend_from_slice(&(mode & 0o1777).to_le_bytes());
        }
        PathState::Symlink { target, .. } => {
            hash.extend_from_slice(b"symlink\0");
            hash.extend_from_slice(target);
        }
        PathState::Special {
            kind,
            mode,
            major,
            minor,
            ..
        } => {
            hash.extend_from_slice(b"special\0");
            hash.extend_from_slice(&kind.to_le_bytes());
            hash.extend_from_slice(&(mode & 0o1777).to_le_bytes());
            hash.extend_from_slice(&major.to_le_bytes());
            hash.extend_from_slice(&minor.to_le_bytes());
        }
        PathState::Deleted | PathState::Unknown { .. } => return None,
    }
    Some(hash)
}

/// The digest items ([`packet_format::digest_items`]) a replica that keeps
/// `preserve` preserves: its metadata items, and directory and symlink
/// times and the root's own entry, which every replica of this version
/// keeps.
pub fn preserved_items(preserve: &crate::tree::meta::Preserve) -> u32 {
    use packet_format::digest_items as item;
    [
        (preserve.owner, item::OWNER),
        (preserve.group, item::GROUP),
        (preserve.acls, item::ACLS),
        (preserve.xattrs, item::XATTRS),
        (preserve.hardlinks, item::HARDLINKS),
        (true, item::TIMES),
        // Format 2.11: every replica of this version records the root.
        (true, item::ROOT),
    ]
    .iter()
    .filter(|(kept, _)| *kept)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// The metadata keys (SPEC.md §6.4) the digest items `covered` stand for,
/// ascending.
fn covered_keys(covered: u32) -> Vec<u32> {
    use crate::tree::meta::keys;
    use packet_format::digest_items as item;
    let mut out = Vec::new();
    if covered & (item::OWNER | item::GROUP) != 0 {
        out.push(keys::OWNER);
    }
    if covered & item::XATTRS != 0 {
        out.push(keys::XATTRS);
    }
    if covered & item::ACLS != 0 {
        out.push(keys::ACL_ACCESS);
        out.push(keys::ACL_DEFAULT);
    }
    if covered & item::HARDLINKS != 0 {
        out.push(keys::HARD_LINK);
    }
    out.sort_unstable();
    out
}

/// The leaf of a live entry covering the metadata items `covered`
/// (SPEC.md §4.1.1): [`leaf`] when none, else SHA-256 of the same bytes
/// followed by `"meta\0"`, `covered` (u32 LE), with [`digest_items::TIMES`]
/// a directory's or symlink's time (tag u8 0 for none, or 1 then `secs`
/// i64 LE and `nanos` u32 LE), then per metadata key the items stand for,
/// ascending: the key (u32 LE), then tag u8 0 when the entry has none, or
/// 1, the value's length (u32 LE) and its bytes.
///
/// [`digest_items::TIMES`]: packet_format::digest_items::TIMES
pub fn leaf_covering(state: &PathState, covered: u32) -> Option<[u8; 32]> {
    let bytes = leaf_bytes(state)?;
    if covered == 0 {
        return Some(Sha256::digest(bytes).into());
    }
    let mut hash = Sha256::new();
    hash.update(bytes);
    hash.update(b"meta\0");
    hash.update(covered.to_le_bytes());
    if covered & packet_format::digest_items::TIMES != 0 {
        if let PathState::Directory { mtime, .. } | PathState::Symlink { mtime, .. } = state {
            match mtime {
                None => hash.update([0u8]),
                Some(time) => {
                    hash.update([1u8]);
                    hash.update(time.secs.to_le_bytes());
                    hash.update(time.nanos.to_le_bytes());
                }
            }
        }
    }
    let ext = state.extensions();
    for key in covered_keys(covered) {
        hash.update(key.to_le_bytes());
        match ext.and_then(|ext| ext.get(key)) {
            None => hash.update([0u8]),
            Some(value) => {
                hash.update([1u8]);
                hash.update((value.len() as u32).to_le_bytes());
                hash.update(value);
            }
        }
    }
    Some(hash.finalize().into())
}

/// The parts of the root's own entry (SPEC.md §4.1.2), for a digest
/// covering the items `covered`: each SHA-256 of the bytes a covered leaf
/// hashes for that part, of nothing for an item not covered.
pub fn root_parts(state: &PathState, covered: u32) -> packet_format::RootParts {
    use crate::tree::meta::keys;
    use packet_format::digest_items as item;
    let part =
        |bytes: Option<Vec<u8>>| -> [u8; 32] { Sha256::digest(bytes.unwrap_or_default()).into() };
    let (mode, mtime) = match state {
        PathState::Directory { mode, mtime, .. } => {
            ((mode & 0o1777).to_le_bytes().to_vec(), *mtime)
        }
        _ => (Vec::new(), None),
    };
    let ext = state.extensions();
    let keyed = |bits: u32, keys_of: &[u32]| -> Option<Vec<u8>> {
        (covered & bits != 0).then(|| {
            let mut bytes = Vec::new();
            for key in keys_of {
                key_bytes(&mut bytes, *key, ext.and_then(|e| e.get(*key)));
            }
            bytes
        })
    };
    packet_format::RootParts {
        mode: part(Some(mode)),
        mtime: part((covered & item::TIMES != 0).then(|| time_bytes(mtime))),
        owner: part(keyed(item::OWNER | item::GROUP, &[keys::OWNER])),
        acls: part(keyed(item::ACLS, &[keys::ACL_ACCESS, keys::ACL_DEFAULT])),
        xattrs: part(keyed(item::XATTRS, &[keys::XATTRS])),
    }
}

/// What differs between two [`root_parts`]: "mode", "mtime", "owner or
/// group", "ACLs", "xattrs".
pub fn root_parts_differing(
    ours: &packet_format::RootParts,
    theirs: &packet_format::RootParts,
) -> Vec<&'static str> {
    [
        (ours.owner == theirs.owner, "owner or group"),
        (ours.mode == theirs.mode, "mode"),
        (ours.mtime == theirs.mtime, "mtime"),
        (ours.acls == theirs.acls, "ACLs"),
        (ours.xattrs == theirs.xattrs, "xattrs"),
    ]
    .into_iter()
    .filter(|(same, _)| !same)
    .map(|(_, what)| what)
    .collect()
}

/// A time as a covered leaf hashes it: tag u8 0 for none, or 1, `secs`
/// (i64 LE) and `nanos` (u32 LE).
fn time_bytes(time: Option<crate::ops::Timestamp>) -> Vec<u8> {
    match time {
        None => vec![0],
        Some(time) => {
            let mut out = vec![1];
            out.extend_from_slice(&time.secs.to_le_bytes());
            out.extend_from_slice(&time.nanos.to_le_bytes());
            out
        }
    }
}

/// A metadata key as a covered leaf hashes it: the key (u32 LE), then tag
/// u8 0 when absent, or 1, the value's length (u32 LE) and its bytes.
fn key_bytes(out: &mut Vec<u8>, key: u32, value: Option<&[u8]>) {
    out.extend_from_slice(&key.to_le_bytes());
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// A digest as computed here, with every directory node (for listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub root: [u8; 32],
    pub entries: u64,
    /// Every node, by path (the root is the empty path).
    pub nodes: BTreeMap<Vec<u8>, [u8; 32]>,
    /// The parts of the root's own entry, when the digest covers it
    /// ([`root_parts`]).
    pub root_parts: Option<packet_format::RootParts>,
}

impl Computed {
    /// The nodes a packet carries: breadth first from the root's children
    /// (by depth, then path), at most [`MAX_DIGEST_NODES`]; in a small tree
    /// every entry, so a receiver names the very paths that differ.
    pub fn carried_nodes(&self) -> Vec<DigestNode> {
        let mut nodes: Vec<(usize, &Vec<u8>, &[u8; 32])> = self
            .nodes
            .iter()
            .filter(|(path, _)| !path.is_empty())
            .map(|(path, digest)| (path.iter().filter(|&&b| b == b'/').count(), path, digest))
            .collect();
        nodes.sort();
        nodes
            .into_iter()
            .take(MAX_DIGEST_NODES)
            .map(|(_, path, digest)| DigestNode {
                path: path.clone(),
                digest: *digest,
            })
            .collect()
    }

    /// The header field for this digest.
    pub fn to_header(&self, patterns: &[String], assumed: [u8; 32]) -> TreeDigest {
        TreeDigest {
            patterns: patterns.to_vec(),
            assumed,
            entries: self.entries,
            root: self.root,
            nodes: self.carried_nodes(),
            metadata: None,
            root_parts: self.root_parts,
        }
    }
}

/// The digest of `entries` (path, state), leaving out what `filter`
/// excludes; leaves cover no metadata.
pub fn compute<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], &'a PathState)>,
    filter: &Filter,
) -> Computed {
    compute_covering(entries, filter, 0)
}

/// [`compute`] with leaves covering the metadata items `covered`
/// ([`leaf_covering`]).
pub fn compute_covering<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], &'a PathState)>,
    filter: &Filter,
    covered: u32,
) -> Computed {
    compute_keeping(entries, filter, covered, Keep::All)
}

/// Which nodes a [`Computed`] keeps besides its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// None: for a comparison of roots.
    Root,
    /// Those a packet may carry ([`Computed::carried_nodes`]): every node
    /// of a depth above which fewer than [`MAX_DIGEST_NODES`] nodes lie.
    Carried,
    /// Every node, for [`differing_subtrees`].
    All,
}

/// [`compute_covering`] keeping the nodes `keep` says. The entries'
/// leaves are hashed as they come, then sorted once by path with `/`
/// below every other byte (the order of names within each folder the
/// digest hashes) and folded folder by folder on a stack: no tree of
/// nodes is built, and only the nodes kept get a path of their own.
pub fn compute_keeping<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], &'a PathState)>,
    filter: &Filter,
    covered: u32,
    keep: Keep,
) -> Computed {
    let mut root_leaf = None;
    let mut parts = None;
    // (path with each `/` as 0, leaf): names never hold a 0 byte, so
    // byte order of these keys is name order folder by folder.
    let mut leaves: Vec<(Vec<u8>, [u8; 32])> = Vec::new();
    for (path, state) in entries {
        if path.is_empty() && covered & packet_format::digest_items::ROOT != 0 {
            parts = Some(root_parts(state, covered));
        }
        let Some(leaf) = leaf_covering(state, covered) else {
            continue;
        };
        let is_dir = matches!(state, PathState::Directory { .. });
        if path.is_empty() {
            // Format 2.11 (SPEC.md §4.1.2): the root's own entry is the
            // root node's leaf when the digest covers it (not counted in
            // `entries`, which counts the entries below the root).
            if covered & packet_format::digest_items::ROOT != 0 && is_dir {
                root_leaf = Some(leaf);
            }
            continue;
        }
        if filter.excludes(path, is_dir) {
            continue;
        }
        let key = path
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect();
        leaves.push((key, leaf));
    }
    leaves.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut fold = Fold::new(keep, root_leaf);
    for (key, leaf) in &leaves {
        fold.add(key, *leaf);
    }
    let (root, nodes) = fold.finish();
    Computed {
        root,
        entries: leaves.len() as u64,
        nodes,
        root_parts: parts,
    }
}

/// One open folder of [`Fold`]'s stack.
struct Open {
    /// Its name in its parent (empty for the root).
    name: Vec<u8>,
    leaf: Option<[u8; 32]>,
    /// `node\0`, its leaf and the children folded so far; `None` until
    /// its first child (a node without children is its leaf).
    hash: Option<Sha256>,
}

impl Open {
    fn child(&mut self, name: &[u8], digest: &[u8; 32]) {
        let leaf = self.leaf;
        let hash = self.hash.get_or_insert_with(|| {
            let mut hash = Sha256::new();
            hash.update(b"node\0");
            hash.update(leaf.unwrap_or([0; 32]));
            hash
        });
        hash.update((name.len() as u32).to_le_bytes());
        hash.update(name);
        hash.update(digest);
    }
}

/// The digest's nodes folded from leaves in name order, folder by folder
/// (SPEC.md §4: a node with children hashes `node\0`, its leaf or 32
/// zero bytes, then each child's name length, name and digest; a node
/// without children is its leaf).
struct Fold {
    keep: Keep,
    /// The root, then each open folder below it.
    stack: Vec<Open>,
    /// Nodes kept, by path (`/`-separated; the root is the empty path).
    nodes: BTreeMap<Vec<u8>, [u8; 32]>,
    /// Nodes seen per depth (0: the root's children), for [`Keep::Carried`].
    per_depth: Vec<usize>,
}

impl Fold {
    fn new(keep: Keep, root_leaf: Option<[u8; 32]>) -> Fold {
        Fold {
            keep,
            stack: vec![Open {
                name: Vec::new(),
                leaf: root_leaf,
                hash: None,
            }],
            nodes: BTreeMap::new(),
            per_depth: Vec::new(),
        }
    }

    /// Adds the leaf of the entry at `key` (its path, `/` as 0), which
    /// follows every key added before in byte order.
    fn add(&mut self, key: &[u8], leaf: [u8; 32]) {
        let names: Vec<&[u8]> = key.split(|&b| b == 0).collect();
        // Folders open below the root that are this entry's parents.
        let shared = self.stack[1..]
            .iter()
            .zip(&names)
            .take_while(|(open, name)| open.name == **name)
            .count();
        while self.stack.len() > shared + 1 {
            self.close();
        }
        for (i, name) in names.iter().enumerate().skip(shared) {
            let last = i + 1 == names.len();
            self.stack.push(Open {
                name: name.to_vec(),
                leaf: last.then_some(leaf),
                hash: None,
            });
        }
    }

    /// Closes the deepest open folder: its digest goes to its parent.
    fn close(&mut self) {
        let open = self.stack.pop().expect("a folder below the root is open");
        let digest: [u8; 32] = match open.hash {
            Some(hash) => hash.finalize().into(),
            None => open.leaf.unwrap_or_else(|| {
                // A folder without an entry of its own always has a child.
                let mut hash = Sha256::new();
                hash.update(b"node\0");
                hash.update([0u8; 32]);
                hash.finalize().into()
            }),
        };
        let depth = self.stack.len() - 1;
        if self.per_depth.len() <= depth {
            self.per_depth.resize(depth + 1, 0);
        }
        self.per_depth[depth] += 1;
        let kept = match self.keep {
            Keep::Root => false,
            Keep::All => true,
            Keep::Carried => self.per_depth[..depth].iter().sum::<usize>() < MAX_DIGEST_NODES,
        };
        if kept {
            let mut path = Vec::new();
            for open in self.stack[1..].iter() {
                path.extend_from_slice(&open.name);
                path.push(b'/');
            }
            path.extend_from_slice(&open.name);
            self.nodes.insert(path, digest);
        }
        self.stack
            .last_mut()
            .expect("the root stays open")
            .child(&open.name, &digest);
    }

    /// Closes every folder; the root's digest and the nodes kept.
    fn finish(mut self) -> ([u8; 32], BTreeMap<Vec<u8>, [u8; 32]>) {
        while self.stack.len() > 1 {
            self.close();
        }
        let root = self.stack.pop().expect("the root");
        let digest: [u8; 32] = match root.hash {
            Some(hash) => hash.finalize().into(),
            None => {
                let mut hash = Sha256::new();
                hash.update(b"node\0");
                hash.update(root.leaf.unwrap_or([0; 32]));
                hash.finalize().into()
            }
        };
        if self.keep != Keep::Root {
            self.nodes.insert(Vec::new(), digest);
        }
        (digest, self.nodes)
    }
}

/// Where `ours` differs from a sibling's carried digest: the deepest
/// carried nodes that differ (or that one side lacks), as replica-relative
/// paths (a directory stands for something below it, when its children
/// are not carried); the empty path when no carried node differs, or when
/// the digest carries only its root ([`root_only`]). Empty when the roots
/// are equal.
pub fn differing_subtrees(ours: &Computed, theirs: &TreeDigest) -> Vec<Vec<u8>> {
    if ours.root == theirs.root {
        return Vec::new();
    }
    if root_only(theirs) {
        // Nothing to compare below the root: no path can be named (naming
        // every one of ours would name identical ones too).
        return vec![Vec::new()];
    }
    let differs: Vec<&DigestNode> = theirs
        .nodes
        .iter()
        .filter(|node| ours.nodes.get(&node.path) != Some(&node.digest))
        .collect();
    let carried: std::collections::BTreeSet<&[u8]> =
        theirs.nodes.iter().map(|n| n.path.as_slice()).collect();
    // Ours that they do not carry although they would (a subtree only
    // this side has) at a depth they carried fully.
    let mut out: Vec<Vec<u8>> = differs
        .iter()
        .filter(|node| {
            !differs.iter().any(|other| {
                other.path.len() > node.path.len()
                    && other.path.starts_with(&node.path)
                    && other.path[node.path.len()] == b'/'
            })
        })
        .map(|node| node.path.clone())
        .collect();
    if theirs.nodes.len() < MAX_DIGEST_NODES {
        for path in ours.nodes.keys() {
            if !path.is_empty() && !carried.contains(path.as_slice()) {
                let parent_carried_or_top = match path.iter().rposition(|&b| b == b'/') {
                    None => true,
                    Some(at) => carried.contains(&path[..at]),
                };
                if parent_carried_or_top
                    && !out
                        .iter()
                        .any(|o| path.starts_with(o) && path.get(o.len()) == Some(&b'/'))
                {
                    out.push(path.clone());
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Timestamp;

    fn file(byte: u8) -> PathState {
        PathState::File {
            mode: 0o644,
            mtime: Timestamp::new(1, 0).unwrap(),
            size: 1,
            chunks: vec![ChunkRef {
                id: [byte; 32],
                len: 1,
            }],
            ext: Default::default(),
        }
    }

    #[test]
    fn what_sites_preserve_differently_is_left_out_of_a_leaf() {
        let plain = file(1);
        // An owner (metadata key 2) kept at one site only, and the setuid
        // bit a receiver drops.
        let mut with_owner = file(1);
        if let PathState::File { ext, mode, .. } = &mut with_owner {
            ext.insert(2, vec![1, 2, 3]);
            *mode |= 0o4000;
        }
        assert_eq!(leaf(&plain), leaf(&with_owner));
        // Directory and symlink times are not kept everywhere either.
        let dir = PathState::directory(0o755);
        let dated = PathState::Directory {
            mode: 0o755,
            mtime: Timestamp::new(5, 0),
            ext: Default::default(),
        };
        assert_eq!(leaf(&dir), leaf(&dated));
        // Content, a file's mtime and its permission bits are covered.
        assert_ne!(leaf(&plain), leaf(&file(2)));
        let mut later = file(1);
        if let PathState::File { mtime, .. } = &mut later {
            mtime.nanos = 1;
        }
        assert_ne!(leaf(&plain), leaf(&later));
        let mut executable = file(1);
        if let PathState::File { mode, .. } = &mut executable {
            *mode = 0o755;
        }
        assert_ne!(leaf(&plain), leaf(&executable));
    }

    #[test]
    fn covered_metadata_is_hashed_as_the_spec_says() {
        use packet_format::digest_items as item;
        let mut owned = file(1);
        if let PathState::File { ext, .. } = &mut owned {
            ext.insert(2, vec![1, 2, 3]);
        }
        // Nothing covered: the 2.2 leaf.
        assert_eq!(leaf_covering(&owned, 0), leaf(&owned));
        // Owner covered: the 2.2 bytes, "meta\0", covered, then key 2
        // present with its three bytes (SPEC.md §4.1.1), hashed here by hand.
        let mut bytes = leaf_bytes(&owned).unwrap();
        bytes.extend_from_slice(b"meta\0");
        bytes.extend_from_slice(&item::OWNER.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        let by_hand: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(leaf_covering(&owned, item::OWNER), Some(by_hand));
        assert_ne!(
            leaf_covering(&owned, item::OWNER),
            leaf_covering(&file(1), item::OWNER)
        );
        // Items not covered do not count: xattrs covered, an owner differs.
        assert_eq!(
            leaf_covering(&owned, item::XATTRS),
            leaf_covering(&file(1), item::XATTRS)
        );
        // Directory times, when covered: none, then a time, by hand.
        let dated = PathState::Directory {
            mode: 0o755,
            mtime: Timestamp::new(5, 7),
            ext: Default::default(),
        };
        let mut bytes = leaf_bytes(&dated).unwrap();
        bytes.extend_from_slice(b"meta\0");
        bytes.extend_from_slice(&item::TIMES.to_le_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&5i64.to_le_bytes());
        bytes.extend_from_slice(&7u32.to_le_bytes());
        let by_hand: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(leaf_covering(&dated, item::TIMES), Some(by_hand));
        assert_ne!(
            leaf_covering(&dated, item::TIMES),
            leaf_covering(&PathState::directory(0o755), item::TIMES)
        );
        let tree = [(&b"d"[..], &dated), (&b"d/f"[..], &owned)];
        assert_ne!(
            compute_covering(tree, &Filter::of(&[]), 0).root,
            compute_covering(tree, &Filter::of(&[]), item::TIMES).root
        );
        assert_eq!(
            compute_covering(tree, &Filter::of(&[]), 0).root,
            compute(tree, &Filter::of(&[])).root
        );
    }

    #[test]
    fn preserved_items_follow_the_preserve_setting() {
        use packet_format::digest_items as item;
        let none = crate::tree::meta::Preserve::from_names(&[], false).unwrap();
        assert_eq!(preserved_items(&none), item::TIMES | item::ROOT);
        assert_eq!(
            preserved_items(&crate::tree::meta::Preserve::ALL),
            item::ALL
        );
        assert_eq!(item_names(item::OWNER | item::XATTRS), "owner, xattrs");
    }

    #[test]
    fn the_roots_own_entry_counts_only_when_covered() {
        use packet_format::digest_items as item;
        let root = |mode| PathState::Directory {
            mode,
            mtime: Timestamp::new(5, 0),
            ext: Default::default(),
        };
        let (a, b) = (root(0o755), root(0o750));
        let f = file(1);
        let tree = |r| [(&b""[..], r), (&b"f"[..], &f)];
        let filter = Filter::of(&[]);
        // 2.10 digests (no ROOT item) leave the root out.
        assert_eq!(
            compute_covering(tree(&a), &filter, item::TIMES).root,
            compute_covering(tree(&b), &filter, item::TIMES).root
        );
        let covered = item::TIMES | item::ROOT;
        let (one, other) = (
            compute_covering(tree(&a), &filter, covered),
            compute_covering(tree(&b), &filter, covered),
        );
        assert_ne!(one.root, other.root);
        assert_eq!(one.entries, 1, "the root is not counted");
        assert_eq!(one.nodes.get(&b"f"[..]), other.nodes.get(&b"f"[..]));
        let (p, q) = (one.root_parts.unwrap(), other.root_parts.unwrap());
        assert_eq!(root_parts_differing(&p, &q), ["mode"]);
        // The mode part is SHA-256 of `mode & 0o1777` (u32 LE), by hand;
        // an item not covered, of nothing.
        assert_eq!(
            p.mode,
            <[u8; 32]>::from(Sha256::digest(0o755u32.to_le_bytes()))
        );
        assert_eq!(p.owner, <[u8; 32]>::from(Sha256::digest(b"")));
        // The root node hashes the root's leaf where 2.10 put zeros.
        let mut node = Sha256::new();
        node.update(b"node\0");
        node.update(leaf_covering(&a, covered).unwrap());
        node.update(1u32.to_le_bytes());
        node.update(b"f");
        node.update(leaf_covering(&f, covered).unwrap());
        assert_eq!(one.root, <[u8; 32]>::from(node.finalize()));
    }

    /// The digest as SPEC.md §4 defines it, from a tree of nodes built
    /// the plain way: what the folded stack of `compute_keeping` must give.
    fn by_tree(entries: &[(Vec<u8>, PathState)]) -> ([u8; 32], BTreeMap<Vec<u8>, [u8; 32]>) {
        #[derive(Default)]
        struct Node {
            leaf: Option<[u8; 32]>,
            children: BTreeMap<Vec<u8>, Node>,
        }
        fn hash(
            node: &Node,
            path: &mut Vec<u8>,
            out: &mut BTreeMap<Vec<u8>, [u8; 32]>,
        ) -> [u8; 32] {
            if node.children.is_empty() && !path.is_empty() {
                out.insert(path.clone(), node.leaf.unwrap());
                return node.leaf.unwrap();
            }
            let mut h = Sha256::new();
            h.update(b"node\0");
            h.update(node.leaf.unwrap_or([0; 32]));
            for (name, child) in &node.children {
                let before = path.len();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name);
                let digest = hash(child, path, out);
                path.truncate(before);
                h.update((name.len() as u32).to_le_bytes());
                h.update(name);
                h.update(digest);
            }
            let digest: [u8; 32] = h.finalize().into();
            out.insert(path.clone(), digest);
            digest
        }
        let mut root = Node::default();
        for (path, state) in entries {
            let mut node = &mut root;
            for name in path.split(|&b| b == b'/') {
                node = node.children.entry(name.to_vec()).or_default();
            }
            node.leaf = leaf(state);
        }
        let mut nodes = BTreeMap::new();
        (hash(&root, &mut Vec::new(), &mut nodes), nodes)
    }

    #[test]
    fn the_folded_stack_hashes_as_a_tree_of_nodes_does() {
        // Names with bytes below `/` ("a-b", "a.b", "a b") sort between
        // "a" and "a/x" by whole path, but after "a"'s children by name:
        // the digest's order. A folder without an entry of its own ("n")
        // hashes zeros for its leaf. Enough top-level names that the
        // carried nodes stop above the deepest ones.
        let dir = PathState::directory(0o755);
        let mut entries: Vec<(Vec<u8>, PathState)> = vec![
            (b"a".to_vec(), dir.clone()),
            (b"a/x".to_vec(), file(1)),
            (b"a/x.y".to_vec(), file(2)),
            (b"a/s".to_vec(), dir.clone()),
            (b"a/s/t".to_vec(), file(3)),
            (b"a-b".to_vec(), file(4)),
            (b"a.b".to_vec(), dir.clone()),
            (b"a.b/c".to_vec(), file(5)),
            (b"a b".to_vec(), file(6)),
            (b"n/m/o".to_vec(), file(7)),
            (b"empty".to_vec(), dir.clone()),
        ];
        for i in 0..300u32 {
            entries.push((format!("z/{i:03}").into_bytes(), file(i as u8)));
        }
        // Below more than MAX_DIGEST_NODES shallower nodes: never carried.
        entries.push((b"zz/q/deep".to_vec(), file(8)));
        let (root, nodes) = by_tree(&entries);
        let of = |keep| {
            compute_keeping(
                entries.iter().map(|(p, s)| (p.as_slice(), s)),
                &Filter::of(&[]),
                0,
                keep,
            )
        };
        let all = of(Keep::All);
        assert_eq!(all.root, root);
        assert_eq!(all.nodes, nodes);
        assert_eq!(all.entries, entries.len() as u64);
        let carried = of(Keep::Carried);
        assert_eq!(carried.root, root);
        assert!(carried.nodes.len() < nodes.len());
        assert_eq!(carried.carried_nodes(), all.carried_nodes());
        let bare = of(Keep::Root);
        assert_eq!(bare.root, root);
        assert!(bare.nodes.is_empty());
        // Any order of the entries gives the same.
        let mut reversed = entries.clone();
        reversed.reverse();
        let again = compute(
            reversed.iter().map(|(p, s)| (p.as_slice(), s)),
            &Filter::of(&[]),
        );
        assert_eq!(again, all);
    }

    #[test]
    fn excluded_paths_and_deletions_are_left_out() {
        let dir = PathState::directory(0o755);
        let all = [
            (&b"a"[..], &dir),
            (&b"a/x"[..], &file(1)),
            (&b"a/y.o"[..], &file(2)),
            (&b"gone"[..], &PathState::Deleted),
        ];
        let plain = compute(all.iter().copied(), &Filter::of(&[]));
        assert_eq!(plain.entries, 3);
        let patterns = vec!["*.o".to_string()];
        let filtered = compute(all.iter().copied(), &Filter::of(&[&patterns]));
        assert_eq!(filtered.entries, 2);
        let without = compute(all[..2].iter().copied(), &Filter::of(&[]));
        assert_eq!(filtered.root, without.root);
        assert_ne!(plain.root, without.root);
    }

    #[test]
    fn a_shared_negation_never_undoes_a_local_pattern() {
        let patterns: Vec<String> = ["*.log", SHARED_MARK, "!keep.log", "tmp/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let filter = Filter::of(&[&patterns]);
        assert!(filter.excludes(b"keep.log", false));
        assert!(filter.excludes(b"a/tmp/x", false));
        assert!(!filter.excludes(b"a/x", false));
        assert_eq!(
            patterns_hash(&[]),
            <[u8; 32]>::from(Sha256::digest(b"")),
            "an empty list hashes as nothing (SPEC §4.1)"
        );
    }

    #[test]
    fn a_changed_file_is_found_below_its_directory() {
        let dir = PathState::directory(0o755);
        let ours = compute(
            [
                (&b"a"[..], &dir),
                (&b"a/b"[..], &dir),
                (&b"a/b/x"[..], &file(1)),
                (&b"c"[..], &file(1)),
            ],
            &Filter::of(&[]),
        );
        let theirs = compute(
            [
                (&b"a"[..], &dir),
                (&b"a/b"[..], &dir),
                (&b"a/b/x"[..], &file(2)),
                (&b"c"[..], &file(1)),
            ],
            &Filter::of(&[]),
        );
        let header = theirs.to_header(&[], patterns_hash(&[]));
        assert_eq!(differing_subtrees(&ours, &header), vec![b"a/b/x".to_vec()]);
        // Only the directory carried (a large tree): the directory is named.
        let mut top = header.clone();
        top.nodes.retain(|n| n.path == b"a" || n.path == b"c");
        assert_eq!(differing_subtrees(&ours, &top), vec![b"a".to_vec()]);
        let same = ours.to_header(&[], patterns_hash(&[]));
        assert!(differing_subtrees(&ours, &same).is_empty());
    }
}

/// What the comparison with a packet's digest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both trees are the same at `row`.
    Verified,
    /// The trees differ at `row`.
    Differs,
    /// Not compared, and why.
    NotCompared(String),
    /// The comparison itself failed (the packet stays applied).
    Failed(String),
}

impl Outcome {
    /// As the state keeps it.
    pub fn stored(&self) -> String {
        match self {
            Outcome::Verified => "verified".into(),
            Outcome::Differs => "differs".into(),
            Outcome::NotCompared(why) => format!("not compared: {why}"),
            Outcome::Failed(why) => format!("not compared: the comparison failed: {why}"),
        }
    }
}

/// The check of one packet's digest, for the import's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The sender, as this replica names it.
    pub sender: String,
    /// The version compared, as `name=epoch, …` with member names.
    pub row: String,
    pub entries: u64,
    pub outcome: Outcome,
    /// The digest carried only its root ([`root_only`]).
    pub root_only: bool,
}

/// The digest this replica's packet to `target` carries: its recorded
/// tree, leaving out what its own patterns and `target`'s (as last heard)
/// exclude. Holds what it reads of the state, owned, so that the digest
/// is computed on a thread of its own while the export does the rest
/// (20 ms of a 1 % edit's 250 ms export of 20,000 files,
/// `bench/sync_vs_rsync.sh`).
pub struct ExportDigest {
    own: Vec<String>,
    theirs: Vec<String>,
    preserved: u32,
    covered: u32,
    entries: std::sync::Arc<crate::replica::Entries>,
}

impl ExportDigest {
    /// Reads the patterns, the metadata both sides keep and the recorded
    /// entries. Errors: reading the state or the exclude file.
    pub fn read(
        replica: &crate::replica::Replica,
        target: &crate::ops::Id,
    ) -> crate::error::Result<ExportDigest> {
        let excludes = replica.excludes()?;
        let own = excludes.patterns().to_vec();
        let theirs = replica
            .state()
            .sibling_patterns(target)?
            .unwrap_or_default();
        let preserved = preserved_items(&replica.preserve());
        let covered = preserved & replica.state().sibling_preserved(target)?.unwrap_or(0);
        Ok(ExportDigest {
            own,
            theirs,
            preserved,
            covered,
            entries: replica.entries()?,
        })
    }

    /// The digest (reads nothing more).
    fn compute(&self) -> TreeDigest {
        let computed = compute_keeping(
            self.entries
                .iter()
                .map(|(path, e)| (path.as_slice(), &e.state)),
            &Filter::of(&[&self.own, &self.theirs]),
            self.covered,
            Keep::Carried,
        );
        let mut digest = computed.to_header(&self.own, patterns_hash(&self.theirs));
        digest.metadata = Some(packet_format::DigestMetadata {
            preserved: self.preserved,
            covered: self.covered,
        });
        digest
    }

    /// [`ExportDigest::compute`] on a thread of its own; `join` it for the
    /// digest. Where no thread can be started, computed here.
    pub fn spawn(self) -> DigestThread {
        let input = std::sync::Arc::new(self);
        let theirs = std::sync::Arc::clone(&input);
        match std::thread::Builder::new()
            .name("digest".into())
            .spawn(move || theirs.compute())
        {
            Ok(handle) => DigestThread::Running(handle),
            Err(_) => DigestThread::Done(Box::new(input.compute())),
        }
    }
}

/// A digest being computed ([`ExportDigest::spawn`]).
pub enum DigestThread {
    Running(std::thread::JoinHandle<TreeDigest>),
    Done(Box<TreeDigest>),
}

impl DigestThread {
    /// The digest, once computed. A panic of the computing thread is
    /// passed on.
    pub fn join(self) -> TreeDigest {
        match self {
            DigestThread::Running(handle) => match handle.join() {
                Ok(digest) => digest,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            DigestThread::Done(digest) => *digest,
        }
    }
}

/// This replica's recorded tree, restricted as for a comparison with a
/// digest whose sender has `their_patterns`.
pub fn local_for(
    replica: &crate::replica::Replica,
    their_patterns: &[String],
    covered: u32,
    keep: Keep,
) -> crate::error::Result<(Computed, [u8; 32])> {
    let excludes = replica.excludes()?;
    let own = excludes.patterns();
    let key = DigestKey {
        own: own.to_vec(),
        theirs: their_patterns.to_vec(),
        covered,
        keep,
    };
    // One computed beside an import's disk steps, from these entries
    // (`apply_stored`), if it was for the same key.
    let kept = replica
        .take_derived::<(DigestKey, Computed)>()
        .filter(|(kept, _)| *kept == key);
    let computed = match kept {
        Some((_, computed)) => computed,
        None => key.compute(&*replica.entries()?),
    };
    Ok((computed, patterns_hash(own)))
}

/// What a local tree digest is computed for: this replica's exclude
/// patterns and the sender's (both leave paths out), the items covered
/// ([`packet_format::digest_items`]) and the nodes kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestKey {
    pub own: Vec<String>,
    pub theirs: Vec<String>,
    pub covered: u32,
    pub keep: Keep,
}

impl DigestKey {
    /// The digest of `entries` (every recorded entry, by path).
    pub fn compute(&self, entries: &crate::replica::Entries) -> Computed {
        compute_keeping(
            entries.iter().map(|(path, e)| (path.as_slice(), &e.state)),
            &Filter::of(&[&self.own, &self.theirs]),
            self.covered,
            self.keep,
        )
    }

    /// The key [`compare_after_import`] computes its digest for, given
    /// the sender's `header`: `None` when the header carries no digest.
    pub fn for_import_check(
        replica: &crate::replica::Replica,
        header: &packet_format::Header,
    ) -> crate::error::Result<Option<DigestKey>> {
        let Some(theirs) = &header.tree_digest else {
            return Ok(None);
        };
        Ok(Some(DigestKey {
            own: replica.excludes()?.patterns().to_vec(),
            theirs: theirs.patterns.clone(),
            covered: theirs.metadata.map_or(0, |m| m.covered),
            keep: Keep::Root,
        }))
    }
}

/// The names of digest items, as `preserve` in config.toml names them.
pub fn item_names(items: u32) -> String {
    use packet_format::digest_items as item;
    let names: Vec<&str> = [
        (item::OWNER, "owner"),
        (item::GROUP, "group"),
        (item::ACLS, "acls"),
        (item::XATTRS, "xattrs"),
        (item::HARDLINKS, "hardlinks"),
        (item::TIMES, "directory and symlink times"),
        (item::ROOT, "the replica root's own entry"),
    ]
    .iter()
    .filter(|(bit, _)| items & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    names.join(", ")
}

/// `row` as `name=epoch, …`, origins named as this replica knows them.
pub fn row_text(
    members: &[crate::store::state::Member],
    row: &BTreeMap<crate::ops::Id, u64>,
) -> String {
    let mut parts: Vec<String> = row
        .iter()
        .filter(|(_, epoch)| **epoch > 0)
        .map(|(origin, epoch)| {
            let name = members
                .iter()
                .find(|m| m.replica == *origin)
                .map_or_else(|| origin.to_hex(), |m| m.name.clone());
            format!("{}={epoch}", crate::error::printable(&name))
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        "nothing yet".into()
    } else {
        parts.join(", ")
    }
}

/// After a packet from a sibling was applied (or found to bring nothing
/// new): keeps the sender's patterns and digest, and compares the digest
/// with this replica's own when this replica holds exactly the version it
/// describes. `None` when the packet carries no digest. Never fails: the
/// packet is committed already, so an error (reading the state or the
/// exclude patterns) is reported as [`Outcome::Failed`], not as a failed
/// import.
pub fn check_after_import(
    replica: &mut crate::replica::LockedReplica,
    header: &packet_format::Header,
    packet: &str,
) -> Option<Check> {
    match compare_after_import(replica, header, packet) {
        Ok(check) => check,
        Err(err) => Some(Check {
            sender: crate::error::printable(&header.sender.name).into_owned(),
            row: String::new(),
            entries: 0,
            outcome: Outcome::Failed(error_chain(&err)),
            root_only: false,
        }),
    }
}

/// An error with its sources, as one line (Display or source(), never
/// both: each level adds only its own words).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn compare_after_import(
    replica: &mut crate::replica::LockedReplica,
    header: &packet_format::Header,
    packet: &str,
) -> crate::error::Result<Option<Check>> {
    let Some(theirs) = &header.tree_digest else {
        return Ok(None);
    };
    let sender = header.sender.id;
    let me = replica.identity.replica_id;
    let members = replica.members()?;
    let Some(member) = members.iter().find(|m| m.replica == sender) else {
        return Ok(None);
    };
    let own_row = replica.state().epoch_row(&me)?;
    let origins: std::collections::BTreeSet<_> =
        own_row.keys().chain(header.epoch_row.keys()).collect();
    let same_version = origins.iter().all(|origin| {
        own_row.get(origin).copied().unwrap_or(0)
            == header.epoch_row.get(origin).copied().unwrap_or(0)
    });
    // During a restore, changes of this replica's own set aside (numbered
    // like a sibling's: `family::set_aside_from`) are still in its tree but
    // in no row: the trees differ by them, and say nothing of damage.
    let set_aside = crate::sync::family::restore_wait(replica)?.is_some()
        && !replica.state().set_aside()?.is_empty();
    let outcome = if set_aside {
        Outcome::NotCompared(
            "this replica is being restored from a backup and holds changes of its own set aside \
             (logged again, renumbered, when the restore finishes)"
                .into(),
        )
    } else if !same_version {
        Outcome::NotCompared(format!(
            "this replica holds another version ({})",
            row_text(&members, &own_row.iter().map(|(o, e)| (*o, *e)).collect())
        ))
    } else {
        let covered = theirs.metadata.map_or(0, |m| m.covered);
        let uncovered = covered & !preserved_items(&replica.preserve());
        // Only the roots are compared here.
        let (ours, own_hash) = local_for(replica, &theirs.patterns, covered, Keep::Root)?;
        if uncovered != 0 {
            Outcome::NotCompared(format!(
                "the sender's digest covers metadata this replica does not preserve ({}; it \
                 learns this replica's preserve setting from this replica's next packet)",
                item_names(uncovered)
            ))
        } else if own_hash != theirs.assumed {
            Outcome::NotCompared(
                "the sender does not know this replica's exclude patterns yet (it learns them \
                 from this replica's next packet)"
                    .into(),
            )
        } else if ours.root == theirs.root {
            Outcome::Verified
        } else {
            Outcome::Differs
        }
    };
    let now = crate::sys::clock::now_ns();
    let received = crate::store::state::DigestReceived {
        sibling: sender,
        at_ns: now,
        packet: packet.to_string(),
        row: header.epoch_row.clone(),
        digest: theirs.clone(),
        outcome: outcome.stored(),
    };
    // What the sender said of itself: the entries stay as they are.
    replica.state_mut_keeping_entries().transaction(|tx| {
        crate::store::state::set_sibling_patterns(tx, &sender, &theirs.patterns, now)?;
        // A sender without the field (an older version) is covered nothing.
        let preserved = theirs.metadata.map_or(0, |m| m.preserved);
        crate::store::state::set_sibling_preserved(tx, &sender, preserved, now)?;
        Ok(crate::store::state::note_digest(tx, &received)?)
    })?;
    Ok(Some(Check {
        sender: crate::error::printable(&member.name).into_owned(),
        row: row_text(&members, &header.epoch_row),
        entries: theirs.entries,
        root_only: root_only(theirs),
        outcome,
    }))
}

/// A recorded path whose tree entry is not what was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: Vec<u8>,
    /// Same kind, size, mode and mtime as recorded, other content: what
    /// the scan's fast path cannot see (bit rot, an edit that restored the
    /// time stamp).
    pub silent: bool,
    pub what: String,
}

/// What `syncreplica -verify` found on disk.
#[derive(Debug, Clone)]
pub struct DiskReport {
    pub mismatches: Vec<Mismatch>,
    /// The recorded tree's digest and the tree's as read now, both
    /// leaving out what this replica's patterns exclude.
    pub recorded: Computed,
    pub disk: Computed,
    pub files_read: u64,
    pub bytes_read: u64,
}

/// Reads every recorded path back from disk, re-hashing each file's
/// content (never trusting the recorded stat), and compares it with what
/// was recorded. Only reads; paths not recorded are the scan's business
/// (`-status`). Errors: the state database cannot be read, or the
/// exclude patterns are bad; a path that cannot be read is a mismatch.
pub fn verify_disk(replica: &crate::replica::Replica) -> crate::error::Result<DiskReport> {
    use std::os::unix::fs::MetadataExt;
    let excludes = replica.excludes()?;
    let own = excludes.patterns().to_vec();
    let filter = Filter::of(&[&own]);
    let entries = replica.entries()?;
    let mut paths: Vec<&Vec<u8>> = entries.keys().collect();
    paths.sort();
    let mut mismatches = Vec::new();
    let mut names = crate::tree::meta::Names::default();
    let preserve = replica.preserve();
    let mut on_disk: Vec<(Vec<u8>, PathState)> = Vec::new();
    let (mut files_read, mut bytes_read) = (0u64, 0u64);
    let recorded_bytes = entries
        .values()
        .filter_map(|entry| match &entry.state {
            PathState::File { size, .. } => Some(*size),
            _ => None,
        })
        .sum();
    let _reading = crate::sys::progress::phase(
        "reading recorded files back",
        crate::sys::progress::Unit::Bytes,
        Some(recorded_bytes),
    );
    for path in paths {
        let recorded = &entries[path].state;
        if leaf(recorded).is_none() {
            continue;
        }
        let disk = crate::tree::relpath::to_disk_path(&replica.root, path);
        let mut mismatch = |silent: bool, what: String| {
            mismatches.push(Mismatch {
                path: path.clone(),
                silent,
                what,
            })
        };
        let meta = match std::fs::symlink_metadata(&disk) {
            Ok(meta) => meta,
            // A special file this replica does not keep (device nodes
            // where it is not root) is recorded, never made here.
            Err(err)
                if err.kind() == std::io::ErrorKind::NotFound
                    && matches!(recorded, PathState::Special { kind, .. }
                        if !replica.preserve().keeps_special(*kind)) =>
            {
                on_disk.push((path.clone(), recorded.clone()));
                continue;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                mismatch(false, "missing".into());
                continue;
            }
            Err(err) => {
                mismatch(false, format!("cannot be read: {err}"));
                continue;
            }
        };
        let state = if meta.file_type().is_symlink() {
            match std::fs::read_link(&disk) {
                Ok(target) => {
                    use std::os::unix::ffi::OsStrExt;
                    PathState::symlink(target.as_os_str().as_bytes().to_vec())
                }
                Err(err) => {
                    mismatch(false, format!("cannot be read: {err}"));
                    continue;
                }
            }
        } else if meta.is_dir() {
            PathState::directory(meta.mode() & 0o7777)
        } else if meta.is_file() {
            let chunks = match std::fs::File::open(&disk).and_then(|file| {
                crate::tree::chunking::chunk_stream(file, |chunk, _| {
                    crate::sys::progress::advance(u64::from(chunk.len));
                    Ok(())
                })
            }) {
                Ok(chunks) => chunks,
                Err(err) => {
                    mismatch(false, format!("cannot be read: {err}"));
                    continue;
                }
            };
            files_read += 1;
            bytes_read += meta.len();
            let ext = match recorded {
                PathState::File { ext, .. } => ext.clone(),
                _ => Default::default(),
            };
            PathState::File {
                mode: meta.mode() & 0o7777,
                mtime: crate::tree::scan::file_mtime(&meta),
                size: meta.len(),
                chunks,
                ext,
            }
        } else if let Some(kind) = crate::tree::meta::special_kind_of(meta.file_type()) {
            // By kind, device number and mode, as the scan records it.
            PathState::Special {
                kind,
                mode: meta.mode() & 0o7777,
                major: rustix::fs::major(meta.rdev()),
                minor: rustix::fs::minor(meta.rdev()),
                mtime: crate::tree::scan::file_mtime(&meta),
                ext: Default::default(),
            }
        } else {
            mismatch(false, "is now of an unknown kind".into());
            continue;
        };
        // Owner, group, ACLs and extended attributes, as the scan reads them:
        // a chown is as much a local change as a touch.
        let mut metadata = crate::tree::scan::metadata_changed(
            &disk, &meta, &state, recorded, &preserve, &mut names,
        );
        // A directory's or symlink's time is recorded (and -status lists
        // its change as "touched") though the digest leaves it out (review
        // 14e item 7: -verify did not say it).
        if let (
            PathState::Directory {
                mtime: Some(then), ..
            }
            | PathState::Symlink {
                mtime: Some(then), ..
            },
            PathState::Directory { .. } | PathState::Symlink { .. },
        ) = (recorded, &state)
        {
            let now = crate::tree::scan::file_mtime(&meta);
            if now != *then && std::mem::discriminant(recorded) == std::mem::discriminant(&state) {
                let show = |t: crate::ops::Timestamp| {
                    let day = packet_format::utc_display(t.secs);
                    if t.nanos == 0 {
                        day
                    } else {
                        format!("{}.{:09} UTC", day.trim_end_matches(" UTC"), t.nanos)
                    }
                };
                metadata.push(format!(
                    "mtime (now {}; recorded {})",
                    show(now),
                    show(*then)
                ));
            }
        }
        if leaf(&state) == leaf(recorded) && !metadata.is_empty() {
            mismatch(
                false,
                format!("changed since recorded: {}", metadata.join(", ")),
            );
        } else if leaf(&state) != leaf(recorded) {
            let silent = match (recorded, &state) {
                (
                    PathState::File {
                        mode: m1,
                        mtime: t1,
                        size: s1,
                        ..
                    },
                    PathState::File {
                        mode: m2,
                        mtime: t2,
                        size: s2,
                        ..
                    },
                ) => {
                    // The scan also looks at the change time (chmod, chown,
                    // any write move it): a file whose ctime moved since it
                    // was recorded is an ordinary local change that
                    // -status shows and -record records, not damage.
                    let ctime_kept = entries[path].stat.is_none_or(|stat| {
                        stat.ctime_ns == crate::tree::scan::stat_key(&meta).ctime_ns
                    });
                    m1 & 0o1777 == m2 & 0o1777 && t1 == t2 && s1 == s2 && ctime_kept
                }
                _ => false,
            };
            let what = if silent {
                "content differs from what was recorded, with the same size and mtime".to_string()
            } else if let (
                PathState::Special {
                    kind: k1,
                    major: x1,
                    minor: y1,
                    ..
                },
                PathState::Special {
                    kind: k2,
                    major: x2,
                    minor: y2,
                    ..
                },
            ) = (recorded, &state)
            {
                if k1 == k2 && (x1, y1) != (x2, y2) {
                    format!(
                        "device number changed since recorded (now {x2}:{y2}; recorded {x1}:{y1})"
                    )
                } else if k1 == k2 {
                    "mode changed since recorded".to_string()
                } else {
                    format!(
                        "changed since recorded (now a {}; recorded a {})",
                        crate::tree::scan::type_name(&state),
                        crate::tree::scan::type_name(recorded)
                    )
                }
            } else if let Some(fields) = fields_changed(recorded, &state) {
                let fields = std::iter::once(fields).chain(metadata).collect::<Vec<_>>();
                format!("changed since recorded: {}", fields.join(", "))
            } else {
                format!(
                    "changed since recorded (now a {}; recorded a {})",
                    crate::tree::scan::type_name(&state),
                    crate::tree::scan::type_name(recorded)
                )
            };
            mismatch(silent, what);
        }
        on_disk.push((path.clone(), state));
    }
    let recorded = compute(
        entries.iter().map(|(path, e)| (path.as_slice(), &e.state)),
        &filter,
    );
    let disk = compute(on_disk.iter().map(|(p, s)| (p.as_slice(), s)), &filter);
    Ok(DiskReport {
        mismatches,
        recorded,
        disk,
        files_read,
        bytes_read,
    })
}

/// The comparison of this replica's recorded tree with a sibling's last
/// digest.
/// Whether `digest` carries only its root although its tree has entries:
/// an encrypted packet's (its header is readable by every hop, and the
/// nodes would name paths; SPEC.md §4.2), so the paths that differ cannot
/// be told.
pub fn root_only(digest: &TreeDigest) -> bool {
    digest.nodes.is_empty() && digest.entries > 0
}

#[derive(Debug, Clone)]
pub struct SiblingReport {
    pub received: crate::store::state::DigestReceived,
    /// The version the digest describes, as `name=epoch, …`.
    pub row: String,
    /// This replica's own row now, when it is not that version.
    pub own_row: Option<String>,
    /// When the sender assumed other patterns of this replica's.
    pub patterns_differ: bool,
    /// Paths that differ ([`differing_subtrees`]); empty when in step.
    pub differing: Vec<Vec<u8>>,
    /// The digest carries only its root ([`root_only`]): which paths
    /// differ cannot be told.
    pub root_only: bool,
    /// What differs in the root's own entry (format 2.11, SPEC.md §4.1.2:
    /// [`root_parts_differing`]); when not empty, `differing` holds the
    /// empty path for it.
    pub root_differs: Vec<&'static str>,
}

/// Compares this replica's recorded tree with the last digest received
/// from the member `sibling` (an id), if there is one.
pub fn against_sibling(
    replica: &crate::replica::Replica,
    sibling: &crate::ops::Id,
) -> crate::error::Result<Option<SiblingReport>> {
    let Some(received) = replica
        .state()
        .digests_received()?
        .into_iter()
        .find(|d| d.sibling == *sibling)
    else {
        return Ok(None);
    };
    let members = replica.members()?;
    let me = replica.identity.replica_id;
    let own_row = replica.state().epoch_row(&me)?;
    let own_row: BTreeMap<crate::ops::Id, u64> = own_row.into_iter().collect();
    let same = own_row
        .keys()
        .chain(received.row.keys())
        .all(|o| own_row.get(o).copied().unwrap_or(0) == received.row.get(o).copied().unwrap_or(0));
    let covered = received.digest.metadata.map_or(0, |m| m.covered);
    let (ours, own_hash) = local_for(replica, &received.digest.patterns, covered, Keep::All)?;
    let mut differing = differing_subtrees(&ours, &received.digest);
    let root_differs = match (&ours.root_parts, &received.digest.root_parts) {
        (Some(ours), Some(theirs)) => root_parts_differing(ours, theirs),
        _ => Vec::new(),
    };
    if !root_differs.is_empty() && differing.first().is_none_or(|p| !p.is_empty()) {
        differing.insert(0, Vec::new());
    }
    Ok(Some(SiblingReport {
        row: row_text(&members, &received.row),
        own_row: (!same).then(|| row_text(&members, &own_row)),
        patterns_differ: own_hash != received.digest.assumed,
        differing,
        root_only: root_only(&received.digest),
        root_differs,
        received,
    }))
}

/// For two states of the same kind, what differs between them, with both
/// values where they are short ("mode (now 0755; recorded 0700)"); `None`
/// for states of different kinds (review 14b item 8: a directory's
/// changed mode was reported as "now a directory; recorded a directory").
fn fields_changed(recorded: &PathState, now: &PathState) -> Option<String> {
    let mut fields = Vec::new();
    let mut mode = |a: u32, b: u32| {
        if a & 0o1777 != b & 0o1777 {
            fields.push(format!(
                "mode (now {:04o}; recorded {:04o})",
                b & 0o7777,
                a & 0o7777
            ));
        }
    };
    match (recorded, now) {
        (
            PathState::File {
                mode: m1,
                size: s1,
                chunks: c1,
                mtime: t1,
                ..
            },
            PathState::File {
                mode: m2,
                size: s2,
                chunks: c2,
                mtime: t2,
                ..
            },
        ) => {
            mode(*m1, *m2);
            if s1 != s2 {
                fields.push(format!("size (now {s2}; recorded {s1})"));
            } else if c1 != c2 {
                fields.push("content".to_string());
            }
            if t1 != t2 {
                fields.push("mtime".to_string());
            }
        }
        (PathState::Directory { mode: m1, .. }, PathState::Directory { mode: m2, .. }) => {
            mode(*m1, *m2)
        }
        (PathState::Symlink { target: a, .. }, PathState::Symlink { target: b, .. }) => {
            if a != b {
                fields.push("target".to_string());
            }
        }
        _ => return None,
    }
    (!fields.is_empty()).then(|| fields.join(", "))
}
