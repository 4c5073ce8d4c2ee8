//! The lines an import reports, held in bounded memory: a hostile but
//! signed packet can make a conflict note, a skipped step or a failed
//! step of every one of its million operations (issue 11). The first
//! [`LINES_HELD`] of each kind are held for the command to print (and for
//! `-json`); from the one after, every line of that kind, the held ones
//! first, is written to a report file in the state folder
//! (`.syncreplica/reports/`), which the command names. Nothing is lost:
//! the file has every line of a kind that overflowed, and the failed steps
//! are recorded in the state too (`syncreplica -status`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::layout::REPORTS_DIR;
use crate::store::state::FailedStep;
use crate::tree::relpath;

/// Lines of each kind (conflicts and skipped steps, failed steps) held in
/// memory per packet; the rest go to the report file.
pub const LINES_HELD: usize = 1000;

/// An import's report lines: the first [`LINES_HELD`] of each kind, how
/// many more, and the file that has them all when there were more.
#[derive(Debug)]
pub(crate) struct Lines {
    state_dir: PathBuf,
    /// Conflicts, versions kept as conflict copies, steps skipped because
    /// the path changed meanwhile.
    pub conflicts: Vec<String>,
    pub conflicts_more: u64,
    /// Disk steps that failed for good.
    pub failed: Vec<FailedStep>,
    pub failed_more: u64,
    file: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
}

impl Lines {
    /// No lines yet; a report file, if needed, goes to `state_dir`'s
    /// [`REPORTS_DIR`].
    pub fn new(state_dir: &Path) -> Lines {
        Lines {
            state_dir: state_dir.to_path_buf(),
            conflicts: Vec::new(),
            conflicts_more: 0,
            failed: Vec::new(),
            failed_more: 0,
            file: None,
        }
    }

    /// Adds a conflict note (the path first, then ": ").
    pub fn conflict(&mut self, line: String) -> Result<()> {
        if self.conflicts.len() < LINES_HELD {
            self.conflicts.push(line);
            return Ok(());
        }
        if self.conflicts_more == 0 {
            let held: Vec<String> = self.conflicts.iter().map(|l| conflict_line(l)).collect();
            for line in held {
                self.write(&line)?;
            }
        }
        self.conflicts_more += 1;
        self.write(&conflict_line(&line))
    }

    /// Adds a failed step.
    pub fn failed(&mut self, step: FailedStep) -> Result<()> {
        if self.failed.len() < LINES_HELD {
            self.failed.push(step);
            return Ok(());
        }
        if self.failed_more == 0 {
            let held: Vec<String> = self.failed.iter().map(failed_line).collect();
            for line in held {
                self.write(&line)?;
            }
        }
        self.failed_more += 1;
        self.write(&failed_line(&step))
    }

    /// The conflict note at `index` among the held ones, to be changed in
    /// place: only while no note went to the file (which has them as they
    /// came).
    pub fn held_conflict_mut(&mut self, index: usize) -> Option<&mut String> {
        match self.conflicts_more {
            0 => self.conflicts.get_mut(index),
            _ => None,
        }
    }

    /// Writes the report file out (fsynced: it is what the user is told
    /// to read) and returns its path, if there is one.
    pub fn close(&mut self) -> Result<Option<PathBuf>> {
        let Some((path, mut out)) = self.file.take() else {
            return Ok(None);
        };
        out.flush().map_err(|e| Error::io(&path, e))?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(Some(path))
    }

    fn write(&mut self, line: &str) -> Result<()> {
        if self.file.is_none() {
            let dir = self.state_dir.join(REPORTS_DIR);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let path = report_file(&dir)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            self.file = Some((path, std::io::BufWriter::new(file)));
        }
        let (path, out) = self.file.as_mut().expect("opened above");
        writeln!(out, "{line}").map_err(|e| Error::io(&*path, e))
    }
}

impl Drop for Lines {
    /// A report file not closed is of a batch refused or stopped before
    /// its report was made: it reports nothing that happened, and goes.
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A name for a new report file in `dir`: the time, and a number when
/// that name is taken (two imports in one second).
fn report_file(dir: &Path) -> Result<PathBuf> {
    let when = chrono::Utc::now().format("import-%Y%m%dT%H%M%SZ");
    for n in 0u32.. {
        let name = match n {
            0 => format!("{when}.txt"),
            n => format!("{when}-{n}.txt"),
        };
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(Error::io(&path, e)),
            Ok(_) => continue,
        }
    }
    unreachable!("some number is free")
}

/// A conflict note as the report file has it (as the command prints it).
fn conflict_line(note: &str) -> String {
    format!("conflict: {note}")
}

/// A failed step as the report file has it: the whole path (the command
/// shortens long ones), with what failed and why.
fn failed_line(step: &FailedStep) -> String {
    format!(
        "not applied here: {} ({} failed; {}): {}",
        relpath::display(&step.path),
        step.step,
        step.source,
        step.error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_are_held_and_every_line_of_a_kind_that_overflows_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Lines::new(dir.path());
        for i in 0..LINES_HELD + 5 {
            lines.conflict(format!("p{i}: note")).unwrap();
        }
        lines
            .failed(FailedStep {
                path: b"f".to_vec(),
                source: "packet x".into(),
                at_ns: 0,
                step: "placing".into(),
                error: "no room".into(),
            })
            .unwrap();
        assert_eq!(lines.conflicts.len(), LINES_HELD);
        assert_eq!(lines.conflicts_more, 5);
        assert_eq!((lines.failed.len(), lines.failed_more), (1, 0));
        assert!(lines.held_conflict_mut(0).is_none());
        let file = lines.close().unwrap().expect("a report file");
        let text = std::fs::read_to_string(&file).unwrap();
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), LINES_HELD + 5);
        assert_eq!(all[0], "conflict: p0: note");
        assert_eq!(
            all[LINES_HELD + 4],
            format!("conflict: p{}: note", LINES_HELD + 4)
        );
        assert!(file.starts_with(dir.path().join(REPORTS_DIR)));
    }

    #[test]
    fn a_report_never_closed_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Lines::new(dir.path());
        for i in 0..=LINES_HELD {
            lines.conflict(format!("p{i}: note")).unwrap();
        }
        assert_eq!(lines.conflicts_more, 1);
        drop(lines);
        let reports = dir.path().join(REPORTS_DIR);
        assert_eq!(std::fs::read_dir(reports).unwrap().count(), 0);
    }

    #[test]
    fn no_file_while_every_line_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Lines::new(dir.path());
        lines.conflict("p: note".into()).unwrap();
        assert_eq!(lines.close().unwrap(), None);
        assert!(!dir.path().join(REPORTS_DIR).exists());
    }
}
