//! Reading and writing PEM files.
//!
//! Writes go through a temporary file in the same directory followed by a
//! rename, so a crash never leaves a half-written key or certificate behind.
//! Private keys are created with mode 0600 from the start (not chmod-ed after
//! the fact) so they are never readable by other users, even briefly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TlsError;

/// Reads a whole text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` (and parents) if needed.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::WriteFile {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file readable by everyone allowed by the umask (certificates).
pub(crate) fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_atomic(path, contents, 0o644)
}

/// Writes a file only its owner can read (private keys).
pub(crate) fn write_secret(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_atomic(path, contents, 0o600)
}

fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let tmp = temp_path(path);
    let result = write_new(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|source| TlsError::WriteFile {
            path: path.to_path_buf(),
            source,
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    // A stale temp file from an earlier crash keeps its old mode: reset it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}
