//! The sandboxes, read-only, as Mesos' `/files` API serves them: `browse` lists a
//! directory, `read` returns a chunk of a file as JSON, `download` streams a whole file.
//!
//! Every path is relative to the sandboxes root (`<framework_id>/<task_id>/stdout`). A path
//! with `..` or a leading `/` is refused before the file system is touched; what remains is
//! canonicalized (following symlinks) and must still lie under the root, so a symlink a task
//! planted in its sandbox cannot reach the rest of the host.
//!
//! A file is served only when it is a regular file of the sandboxes' own file system with no
//! other hard link (a task can hard-link a file from elsewhere into its sandbox): checked with
//! `lstat` before it is opened, then opened with `O_NONBLOCK | O_NOFOLLOW` and checked again
//! with `fstat` on what was opened, so a FIFO or a device swapped in meanwhile never blocks a
//! worker or gets read. A `read` reply is bounded in bytes of JSON, not of file: bytes that
//! JSON escapes (a NUL is `\u0000`, six bytes) count as what they cost, and the data stops
//! where the bound is reached; the client reads on from `offset` plus what it got.

use std::io::SeekFrom;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use agora_proto::acl::Action;
use agora_proto::edge::Authenticated;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{HttpError, HttpState};

/// Longest path accepted, in bytes (Linux' `PATH_MAX`).
const MAX_PATH_LEN: usize = 4_096;
/// Most bytes of a file one `read` looks at, whatever `length` asks for.
pub(crate) const MAX_READ_LEN: u64 = 1024 * 1024;
/// Most bytes the `data` of one `read` reply takes once JSON-escaped.
pub(crate) const MAX_READ_REPLY_BYTES: usize = 1024 * 1024;
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

pub(crate) async fn browse(
    State(state): State<HttpState>,
    caller: Option<Extension<Authenticated>>,
    Query(query): Query<FileQuery>,
) -> Result<Json<Vec<FileEntry>>, HttpError> {
    let requested = query.path.unwrap_or_default();
    let dir = resolve(&state.sandboxes, &requested).await?;
    authorize(&state, &caller, &dir).await?;
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

pub(crate) async fn read(
    State(state): State<HttpState>,
    caller: Option<Extension<Authenticated>>,
    Query(query): Query<FileQuery>,
) -> Result<Json<ReadReply>, HttpError> {
    let requested =
        query.path.clone().ok_or(HttpError::BadParameter { field: "path", reason: "is required".into() })?;
    let offset = number("offset", query.offset.as_deref())?;
    let length = number("length", query.length.as_deref())?;
    let file_path = resolve(&state.sandboxes, &requested).await?;
    authorize(&state, &caller, &file_path).await?;
    let io = |cause| HttpError::Io { path: requested.clone(), cause };
    let (mut file, size) = open_regular(&state.sandboxes, &file_path, &requested).await?;
    // As in Mesos: no offset (or -1) asks for the file's size only.
    let Some(offset) = offset else {
        return Ok(Json(ReadReply { data: String::new(), offset: size }));
    };
    if offset >= size {
        return Ok(Json(ReadReply { data: String::new(), offset }));
    }
    let length = length.unwrap_or(MAX_READ_LEN).min(MAX_READ_LEN).min(size - offset);
    file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length).read_to_end(&mut bytes).await.map_err(io)?;
    let fits = json_prefix_len(&bytes, MAX_READ_REPLY_BYTES);
    Ok(Json(ReadReply { data: text(&bytes[..fits]), offset }))
}

pub(crate) async fn download(
    State(state): State<HttpState>,
    caller: Option<Extension<Authenticated>>,
    Query(query): Query<FileQuery>,
) -> Result<Response, HttpError> {
    let requested =
        query.path.clone().ok_or(HttpError::BadParameter { field: "path", reason: "is required".into() })?;
    let file_path = resolve(&state.sandboxes, &requested).await?;
    authorize(&state, &caller, &file_path).await?;
    let (mut file, _) = open_regular(&state.sandboxes, &file_path, &requested).await?;
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

/// Opens `path` (canonical, under `root`) for reading if it is a regular file on the
/// sandboxes' file system with no other hard link; returns it with its size. Never blocks
/// on what it opens (see the module documentation).
async fn open_regular(root: &Path, path: &Path, requested: &str) -> Result<(tokio::fs::File, u64), HttpError> {
    let (root, path, requested) = (root.to_path_buf(), path.to_path_buf(), requested.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |cause| HttpError::Io { path: requested.clone(), cause };
        let root_dev = std::fs::metadata(&root).map_err(io)?.dev();
        let check = |meta: &std::fs::Metadata| -> Result<(), HttpError> {
            let refused = |reason: &str| HttpError::NotServed { path: requested.clone(), reason: reason.to_owned() };
            if meta.is_dir() {
                return Err(HttpError::IsADirectory { path: requested.clone() });
            }
            if !meta.file_type().is_file() {
                return Err(refused("is not a regular file"));
            }
            if meta.nlink() != 1 {
                return Err(refused("has other hard links, which may lie outside the sandbox"));
            }
            if meta.dev() != root_dev {
                return Err(refused("lies on another file system than the sandboxes"));
            }
            Ok(())
        };
        let before = std::fs::symlink_metadata(&path).map_err(io)?;
        check(&before)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY)
            .open(&path)
            .map_err(io)?;
        let opened = file.metadata().map_err(io)?;
        check(&opened)?;
        if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
            return Err(HttpError::NotServed {
                path: requested.clone(),
                reason: "changed while it was opened".to_owned(),
            });
        }
        Ok((tokio::fs::File::from_std(file), opened.len()))
    })
    .await
    .map_err(|_| HttpError::Stopping)?
}

/// How many of `bytes`, at most, fit in `budget` bytes once JSON-escaped: control bytes cost
/// six (`\u0000`) or two (`\n`), `"` and `\\` two, any byte above ASCII three (as if it
/// were an invalid one, replaced by U+FFFD: an upper bound), anything else one.
fn json_prefix_len(bytes: &[u8], budget: usize) -> usize {
    let mut spent = 0usize;
    for (i, byte) in bytes.iter().enumerate() {
        let cost = match byte {
            b'\n' | b'\r' | b'\t' | b'"' | b'\\' | 0x08 | 0x0C => 2,
            0x00..=0x1F | 0x7F => 6,
            0x80..=0xFF => 3,
            _ => 1,
        };
        spent += cost;
        if spent > budget {
            return i;
        }
    }
    bytes.len()
}

/// Reads an optional non-negative number; `-1` means absent, as in Mesos.
fn number(field: &'static str, value: Option<&str>) -> Result<Option<u64>, HttpError> {
    match value.map(str::trim) {
        None | Some("") | Some("-1") => Ok(None),
        Some(text) => text.parse::<u64>().map(Some).map_err(|_| HttpError::BadParameter {
            field,
            reason: format!("{text:?} is not a non-negative integer or -1"),
        }),
    }
}

/// The `access_sandboxes` ACL for `path` (canonical, under the sandboxes root): its object
/// is the user the sandbox (`<framework_id>/<task_id>`) belongs to, which is the task's
/// user (the agent hands the sandbox to it; an agent that cannot switch users runs every
/// task as itself). Above a sandbox (the root, a framework's directory) the caller must
/// be allowed every user.
async fn authorize(state: &HttpState, caller: &Option<Extension<Authenticated>>, path: &Path) -> Result<(), HttpError> {
    let Some(acls) = &state.acls else { return Ok(()) };
    if !acls.restricts(Action::AccessSandboxes) {
        return Ok(());
    }
    let principal = caller.as_ref().map(|Extension(a)| a.principal.as_str());
    let relative = path.strip_prefix(state.sandboxes.as_path()).unwrap_or(path);
    let mut components = relative.components();
    let (Some(framework), Some(task)) = (components.next(), components.next()) else {
        if acls.allows_all(Action::AccessSandboxes, principal) {
            return Ok(());
        }
        return Err(HttpError::Forbidden {
            message: "listing above a task's sandbox needs access_sandboxes for every user".to_owned(),
            acl: Action::AccessSandboxes.name().to_owned(),
        });
    };
    let sandbox = state.sandboxes.join(framework).join(task);
    let uid = tokio::fs::metadata(&sandbox)
        .await
        .map_err(|cause| HttpError::Io { path: relative.display().to_string(), cause })?
        .uid();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
        .unwrap_or_else(|| uid.to_string());
    acls.check(Action::AccessSandboxes, principal, &user).map_err(|denied| {
        tracing::warn!(%denied, "sandbox read refused by the ACLs");
        let acl = match denied.rule {
            Some(index) => format!("{}[{index}]", denied.action.name()),
            None => "permissive: false".to_owned(),
        };
        HttpError::Forbidden { message: denied.to_string(), acl }
    })
}

/// The file or directory `requested` names under `root` (canonical), or why not.
pub(crate) async fn resolve(root: &Path, requested: &str) -> Result<PathBuf, HttpError> {
    if requested.len() > MAX_PATH_LEN || requested.contains('\0') {
        return Err(HttpError::BadParameter {
            field: "path",
            reason: format!("is longer than {MAX_PATH_LEN} bytes or holds a NUL"),
        });
    }
    let relative = Path::new(requested);
    let escapes =
        relative.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)));
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
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let kind = if kind.is_dir() {
        'd'
    } else if kind.is_symlink() {
        'l'
    } else if kind.is_fifo() {
        'p'
    } else if kind.is_socket() {
        's'
    } else if kind.is_char_device() {
        'c'
    } else if kind.is_block_device() {
        'b'
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
    fn a_reply_stops_where_its_json_would_pass_the_budget() {
        assert_eq!(json_prefix_len(b"hello", 5), 5);
        assert_eq!(json_prefix_len(b"hello", 3), 3);
        assert_eq!(json_prefix_len(&[0u8; 10], 12), 2);
        assert_eq!(json_prefix_len(b"a\nb", 3), 2);
        assert_eq!(json_prefix_len("€".as_bytes(), 9), 3);
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
