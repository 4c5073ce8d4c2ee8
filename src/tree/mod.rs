//! The working tree: lexical rules for relative paths ([`relpath`]),
//! excludes ([`excludes`]), how the filesystem compares names
//! ([`folding`]), content-defined chunking ([`chunking`]) and the scan
//! that compares the tree with the recorded state ([`scan`]).

pub mod chunking;
pub mod confined;
pub mod excludes;
pub mod folding;
pub mod meta;
pub mod relpath;
pub mod scan;
