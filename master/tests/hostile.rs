//! Hostile callers against a master served in process on an ephemeral port: each class of
//! what a probe found (cross-site changes, error shapes, malformed gRPC, unbounded state)
//! is refused with the documented answer, and nothing changes.

use std::time::Duration;

use agora_master::runtime::{self, MasterOptions};
use serde_json::{Value, json};

/// A master on `127.0.0.1:0`; it stops when the returned sender is dropped.
async fn start(configure: impl FnOnce(&mut MasterOptions)) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let mut options = MasterOptions::new(address.clone());
    options.tick_interval_ms = 50;
    configure(&mut options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = runtime::serve(listener, options, shutdown).await {
            panic!("master failed: {error}");
        }
    });
    (address, stop)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or_else(|_| json!({ "not json": String::from_utf8_lossy(&body) })))
}

#[tokio::test]
async fn a_text_plain_quota_post_from_a_foreign_origin_is_refused_and_changes_nothing() {
    let (master, _stop) = start(|_| {}).await;
    let http = client();
    let body = r#"{"role":"eng","guarantee":{"cpus":1}}"#;
    let (status, refused) = json_of(
        http.post(format!("http://{master}/quota"))
            .header("content-type", "text/plain")
            .header("origin", "http://evil.example")
            .body(body)
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 415, "{refused}");
    assert_eq!(refused["details"][0]["field"], "Content-Type");
    let (status, refused) = json_of(
        http.post(format!("http://{master}/quota"))
            .header("content-type", "application/json")
            .header("origin", "http://evil.example")
            .body(body)
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["details"][0]["field"], "Origin");
    let (_, quotas) = json_of(http.get(format!("http://{master}/quota")).send().await.expect("answer")).await;
    assert_eq!(quotas, json!([]));
    // The same change from the master's own origin, or from a client with no origin, passes.
    let same = http
        .post(format!("http://{master}/quota"))
        .header("origin", format!("http://{master}"))
        .json(&json!({"role": "eng", "limit": {"cpus": 1}}))
        .send()
        .await
        .expect("answer");
    assert_eq!(same.status().as_u16(), 200);
}

#[tokio::test]
async fn refusals_of_the_router_itself_have_the_json_error_shape() {
    let (master, _stop) = start(|_| {}).await;
    let http = client();
    let (status, body) = json_of(http.delete(format!("http://{master}/state")).send().await.expect("answer")).await;
    assert_eq!(status, 405);
    assert_eq!(body["message"], "DELETE is not allowed on /state");
    let huge = vec![b'a'; 2 << 20];
    let (status, body) = json_of(
        http.post(format!("http://{master}/quota"))
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 413);
    assert!(body["message"].is_string() && body["details"].is_array(), "{body}");
}

/// Sends raw bytes as a gRPC message, to see what the server makes of garbage.
mod raw {
    use bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Debug, Default)]
    pub struct RawCodec;

    #[derive(Debug)]
    pub struct RawEncoder;

    #[derive(Debug)]
    pub struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;

        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }

        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = Status;

        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            Ok(Some(bytes.to_vec()))
        }
    }
}

#[tokio::test]
async fn a_grpc_message_that_does_not_decode_is_invalid_argument() {
    let (master, _stop) = start(|_| {}).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{master}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/agora.v1.Scheduler/Call");
    // Field 1 as a length-delimited string of 200 bytes, of which only 3 follow.
    let garbage = vec![0x0a, 0xc8, 0x01, b'a', b'b', b'c'];
    let refused = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(tonic::Request::new(garbage), path, raw::RawCodec)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("malformed message"), "{}", refused.message());
}

#[tokio::test]
async fn a_quota_guarantee_beyond_the_cluster_is_a_409_unless_forced() {
    let (master, _stop) = start(|_| {}).await;
    let http = client();
    let quota = json!({"role": "big", "guarantee": {"cpus": 100000, "mem": 1e9}});
    let (status, refused) =
        json_of(http.post(format!("http://{master}/quota")).json(&quota).send().await.expect("answer")).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["details"][0]["field"], "guarantee");
    let mut forced = quota.clone();
    forced["force"] = json!(true);
    let (status, _) =
        json_of(http.post(format!("http://{master}/quota")).json(&forced).send().await.expect("answer")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn subscriptions_beyond_the_bounds_are_refused_over_http_and_grpc() {
    let (master, _stop) = start(|options| {
        options.core.max_frameworks = 1;
        options.core.max_framework_field_bytes = 64;
    })
    .await;
    let http = client();
    let subscribe = |name: String| {
        json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": name}}}).to_string()
    };
    let url = format!("http://{master}/api/v1/scheduler");
    let post = |body: String| http.post(&url).header("content-type", "application/json").body(body).send();
    let (status, refused) = json_of(post(subscribe("n".repeat(65))).await.expect("answer")).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("framework_info.name")), "{refused}");
    // The first framework holds the one place while its stream is open.
    let first = post(subscribe("first".into())).await.expect("answer");
    assert_eq!(first.status().as_u16(), 200);
    let (status, refused) = json_of(post(subscribe("second".into())).await.expect("answer")).await;
    assert_eq!(status, 429, "{refused}");
    let mut scheduler =
        agora_proto::pb::scheduler_client::SchedulerClient::connect(format!("http://{master}")).await.expect("connect");
    let info = agora_proto::pb::FrameworkInfo { user: "u".into(), name: "third".into(), ..Default::default() };
    let refused = scheduler.subscribe(agora_proto::pb::Subscribe { framework: Some(info) }).await;
    assert_eq!(refused.map(|_| ()).map_err(|s| s.code()), Err(tonic::Code::ResourceExhausted));
    drop(first);
}

#[tokio::test]
async fn a_caller_over_the_rate_limit_is_told_to_retry_later_and_others_are_not() {
    let (master, _stop) = start(|options| {
        let credentials = agora_proto::auth::Credentials::parse("ops ops-secret\nweb web-secret").expect("valid");
        options.security.credentials = Some(std::sync::Arc::new(credentials));
        options.rate_limit = agora_proto::edge::rate::RateLimit { per_second: 1, burst: 2 };
    })
    .await;
    let http = client();
    let get = |principal: &str, secret: &str| {
        http.get(format!("http://{master}/quota")).basic_auth(principal, Some(secret)).send()
    };
    // A burst of 2 at 1 a second: of 6 quick requests, some are refused (however slow the
    // machine, 6 requests within 4 s).
    let mut refused = None;
    for _ in 0..6 {
        let answer = get("ops", "ops-secret").await.expect("answer");
        if answer.status().as_u16() == 429 {
            refused = Some(answer);
        }
    }
    let refused = refused.expect("a request over the rate");
    assert!(refused.headers().get("retry-after").is_some());
    let (_, body) = json_of(refused).await;
    assert!(body["message"].as_str().is_some_and(|m| m.contains("principal ops")), "{body}");
    // Another principal, and an unauthenticated client on loopback, are not slowed.
    assert_eq!(get("web", "web-secret").await.expect("answer").status().as_u16(), 200);
    assert_eq!(http.get(format!("http://{master}/quota")).send().await.expect("answer").status().as_u16(), 200);
}
