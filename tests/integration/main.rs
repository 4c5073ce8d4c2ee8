//! Integration tests: the real binaries on real temporary directories.
//! One test binary; shared helpers live in `helpers`.

mod helpers;

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
mod readonly;
mod shipping;
mod soak;
mod sparse;
mod sync;
