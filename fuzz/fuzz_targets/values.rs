//! Values files are untrusted YAML: parsing must return values or an error, never panic, and
//! the merge must keep Helm's promises on any pair of files (`helm -f a.yaml -f b.yaml`):
//! nothing merged in changes nothing, merging a file into itself changes nothing, every key of
//! the later file wins unless both hold maps (which merge key by key), and every key only the
//! earlier file has is kept as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use ship_render::helm::{merge_values, parse_values};

fn merged(base: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut out = base.clone();
    merge_values(&mut out, over.clone());
    out
}

/// Checks `result` is `over` merged into `base`, by the rules above.
fn check(base: &Map<String, Value>, over: &Map<String, Value>, result: &Map<String, Value>) {
    for (key, value) in base {
        if !over.contains_key(key) {
            assert_eq!(result.get(key), Some(value), "{key}: kept from the earlier file");
        }
    }
    for (key, value) in over {
        match (base.get(key), value, result.get(key)) {
            (Some(Value::Object(mine)), Value::Object(theirs), Some(Value::Object(both))) => {
                check(mine, theirs, both)
            }
            (Some(Value::Object(_)), Value::Object(_), other) => panic!("{key}: maps merged into {other:?}"),
            (_, value, got) => assert_eq!(got, Some(value), "{key}: the later file wins"),
        }
    }
    assert!(result.keys().all(|k| base.contains_key(k) || over.contains_key(k)), "no key from nowhere");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, second) = text.split_once("\n---\n").unwrap_or((text, ""));
    let (Ok(base), Ok(over)) = (parse_values(first, "a.yaml"), parse_values(second, "b.yaml")) else {
        return;
    };
    let empty = Map::new();
    assert_eq!(merged(&base, &empty), base);
    assert_eq!(merged(&empty, &over), over);
    assert_eq!(merged(&base, &base), base);
    check(&base, &over, &merged(&base, &over));
});
