//! Opening and deleting inside a local warehouse through directory handles, never through a
//! path.
//!
//! Anyone who can write a local warehouse could swap a batch directory (or a directory above
//! it) for a symbolic link between a check and a delete, and make garbage collection delete
//! what the link points to (or a commit record what it points to). So nothing here follows a
//! link: a file is opened by the kernel refusing every link on its way (`openat2`), every
//! directory below the warehouse root is opened relative to its parent's handle with
//! `O_NOFOLLOW`, and entries are removed with `unlinkat` on the handle that was checked. A link met where a directory should be
//! stops the deletion; a link where a file should be is removed itself, which never touches its
//! target.

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, openat, openat2, statat, unlinkat,
};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Directory levels a never-committed batch may hold below its own directory.
const MAX_DEPTH: usize = 32;

const DIRECTORY: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Why a local deletion stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalDeleteError {
    #[error(
        "{path} is, or lies under, a symbolic link or a file where a directory belongs; garbage \
         collection never follows links (replace it with the batch's own directory, or remove it)"
    )]
    NotADirectory { path: String },
    #[error("{path} nests deeper than {MAX_DEPTH} directories")]
    TooDeep { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, LocalDeleteError>;

/// What a deletion removed: files (links included) and the bytes of the regular files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub files: i64,
    pub bytes: i64,
}

/// A directory opened without following links, with its parent (to remove it when empty).
struct Opened {
    parent: OwnedFd,
    dir: OwnedFd,
    name: String,
}

/// Opens the warehouse root: the operator's configured (canonical) directory, by path.
fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(root, DIRECTORY.difference(OFlags::NOFOLLOW), Mode::empty()).map_err(|e| {
        LocalDeleteError::Io {
            path: root.display().to_string(),
            source: e.into(),
        }
    })
}

/// Opens `relative` (a `/`-separated path below `root`) one segment at a time, each relative
/// to its parent's handle. `Ok(None)` when a segment does not exist.
fn open_below(root: &Path, relative: &str) -> Result<Option<Opened>> {
    let not_a_directory = || LocalDeleteError::NotADirectory {
        path: relative.to_owned(),
    };
    let segments: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| matches!(*s, "." | "..")) {
        return Err(not_a_directory());
    }
    let mut parent = None;
    let mut current = open_root(root)?;
    for segment in &segments {
        match openat(&current, *segment, DIRECTORY, Mode::empty()) {
            Ok(child) => parent = Some(std::mem::replace(&mut current, child)),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(not_a_directory()),
            Err(e) => {
                return Err(LocalDeleteError::Io {
                    path: relative.to_owned(),
                    source: e.into(),
                });
            }
        }
    }
    // No segment at all: the root itself is never a batch directory.
    let (Some(parent), Some(name)) = (parent, segments.last()) else {
        return Err(not_a_directory());
    };
    Ok(Some(Opened {
        parent,
        dir: current,
        name: (*name).to_owned(),
    }))
}

/// A regular file opened for reading, with its size.
pub struct LocalFile {
    pub file: std::fs::File,
    pub size: u64,
}

/// Opens the regular file `relative` (to `root`) for reading, reached without following links.
/// `Ok(None)` when it (or a directory above it) is not there.
///
/// The kernel resolves the whole path in one call (`openat2` refusing every link and any way
/// out of the root): a commit checks its files on the request's critical path, and the walk
/// one directory at a time costs two system calls per level. A kernel without `openat2` (or a
/// sandbox that forbids it) gets the walk.
///
/// # Errors
/// `NotADirectory` when the file or a directory above it is a link, or the file is not a
/// regular file; `Io` when it cannot be opened.
pub fn open_file(root: &Path, relative: &str) -> Result<Option<LocalFile>> {
    split_file_path(relative)?;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    let opened = openat2(open_root(root)?, relative, FILE, Mode::empty(), resolve);
    let file = match opened {
        Err(Errno::NOSYS | Errno::PERM) => return open_file_by_walk(root, relative),
        other => other,
    };
    regular_file(relative, file)
}

/// [`open_file`] one directory at a time, each relative to its parent's handle.
fn open_file_by_walk(root: &Path, relative: &str) -> Result<Option<LocalFile>> {
    let (dir, name) = split_file_path(relative)?;
    let parent = if dir.is_empty() {
        open_root(root)?
    } else {
        match open_below(root, dir)? {
            Some(opened) => opened.dir,
            None => return Ok(None),
        }
    };
    regular_file(relative, openat(&parent, name, FILE, Mode::empty()))
}

/// Flags opening a file to read. Non-blocking: a FIFO in a file's place must not hang the
/// open; it is refused by [`regular_file`].
const FILE: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// A file path's directory and name; a path with `.` or `..` in it, or no name, is refused.
fn split_file_path(relative: &str) -> Result<(&str, &str)> {
    let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
    let dotted = relative.split('/').any(|s| matches!(s, "." | ".."));
    if dotted || name.is_empty() || dir.starts_with('/') {
        return Err(LocalDeleteError::NotADirectory {
            path: relative.to_owned(),
        });
    }
    Ok((dir, name))
}

/// The outcome of opening `relative`: the file when it is a regular one.
fn regular_file(relative: &str, opened: rustix::io::Result<OwnedFd>) -> Result<Option<LocalFile>> {
    let linked = || LocalDeleteError::NotADirectory {
        path: relative.to_owned(),
    };
    let file = match opened {
        Ok(file) => std::fs::File::from(file),
        Err(Errno::NOENT) => return Ok(None),
        // A link on the way (ELOOP), a way out of the root (EXDEV), a file where a directory
        // belongs (ENOTDIR).
        Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR) => return Err(linked()),
        Err(e) => {
            return Err(LocalDeleteError::Io {
                path: relative.to_owned(),
                source: e.into(),
            });
        }
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(Some(LocalFile {
            size: meta.len(),
            file,
        })),
        Ok(_) => Err(linked()),
        Err(source) => Err(LocalDeleteError::Io {
            path: relative.to_owned(),
            source,
        }),
    }
}

/// Removes the named files of the directory `dir` (relative to `root`), then the directory if
/// that left it empty. Files already gone count as removed (a rerun after a crash); so does a
/// directory already gone.
///
/// # Errors
/// `NotADirectory` when `dir` or a directory above it is a link or a file; `Io` when an entry
/// cannot be removed (a directory in a file's place included).
pub fn remove_files(root: &Path, dir: &str, names: &[&str]) -> Result<()> {
    let Some(opened) = open_below(root, dir)? else {
        return Ok(());
    };
    for name in names {
        match unlinkat(&opened.dir, *name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(LocalDeleteError::Io {
                    path: format!("{dir}/{name}"),
                    source: e.into(),
                });
            }
        }
    }
    remove_if_empty(&opened);
    Ok(())
}

/// Removes the directory `dir` (relative to `root`) and everything it holds, links removed
/// themselves and never followed.
///
/// # Errors
/// As [`remove_files`], and `TooDeep` past [`MAX_DEPTH`] levels.
pub fn remove_tree(root: &Path, dir: &str) -> Result<Removed> {
    let Some(opened) = open_below(root, dir)? else {
        return Ok(Removed::default());
    };
    let mut removed = Removed::default();
    empty_dir(&opened.dir, dir, 0, &mut removed)?;
    remove_if_empty(&opened);
    Ok(removed)
}

/// Removes one file `relative` to `root`, reached without following links. `Ok(false)` when it
/// was not there.
///
/// # Errors
/// As [`remove_files`].
pub fn remove_file(root: &Path, relative: &str) -> Result<bool> {
    let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
    let parent = if dir.is_empty() {
        open_root(root)?
    } else {
        match open_below(root, dir)? {
            Some(opened) => opened.dir,
            None => return Ok(false),
        }
    };
    match unlinkat(&parent, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(LocalDeleteError::Io {
            path: relative.to_owned(),
            source: e.into(),
        }),
    }
}

/// Removes everything `dir` holds (`shown` names it in errors).
fn empty_dir(dir: &OwnedFd, shown: &str, depth: usize, removed: &mut Removed) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(LocalDeleteError::TooDeep {
            path: shown.to_owned(),
        });
    }
    let io = |path: String, e: Errno| LocalDeleteError::Io {
        path,
        source: e.into(),
    };
    // Names first, then removals: a directory is not changed while it is read.
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(|e| io(shown.to_owned(), e))? {
        let entry = entry.map_err(|e| io(shown.to_owned(), e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(entry.file_name().to_owned());
        }
    }
    for name in names {
        let path = format!("{shown}/{}", name.to_string_lossy());
        let stat = match statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(io(path, e)),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            match openat(dir, name.as_c_str(), DIRECTORY, Mode::empty()) {
                Ok(child) => empty_dir(&child, &path, depth + 1, removed)?,
                Err(Errno::NOENT) => continue,
                // Swapped for a link since the stat: its entry is removed below.
                Err(Errno::LOOP | Errno::NOTDIR) => {}
                Err(e) => return Err(io(path, e)),
            }
            match unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::NOTDIR) => {
                    unlinkat(dir, name.as_c_str(), AtFlags::empty()).map_err(|e| io(path, e))?;
                    removed.files += 1;
                }
                Err(e) => return Err(io(path, e)),
            }
        } else {
            match unlinkat(dir, name.as_c_str(), AtFlags::empty()) {
                Ok(()) => {
                    removed.files += 1;
                    if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile {
                        removed.bytes += stat.st_size;
                    }
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io(path, e)),
            }
        }
    }
    Ok(())
}

/// Removes an opened directory from its parent if it is empty (a stray file keeps it, and
/// shows as an orphan).
fn remove_if_empty(opened: &Opened) {
    let _ = unlinkat(&opened.parent, opened.name.as_str(), AtFlags::REMOVEDIR);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("ns/t/_batch=a")).expect("mkdir");
        std::fs::write(root.path().join("ns/t/_batch=a/part-0.parquet"), b"12345").expect("write");
        root
    }

    #[test]
    fn removes_named_files_and_the_emptied_directory() {
        let root = tree();
        remove_files(
            root.path(),
            "ns/t/_batch=a",
            &["part-0.parquet", "gone.parquet"],
        )
        .expect("removed");
        assert!(!root.path().join("ns/t/_batch=a").exists());
        // A rerun finds nothing and succeeds.
        remove_files(root.path(), "ns/t/_batch=a", &["part-0.parquet"]).expect("rerun");
    }

    #[test]
    fn a_stray_file_keeps_the_directory() {
        let root = tree();
        std::fs::write(root.path().join("ns/t/_batch=a/stray"), b"x").expect("write");
        remove_files(root.path(), "ns/t/_batch=a", &["part-0.parquet"]).expect("removed");
        assert!(root.path().join("ns/t/_batch=a/stray").exists());
    }

    #[test]
    fn never_follows_a_directory_link() {
        let root = tree();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("part-0.parquet"), b"precious").expect("write");
        std::fs::create_dir_all(outside.path().join("sub")).expect("mkdir");
        std::fs::write(outside.path().join("sub/part-0.parquet"), b"precious").expect("write");
        // The batch directory itself, and a directory above one, swapped for links.
        std::fs::remove_dir_all(root.path().join("ns/t/_batch=a")).expect("rm");
        symlink(outside.path(), root.path().join("ns/t/_batch=a")).expect("link");
        symlink(outside.path(), root.path().join("ns/u")).expect("link");
        for dir in ["ns/t/_batch=a", "ns/u/sub"] {
            let refused = remove_files(root.path(), dir, &["part-0.parquet"]);
            assert!(
                matches!(refused, Err(LocalDeleteError::NotADirectory { .. })),
                "{dir}"
            );
            let refused = remove_tree(root.path(), dir);
            assert!(
                matches!(refused, Err(LocalDeleteError::NotADirectory { .. })),
                "{dir}"
            );
        }
        assert!(!remove_file(root.path(), "ns/u/sub/part-0.parquet").is_ok_and(|gone| gone));
        assert_eq!(
            std::fs::read(outside.path().join("part-0.parquet")).ok(),
            Some(b"precious".to_vec())
        );
        assert!(outside.path().join("sub/part-0.parquet").exists());
    }

    /// What opening a file answered, comparable between the two ways it is opened.
    fn outcome(opened: Result<Option<LocalFile>>) -> String {
        match opened {
            Ok(Some(opened)) => format!("{} bytes", opened.size),
            Ok(None) => "missing".into(),
            Err(LocalDeleteError::NotADirectory { .. }) => "refused".into(),
            Err(e) => format!("{e}"),
        }
    }

    #[test]
    fn a_file_opens_only_without_links_and_both_ways_agree() {
        let root = tree();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("part-0.parquet"), b"precious").expect("write");
        let batch = root.path().join("ns/t/_batch=a");
        symlink(
            outside.path().join("part-0.parquet"),
            batch.join("file-link"),
        )
        .expect("link");
        symlink(outside.path(), root.path().join("ns/dir-link")).expect("link");
        symlink("_batch=a", root.path().join("ns/t/inner-link")).expect("link");
        std::fs::create_dir(batch.join("sub")).expect("mkdir");
        std::fs::write(root.path().join("top"), b"1").expect("write");
        let fifo = batch.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .is_ok_and(|s| s.success())
        );
        let cases = [
            ("ns/t/_batch=a/part-0.parquet", "5 bytes"),
            ("ns/t//_batch=a/part-0.parquet", "5 bytes"),
            ("top", "1 bytes"),
            ("ns/t/_batch=a/gone.parquet", "missing"),
            ("ns/none/_batch=a/part-0.parquet", "missing"),
            ("ns/t/_batch=a/file-link", "refused"),
            ("ns/dir-link/part-0.parquet", "refused"),
            ("ns/t/inner-link/part-0.parquet", "refused"),
            ("ns/t/_batch=a/part-0.parquet/x", "refused"),
            ("ns/t/_batch=a/sub", "refused"),
            ("ns/t/_batch=a/fifo", "refused"),
            ("ns/t/../t/_batch=a/part-0.parquet", "refused"),
            ("ns/t/./_batch=a/part-0.parquet", "refused"),
            ("ns/t/_batch=a/", "refused"),
            ("/ns/t/_batch=a/part-0.parquet", "refused"),
            ("", "refused"),
        ];
        for (relative, expected) in cases {
            assert_eq!(
                outcome(open_file(root.path(), relative)),
                expected,
                "{relative}"
            );
            let walked = open_file_by_walk(root.path(), relative);
            assert_eq!(outcome(walked), expected, "{relative}, walking");
        }
    }

    #[test]
    fn a_tree_goes_whole_with_links_removed_not_followed() {
        let root = tree();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("keep"), b"precious").expect("write");
        let batch = root.path().join("ns/t/_batch=a");
        std::fs::create_dir_all(batch.join("x/y")).expect("mkdir");
        std::fs::write(batch.join("x/y/z"), b"123").expect("write");
        symlink(outside.path(), batch.join("x/link")).expect("link");
        let removed = remove_tree(root.path(), "ns/t/_batch=a").expect("removed");
        assert_eq!(removed, Removed { files: 3, bytes: 8 });
        assert!(!batch.exists());
        assert!(outside.path().join("keep").exists());
    }
}
