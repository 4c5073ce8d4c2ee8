//! Recording local changes: the step every command that changes a replica
//! takes first.

use crate::error::Result;
use crate::replica::{LockedReplica, RecordSummary};
use crate::tree::scan::{ScanHooks, ScanOutcome};

/// Finishes an import that a crash interrupted (so its half-placed files
/// are not taken for local edits), then scans and records every local
/// change.
pub fn record_local_changes(replica: &mut LockedReplica) -> Result<(ScanOutcome, RecordSummary)> {
    crate::sync::apply::recover(replica)?;
    let outcome = replica.scan(&mut ScanHooks::default())?;
    let summary = replica.record(&outcome)?;
    Ok((outcome, summary))
}
