//! How Ship names things, in one place for shipd, the engine, `kubectl ship` and the tests.

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
    fn names_are_stable() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(short_sha(commit), "0123456");
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(release_name("production", commit), "production-0123456789");
    }
}
