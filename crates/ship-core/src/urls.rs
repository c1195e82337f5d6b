//! URLs Ship calls (test URLs, Prometheus addresses, notification targets): the one check that
//! a text is an http(s) URL, the one host extraction, and the one placeholder syntax they share
//! (`{namespace}`, `{environment}`). Parsed by the WHATWG URL rules (the `url` crate, as
//! reqwest sends requests), so the URL checked is the URL called.

/// `template` with `{namespace}` and `{environment}` filled in.
pub fn expand(template: &str, namespace: &str, environment: &str) -> String {
    crate::text::fill(
        template,
        &[("namespace", namespace), ("environment", environment)],
    )
}

/// `text` is an absolute `http://` or `https://` URL with a host. A template is checked with
/// its placeholders filled by sample values, since the real ones are DNS labels too.
pub fn is_http(text: &str) -> bool {
    url::Url::parse(&expand(text, "namespace", "environment"))
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
}

/// The host of an http(s) URL, lower-cased (international names in their ASCII form), without
/// port, credentials or an IPv6 address's brackets.
pub fn host_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_and_templates_pass_and_nothing_else_does() {
        for good in [
            "http://web/",
            "https://web.{namespace}.svc:8443/health?x=1",
            "http://{environment}.example.com",
            "HTTP://Example.COM",
            "http://[::1]:9090",
            "http://user:pw@host/",
            // WHATWG reads extra slashes of a special scheme away: this calls http://path/.
            "http:///path",
        ] {
            assert!(is_http(good), "{good}");
        }
        for bad in [
            "",
            "web:80",
            "prom:9090",
            "ftp://host/",
            "file:///etc/passwd",
            "http://",
            "https://exa mple.com/",
            "//host/path",
            "javascript:alert(1)",
        ] {
            assert!(!is_http(bad), "{bad}");
        }
    }

    #[test]
    fn the_host_is_the_host_called() {
        assert_eq!(
            host_of("http://Web.Example.com:80/x").as_deref(),
            Some("web.example.com")
        );
        assert_eq!(host_of("http://[::1]:9090/").as_deref(), Some("::1"));
        assert_eq!(
            host_of("http://evil.com\\@good.com/").as_deref(),
            Some("evil.com")
        );
        assert_eq!(host_of("not a url"), None);
        assert_eq!(
            expand("http://{environment}.{namespace}/", "ns", "main"),
            "http://main.ns/"
        );
    }
}
