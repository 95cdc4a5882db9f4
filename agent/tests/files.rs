//! The sandbox file server against what a hostile task or client tries: a hard link to a
//! file outside, a FIFO, a reply inflated by escaping, idle connections.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use agora_proto::model::TaskState;
use common::*;

async fn finished_task(tweak: impl FnOnce(&mut agora_agent::AgentConfig)) -> (FakeMaster, TestAgent) {
    let mut master = FakeMaster::start().await;
    let agent = TestAgent::start(&master, tweak).await;
    master.next_registration().await;
    master.run_task(shell_task("files", "printf 'hello world'"));
    master.updates_until("files", TaskState::TaskFinished).await;
    (master, agent)
}

async fn status_and_body(url: String) -> (u16, serde_json::Value) {
    let response = tokio::time::timeout(WAIT, reqwest::get(url)).await.expect("an answer, in time").unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_hard_link_to_a_file_outside_the_sandbox_is_not_served() {
    let (_master, mut agent) = finished_task(|_| {}).await;
    // The LOCK file stands for any file of the agent's a task could link to.
    let outside = agent.work_dir.path().join("secret");
    std::fs::write(&outside, "the agent's secret").unwrap();
    std::fs::hard_link(&outside, agent.sandbox("files/linked")).unwrap();
    for endpoint in ["read", "download"] {
        let (status, body) =
            status_and_body(agent.url(&format!("/files/{endpoint}?path={FRAMEWORK}/files/linked&offset=0"))).await;
        assert_eq!(status, 403, "{endpoint}: {body}");
        assert!(body["message"].as_str().unwrap().contains("hard links"), "{body}");
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_fifo_in_a_sandbox_is_refused_at_once_and_never_blocks_the_server() {
    let (_master, mut agent) = finished_task(|_| {}).await;
    nix::unistd::mkfifo(&agent.sandbox("files/pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    for endpoint in ["read", "download"] {
        let (status, body) =
            status_and_body(agent.url(&format!("/files/{endpoint}?path={FRAMEWORK}/files/pipe&offset=0"))).await;
        assert_eq!(status, 403, "{endpoint}: {body}");
        assert!(body["message"].as_str().unwrap().contains("not a regular file"), "{body}");
    }
    let listing: serde_json::Value =
        reqwest::get(agent.url(&format!("/files/browse?path={FRAMEWORK}/files"))).await.unwrap().json().await.unwrap();
    let pipe = listing.as_array().unwrap().iter().find(|e| e["path"].as_str().unwrap().ends_with("pipe")).unwrap();
    assert!(pipe["mode"].as_str().unwrap().starts_with('p'), "{pipe}");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_of_bytes_json_must_escape_is_bounded_in_reply_size_and_reads_on_from_where_it_stopped() {
    let (_master, mut agent) = finished_task(|_| {}).await;
    std::fs::write(agent.sandbox("files/zeros"), vec![0u8; 4 * 1024 * 1024]).unwrap();
    let url = agent.url(&format!("/files/read?path={FRAMEWORK}/files/zeros&offset=0&length=4194304"));
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(body.len() <= 1024 * 1024 + 100, "a reply of {} bytes", body.len());
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let got = reply["data"].as_str().unwrap().len();
    assert!(got > 100_000, "some data: {got} bytes");
    let next = agent.url(&format!("/files/read?path={FRAMEWORK}/files/zeros&offset={got}&length=10"));
    let reply: serde_json::Value = reqwest::get(next).await.unwrap().json().await.unwrap();
    assert_eq!(reply["offset"], got);
    assert_eq!(reply["data"].as_str().unwrap().len(), 10);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_so_they_cannot_lock_the_api() {
    let (_master, mut agent) = finished_task(|config| {
        config.http_max_connections = 4;
        config.http_idle_timeout_ms = 300;
    })
    .await;
    // Every connection the agent allows, held open and silent.
    let idle: Vec<std::net::TcpStream> = (0..4).map(|_| std::net::TcpStream::connect(agent.http).unwrap()).collect();
    let (status, _) = status_and_body(agent.url(&format!("/files/read?path={FRAMEWORK}/files/stdout&offset=0"))).await;
    assert_eq!(status, 200, "served once the idle connections were closed");
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buffer = [0u8; 16];
        assert_eq!(stream.read(&mut buffer).unwrap_or(0), 0, "the agent closed the idle connection");
        // Writing to a closed connection fails sooner or later; it must not hang.
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n");
    }
    agent.stop().await.unwrap();
}
