//! Generates the node-to-node gRPC service of the meta service with tonic's manual
//! builder: the messages are prost types written in `src/network.rs`, so no `.proto` file
//! and no `protoc` are needed to build.

fn main() {
    let method = |name: &str, route: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::network::Frame")
            .output_type("crate::network::Frame")
            .codec_path("tonic_prost::ProstCodec")
            .build()
    };
    let service = tonic_build::manual::Service::builder()
        .name("Meta")
        .package("strata.meta")
        .method(method("append_entries", "AppendEntries"))
        .method(method("vote", "Vote"))
        .method(method("install_snapshot", "InstallSnapshot"))
        .method(method("write", "Write"))
        .method(method("change_voters", "ChangeVoters"))
        .build();
    // The data plane: a partition led by another node, reached through it.
    let partitions = tonic_build::manual::Service::builder()
        .name("Partitions")
        .package("strata.meta")
        .method(
            tonic_build::manual::Method::builder()
                .name("call")
                .route_name("Call")
                .input_type("crate::partitions::PartitionRequest")
                .output_type("crate::partitions::PartitionReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[service, partitions]);
}
