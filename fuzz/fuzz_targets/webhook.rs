//! Webhook requests come from the network: any headers and body must be verified or refused,
//! never panic. The input is split into a header block and a body at the first NUL byte; each
//! header line is `name: value`.
#![no_main]
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = http::HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(&line[..colon]),
            http::header::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let branches = ["main".to_owned(), "production".to_owned()];
    match ship_git::webhook::verify(&headers, body, SECRET) {
        Ok(provider) => {
            let _ = ship_git::webhook::classify(provider, &headers, body, &branches).response();
        }
        Err(outcome) => {
            let _ = outcome.response();
        }
    }
});
