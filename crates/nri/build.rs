// Generates NRI's API messages from the vendored proto (proto/vendor/nri/ORIGIN.md); no
// service code: the transport is this crate's own.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto/vendor/nri/api.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_protos(
            &["../../proto/vendor/nri/api.proto"],
            &["../../proto/vendor/nri"],
        )?;
    Ok(())
}
