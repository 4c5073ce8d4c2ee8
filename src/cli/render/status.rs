//! `syncreplica -status`: local changes not yet recorded, like `git status`.

use std::path::Path;

use crate::store::state::FailedStep;
use crate::sync::mirror::Fate;
use crate::tree::relpath;
use crate::tree::scan::ScanOutcome;

/// The `syncreplica -status` report.
/// `missing`: paths the family holds that this replica lacks since its
/// exclude rules changed (`sync::record`); not changes to record.
/// `failed`: disk steps imports could not do (`sync::apply`, rule 9).
/// `mirror`: the upstream's name when this replica is a mirror, which
/// records none of its changes, and what the next `-record` or `-import`
/// does with each change (`sync::mirror::fates`, in the changes' order):
/// each is listed with it.
pub fn render_status(
    replica_name: &str,
    root: &Path,
    outcome: &ScanOutcome,
    missing: &[Vec<u8>],
    failed: &[FailedStep],
    mirror: Option<(&str, &[Fate])>,
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
    if let (Some((upstream, fates)), true) = (mirror, count > 0) {
        render_mirror(&mut out, replica_name, root, outcome, upstream, fates);
        render_tail(&mut out, replica_name, outcome, missing, failed);
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
    render_tail(&mut out, replica_name, outcome, missing, failed);
    out
}

/// The lines every listing of changes ends with: the paths newly
/// excluded, the family's paths missing here, the failed disk steps.
fn render_tail(
    out: &mut String,
    replica_name: &str,
    outcome: &ScanOutcome,
    missing: &[Vec<u8>],
    failed: &[FailedStep],
) {
    use std::fmt::Write;
    for path in &outcome.newly_excluded {
        let _ = writeln!(
            out,
            "  {:<14} {} (will be forgotten locally, not deleted elsewhere)",
            "now excluded:",
            relpath::display(path)
        );
    }
    render_missing(out, missing);
    render_failed(out, replica_name, failed);
}

/// A mirror's local changes, none of which is recorded: what the next
/// `-record` or `-import` does with each (`sync::mirror`).
fn render_mirror(
    out: &mut String,
    replica_name: &str,
    root: &Path,
    outcome: &ScanOutcome,
    upstream: &str,
    fates: &[Fate],
) {
    use std::fmt::Write;
    let upstream = crate::error::printable(upstream);
    let alone = fates.iter().filter(|f| **f == Fate::LeftAlone).count() as u64;
    let undone = fates.len() as u64 - alone;
    let mut parts = Vec::new();
    if undone > 0 {
        parts.push(format!(
            "undoes {}",
            crate::cli::counted(undone, "local change", "local changes")
        ));
    }
    if alone > 0 {
        parts.push(format!(
            "leaves {} the family does not have alone",
            crate::cli::counted(alone, "new path", "new paths")
        ));
    }
    let _ = writeln!(
        out,
        "Replica \"{replica_name}\" ({}) is a mirror of \"{upstream}\" and records no change of its own; \
         its next -record or -import {}:",
        root.display(),
        parts.join(" and ")
    );
    for (change, fate) in outcome.changes.iter().zip(fates) {
        let what = match fate {
            Fate::SetBack => "metadata set back to the family's".to_string(),
            Fate::Relinked(to) => format!(
                "set back: linked again to {}, a name of its hard-link set",
                relpath::display(to)
            ),
            Fate::LeftInPlace => format!(
                "left in place until the family's version, asked for from \"{upstream}\", replaces it"
            ),
            Fate::SetAside => format!(
                "set aside under .syncreplica/deleted, the family's version asked for from \"{upstream}\""
            ),
            Fate::LeftAlone => "left alone: not recorded, never sent".to_string(),
        };
        let _ = writeln!(out, "  {} ({what})", change.describe());
    }
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
        .map(|f| format!("-resendpath '{}'", relpath::display_short(&f.path, 120)))
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

/// `syncreplica -status -fmt json`: one object, shape version 1.
/// Paths are `/`-separated and relative to the replica root; a name that
/// is not UTF-8 is shown with its bytes escaped (as in the text listing).
/// An empty list is `[]`, never left out.
#[derive(Debug, serde::Serialize)]
pub struct StatusJson {
    pub version: u32,
    pub replica: String,
    pub root: String,
    /// The changes a -record would record, in the order it records them.
    pub changes: Vec<ChangeJson>,
    /// Recorded paths now excluded: forgotten here, not deleted elsewhere.
    pub newly_excluded: Vec<String>,
    /// Paths the family holds that this replica lacks since its exclude
    /// rules changed.
    pub missing: Vec<String>,
    /// Disk steps imports could not do here.
    pub not_applied: Vec<NotAppliedJson>,
    /// The upstream's name when this replica is a mirror (whose changes
    /// are never recorded: see each change's `mirror`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_of: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct ChangeJson {
    /// "new", "modified", "mode changed", "touched", "type changed" or
    /// "deleted".
    pub change: &'static str,
    pub path: String,
    /// "file", "directory", "symlink" or "nothing" (deleted).
    pub was: Option<&'static str>,
    pub now: &'static str,
    /// Permission bits before and after, for files and directories.
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// On a mirror, what its next -record or -import does with the change:
    /// "set back", "set aside" or "left alone"; absent on other members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<&'static str>,
}

#[derive(Debug, serde::Serialize)]
pub struct NotAppliedJson {
    pub path: String,
    pub step: String,
    pub source: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub error: String,
}

/// The JSON form of [`render_status`].
pub fn status_json(
    replica_name: &str,
    root: &Path,
    outcome: &ScanOutcome,
    missing: &[Vec<u8>],
    failed: &[FailedStep],
    mirror: Option<(&str, &[Fate])>,
) -> StatusJson {
    use crate::ops::PathState;
    use crate::tree::scan::type_name;
    let mode = |state: &PathState| match state {
        PathState::File { mode, .. } | PathState::Directory { mode, .. } => Some(*mode),
        _ => None,
    };
    StatusJson {
        version: 1,
        replica: replica_name.to_string(),
        root: root.display().to_string(),
        changes: outcome
            .changes
            .iter()
            .enumerate()
            .map(|(n, change)| ChangeJson {
                change: change.kind().label(),
                path: relpath::display(&change.path),
                was: change.old.as_ref().map(type_name),
                now: type_name(&change.new),
                old_mode: change.old.as_ref().and_then(mode),
                new_mode: mode(&change.new),
                mirror: mirror.and_then(|(_, fates)| fates.get(n)).map(Fate::word),
            })
            .collect(),
        newly_excluded: outcome
            .newly_excluded
            .iter()
            .map(|p| relpath::display(p))
            .collect(),
        missing: missing.iter().map(|p| relpath::display(p)).collect(),
        not_applied: failed
            .iter()
            .map(|step| NotAppliedJson {
                path: relpath::display(&step.path),
                step: step.step.clone(),
                source: step.source.clone(),
                at: chrono::DateTime::from_timestamp_nanos(step.at_ns)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                error: step.error.clone(),
            })
            .collect(),
        mirror_of: mirror.map(|(upstream, _)| upstream.to_string()),
    }
}
