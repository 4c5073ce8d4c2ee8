//! `syncreplica -status`: local changes not yet recorded, like `git status`.

use std::path::Path;

use crate::tree::relpath;
use crate::tree::scan::ScanOutcome;

/// The `syncreplica -status` report.
pub fn render_status(replica_name: &str, root: &Path, outcome: &ScanOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let count = outcome.changes.len();
    if count == 0 && outcome.newly_excluded.is_empty() {
        let _ = writeln!(
            out,
            "Replica \"{replica_name}\" ({}): no changes to record; the tree matches the recorded state.",
            root.display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Replica \"{replica_name}\" ({}): {count} change{} not yet recorded:",
        root.display(),
        if count == 1 { "" } else { "s" }
    );
    for change in &outcome.changes {
        let _ = writeln!(out, "  {}", change.describe());
    }
    for path in &outcome.newly_excluded {
        let _ = writeln!(
            out,
            "  {:<14} {} (will be forgotten locally, not deleted elsewhere)",
            "now excluded:",
            relpath::display(path)
        );
    }
    out
}
