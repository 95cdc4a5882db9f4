//! The sandboxes, read-only, as Mesos' `/files` API serves them: `browse` lists a
//! directory, `read` returns a chunk of a file as JSON, `download` streams a whole file.
//!
//! Every path is relative to the sandboxes root (`<framework_id>/<task_id>/stdout`). A path
//! with `..` or a leading `/` is refused before the file system is touched; what remains is
//! canonicalized (following symlinks) and must still lie under the root, so a symlink a task
//! planted in its sandbox cannot reach the rest of the host.

use std::io::SeekFrom;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{HttpError, HttpState};

/// Longest path accepted, in bytes (Linux' `PATH_MAX`).
const MAX_PATH_LEN: usize = 4_096;
/// Most bytes one `read` returns, whatever `length` asks for.
pub(crate) const MAX_READ_LEN: u64 = 16 * 1024 * 1024;
/// Most entries one `browse` lists (the first ones by name).
const MAX_ENTRIES: usize = 10_000;
/// Chunk size of `download`.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct FileQuery {
    path: Option<String>,
    offset: Option<String>,
    length: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FileEntry {
    /// Relative to the sandboxes root, ready to be passed back as `path`.
    path: String,
    size: u64,
    /// As `ls -l` prints it: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`.
    mode: String,
    /// Seconds since the Unix epoch.
    mtime: i64,
    nlink: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReadReply {
    data: String,
    offset: u64,
}

pub(crate) async fn browse(State(state): State<HttpState>, Query(query): Query<FileQuery>) -> Result<Json<Vec<FileEntry>>, HttpError> {
    let requested = query.path.unwrap_or_default();
    let dir = resolve(&state.sandboxes, &requested).await?;
    let io = |cause| HttpError::Io { path: requested.clone(), cause };
    if !tokio::fs::metadata(&dir).await.map_err(io)?.is_dir() {
        return Err(HttpError::NotADirectory { path: requested });
    }
    let relative_dir = dir.strip_prefix(state.sandboxes.as_path()).unwrap_or(Path::new("")).to_path_buf();
    let mut reader = tokio::fs::read_dir(&dir).await.map_err(io)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().await.map_err(io)? {
        if entries.len() == MAX_ENTRIES {
            break;
        }
        // Not followed: a symlink is listed as itself, so its target's size and kind stay
        // private when it points outside.
        let Ok(meta) = entry.metadata().await else { continue };
        entries.push(FileEntry {
            path: relative_dir.join(entry.file_name()).to_string_lossy().into_owned(),
            size: meta.len(),
            mode: mode_string(&meta),
            mtime: meta.mtime(),
            nlink: meta.nlink(),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Json(entries))
}

pub(crate) async fn read(State(state): State<HttpState>, Query(query): Query<FileQuery>) -> Result<Json<ReadReply>, HttpError> {
    let requested = query.path.clone().ok_or(HttpError::BadParameter { field: "path", reason: "is required".into() })?;
    let offset = number("offset", query.offset.as_deref())?;
    let length = number("length", query.length.as_deref())?;
    let file_path = resolve(&state.sandboxes, &requested).await?;
    let io = |cause| HttpError::Io { path: requested.clone(), cause };
    let meta = tokio::fs::metadata(&file_path).await.map_err(io)?;
    if meta.is_dir() {
        return Err(HttpError::IsADirectory { path: requested });
    }
    let size = meta.len();
    // As in Mesos: no offset (or -1) asks for the file's size only.
    let Some(offset) = offset else {
        return Ok(Json(ReadReply { data: String::new(), offset: size }));
    };
    if offset >= size {
        return Ok(Json(ReadReply { data: String::new(), offset }));
    }
    let length = length.unwrap_or(MAX_READ_LEN).min(MAX_READ_LEN).min(size - offset);
    let mut file = tokio::fs::File::open(&file_path).await.map_err(io)?;
    file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length).read_to_end(&mut bytes).await.map_err(io)?;
    Ok(Json(ReadReply { data: text(&bytes), offset }))
}

pub(crate) async fn download(State(state): State<HttpState>, Query(query): Query<FileQuery>) -> Result<Response, HttpError> {
    let requested = query.path.clone().ok_or(HttpError::BadParameter { field: "path", reason: "is required".into() })?;
    let file_path = resolve(&state.sandboxes, &requested).await?;
    let io = |cause| HttpError::Io { path: requested.clone(), cause };
    let meta = tokio::fs::metadata(&file_path).await.map_err(io)?;
    if meta.is_dir() {
        return Err(HttpError::IsADirectory { path: requested });
    }
    let mut file = tokio::fs::File::open(&file_path).await.map_err(io)?;
    let body = async_stream::stream! {
        let mut buffer = vec![0u8; DOWNLOAD_CHUNK];
        loop {
            match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => yield Ok::<_, std::io::Error>(Bytes::copy_from_slice(&buffer[..n])),
                Err(error) => {
                    yield Err(error);
                    break;
                }
            }
        }
    };
    let name = file_path.file_name().map(|n| n.to_string_lossy().replace('"', "")).unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Reads an optional non-negative number; `-1` means absent, as in Mesos.
fn number(field: &'static str, value: Option<&str>) -> Result<Option<u64>, HttpError> {
    match value.map(str::trim) {
        None | Some("") | Some("-1") => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| HttpError::BadParameter { field, reason: format!("{text:?} is not a non-negative integer or -1") }),
    }
}

/// The file or directory `requested` names under `root` (canonical), or why not.
pub(crate) async fn resolve(root: &Path, requested: &str) -> Result<PathBuf, HttpError> {
    if requested.len() > MAX_PATH_LEN || requested.contains('\0') {
        return Err(HttpError::BadParameter { field: "path", reason: format!("is longer than {MAX_PATH_LEN} bytes or holds a NUL") });
    }
    let relative = Path::new(requested);
    let escapes = relative
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)));
    if escapes {
        return Err(HttpError::Escapes { path: requested.to_owned() });
    }
    let canonical = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(|_| HttpError::NotFound { path: requested.to_owned() })?;
    if !canonical.starts_with(root) {
        return Err(HttpError::Escapes { path: requested.to_owned() });
    }
    Ok(canonical)
}

/// `bytes` as text: valid UTF-8 as it is, invalid bytes as U+FFFD, and a character cut in
/// half at the end left out, so that the next read (at `offset` plus the bytes of `data`)
/// starts on it whole.
fn text(bytes: &[u8]) -> String {
    let cut = incomplete_tail_len(bytes);
    String::from_utf8_lossy(&bytes[..bytes.len() - cut]).into_owned()
}

/// How many bytes at the end of `bytes` begin a UTF-8 sequence that is not complete.
fn incomplete_tail_len(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 != 0b1000_0000 {
            let needed = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

/// The `ls -l` form of a file's type and permission bits.
fn mode_string(meta: &std::fs::Metadata) -> String {
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mode = meta.permissions().mode();
    let mut out = String::with_capacity(10);
    out.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        out.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        out.push(if bits & 0o1 != 0 { 'x' } else { '-' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_at_the_end_of_a_chunk_is_left_for_the_next_read() {
        let euro = "€".as_bytes();
        assert_eq!(text(b"abc"), "abc");
        assert_eq!(text(&[b'a', euro[0], euro[1]]), "a");
        assert_eq!(text(&[b'a', euro[0], euro[1], euro[2]]), "a€");
        assert_eq!(text(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
    }

    #[test]
    fn offsets_and_lengths_are_non_negative_integers_or_minus_one() {
        assert_eq!(number("offset", None).ok(), Some(None));
        assert_eq!(number("offset", Some("-1")).ok(), Some(None));
        assert_eq!(number("offset", Some("12")).ok(), Some(Some(12)));
        assert!(matches!(number("length", Some("-5")), Err(HttpError::BadParameter { field: "length", .. })));
    }

    #[tokio::test]
    async fn parent_components_absolute_paths_and_outward_symlinks_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("f/t")).expect("mkdir");
        std::fs::write(dir.path().join("secret"), "s").expect("write");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("f/t/link")).expect("symlink");
        std::os::unix::fs::symlink("../t", root.join("f/t/inward")).expect("symlink");
        let root = std::fs::canonicalize(&root).expect("canonical");
        for bad in ["../secret", "f/../../secret", "/etc/passwd", "f/t/link"] {
            assert!(matches!(resolve(&root, bad).await, Err(HttpError::Escapes { .. })), "{bad}");
        }
        assert!(matches!(resolve(&root, "f/missing").await, Err(HttpError::NotFound { .. })));
        assert_eq!(resolve(&root, "f/t/inward").await.ok(), Some(root.join("f/t")));
        assert_eq!(resolve(&root, "").await.ok(), Some(root.clone()));
    }
}
