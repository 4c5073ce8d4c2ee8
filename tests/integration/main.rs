//! Integration tests: the real binaries on real temporary directories.
//! One test binary; shared helpers live in `helpers`.

mod helpers;

mod adopt;
mod apply;
mod architecture;
mod case_folding;
mod convergence;
mod delta;
mod digest;
mod encryption;
mod excludes;
mod family;
mod foundation;
mod hostile;
mod interrupted;
mod man_pages;
mod metadata_merge;
mod paid_links;
mod progress;
mod readonly;
mod rekey;
mod rough_edges;
#[cfg(feature = "s3")]
mod s3_bays;
mod shipping;
mod soak;
mod sparse;
mod sync;
mod system_tree;
