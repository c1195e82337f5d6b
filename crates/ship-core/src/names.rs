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
}
