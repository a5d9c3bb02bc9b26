//! Prints the BuildPolicy CRD as YAML (`cargo run -p buildpolicy-api --bin crdgen > manifests/crds/...`).

fn main() {
    print!("{}", buildpolicy_api::crd_yaml());
}
