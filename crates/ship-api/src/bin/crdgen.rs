//! Prints Ship's CRDs as YAML: `cargo run -p ship-api --bin crdgen > deploy/crds/shipreleases.yaml`.

fn main() -> std::process::ExitCode {
    match ship_api::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: cannot serialise the CRD: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
