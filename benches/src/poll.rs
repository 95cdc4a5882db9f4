//! `--poll-ms`: operators' readers polling the master while the bench runs, to measure
//! what the read endpoints cost at scale and whether reading slows the master
//! (the allocation round and offer→launch figures, against the same run without them).
//!
//! One reader per endpoint (`/state-summary`, `/tasks?limit=100`, `/state`), each starting
//! a request every interval (at once after a slower one), on a runtime of its own as an
//! operator's tool would be. Each keeps two sets of latencies: over the whole run, and
//! once the bench reached its goal (every task running, with `--hold`), which is the
//! master at its full size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::Samples;

/// Latencies kept per reader and phase.
const MAX_SAMPLES: usize = 100_000;
/// Longest one read may take (a full `/state` of 500,000 tasks is tens of MiB).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The endpoints read, by the name the JSON line gives their figures.
pub const ENDPOINTS: [(&str, &str); 3] =
    [("state_summary", "/state-summary"), ("tasks", "/tasks?limit=100"), ("state", "/state")];

/// What one reader measured.
#[derive(Debug)]
pub struct Reads {
    pub name: &'static str,
    pub all: Samples,
    pub at_scale: Samples,
    pub errors: u64,
}

/// Starts the readers against `address` on `runtime`; they stop when `stop` holds true.
pub fn start(
    runtime: &tokio::runtime::Handle,
    address: String,
    interval: Duration,
    seed: u64,
    at_scale: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Reads>> {
    let client = reqwest::Client::builder().timeout(READ_TIMEOUT).build().expect("a plain HTTP client builds");
    ENDPOINTS
        .iter()
        .enumerate()
        .map(|(i, (name, path))| {
            let url = format!("http://{address}{path}");
            let reader =
                read(client.clone(), name, url, interval, seed.wrapping_add(i as u64), at_scale.clone(), stop.clone());
            runtime.spawn(reader)
        })
        .collect()
}

async fn read(
    client: reqwest::Client,
    name: &'static str,
    url: String,
    interval: Duration,
    seed: u64,
    at_scale: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> Reads {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reads = Reads { name, all: Samples::new(MAX_SAMPLES), at_scale: Samples::new(MAX_SAMPLES), errors: 0 };
    let mut next = Instant::now() + interval.mul_f64(rng.random_range(0.0..1.0));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|stop| *stop) => return reads,
        }
        let began = Instant::now();
        let scale = at_scale.load(Ordering::Relaxed);
        match timed_get(&client, &url).await {
            Some(ms) => {
                reads.all.record(ms, &mut rng);
                if scale {
                    reads.at_scale.record(ms, &mut rng);
                }
            }
            None => reads.errors += 1,
        }
        next = (began + interval).max(Instant::now());
    }
}

/// The time to the last byte of a 200 answer.
async fn timed_get(client: &reqwest::Client, url: &str) -> Option<f64> {
    let started = Instant::now();
    let mut response = client.get(url).send().await.ok()?;
    let ok = response.status().as_u16() == 200;
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.ok()? {
        bytes += chunk.len();
    }
    (ok && bytes > 0).then(|| started.elapsed().as_secs_f64() * 1e3)
}
