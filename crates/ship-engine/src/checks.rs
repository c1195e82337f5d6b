//! Built-in post-deployment checks: a known query, a known result, sent to a URL or to a
//! Service through the API server's service proxy. Building the request and judging the answer
//! are pure; only [`run_http`] does I/O.

use std::time::{Duration, Instant};

use ship_render::config::{Expect, HttpTest, ServiceTarget};

/// Longest response body read; a known result fits well inside.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub use ship_core::urls::{expand, host_of};

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
pub(crate) fn excerpt(body: &str) -> String {
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

/// The API server path that proxies to `service` in `namespace`:
/// `/api/v1/namespaces/{ns}/services/{scheme}:{name}:{port}/proxy{path}`.
pub fn service_proxy_path(service: &ServiceTarget, namespace: &str, environment: &str) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/services/{}:{}:{}/proxy{}",
        service.scheme,
        service.name,
        service.port,
        expand(&service.path, namespace, environment)
    )
}

/// Where one HTTP check goes: the clients it may use and the environment it checks.
#[derive(Clone, Copy)]
pub struct CheckTarget<'a> {
    /// For `url` tests.
    pub http: &'a reqwest::Client,
    /// The environment's cluster, for `service` tests.
    pub cluster: &'a kube::Client,
    /// The environment's namespace.
    pub namespace: &'a str,
    /// The environment's name.
    pub environment: &'a str,
    /// The environment's `allowedTestHosts` (for `url` tests).
    pub allowed_hosts: &'a [String],
}

impl std::fmt::Debug for CheckTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckTarget")
            .field("namespace", &self.namespace)
            .field("environment", &self.environment)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}

/// Runs one HTTP check for an environment.
pub async fn run_http(target: CheckTarget<'_>, test: &HttpTest) -> CheckOutcome {
    let started = Instant::now();
    let outcome = |result: Result<String, String>| CheckOutcome {
        passed: result.is_ok(),
        message: result.unwrap_or_else(|e| e),
        duration: started.elapsed(),
    };
    let timeout = test.attempt_timeout();
    let Ok(method) = reqwest::Method::from_bytes(test.method.as_bytes()) else {
        return outcome(Err(format!("{:?} is not an HTTP method", test.method)));
    };
    let answer = match (&test.url, &test.service) {
        (Some(url), _) => send_to_url(target, test, method, url, timeout).await,
        (None, Some(service)) => send_to_service(target, test, method, service, timeout).await,
        (None, None) => Err("the test gives neither url nor service".to_owned()),
    };
    outcome(answer.and_then(|(status, body)| judge(&test.expect, status, &body)))
}

/// Runs an HTTP test up to `1 + retries` times, `interval` apart, until an attempt passes (an
/// app may need a moment after its rollout). The outcome is the passing attempt's, or the last
/// one's; the caller bounds the whole by the test deadline.
pub async fn run_http_with_retries(target: CheckTarget<'_>, test: &HttpTest) -> CheckOutcome {
    let started = Instant::now();
    let attempts = test.retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        let mut outcome = run_http(target, test).await;
        if outcome.passed || attempt >= attempts {
            if attempts > 1 {
                outcome.message = format!("{} (attempt {attempt} of {attempts})", outcome.message);
            }
            outcome.duration = started.elapsed();
            return outcome;
        }
        attempt += 1;
        tokio::time::sleep(test.retry_interval()).await;
    }
}

/// The test's request headers, `{namespace}` and `{environment}` filled in.
fn headers<'t>(target: CheckTarget<'_>, test: &'t HttpTest) -> impl Iterator<Item = (&'t str, String)> {
    let (namespace, environment) = (target.namespace.to_owned(), target.environment.to_owned());
    test.headers
        .iter()
        .map(move |(name, value)| (name.as_str(), expand(value, &namespace, &environment)))
}

/// Sends the test's request to its URL: the answer's status and body.
async fn send_to_url(
    target: CheckTarget<'_>,
    test: &HttpTest,
    method: reqwest::Method,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let url = expand(url, target.namespace, target.environment);
    if !host_allowed(&url, target.allowed_hosts) {
        return Err(format!(
            "{url} is outside this environment's allowedTestHosts; refusing to call it"
        ));
    }
    let mut request = target.http.request(method, &url).timeout(timeout);
    for (name, value) in headers(target, test) {
        request = request.header(name, value);
    }
    if let Some(body) = &test.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|err| format!("{} {url}: {}", test.method, describe(&err)))?;
    let status = response.status().as_u16();
    let body = read_bounded(response)
        .await
        .map_err(|message| format!("{} {url}: {message}", test.method))?;
    Ok((status, body))
}

/// Sends the test's request to a Service through the API server's service proxy. The proxy
/// passes the Service's status and body through; when it cannot reach the Service it answers
/// 503 itself, which the judge reports like any other wrong status.
async fn send_to_service(
    target: CheckTarget<'_>,
    test: &HttpTest,
    method: reqwest::Method,
    service: &ServiceTarget,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let path = service_proxy_path(service, target.namespace, target.environment);
    let what = format!(
        "{} service {}/{} port {}{}",
        test.method, target.namespace, service.name, service.port, service.path
    );
    let mut request = http::Request::builder().method(method.as_str()).uri(&path);
    for (name, value) in headers(target, test) {
        request = request.header(name, value);
    }
    let request = request
        .body(test.body.clone().unwrap_or_default().into_bytes())
        .map_err(|err| format!("{what}: cannot build the request: {err}"))?;
    let exchange = async {
        let response = target
            .cluster
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(|err| format!("{what}: {err}"))?;
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            response.into_body(),
            MAX_BODY_BYTES,
        ))
        .await
        .map_err(|err| format!("{what}: reading the answer: {err}"))?
        .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{what}: timed out"))?
}

/// A reqwest error without its URL (which may carry credentials in user:password form).
pub(crate) fn describe(err: &reqwest::Error) -> String {
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

pub(crate) async fn read_bounded(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("response body over {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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
    fn service_tests_go_through_the_api_servers_proxy() {
        let service = ServiceTarget {
            name: "web".into(),
            port: ship_render::config::ServicePort::Name("http".into()),
            path: "/{environment}/health?deep=1".into(),
            scheme: "http".into(),
        };
        assert_eq!(
            service_proxy_path(&service, "shop", "main"),
            "/api/v1/namespaces/shop/services/http:web:http/proxy/main/health?deep=1"
        );
        let tls = ServiceTarget {
            port: ship_render::config::ServicePort::Number(8443),
            scheme: "https".into(),
            path: "/".into(),
            ..service
        };
        assert_eq!(
            service_proxy_path(&tls, "shop", "main"),
            "/api/v1/namespaces/shop/services/https:web:8443/proxy/"
        );
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
}
