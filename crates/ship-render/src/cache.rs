//! Renders kept in memory, keyed by what determines them: the commit, the environment and the
//! versions of the renderers that ran (a new helm or kustomize may render the same tree
//! differently, so a render made by another version is never reused).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

/// What one render depends on besides the files: the commit names the whole tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderKey {
    /// The commit's id.
    pub commit: String,
    /// The environment.
    pub environment: String,
    /// The renderers' versions ([`renderer_versions`]).
    pub renderers: Arc<str>,
}

impl RenderKey {
    /// The key of `environment` at `commit`, rendered by this process's renderers.
    pub fn new(commit: &str, environment: &str) -> Self {
        RenderKey {
            commit: commit.to_owned(),
            environment: environment.to_owned(),
            renderers: renderer_versions(),
        }
    }
}

/// A bounded cache of renders, least recently used evicted first. Pure (no I/O).
#[derive(Debug)]
pub struct RenderCache<T> {
    capacity: usize,
    entries: VecDeque<(RenderKey, Arc<T>)>,
}

impl<T> RenderCache<T> {
    /// An empty cache holding at most `capacity` renders (at least one).
    pub fn new(capacity: usize) -> Self {
        RenderCache {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
        }
    }

    /// The render for `key`, marked as the most recently used.
    pub fn get(&mut self, key: &RenderKey) -> Option<Arc<T>> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at)?;
        let value = entry.1.clone();
        self.entries.push_back(entry);
        Some(value)
    }

    /// Keeps `value` for `key`, evicting the least recently used render when full.
    pub fn insert(&mut self, key: RenderKey, value: Arc<T>) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }

    /// How many renders are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The versions of helm and kustomize this process renders with, e.g.
/// `helm v4.1.4+g05fa379; kustomize v5.7.1`, asked once (each asks its binary).
pub fn renderer_versions() -> Arc<str> {
    static VERSIONS: OnceLock<Arc<str>> = OnceLock::new();
    VERSIONS
        .get_or_init(|| {
            let helm = crate::tools::helm_version().unwrap_or_else(|| "none".into());
            let kustomize = crate::tools::kustomize_version().unwrap_or_else(|| "none".into());
            format!("helm {helm}; kustomize {kustomize}").into()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(commit: &str, renderers: &str) -> RenderKey {
        RenderKey {
            commit: commit.into(),
            environment: "main".into(),
            renderers: renderers.into(),
        }
    }

    #[test]
    fn the_least_recently_used_render_goes_first() {
        let mut cache = RenderCache::new(2);
        cache.insert(key("a", "v1"), Arc::new(1));
        cache.insert(key("b", "v1"), Arc::new(2));
        assert_eq!(cache.get(&key("a", "v1")).as_deref(), Some(&1));
        cache.insert(key("c", "v1"), Arc::new(3));
        assert_eq!(cache.get(&key("b", "v1")), None, "b was used least recently");
        assert_eq!(cache.get(&key("a", "v1")).as_deref(), Some(&1));
        assert_eq!(cache.get(&key("c", "v1")).as_deref(), Some(&3));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn another_renderer_version_is_another_render() {
        let mut cache = RenderCache::new(4);
        cache.insert(key("a", "helm v3.14.0"), Arc::new(1));
        assert_eq!(cache.get(&key("a", "helm v4.1.4")), None);
        let mut other_environment = key("a", "helm v3.14.0");
        other_environment.environment = "production".into();
        assert_eq!(cache.get(&other_environment), None);
        cache.insert(key("a", "helm v3.14.0"), Arc::new(5));
        assert_eq!(cache.len(), 1, "a key is kept once");
        assert_eq!(cache.get(&key("a", "helm v3.14.0")).as_deref(), Some(&5));
    }

    #[test]
    fn a_cache_holds_at_least_one() {
        let mut cache = RenderCache::new(0);
        cache.insert(key("a", "v"), Arc::new(1));
        assert_eq!(cache.get(&key("a", "v")).as_deref(), Some(&1));
    }
}
