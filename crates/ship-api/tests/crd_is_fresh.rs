//! The committed CRDs must be exactly what the Rust types generate (controller-rs style).
//! Fix a failure with: `cargo run -q -p ship-api --bin crdgen -- deploy/crds` (and `charts/ship/crds`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[test]
fn committed_crds_match_generated() {
    // The plain manifests and the Helm chart carry the same CRDs.
    for dir in ["deploy/crds", "charts/ship/crds"] {
        for (file, generated) in ship_api::crds().expect("CRDs serialise") {
            let path = format!("{}/../../{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
            let committed = std::fs::read_to_string(path).unwrap_or_default();
            assert!(
                committed == generated,
                "{dir}/{file} is stale; regenerate with `cargo run -q -p ship-api --bin crdgen -- {dir}`"
            );
        }
    }
}

fn printer_columns(yaml: &str) -> Vec<String> {
    let crd: serde_json::Value = serde_norway::from_str(yaml).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn crds_have_no_cel_rules_and_serve_status() {
    let crds = ship_api::crds().unwrap();
    let columns = |file: &str| {
        let (_, yaml) = crds.iter().find(|(f, _)| *f == file).unwrap();
        printer_columns(yaml)
    };
    // The 1.20 apiserver rejects CRDs carrying `x-kubernetes-validations` (CEL).
    assert!(
        crds.iter()
            .all(|(_, yaml)| !yaml.contains("x-kubernetes-validations"))
    );
    assert_eq!(
        columns("shipreleases.yaml"),
        ["Env", "Commit", "Phase", "Tests", "Age", "Message"]
    );
    assert_eq!(
        columns("shippromotions.yaml"),
        ["From", "To", "Behind", "Last", "Next", "Ready"]
    );
    // One line per environment: what runs where, and whether it is what git says.
    assert_eq!(
        columns("shipenvironments.yaml"),
        ["Branch", "Tip", "Running", "In-Sync", "Reason", "Held", "Release"]
    );
}

#[test]
fn crds_use_only_the_formats_kubernetes_knows() {
    // Unsigned fields come out of schemars as `format: uint32`/`uint64`, which 1.30+ API
    // servers warn about at every install ("unrecognized format"); they keep `minimum: 0`.
    for (file, yaml) in ship_api::crds().unwrap() {
        let formats: Vec<&str> = yaml
            .lines()
            .filter_map(|line| line.trim().strip_prefix("format: "))
            .collect();
        for format in &formats {
            assert!(
                ["int32", "int64", "float", "double", "date-time", "byte", "date"].contains(format),
                "{file}: format {format} is not one Kubernetes knows"
            );
        }
    }
    let releases = ship_api::crds().unwrap().remove(0).1;
    assert!(
        releases.contains("minimum: 0"),
        "unsigned fields stay non-negative"
    );
}
