//! The Kubernetes naming rules Ship checks before it sends anything (RFC 1123, as the API
//! server applies them): the one home of these checks.

/// An RFC 1123 label (namespaces, Service names, port names, Ship's own names): 1-63
/// characters of lowercase letters, digits and '-', starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len()) && is_dns_chars(name, false)
}

/// An RFC 1123 subdomain (most object names): up to 253 characters of lowercase letters,
/// digits, '-' and '.', starting and ending with a letter or digit.
pub fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len()) && is_dns_chars(name, true)
}

fn is_dns_chars(name: &str, dots: bool) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    name.bytes()
        .all(|b| alphanumeric(b) || b == b'-' || (dots && b == b'.'))
        && name.bytes().next().is_some_and(alphanumeric)
        && name.bytes().last().is_some_and(alphanumeric)
}

/// A commit as people read it: its first 7 characters, as `git log --oneline` shows it.
pub fn short_sha(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// Name of the release of `commit` to `environment` created from a branch tip: the environment
/// and the first 10 characters of the commit. Deterministic, so a restarted controller that
/// sees the same tip again finds the release it already made. A second release of the same
/// commit from the branch (after the branch moved away and back) adds `-2`, `-3`, ...
pub fn release_name(environment: &str, commit: &str) -> String {
    format!("{environment}-{}", commit.get(..10).unwrap_or(commit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "web", "app-1", "1app", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-web", "web-", "Web", "a.b", "a_b", "ä", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        for good in ["a", "web.example", "app-1.v2", &"a".repeat(253)] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["", ".web", "web.", "-web", "web-", "Web", "a_b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_stable() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(short_sha(commit), "0123456");
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(release_name("production", commit), "production-0123456789");
    }
}
