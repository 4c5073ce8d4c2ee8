//! `syncreplica -status`: local changes not yet recorded, like `git status`.

use std::path::Path;

use crate::store::state::FailedStep;
use crate::tree::relpath;
use crate::tree::scan::ScanOutcome;

/// The `syncreplica -status` report.
/// `missing`: paths the family holds that this replica lacks since its
/// exclude rules changed (`sync::record`); not changes to record.
/// `failed`: disk steps imports could not do (`sync::apply`, rule 9).
pub fn render_status(
    replica_name: &str,
    root: &Path,
    outcome: &ScanOutcome,
    missing: &[Vec<u8>],
    failed: &[FailedStep],
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
        render_failed(&mut out, replica_name, failed);
        return out;
    }
    match count {
        0 => writeln!(
            out,
            "Replica \"{replica_name}\" ({}): no changes to record; newly excluded:",
            root.display()
        ),
        _ => writeln!(
            out,
            "Replica \"{replica_name}\" ({}): {} not yet recorded:",
            root.display(),
            crate::cli::counted(count as u64, "change", "changes")
        ),
    }
    .expect("writing to a String cannot fail");
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
    render_failed(&mut out, replica_name, failed);
    out
}

/// The disk steps imports could not do (`crate::sync::apply`, rule 9),
/// with what to do about them.
fn render_failed(out: &mut String, replica_name: &str, failed: &[FailedStep]) {
    use std::fmt::Write;
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Not applied here: {} path{} an import could not write (the entries keep what the tree holds; the other replicas keep the new versions):",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
    );
    for step in failed {
        let _ = writeln!(out, "  {:<14} {}", "not applied:", describe_failed(step));
    }
    let resend: Vec<String> = failed
        .iter()
        .map(|f| format!("-resend '{}'", relpath::display_short(&f.path, 120)))
        .collect();
    let _ = writeln!(
        out,
        "Once the cause is fixed, run at a sibling that has them: syncreplica -export {} -out DIR {replica_name}, and import its packet here.",
        resend.join(" ")
    );
}

/// One failed step in words: the path, the step, where it came from and
/// when, and the error.
pub fn describe_failed(step: &FailedStep) -> String {
    let when = chrono::DateTime::from_timestamp_nanos(step.at_ns).format("%Y-%m-%d %H:%M:%S UTC");
    format!(
        "{} ({} failed; {}, {when}): {}",
        relpath::display_short(&step.path, 120),
        step.step,
        step.source,
        step.error
    )
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
