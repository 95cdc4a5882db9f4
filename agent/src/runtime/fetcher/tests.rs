//! The fetcher against a small HTTP server on loopback and real files: downloads, copies,
//! executables, archives, the cache, and failures that name the URI.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

/// Serves `files` (path → body) over HTTP/1.1, 404 for anything else; counts requests.
struct Server {
    url: String,
    requests: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(files: BTreeMap<&'static str, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                *counted.lock().expect("lock") += 1;
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
                let answer = match files.get(path.as_str()) {
                    Some(body) => {
                        let mut answer =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                                .into_bytes();
                        answer.extend_from_slice(body);
                        answer
                    }
                    None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&answer).await;
            }
        });
        Server { url, requests, task }
    }

    fn requests(&self) -> u32 {
        *self.requests.lock().expect("lock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `.tar.gz` holding `bin/hello` (a script) and `data.txt`, made with the host's tar.
fn tarball(dir: &Path) -> Vec<u8> {
    let source = dir.join("source");
    std::fs::create_dir_all(source.join("bin")).expect("mkdir");
    std::fs::write(source.join("bin/hello"), "#!/bin/sh\necho hello\n").expect("write");
    std::fs::write(source.join("data.txt"), "some data").expect("write");
    let archive = dir.join("app.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["-czf", archive.to_str().expect("utf-8"), "-C", source.to_str().expect("utf-8"), "bin", "data.txt"])
        .status()
        .expect("tar");
    assert!(status.success());
    std::fs::read(archive).expect("read")
}

fn sandbox(dir: &tempfile::TempDir) -> PathBuf {
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).expect("mkdir");
    sandbox
}

fn fetcher(dir: &tempfile::TempDir) -> Fetcher {
    Fetcher::new(dir.path().join("fetch-cache")).expect("fetcher")
}

fn stderr(sandbox: &Path) -> String {
    std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default()
}

#[tokio::test]
async fn a_download_lands_whole_in_the_sandbox_executable_and_an_archive_unpacked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = tarball(dir.path());
    let server = Server::start(BTreeMap::from([
        ("/tools/run.sh", b"#!/bin/sh\nexit 0\n".to_vec()),
        ("/builds/app.tar.gz", archive.clone()),
    ]))
    .await;
    let sandbox = sandbox(&dir);
    let uris = vec![
        FetchUri { executable: true, extract: false, ..FetchUri::plain(format!("{}/tools/run.sh?v=2", server.url)) },
        FetchUri::plain(format!("{}/builds/app.tar.gz", server.url)),
    ];
    fetcher(&dir).fetch_all(&uris, &sandbox).await.expect("fetched");

    let script = sandbox.join("run.sh");
    assert_eq!(std::fs::read(&script).expect("run.sh"), b"#!/bin/sh\nexit 0\n");
    assert_eq!(std::fs::metadata(&script).expect("meta").permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(sandbox.join("app.tar.gz")).expect("archive kept"), archive);
    assert_eq!(std::fs::read_to_string(sandbox.join("data.txt")).expect("unpacked"), "some data");
    assert!(sandbox.join("bin/hello").is_file());
    let notes = stderr(&sandbox);
    assert!(notes.contains("run.sh (17 bytes), executable"), "{notes}");
    assert!(notes.contains("extracted"), "{notes}");
    let leftovers: Vec<_> = std::fs::read_dir(&sandbox)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".fetching"))
        .collect();
    assert!(leftovers.is_empty(), "no partial file is left: {leftovers:?}");
}

#[tokio::test]
async fn zip_and_gzip_files_are_unpacked_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("in");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("conf.ini"), "[a]\nb = 1\n").expect("write");
    std::fs::write(source.join("log.txt"), "line\n").expect("write");
    let zipped = std::process::Command::new("zip")
        .current_dir(&source)
        .args(["-q", "../conf.zip", "conf.ini"])
        .status()
        .expect("zip");
    assert!(zipped.success());
    let gzipped = std::process::Command::new("gzip").arg(source.join("log.txt")).status().expect("gzip");
    assert!(gzipped.success());
    let sandbox = sandbox(&dir);
    let uris = vec![
        FetchUri::plain(dir.path().join("conf.zip").display().to_string()),
        FetchUri::plain(format!("file://{}", source.join("log.txt.gz").display())),
    ];
    fetcher(&dir).fetch_all(&uris, &sandbox).await.expect("fetched");
    assert_eq!(std::fs::read_to_string(sandbox.join("conf.ini")).expect("from the zip"), "[a]\nb = 1\n");
    assert_eq!(std::fs::read_to_string(sandbox.join("log.txt")).expect("from the gzip"), "line\n");
}

#[tokio::test]
async fn a_cached_uri_is_fetched_once_and_copied_from_the_cache_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(BTreeMap::from([("/big.bin", vec![7u8; 100_000])])).await;
    let fetcher = fetcher(&dir);
    let uri = FetchUri { cache: true, ..FetchUri::plain(format!("{}/big.bin", server.url)) };
    for run in 0..3 {
        let sandbox = dir.path().join(format!("sandbox-{run}"));
        std::fs::create_dir_all(&sandbox).expect("mkdir");
        fetcher.fetch_all(std::slice::from_ref(&uri), &sandbox).await.expect("fetched");
        assert_eq!(std::fs::read(sandbox.join("big.bin")).expect("file"), vec![7u8; 100_000], "run {run}");
        if run > 0 {
            assert!(stderr(&sandbox).contains("from the cache"), "{}", stderr(&sandbox));
        }
    }
    assert_eq!(server.requests(), 1, "downloaded once");
    let uncached = FetchUri { cache: false, ..uri };
    let sandbox = dir.path().join("sandbox-uncached");
    std::fs::create_dir_all(&sandbox).expect("mkdir");
    fetcher.fetch_all(&[uncached], &sandbox).await.expect("fetched");
    assert_eq!(server.requests(), 2, "without cache, downloaded again");
}

#[tokio::test]
async fn a_failed_fetch_names_the_uri_and_why_and_stops_before_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(BTreeMap::from([("/ok.txt", b"ok".to_vec())])).await;
    let sandbox = sandbox(&dir);
    let missing = format!("{}/missing.tgz", server.url);
    let uris = vec![FetchUri::plain(missing.clone()), FetchUri::plain(format!("{}/ok.txt", server.url))];
    let error = fetcher(&dir).fetch_all(&uris, &sandbox).await.expect_err("404");
    assert!(error.contains(&missing) && error.contains("404"), "{error}");
    assert!(!sandbox.join("ok.txt").exists(), "the URIs after a failure are not fetched");
    assert!(stderr(&sandbox).contains("failed: the server answered 404"), "{}", stderr(&sandbox));

    let error = fetcher(&dir).fetch_all(&[FetchUri::plain("/no/such/file.txt")], &sandbox).await.expect_err("absent");
    assert!(error.contains("/no/such/file.txt"), "{error}");

    // A file that says it is an archive but is not: the tool's complaint is quoted.
    let fake = dir.path().join("fake.tgz");
    std::fs::write(&fake, "not an archive").expect("write");
    let error =
        fetcher(&dir).fetch_all(&[FetchUri::plain(fake.display().to_string())], &sandbox).await.expect_err("fake");
    assert!(error.contains("tar could not unpack it"), "{error}");

    // Nothing is listening: a refused connection fails at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let error = fetcher(&dir)
        .fetch_all(&[FetchUri::plain(format!("http://{address}/x.bin"))], &sandbox)
        .await
        .expect_err("down");
    assert!(error.contains("GET failed"), "{error}");
}

#[test]
fn eviction_removes_the_least_recently_fetched_files_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for (name, age_s) in [("old", 300), ("middle", 200), ("new", 100)] {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![0u8; 1_000]).expect("write");
        let file = std::fs::File::options().append(true).open(&path).expect("open");
        file.set_modified(now - Duration::from_secs(age_s)).expect("mtime");
    }
    // A copy under way is not the cache's to evict.
    std::fs::write(dir.path().join("copy.partial"), vec![0u8; 5_000]).expect("write");
    evict(dir.path(), 2_000).expect("evict");
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).expect("list").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    left.sort();
    assert_eq!(left, ["copy.partial", "middle", "new"]);
}
