//! Built-in post-deployment checks: a known query, a known result. Building the request and
//! judging the answer are pure; only [`run_http`] does I/O.

use std::time::{Duration, Instant};

use ship_render::config::{Expect, HttpTest};

/// Longest response body read; a known result fits well inside.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// `template` with `{namespace}` and `{environment}` filled in.
pub fn expand(template: &str, namespace: &str, environment: &str) -> String {
    template
        .replace("{namespace}", namespace)
        .replace("{environment}", environment)
}

/// The host of an http(s) URL, lower-cased, without port or credentials.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Does the environment let its tests call `url`? An empty list allows any host.
pub fn host_allowed(url: &str, allowed: &[String]) -> bool {
    allowed.is_empty() || host_of(url).is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(&h)))
}

/// Judges an answer against the known result: `Ok(summary)` or `Err(what differs)`.
pub fn judge(expect: &Expect, status: u16, body: &str) -> Result<String, String> {
    if status != expect.status {
        return Err(format!(
            "expected HTTP {}, got {status}: {}",
            expect.status,
            excerpt(body)
        ));
    }
    if let Some(needle) = &expect.body_contains
        && !body.contains(needle.as_str())
    {
        return Err(format!("body does not contain {needle:?}: {}", excerpt(body)));
    }
    if !expect.json.is_empty() {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("body is not JSON ({e}): {}", excerpt(body)))?;
        for (pointer, want) in &expect.json {
            match value.pointer(pointer) {
                Some(got) if got == want => {}
                Some(got) => return Err(format!("{pointer}: expected {want}, got {got}")),
                None => return Err(format!("{pointer}: missing, expected {want}")),
            }
        }
    }
    Ok(format!("HTTP {status} as expected"))
}

/// The first 200 characters of a body, for messages.
fn excerpt(body: &str) -> String {
    let mut cut: String = body.chars().take(200).collect();
    if cut.len() < body.len() {
        cut.push('…');
    }
    cut
}

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Passed?
    pub passed: bool,
    /// What was seen.
    pub message: String,
    /// How long it took.
    pub duration: Duration,
}

/// Runs one HTTP check for an environment.
pub async fn run_http(
    client: &reqwest::Client,
    test: &HttpTest,
    namespace: &str,
    environment: &str,
    allowed_hosts: &[String],
) -> CheckOutcome {
    let started = Instant::now();
    let url = expand(&test.url, namespace, environment);
    let outcome = |passed: bool, message: String| CheckOutcome {
        passed,
        message,
        duration: started.elapsed(),
    };
    if !host_allowed(&url, allowed_hosts) {
        return outcome(
            false,
            format!("{url} is outside this environment's allowedTestHosts; refusing to call it"),
        );
    }
    let timeout = ship_render::config::parse_duration(&test.timeout).unwrap_or(Duration::from_secs(10));
    let Ok(method) = reqwest::Method::from_bytes(test.method.as_bytes()) else {
        return outcome(false, format!("{:?} is not an HTTP method", test.method));
    };
    let mut request = client.request(method, &url).timeout(timeout);
    for (name, value) in &test.headers {
        request = request.header(name, expand(value, namespace, environment));
    }
    if let Some(body) = &test.body {
        request = request.body(body.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return outcome(false, format!("{} {url}: {}", test.method, describe(&err))),
    };
    let status = response.status().as_u16();
    let body = match read_bounded(response).await {
        Ok(body) => body,
        Err(message) => return outcome(false, format!("{} {url}: {message}", test.method)),
    };
    match judge(&test.expect, status, &body) {
        Ok(message) => outcome(true, message),
        Err(message) => outcome(false, message),
    }
}

/// A reqwest error without its URL (which may carry credentials in user:password form).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    if err.is_connect() {
        return "cannot connect".into();
    }
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(url.as_str(), "<url>"),
        None => text,
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("response body over {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn expect(status: u16, contains: Option<&str>, json: &[(&str, serde_json::Value)]) -> Expect {
        Expect {
            status,
            body_contains: contains.map(str::to_owned),
            json: json
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn judging_answers() {
        assert!(judge(&expect(200, Some("ok"), &[]), 200, "all ok").is_ok());
        assert!(
            judge(&expect(200, None, &[]), 500, "boom")
                .unwrap_err()
                .contains("got 500")
        );
        assert!(
            judge(&expect(200, Some("ok"), &[]), 200, "failure")
                .unwrap_err()
                .contains("\"ok\"")
        );
        let j = expect(200, None, &[("/items/0/name", serde_json::json!("tea"))]);
        assert!(judge(&j, 200, r#"{"items":[{"name":"tea"}]}"#).is_ok());
        assert!(
            judge(&j, 200, r#"{"items":[{"name":"tee"}]}"#)
                .unwrap_err()
                .contains("\"tee\"")
        );
        assert!(judge(&j, 200, r#"{"items":[]}"#).unwrap_err().contains("missing"));
        assert!(judge(&j, 200, "<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn hosts_and_templates() {
        assert_eq!(
            expand("http://web.{namespace}.svc/{environment}", "ns", "main"),
            "http://web.ns.svc/main"
        );
        assert_eq!(
            host_of("http://user:pw@Web.Example:8080/x?y").as_deref(),
            Some("web.example")
        );
        assert_eq!(host_of("https://[::1]:9/").as_deref(), Some("::1"));
        let allowed = vec!["web.example".to_owned()];
        assert!(host_allowed("http://web.example/", &allowed));
        assert!(!host_allowed("http://evil.example/", &allowed));
        assert!(!host_allowed("http://web.example@evil.example/", &allowed));
        assert!(host_allowed("http://anything/", &[]));
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }
}
