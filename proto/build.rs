//! Generates the gRPC code from `proto/`. Uses `$PROTOC` when set, otherwise the
//! protoc shipped by the `protoc-bin-vendored` crate, so a fresh machine needs nothing
//! installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // `std::env::set_var` is unsafe in edition 2024, so hand the path to prost directly.
        let mut config = tonic_prost_build::Config::new();
        config.protoc_executable(protoc);
        return compile(config);
    }
    compile(tonic_prost_build::Config::new())
}

fn compile(config: tonic_prost_build::Config) -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/redcloud/v1/controller.proto",
        "proto/redcloud/v1/chunkserver.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut builder = tonic_prost_build::configure().bytes(".");
    // Answers a client prints as JSON (`redcloud ... --json`).
    for msg in [
        "FileInfo",
        "UploadResponse",
        "ChunkInfo",
        "ChunkReplica",
        "StatResponse",
        "ClusterStatusResponse",
        "ControllerStatus",
        "ChunkserverStatus",
        "VersionInfo",
        "VersionsResponse",
        "GcWait",
        "WorkerStatus",
        "ForgetNodeResponse",
        "WhoAmIResponse",
    ] {
        builder =
            builder.type_attribute(format!("redcloud.v1.{msg}"), "#[derive(serde::Serialize)]");
    }
    builder.compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
