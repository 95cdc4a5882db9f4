//! The fetcher: a task's URIs (`CommandInfo.uris`, Mesos' fetcher) put into its sandbox
//! before its command starts, in order: downloaded over HTTP(S) or copied from the agent's
//! file system, made executable, unpacked.
//!
//! Each file is written to a hidden partial file in the sandbox and renamed into place only
//! once whole, so the command never sees half a download. A download fails when the server
//! answers anything but 2xx, when no byte arrives for [`STALL_TIMEOUT`], or beyond
//! [`MAX_FETCH_BYTES`]. With `cache`, the file is kept in `<work_dir>/fetch-cache/` under
//! the SHA-256 of its URI and copied from there the next time; the cache holds at most
//! [`MAX_CACHE_BYTES`], the least recently fetched files going first. Archives are unpacked
//! with the host's `tar`, `unzip` and `gzip`, as Mesos does. What the fetcher did, and why it
//! failed, goes to the task's `stderr`, where `agora task log` and the sandbox browser find
//! it; the launch then fails with the same message.
//!
//! Fetching runs before the launch takes its place under the agent's launch bound
//! (`process::supervise`), so a slow download holds no other task's launch back.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agora_proto::model::{Archive, FetchUri};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// A download that receives nothing for this long fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait to connect to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest file fetched.
pub const MAX_FETCH_BYTES: u64 = 16 << 30;
/// Most bytes the fetch cache keeps.
pub const MAX_CACHE_BYTES: u64 = 2 << 30;
/// Most of an unpacking tool's error output quoted in a failure.
const MAX_TOOL_OUTPUT: usize = 1_000;

/// Fetches for every task of one agent.
#[derive(Debug)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    cache_dir: PathBuf,
}

impl Fetcher {
    /// A fetcher keeping its cache in `cache_dir` (made when first used).
    pub fn new(cache_dir: PathBuf) -> Result<Fetcher, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("agora-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make the fetcher's HTTP client: {e}"))?;
        Ok(Fetcher { client, cache_dir })
    }

    /// Fetches `uris` into `sandbox` in order, noting each step in the sandbox's `stderr`.
    /// The error says which URI failed and why.
    pub async fn fetch_all(&self, uris: &[FetchUri], sandbox: &Path) -> Result<(), String> {
        for uri in uris {
            let started = std::time::Instant::now();
            let outcome = self.fetch(uri, sandbox).await;
            let line = match &outcome {
                Ok(how) => format!("agora fetcher: {} -> {how} in {:.1?}", uri.uri, started.elapsed()),
                Err(error) => format!("agora fetcher: {} failed: {error}", uri.uri),
            };
            note(sandbox, &line).await;
            if let Err(error) = outcome {
                return Err(format!("fetching {} failed: {error}", uri.uri));
            }
        }
        Ok(())
    }

    /// Fetches one URI; answers what was done, for the log.
    async fn fetch(&self, uri: &FetchUri, sandbox: &Path) -> Result<String, String> {
        // Checked again here: the URI may come from a checkpoint written by an older agent.
        uri.check().map_err(|(part, message)| format!("{part} {message}"))?;
        let name = uri.file_name().ok_or("the URI names no file")?.to_owned();
        let target = sandbox.join(&name);
        let partial = sandbox.join(format!(".{name}.fetching"));
        let mut how = if uri.cache { self.from_cache(uri, &partial).await? } else { None };
        if how.is_none() {
            let bytes = self.obtain(&uri.uri, &partial).await?;
            if uri.cache {
                self.keep_in_cache(uri, &partial).await;
            }
            how = Some(format!("{name} ({bytes} bytes)"));
        }
        tokio::fs::rename(&partial, &target).await.map_err(|e| format!("cannot put {name} in the sandbox: {e}"))?;
        let mut how = how.unwrap_or_default();
        if uri.executable {
            tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(|e| format!("cannot make {name} executable: {e}"))?;
            how.push_str(", executable");
        }
        if let Some(archive) = uri.archive() {
            unpack(archive, &target, sandbox).await?;
            how.push_str(", extracted");
        }
        Ok(how)
    }

    /// Writes the URI's content to `to`; answers its size.
    async fn obtain(&self, uri: &str, to: &Path) -> Result<u64, String> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return self.download(uri, to).await;
        }
        let from = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
        let to = to.to_owned();
        tokio::task::spawn_blocking(move || {
            let meta = std::fs::metadata(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            if !meta.is_file() {
                return Err(format!("{} is not a regular file", from.display()));
            }
            std::fs::copy(&from, &to).map_err(|e| format!("cannot copy {}: {e}", from.display()))
        })
        .await
        .map_err(|e| format!("the copy stopped: {e}"))?
    }

    async fn download(&self, uri: &str, to: &Path) -> Result<u64, String> {
        let mut response = tokio::time::timeout(STALL_TIMEOUT, self.client.get(uri).send())
            .await
            .map_err(|_| format!("no answer within {STALL_TIMEOUT:?}"))?
            .map_err(|e| format!("GET failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        if response.content_length().is_some_and(|length| length > MAX_FETCH_BYTES) {
            return Err(format!("it is larger than {MAX_FETCH_BYTES} bytes"));
        }
        let mut file = tokio::fs::File::create(to).await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        let mut written: u64 = 0;
        loop {
            let chunk = tokio::time::timeout(STALL_TIMEOUT, response.chunk())
                .await
                .map_err(|_| format!("nothing received for {STALL_TIMEOUT:?} after {written} bytes"))?
                .map_err(|e| format!("the download broke off after {written} bytes: {e}"))?;
            let Some(chunk) = chunk else { break };
            written += chunk.len() as u64;
            if written > MAX_FETCH_BYTES {
                return Err(format!("it is larger than {MAX_FETCH_BYTES} bytes"));
            }
            file.write_all(&chunk).await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        }
        file.flush().await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        Ok(written)
    }

    fn cache_path(&self, uri: &FetchUri) -> PathBuf {
        let digest = Sha256::digest(uri.uri.as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.cache_dir.join(name)
    }

    /// Copies the cached file to `to`, if there is one; answers what was done.
    async fn from_cache(&self, uri: &FetchUri, to: &Path) -> Result<Option<String>, String> {
        let cached = self.cache_path(uri);
        let to = to.to_owned();
        tokio::task::spawn_blocking(move || match std::fs::copy(&cached, &to) {
            Ok(bytes) => {
                // Touched, so that eviction takes the least recently fetched first.
                let _ =
                    std::fs::File::options().append(true).open(&cached).and_then(|f| f.set_modified(SystemTime::now()));
                Ok(Some(format!("from the cache ({bytes} bytes)")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot copy from the fetch cache: {e}")),
        })
        .await
        .map_err(|e| format!("the copy stopped: {e}"))?
    }

    /// Keeps a copy of the fetched file in the cache and evicts beyond its bound. A failure
    /// only costs the next fetch a download, so it is logged, not raised.
    async fn keep_in_cache(&self, uri: &FetchUri, fetched: &Path) {
        let (cache_dir, cached, fetched) = (self.cache_dir.clone(), self.cache_path(uri), fetched.to_owned());
        let kept = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&cache_dir)?;
            let partial = cached.with_extension("partial");
            std::fs::copy(&fetched, &partial)?;
            std::fs::rename(&partial, &cached)?;
            evict(&cache_dir, MAX_CACHE_BYTES)
        })
        .await;
        match kept {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(uri = %uri.uri, %error, "cannot keep a fetched file in the cache"),
            Err(error) => tracing::warn!(uri = %uri.uri, %error, "cannot keep a fetched file in the cache"),
        }
    }
}

/// Deletes the least recently fetched files of the cache until it holds at most `bound`
/// bytes.
fn evict(cache_dir: &Path, bound: u64) -> std::io::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(cache_dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && entry.path().extension().is_none() {
            files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), entry.path()));
        }
    }
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= bound {
            break;
        }
        std::fs::remove_file(&path)?;
        total -= len;
    }
    Ok(())
}

/// Unpacks `file` into `sandbox` with the host's tools.
async fn unpack(archive: Archive, file: &Path, sandbox: &Path) -> Result<(), String> {
    let (tool, args): (&str, Vec<&std::ffi::OsStr>) = match archive {
        // Never the archive's owners (the agent may run as root); GNU tar refuses members
        // that would land outside the directory.
        Archive::Tar => (
            "tar",
            vec!["--no-same-owner".as_ref(), "-xf".as_ref(), file.as_os_str(), "-C".as_ref(), sandbox.as_os_str()],
        ),
        Archive::Zip => {
            ("unzip", vec!["-q".as_ref(), "-o".as_ref(), file.as_os_str(), "-d".as_ref(), sandbox.as_os_str()])
        }
        Archive::Gzip => ("gzip", vec!["-d".as_ref(), "-k".as_ref(), "-f".as_ref(), file.as_os_str()]),
    };
    let output = tokio::process::Command::new(tool)
        .args(&args)
        .current_dir(sandbox)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {tool} to unpack it: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if said.len() > MAX_TOOL_OUTPUT {
        let cut = (0..=MAX_TOOL_OUTPUT).rev().find(|i| said.is_char_boundary(*i)).unwrap_or(0);
        said.truncate(cut);
        said.push('…');
    }
    Err(format!("{tool} could not unpack it ({}): {said}", output.status))
}

/// Appends a line to the sandbox's `stderr`.
async fn note(sandbox: &Path, line: &str) {
    let path = sandbox.join("stderr");
    let line = format!("{line}\n");
    let _ = tokio::task::spawn_blocking(move || {
        std::fs::File::options().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes()))
    })
    .await;
}

#[cfg(test)]
mod tests;
