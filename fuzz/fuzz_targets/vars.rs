//! Manifests with `${name}` are untrusted text: substitution must return text or an error,
//! never panic, and must keep its promises on any input: text without `$` is unchanged, and
//! escaping every `${` gives the input back.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars: BTreeMap<String, String> = [("tag", "1.4.2"), ("replicas", "3"), ("empty", ""), ("loop", "${tag}")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = ship_render::vars::substitute(text, &vars, "fuzz.yaml");
    let plain = text.replace('$', "");
    assert_eq!(ship_render::vars::substitute(&plain, &vars, "fuzz.yaml").as_deref(), Ok(plain.as_str()));
    let escaped = text.replace("${", "$${");
    if let Ok(out) = ship_render::vars::substitute(&escaped, &vars, "fuzz.yaml") {
        assert_eq!(out, text);
    }
});
