//! Generates the prost messages, tonic clients and server traits for `runner.v1` and `ping.v1`
//! from `proto/`, with protox as a pure-Rust protoc so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(
        [
            "runner/v1/messages.proto",
            "runner/v1/services.proto",
            "ping/v1/messages.proto",
            "ping/v1/services.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
