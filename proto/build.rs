//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler), so building
//! Agora needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/agora/v1/common.proto",
        "proto/agora/v1/agent.proto",
        "proto/agora/v1/scheduler.proto",
        "proto/etcd/rpc.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Small per-stream buffers: see `src/codec.rs`.
    tonic_prost_build::configure().codec_path("crate::codec::LeanCodec").compile_fds(descriptors)?;
    Ok(())
}
