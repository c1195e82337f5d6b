//! The committed CRD must be exactly what the Rust types generate (controller-rs style).
//! Fix a failure with: `cargo run -q -p ship-api --bin crdgen > deploy/crds/shipreleases.yaml`.

#[test]
fn committed_crd_matches_generated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds/shipreleases.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = ship_api::crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "deploy/crds/shipreleases.yaml is stale; regenerate it with \
         `cargo run -q -p ship-api --bin crdgen > deploy/crds/shipreleases.yaml`"
    );
}

#[test]
fn crd_has_no_cel_rules_and_serves_status() {
    // The 1.20 apiserver rejects CRDs carrying `x-kubernetes-validations` (CEL).
    let generated = ship_api::crd_yaml().unwrap();
    assert!(!generated.contains("x-kubernetes-validations"));
    let crd: serde_json::Value = serde_norway::from_str(&generated).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Env", "Commit", "Phase", "Tests", "Age", "Message"]);
}
