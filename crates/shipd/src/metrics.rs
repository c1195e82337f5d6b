//! The `/metrics` registry: the engine's metrics, plus the webhook receiver's request counters
//! read at scrape time (they live in the receiver as plain atomics).

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use ship_git::webhook::{Counters, Outcome};

/// Exposes [`Counters`] as `ship_webhook_requests_total{result}`.
#[derive(Debug)]
struct WebhookRequests(Arc<Counters>);

impl prometheus_client::collector::Collector for WebhookRequests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "webhook_requests",
            "Push webhook requests, by result (triggered, ignored, unsigned, bad_signature, too_large, malformed, replayed)",
            None,
            MetricType::Counter,
        )?;
        for label in Outcome::LABELS {
            let labels = [("result", label)];
            ConstCounter::new(self.0.get(label)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The registry served on `/metrics`.
pub fn registry(metrics: &ship_engine::metrics::Metrics, webhook: Option<Arc<Counters>>) -> Registry {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    if let Some(counters) = webhook {
        registry
            .sub_registry_with_prefix("ship")
            .register_collector(Box::new(WebhookRequests(counters)));
    }
    registry
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4), for clients that do not ask
/// for OpenMetrics (`curl`, `promtool check metrics`): counter families are named with their
/// `_total` suffix in HELP and TYPE, and the `# UNIT` and `# EOF` lines are dropped. Samples
/// are the same in both formats.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_suffix_and_openmetrics_lines_go() {
        let text = "# HELP ship_rollbacks Rollbacks.\n# TYPE ship_rollbacks counter\n\
                    ship_rollbacks_total{environment=\"main\"} 1\n\
                    # HELP ship_up Up.\n# TYPE ship_up gauge\n# UNIT ship_up seconds\nship_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(text),
            "# HELP ship_rollbacks_total Rollbacks.\n# TYPE ship_rollbacks_total counter\n\
             ship_rollbacks_total{environment=\"main\"} 1\n\
             # HELP ship_up Up.\n# TYPE ship_up gauge\nship_up 1\n"
        );
    }

    #[test]
    fn webhook_counters_are_read_at_scrape_time() {
        let counters = Arc::new(Counters::default());
        let metrics = ship_engine::metrics::Metrics::default();
        let registry = registry(&metrics, Some(counters));
        let text = ship_engine::metrics::encode(&registry).unwrap_or_default();
        assert!(
            text.contains("ship_webhook_requests_total{result=\"bad_signature\"} 0"),
            "{text}"
        );
    }
}
