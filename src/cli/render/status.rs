//! `syncreplica -status`: local changes not yet recorded, like `git status`.

use std::path::Path;

use crate::tree::relpath;
use crate::tree::scan::ScanOutcome;

/// The `syncreplica -status` report.
/// `missing`: paths the family holds that this replica lacks since its
/// exclude rules changed (`sync::record`); not changes to record.
pub fn render_status(
    replica_name: &str,
    root: &Path,
    outcome: &ScanOutcome,
    missing: &[Vec<u8>],
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let count = outcome.changes.len();
    if count == 0 && outcome.newly_excluded.is_empty() {
        let _ = writeln!(
            out,
            "Replica \"{replica_name}\" ({}): no changes to record; the tree matches the recorded state.",
            root.display()
        );
        render_missing(&mut out, missing);
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
    render_missing(&mut out, missing);
    out
}

fn render_missing(out: &mut String, missing: &[Vec<u8>]) {
    use std::fmt::Write;
    if missing.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{} path{} the family holds {} missing here since the exclude rules changed (not a change to record):",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if missing.len() == 1 { "is" } else { "are" },
    );
    for path in missing {
        let _ = writeln!(out, "  {:<14} {}", "missing:", relpath::display(path));
    }
}
