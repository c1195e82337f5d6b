//! Job tests: a Job template from the repository, run once per release under a unique name,
//! awaited by watch, its log tail kept.

use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;
use ship_api::{FIELD_MANAGER, keys};

use crate::checks::CheckOutcome;
use crate::health::{Health, assess};
use crate::inventory::{Stamp, stamp};
use crate::text::tail;

/// Most bytes of a test's log kept in status and events.
pub const MAX_LOG_BYTES: usize = 8 * 1024;

/// Label on a test Job: the release it tests.
pub const TEST_OF: &str = "ship.dev/test-of";

/// The Job's name for `test` of `release`: unique per release, a valid label value (≤ 63).
pub fn job_name(release: &str, test: &str) -> String {
    let mut name: String = format!("{release}-{test}").chars().take(63).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// The Job object to create from `template`.
pub fn job_object(template: &Value, name: &str, stamp_with: Stamp<'_>) -> Value {
    let mut job = template.clone();
    if let Some(metadata) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("name".into(), Value::String(name.to_owned()));
        metadata.remove("generateName");
    }
    stamp(&mut job, stamp_with);
    if let Some(labels) = job.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.insert(TEST_OF.into(), Value::String(stamp_with.release.to_owned()));
        // A test Job is not part of the environment: pruning and health must not see it.
        labels.remove(keys::ENVIRONMENT);
    }
    job
}

/// Runs the Job test `name` (creating it unless a previous attempt of this release already did)
/// and waits for it until `deadline`.
pub async fn run(
    client: &Client,
    namespace: &str,
    job: &Value,
    deadline: tokio::time::Instant,
) -> Result<(CheckOutcome, String), kube::Error> {
    let started = Instant::now();
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(job),
    )
    .await?;
    let judged = |job: &Job| assess(&serde_json::to_value(job).unwrap_or_default());
    // kube-runtime's wait watches the one Job until the health rules judge it done.
    let finished = kube::runtime::wait::await_condition(jobs, &name, move |job: Option<&Job>| {
        job.is_some_and(|job| !matches!(judged(job), Health::Progressing(_)))
    });
    let verdict = match tokio::time::timeout_at(deadline, finished).await {
        Err(_elapsed) => Err(format!(
            "Job {name} did not finish within the test deadline (testing.timeout)"
        )),
        Ok(Err(err)) => Err(format!("the watch of Job {name} ended: {err}")),
        Ok(Ok(None)) => Err(format!("Job {name} was deleted before it finished")),
        Ok(Ok(Some(job))) => match judged(&job) {
            Health::Healthy => Ok(format!("Job {name} completed")),
            Health::Failed(message) => Err(message),
            Health::Progressing(_) => Err(format!("Job {name} did not finish")),
        },
    };
    let log = tokio::time::timeout(LOG_GRACE, log_tail(client, namespace, &name))
        .await
        .unwrap_or_default();
    let (passed, message) = match verdict {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    Ok((
        CheckOutcome {
            passed,
            message,
            duration: started.elapsed(),
        },
        log,
    ))
}

/// How long reading a Job test's log may take after its verdict (also past the test deadline).
pub(crate) const LOG_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The log tail of the Job's newest Pod: from the kubelet when it answers, else the containers'
/// termination messages.
async fn log_tail(client: &Client, namespace: &str, job: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
    else {
        return String::new();
    };
    let Some(pod) = list
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return String::new();
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = LogParams {
        limit_bytes: Some(MAX_LOG_BYTES as i64 * 4),
        ..LogParams::default()
    };
    if let Ok(text) = pods.logs(&name, &params).await {
        return tail(&text, MAX_LOG_BYTES);
    }
    let messages: Vec<String> = pod
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.state?.terminated?.message)
        .collect();
    tail(&messages.join("\n"), MAX_LOG_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_release_and_bounded() {
        assert_eq!(
            job_name("main-0123456789", "journeys"),
            "main-0123456789-journeys"
        );
        let long = job_name("main-0123456789", &"x".repeat(80));
        assert_eq!(long.len(), 63);
        assert_eq!(job_name("a", "b-"), "a-b");
    }

    #[test]
    fn job_object_is_named_stamped_and_kept_out_of_the_environment() {
        let template = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "t-", "namespace": "main"}, "spec": {}});
        let job = job_object(
            &template,
            "main-1-t",
            Stamp {
                environment: "main",
                commit: "c",
                release: "main-1",
            },
        );
        assert_eq!(job.pointer("/metadata/name"), Some(&Value::from("main-1-t")));
        assert!(job.pointer("/metadata/generateName").is_none());
        assert_eq!(
            job.pointer("/metadata/labels/ship.dev~1test-of"),
            Some(&Value::from("main-1"))
        );
        assert!(job.pointer("/metadata/labels/ship.dev~1environment").is_none());
        assert_eq!(
            job.pointer("/metadata/annotations/ship.dev~1commit"),
            Some(&Value::from("c"))
        );
    }
}
