// Generates the gRPC code from proto/; the output is never edited.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto/pullguard/v1/pullguard.proto");
    tonic_prost_build::configure().compile_protos(
        &["../../proto/pullguard/v1/pullguard.proto"],
        &["../../proto"],
    )?;
    Ok(())
}
