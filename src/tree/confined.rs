//! The only code that resolves paths from packets on disk.
//!
//! Every name in a packet is hostile until proved enclosed (zip2 and
//! Syncthing take the same stance). Checking a path with `lstat` and using
//! it later by name leaves a window in which another user of the tree can
//! swap a directory for a symlink to `/etc`: an import run as root would
//! then write there. So nothing here re-resolves a path string: the parent
//! directory of a packet path is opened once, as a handle, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`,
//! and the last name is then created, replaced, removed, chmodded, timed or
//! renamed relative to that handle, never following a symlink. The kernel
//! does the check and the use in one step.
//!
//! On kernels without `openat2` (before Linux 5.6) the parent is walked one
//! name at a time with `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)`, which
//! gives the same guarantee.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::ops::Timestamp;
use crate::tree::relpath;

/// Resolution rules for every lookup below the root.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// What is on disk at a path, looked up without following any symlink: a
/// path below a symlink or a non-directory counts as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskKind {
    Missing,
    File,
    /// A directory, with its permission bits.
    Dir(u32),
    /// A symlink, with its target.
    Symlink(Vec<u8>),
    /// A socket, FIFO or device.
    Other,
}

/// A replica root, opened as a directory handle.
#[derive(Debug)]
pub struct ConfinedRoot {
    root: PathBuf,
    dir: OwnedFd,
}

/// Where an action on a packet path can happen.
pub enum Located {
    At(Place),
    /// A parent is missing (when not creating), or is a symlink or not a
    /// directory: nothing below it is touched.
    Blocked(&'static str),
}

/// The last name of a packet path, held by its parent directory's handle.
#[derive(Debug)]
pub struct Place {
    parent: OwnedFd,
    parent_path: PathBuf,
    /// The parent, relative to the root (empty: the root).
    parent_rel: Vec<u8>,
    name: Vec<u8>,
}

/// Test hook: called with the path (relative to the root) right before
/// its parent is opened, so a test can change the tree at the very point
/// where a check-then-use design would be raced.
pub type ResolveHook = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

impl ConfinedRoot {
    /// Opens the replica root `root` (which may itself be reached through
    /// symlinks: it is the administrator's choice, not a packet's).
    pub fn open(root: &Path) -> Result<ConfinedRoot> {
        let dir = rfs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(root, e.into()))?;
        Ok(ConfinedRoot {
            root: root.to_path_buf(),
            dir,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` (a packet path) to its parent's handle and last name;
    /// the empty path (the root) to the root's own handle and `.`.
    /// With `create`, missing parents are made (mode 0755, each one created
    /// relative to the handle of the one above). A path that fails the
    /// lexical rules ([`relpath::lexical_problem`]) is refused.
    pub fn locate(&self, rel: &[u8], create: bool) -> Result<Located> {
        self.locate_with(rel, create, None)
    }

    /// [`ConfinedRoot::locate`] with a test hook run before the parent is
    /// opened.
    pub fn locate_with(
        &self,
        rel: &[u8],
        create: bool,
        hook: Option<&ResolveHook>,
    ) -> Result<Located> {
        if rel.is_empty() {
            // The replica root itself (SPEC.md §6.5): its own handle, named
            // "." for the *at calls, which every one of them accepts. Only
            // its metadata is ever set through it.
            let parent = self
                .open_dir(b"")
                .map_err(|errno| Error::io(&self.root, errno.into()))?;
            return Ok(Located::At(Place {
                parent,
                parent_path: self.root.clone(),
                parent_rel: Vec::new(),
                name: b".".to_vec(),
            }));
        }
        if let Some(why) = relpath::lexical_problem(rel) {
            return Err(Error::hostile(relpath::display(rel), why));
        }
        let (parent_rel, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&rel[..slash], &rel[slash + 1..]),
            None => (&b""[..], rel),
        };
        if let Some(hook) = hook {
            hook(rel);
        }
        let parent_path = relpath::to_disk_path(&self.root, parent_rel);
        let parent = match self.open_dir(parent_rel) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => match self.make_dirs(parent_rel)? {
                Ok(fd) => fd,
                Err(why) => return Ok(Located::Blocked(why)),
            },
            Err(errno) => match blocked_reason(errno) {
                Some(why) => return Ok(Located::Blocked(why)),
                None => return Err(Error::io(&parent_path, errno.into())),
            },
        };
        Ok(Located::At(Place {
            parent,
            parent_path,
            parent_rel: parent_rel.to_vec(),
            name: name.to_vec(),
        }))
    }

    /// What is at `rel` now, without following symlinks anywhere.
    pub fn kind(&self, rel: &[u8]) -> Result<DiskKind> {
        match self.locate(rel, false)? {
            Located::At(place) => place.kind(),
            Located::Blocked(_) => Ok(DiskKind::Missing),
        }
    }

    /// Opens the regular file at `rel` for reading, never through a
    /// symlink. Anything else there (a FIFO, a device, a directory) is
    /// refused without blocking: the open is non-blocking and the handle is
    /// checked to be a regular file (for which `O_NONBLOCK` changes
    /// nothing) before it is returned.
    pub fn open_file(&self, rel: &[u8]) -> std::io::Result<File> {
        if let Some(why) = relpath::lexical_problem(rel) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: {why}", relpath::display(rel)),
            ));
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::openat2(
            &self.dir,
            OsStr::from_bytes(rel),
            flags,
            Mode::empty(),
            BENEATH,
        ) {
            Err(errno) if no_openat2(errno) => {
                let (parent_rel, name) = split(rel);
                let parent = self.walk(parent_rel)?;
                rfs::openat(&parent, OsStr::from_bytes(name), flags, Mode::empty())
            }
            other => other,
        }?;
        let stat = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", relpath::display(rel)),
            ));
        }
        Ok(File::from(fd))
    }

    /// The entries of the directory `rel` (empty: the root), each with its
    /// type (`lstat`'s when the filesystem does not say), never through a
    /// symlink: the directory is opened beneath the root and read through
    /// that handle. `ELOOP`, `ENOTDIR`, `ENOENT` or `EXDEV` when `rel` is
    /// not (or no longer) a directory reachable that way.
    pub fn list_dir(&self, rel: &[u8]) -> std::result::Result<Vec<(Vec<u8>, FileType)>, Errno> {
        if !rel.is_empty() && relpath::lexical_problem(rel).is_some() {
            return Err(Errno::INVAL);
        }
        let fd = self.open_dir_with(
            rel,
            OFlags::RDONLY
                | OFlags::DIRECTORY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::CLOEXEC,
        )?;
        let mut entries = Vec::new();
        let mut dir = rfs::Dir::new(fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    match rfs::statat(dir.fd()?, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                        Err(Errno::NOENT) => continue,
                        Err(errno) => return Err(errno),
                    }
                }
                kind => kind,
            };
            entries.push((name.to_vec(), kind));
        }
        Ok(entries)
    }

    /// Fsyncs the directory `rel` (empty: the root), opened beneath the
    /// root without following symlinks and without blocking. Nothing to do
    /// (`Ok`) when it is no longer a directory there: another user of the
    /// tree replaced it (by a symlink, a FIFO...) since it was changed.
    pub fn sync_dir(&self, rel: &[u8]) -> Result<()> {
        let path = relpath::to_disk_path(&self.root, rel);
        let fd = match self.open_dir_with(
            rel,
            OFlags::RDONLY
                | OFlags::DIRECTORY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::CLOEXEC,
        ) {
            Ok(fd) => fd,
            Err(errno) if blocked_reason(errno).is_some() => return Ok(()),
            Err(errno) => return Err(Error::io(&path, errno.into())),
        };
        rfs::fsync(&fd).map_err(|e| Error::io(&path, e.into()))
    }

    /// `stat` of the directory `rel` (empty: the root), opened beneath the
    /// root; `None` when it is not there or not a directory.
    pub fn dir_stat(&self, rel: &[u8]) -> Result<Option<rfs::Stat>> {
        let path = relpath::to_disk_path(&self.root, rel);
        match self.open_dir(rel) {
            Ok(fd) => rfs::fstat(&fd)
                .map(Some)
                .map_err(|e| Error::io(&path, e.into())),
            Err(errno) if blocked_reason(errno).is_some() => Ok(None),
            Err(errno) => Err(Error::io(&path, errno.into())),
        }
    }

    /// Sets the permission bits of the directory `rel` (empty: the root),
    /// reached beneath the root without following a symlink.
    pub fn set_dir_mode(&self, rel: &[u8], mode: u32) -> Result<()> {
        let path = relpath::to_disk_path(&self.root, rel);
        let fd = match self.open_dir(rel) {
            Ok(fd) => fd,
            Err(errno) if blocked_reason(errno).is_some() => return Ok(()),
            Err(errno) => return Err(Error::io(&path, errno.into())),
        };
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let mode = Mode::from_raw_mode(mode);
        match rfs::chmod(proc_path.as_str(), mode) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => {
                // No /proc: the directory itself, opened for reading.
                let dir = self
                    .open_dir_with(
                        rel,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    )
                    .map_err(|e| Error::io(&path, e.into()))?;
                rfs::fchmod(&dir, mode).map_err(|e| Error::io(&path, e.into()))
            }
            Err(errno) => Err(Error::io(&path, errno.into())),
        }
    }

    /// The directory `rel` (empty: the root) as a handle, never through a
    /// symlink.
    fn open_dir(&self, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
        self.open_dir_with(rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// The directory `rel` opened with `flags` beneath the root, never
    /// through a symlink.
    fn open_dir_with(&self, rel: &[u8], flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let path: &OsStr = if rel.is_empty() {
            OsStr::new(".")
        } else {
            OsStr::from_bytes(rel)
        };
        match rfs::openat2(&self.dir, path, flags, Mode::empty(), BENEATH) {
            Err(errno) if no_openat2(errno) => {
                if rel.is_empty() {
                    return rfs::openat(&self.dir, ".", flags, Mode::empty());
                }
                let (parent_rel, name) = split(rel);
                let parent = self.walk(parent_rel)?;
                rfs::openat(
                    &parent,
                    OsStr::from_bytes(name),
                    flags | OFlags::NOFOLLOW | OFlags::DIRECTORY,
                    Mode::empty(),
                )
            }
            other => other,
        }
    }

    /// Opens `rel` one name at a time, none of them a symlink.
    fn walk(&self, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
        let mut current = rfs::openat(
            &self.dir,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if rel.is_empty() {
            return Ok(current);
        }
        for component in rel.split(|&b| b == b'/') {
            current = open_child_dir(&current, component)?;
        }
        Ok(current)
    }

    /// Makes the missing directories of `rel`, each relative to the handle
    /// of its parent. `Err(why)` when a component is not a directory.
    fn make_dirs(&self, rel: &[u8]) -> Result<std::result::Result<OwnedFd, &'static str>> {
        let mut current = self
            .walk(b"")
            .map_err(|e| Error::io(&self.root, e.into()))?;
        let mut path = self.root.clone();
        for component in rel.split(|&b| b == b'/') {
            path.push(OsStr::from_bytes(component));
            let name = OsStr::from_bytes(component);
            match rfs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(Error::io(&path, errno.into())),
            }
            current = match open_child_dir(&current, component) {
                Ok(fd) => fd,
                Err(errno) => match blocked_reason(errno) {
                    Some(why) => return Ok(Err(why)),
                    None => return Err(Error::io(&path, errno.into())),
                },
            };
        }
        Ok(Ok(current))
    }
}

/// Whether an `openat2` error means the call itself is unavailable:
/// `ENOSYS` before Linux 5.6, `EPERM` under seccomp profiles that predate
/// it (older Docker releases), which then use the component walk.
fn no_openat2(errno: Errno) -> bool {
    errno == Errno::NOSYS || errno == Errno::PERM
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&rel[..slash], &rel[slash + 1..]),
        None => (&b""[..], rel),
    }
}

fn open_child_dir(parent: &OwnedFd, name: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    rfs::openat(
        parent,
        OsStr::from_bytes(name),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The refusals a resolution can meet, in words; other errors are I/O
/// errors.
fn blocked_reason(errno: Errno) -> Option<&'static str> {
    match errno {
        // RESOLVE_NO_SYMLINKS, or O_NOFOLLOW on a symlink.
        Errno::LOOP => Some("a parent directory is a symlink"),
        Errno::NOTDIR => Some("a parent is not a directory"),
        // RESOLVE_BENEATH: the path would leave the root.
        Errno::XDEV => Some("a parent leads outside the replica"),
        Errno::NOENT => Some("a parent is missing"),
        _ => None,
    }
}

impl Place {
    /// The parent directory's path, for messages and directory fsyncs.
    pub fn parent_path(&self) -> &Path {
        &self.parent_path
    }

    /// The parent directory relative to the root (empty: the root), for
    /// [`ConfinedRoot::sync_dir`].
    pub fn parent_rel(&self) -> &[u8] {
        &self.parent_rel
    }

    /// The full path, for messages only: never used to reach the file.
    pub fn display_path(&self) -> PathBuf {
        self.parent_path.join(OsStr::from_bytes(&self.name))
    }

    /// The parent directory's handle.
    pub fn parent(&self) -> BorrowedFd<'_> {
        self.parent.as_fd()
    }

    /// The last name of the path.
    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(&self.name)
    }

    fn io(&self, errno: Errno) -> Error {
        Error::io(self.display_path(), errno.into())
    }

    /// `lstat` of the name; `None` when nothing is there.
    pub fn stat(&self) -> Result<Option<rfs::Stat>> {
        match rfs::statat(&self.parent, self.name(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(self.io(errno)),
        }
    }

    /// The kind of what is there now.
    pub fn kind(&self) -> Result<DiskKind> {
        let Some(stat) = self.stat()? else {
            return Ok(DiskKind::Missing);
        };
        Ok(match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => DiskKind::Dir(stat.st_mode & 0o7777),
            FileType::RegularFile => DiskKind::File,
            FileType::Symlink => DiskKind::Symlink(self.read_link()?),
            _ => DiskKind::Other,
        })
    }

    /// The target of the symlink at the name.
    pub fn read_link(&self) -> Result<Vec<u8>> {
        rfs::readlinkat(&self.parent, self.name(), Vec::new())
            .map(|target| target.into_bytes())
            .map_err(|e| self.io(e))
    }

    /// Removes a non-directory (`dir` false) or an empty directory.
    pub fn remove(&self, dir: bool) -> std::io::Result<()> {
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rfs::unlinkat(&self.parent, self.name(), flags)?)
    }

    /// Creates a directory with `mode`.
    pub fn make_dir(&self, mode: u32) -> std::io::Result<()> {
        Ok(rfs::mkdirat(
            &self.parent,
            self.name(),
            Mode::from_raw_mode(mode),
        )?)
    }

    /// Sets the permission bits of the file or directory at the name; a
    /// symlink there is left alone (Linux cannot chmod a symlink).
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        let mode = Mode::from_raw_mode(mode);
        // `fchmodat2(AT_SYMLINK_NOFOLLOW)` (Linux 6.6) does it in one
        // step. rustix 1.1 answers EOPNOTSUPP for that flag without asking
        // the kernel, which the kernel also answers for a symlink: either
        // way the handle-based way below decides.
        match rfs::chmodat(&self.parent, self.name(), mode, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) => return Ok(()),
            Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) | Err(Errno::INVAL) => {}
            Err(errno) => return Err(self.io(errno)),
        }
        // An O_PATH handle of the name itself (never of a symlink's
        // target), then chmod through its /proc entry: fchmod does not take
        // O_PATH handles.
        let fd = rfs::openat(
            &self.parent,
            self.name(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(e))?;
        let stat = rfs::fstat(&fd).map_err(|e| self.io(e))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Ok(());
        }
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        match rfs::chmod(proc_path.as_str(), mode) {
            Ok(()) => Ok(()),
            // No /proc: open the object itself (directories and readable
            // files), which cannot be a symlink with O_NOFOLLOW, and chmod
            // it only if it is the object checked above (the name may have
            // been given to another file meanwhile).
            Err(Errno::NOENT) => {
                let opened = rfs::openat(
                    &self.parent,
                    self.name(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io(e))?;
                let now = rfs::fstat(&opened).map_err(|e| self.io(e))?;
                if (now.st_dev, now.st_ino) != (stat.st_dev, stat.st_ino) {
                    return Err(Error::io(
                        self.display_path(),
                        std::io::Error::other("replaced by another file while its mode was set"),
                    ));
                }
                rfs::fchmod(&opened, mode).map_err(|e| self.io(e))
            }
            Err(errno) => Err(self.io(errno)),
        }
    }

    /// Sets the modification time of what is at the name (a symlink
    /// itself, never its target), leaving the access time alone.
    pub fn set_mtime(&self, mtime: Timestamp) -> Result<()> {
        rfs::utimensat(
            &self.parent,
            self.name(),
            &mtime_only(mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(e))
    }

    /// Renames `from` (a file of ours, outside the tree) to the name, only
    /// if nothing is there (`AlreadyExists` otherwise): nothing a user
    /// created meanwhile can be replaced.
    pub fn rename_in_new(&self, from: &Path) -> std::io::Result<()> {
        match rfs::renameat_with(
            rfs::CWD,
            from,
            &self.parent,
            self.name(),
            rfs::RenameFlags::NOREPLACE,
        ) {
            // Filesystems without RENAME_NOREPLACE: check, then rename.
            Err(Errno::INVAL) | Err(Errno::NOSYS) => {
                if self.stat().map_err(std::io::Error::other)?.is_some() {
                    return Err(std::io::ErrorKind::AlreadyExists.into());
                }
                Ok(rfs::renameat(rfs::CWD, from, &self.parent, self.name())?)
            }
            other => Ok(other?),
        }
    }

    /// Moves what is at the name to `to` (a path of ours, outside the
    /// tree), if nothing is at `to` yet.
    pub fn move_out(&self, to: &Path) -> std::io::Result<()> {
        match rfs::renameat_with(
            &self.parent,
            self.name(),
            rfs::CWD,
            to,
            rfs::RenameFlags::NOREPLACE,
        ) {
            Err(Errno::INVAL) | Err(Errno::NOSYS) => {
                if to.symlink_metadata().is_ok() {
                    return Err(std::io::ErrorKind::AlreadyExists.into());
                }
                Ok(rfs::renameat(&self.parent, self.name(), rfs::CWD, to)?)
            }
            other => Ok(other?),
        }
    }

    /// Creates the symlink `name -> target`; `AlreadyExists` if something
    /// is there.
    pub fn symlink(&self, target: &[u8]) -> std::io::Result<()> {
        Ok(rfs::symlinkat(
            OsStr::from_bytes(target),
            &self.parent,
            self.name(),
        )?)
    }

    /// Makes a FIFO, socket or device node ([`crate::ops::special_kind`])
    /// at the name, with `mode` (less the umask; set exactly afterwards).
    pub fn make_node(&self, kind: u32, mode: u32, major: u32, minor: u32) -> std::io::Result<()> {
        use crate::ops::special_kind;
        let file_type = match kind {
            special_kind::FIFO => FileType::Fifo,
            special_kind::SOCKET => FileType::Socket,
            special_kind::CHAR_DEVICE => FileType::CharacterDevice,
            special_kind::BLOCK_DEVICE => FileType::BlockDevice,
            _ => {
                return Err(std::io::Error::from_raw_os_error(
                    Errno::INVAL.raw_os_error(),
                ))
            }
        };
        Ok(rfs::mknodat(
            &self.parent,
            self.name(),
            file_type,
            Mode::from_raw_mode(mode & 0o777),
            rfs::makedev(major, minor),
        )?)
    }

    /// Renames the entry `temp` of the same directory over the name.
    pub fn rename_sibling(&self, temp: &OsStr) -> std::io::Result<()> {
        Ok(rfs::renameat(
            &self.parent,
            temp,
            &self.parent,
            self.name(),
        )?)
    }

    /// Creates the symlink `temp` -> `target` in the parent directory.
    pub fn symlink_sibling(&self, temp: &OsStr, target: &[u8]) -> std::io::Result<()> {
        Ok(rfs::symlinkat(
            OsStr::from_bytes(target),
            &self.parent,
            temp,
        )?)
    }

    /// Removes the entry `temp` of the parent directory if it is there.
    pub fn remove_sibling(&self, temp: &OsStr) -> std::io::Result<()> {
        match rfs::unlinkat(&self.parent, temp, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// `lstat` of the entry `temp` of the parent directory; `None` when
    /// nothing is there.
    pub fn stat_sibling(&self, temp: &OsStr) -> std::io::Result<Option<rfs::Stat>> {
        match rfs::statat(&self.parent, temp, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Renames the entry `from` of the parent directory to `to`, another
    /// entry of it, only if nothing is at `to` (`AlreadyExists`
    /// otherwise).
    pub fn rename_sibling_new(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        match rfs::renameat_with(
            &self.parent,
            from,
            &self.parent,
            to,
            rfs::RenameFlags::NOREPLACE,
        ) {
            Err(Errno::INVAL) | Err(Errno::NOSYS) => {
                if self.stat_sibling(to)?.is_some() {
                    return Err(std::io::ErrorKind::AlreadyExists.into());
                }
                Ok(rfs::renameat(&self.parent, from, &self.parent, to)?)
            }
            other => Ok(other?),
        }
    }

    /// Creates the new file `temp` in the parent directory for writing
    /// (mode 0600 until the caller sets the final one).
    pub fn create_sibling(&self, temp: &OsStr) -> std::io::Result<File> {
        let fd = rfs::openat(
            &self.parent,
            temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Creates a new file at the name itself (nothing may be there).
    pub fn create_new(&self) -> std::io::Result<File> {
        self.create_sibling(OsStr::from_bytes(&self.name))
    }

    /// Opens the regular file at the name for reading, never through a
    /// symlink and without blocking on a FIFO or device there (refused).
    pub fn open_read(&self) -> std::io::Result<File> {
        let fd = rfs::openat(
            &self.parent,
            self.name(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", self.display_path().display()),
            ));
        }
        Ok(File::from(fd))
    }
}

/// `utimensat` times that set the modification time to `mtime`, exactly
/// (seconds are a full `i64`: any year the filesystem can hold), and leave
/// the access time alone.
fn mtime_only(mtime: Timestamp) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime.secs,
            tv_nsec: mtime.nanos.into(),
        },
    }
}

/// Sets the modification time of an open file (see [`Place::set_mtime`]).
pub fn set_file_mtime(file: &File, mtime: Timestamp) -> std::io::Result<()> {
    rfs::futimens(file, &mtime_only(mtime)).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_escape() -> (tempfile::TempDir, tempfile::TempDir, ConfinedRoot) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let root = ConfinedRoot::open(dir.path()).unwrap();
        (dir, outside, root)
    }

    #[test]
    fn a_symlinked_parent_is_blocked_and_nothing_is_created_outside() {
        let (_dir, outside, root) = root_with_escape();
        for create in [false, true] {
            match root.locate(b"link/passwd", create).unwrap() {
                Located::Blocked(why) => assert!(why.contains("symlink"), "{why}"),
                Located::At(place) => panic!("resolved {:?}", place.display_path()),
            }
            match root.locate(b"link/deeper/file", create).unwrap() {
                Located::Blocked(_) => {}
                Located::At(place) => panic!("resolved {:?}", place.display_path()),
            }
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(root.kind(b"link/x").unwrap(), DiskKind::Missing);
    }

    #[test]
    fn the_last_name_may_be_a_symlink_and_is_not_followed() {
        let (dir, outside, root) = root_with_escape();
        let Located::At(place) = root.locate(b"link", false).unwrap() else {
            panic!("blocked");
        };
        assert!(matches!(place.kind().unwrap(), DiskKind::Symlink(_)));
        place.set_mode(0o600).unwrap();
        place.set_mtime(Timestamp::new(1, 0).unwrap()).unwrap();
        assert_ne!(
            std::fs::metadata(outside.path())
                .unwrap()
                .modified()
                .unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1)
        );
        assert!(place.open_read().is_err());
        assert!(root.open_file(b"link").is_err());
        drop(dir);
    }

    #[test]
    fn missing_parents_are_made_beneath_the_root() {
        let (dir, _outside, root) = root_with_escape();
        let Located::At(place) = root.locate(b"real/a/b/file", true).unwrap() else {
            panic!("blocked");
        };
        assert!(dir.path().join("real/a/b").is_dir());
        let mut file = place.create_new().unwrap();
        std::io::Write::write_all(&mut file, b"x").unwrap();
        assert_eq!(root.kind(b"real/a/b/file").unwrap(), DiskKind::File);
        assert!(matches!(root.kind(b"real/a").unwrap(), DiskKind::Dir(_)));
        assert!(matches!(
            root.locate(b"real/a/b/file/under", false).unwrap(),
            Located::Blocked("a parent is not a directory")
        ));
        assert!(root.locate(b"../x", false).is_err());
        assert!(root.locate(b".syncreplica/state.db", false).is_err());
    }

    #[test]
    fn directories_are_listed_through_handles_and_fifos_never_opened() {
        let (dir, outside, root) = root_with_escape();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::write(dir.path().join("real/file"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("real/sub")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("real/fifo"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut listing = root.list_dir(b"real").unwrap();
        listing.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listing,
            vec![
                (b"fifo".to_vec(), FileType::Fifo),
                (b"file".to_vec(), FileType::RegularFile),
                (b"sub".to_vec(), FileType::Directory),
            ]
        );
        assert!(root
            .list_dir(b"")
            .unwrap()
            .contains(&(b"link".to_vec(), FileType::Symlink)));
        // A symlinked directory is never listed (nor what it points to).
        // (ENOTDIR: O_DIRECTORY is checked before O_NOFOLLOW.)
        assert!(matches!(
            root.list_dir(b"link").unwrap_err(),
            Errno::LOOP | Errno::NOTDIR
        ));
        assert_eq!(root.list_dir(b"real/file").unwrap_err(), Errno::NOTDIR);
        // A FIFO is refused, not waited on; so is a path no packet may name.
        assert!(root.open_file(b"real/fifo").is_err());
        assert!(root.open_file(b"real/sub").is_err());
        assert!(root.open_file(b"real/../real/file").is_err());
        assert!(root.open_file(b"real/file").is_ok());
        root.sync_dir(b"real/fifo").unwrap();
        root.sync_dir(b"link").unwrap();
        root.sync_dir(b"real").unwrap();
        root.sync_dir(b"").unwrap();
    }

    #[test]
    fn set_mode_changes_files_and_directories_not_symlink_targets() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, outside, root) = root_with_escape();
        std::fs::write(dir.path().join("real/file"), b"x").unwrap();
        let before = std::fs::metadata(outside.path())
            .unwrap()
            .permissions()
            .mode();
        for (rel, mode) in [
            (&b"real/file"[..], 0o640),
            (b"real", 0o750),
            (b"link", 0o700),
        ] {
            let Located::At(place) = root.locate(rel, false).unwrap() else {
                panic!("blocked");
            };
            place.set_mode(mode).unwrap();
        }
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("real/file")), 0o640);
        assert_eq!(mode(&dir.path().join("real")), 0o750);
        assert_eq!(
            std::fs::metadata(outside.path())
                .unwrap()
                .permissions()
                .mode(),
            before
        );
    }
}
