//! Manifest files from a commit are untrusted: splitting and parsing any YAML stream must
//! return objects or an error (with the limits enforced), never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let limits = ship_render::Limits::default();
        let _ = ship_render::manifests::parse_documents(text, "fuzz.yaml", &limits);
    }
});
