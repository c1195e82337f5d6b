//! Writes Ship's CRDs: `cargo run -p ship-api --bin crdgen -- deploy/crds` writes one file per
//! CRD into that directory; without an argument they are printed as one YAML stream.

fn main() -> std::process::ExitCode {
    let crds = match ship_api::crds() {
        Ok(crds) => crds,
        Err(err) => {
            eprintln!("crdgen: cannot serialise the CRDs: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match std::env::args_os().nth(1) {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            for (file, yaml) in crds {
                let path = dir.join(file);
                if let Err(err) = std::fs::write(&path, yaml) {
                    eprintln!("crdgen: cannot write {}: {err}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        None => {
            let docs: Vec<String> = crds.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", docs.join("---\n"));
        }
    }
    std::process::ExitCode::SUCCESS
}
