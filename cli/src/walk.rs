//! The files `upload -r DIR` stores: every regular file under a directory, each
//! named by its path relative to that directory.

use std::path::{Path, PathBuf};

use crate::error::ClientError;

/// A file to upload and the name to store it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub name: String,
}

/// What walking a directory found: files to upload (sorted by name), and entries
/// that could not be read or named (path, reason), which the caller reports.
#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<Found>,
    pub skipped: Vec<(String, String)>,
}

/// Every regular file under `dir`, named by its path relative to `dir` with `/`
/// separators. Symbolic links are not followed (no loops, nothing outside `dir`).
/// A subdirectory that cannot be read is reported in [`Walk::skipped`] and the walk
/// goes on; `dir` itself not being a readable directory is an error.
pub fn files_under(dir: &Path) -> Result<Walk, ClientError> {
    let meta = std::fs::metadata(dir).map_err(|e| ClientError::io(dir.display(), e))?;
    if !meta.is_dir() {
        return Err(ClientError::InvalidArgument(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let top = std::fs::read_dir(dir).map_err(|e| ClientError::io(dir.display(), e))?;
    let mut walk = Walk::default();
    let mut pending = vec![(String::new(), top)];
    while let Some((prefix, entries)) = pending.pop() {
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    walk.skipped
                        .push((format!("{}/{prefix}", dir.display()), e.to_string()));
                    continue;
                }
            };
            let path = entry.path();
            let Some(base) = entry.file_name().to_str().map(str::to_string) else {
                walk.skipped.push((
                    path.display().to_string(),
                    "the file name is not UTF-8".to_string(),
                ));
                continue;
            };
            let name = format!("{prefix}{base}");
            match entry.file_type() {
                Ok(t) if t.is_dir() => match std::fs::read_dir(&path) {
                    Ok(rd) => pending.push((format!("{name}/"), rd)),
                    Err(e) => walk
                        .skipped
                        .push((path.display().to_string(), e.to_string())),
                },
                Ok(t) if t.is_file() => walk.files.push(Found { path, name }),
                // Symbolic links, sockets, devices: not books.
                Ok(_) => {}
                Err(e) => walk
                    .skipped
                    .push((path.display().to_string(), e.to_string())),
            }
        }
    }
    walk.files.sort_by(|a, b| a.name.cmp(&b.name));
    walk.skipped.sort();
    Ok(walk)
}

#[cfg(test)]
mod tests {
    use super::files_under;

    #[test]
    fn finds_every_regular_file_named_relative_to_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::create_dir(root.join("empty")).expect("mkdir");
        for f in ["top.txt", "a/one.txt", "a/b/two.txt"] {
            std::fs::write(root.join(f), f).expect("write");
        }
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("link.txt")).expect("symlink");
        let w = files_under(root).expect("walk");
        let names: Vec<&str> = w.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a/b/two.txt", "a/one.txt", "top.txt"]);
        assert_eq!(w.files[0].path, root.join("a/b/two.txt"));
        assert!(w.skipped.is_empty(), "{:?}", w.skipped);
    }

    #[test]
    fn a_missing_directory_or_a_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let e = files_under(&missing).expect_err("missing");
        assert!(e.to_string().contains("nope"), "{e}");
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "x").expect("write");
        let e = files_under(&file).expect_err("a file");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
