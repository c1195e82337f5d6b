//! Prometheus analysis tests: a PromQL query measured `count` times, `interval` apart, each
//! answer judged against a range, in the manner of Argo Rollouts' analysis runs and Flagger's
//! metric checks. Reading an answer, judging a measurement and deciding what follows a tally
//! are pure; only [`run`] does I/O.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ship_render::config::PrometheusTest;

use crate::checks::{CheckOutcome, CheckTarget, expand, host_allowed};

/// What one query's answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One number.
    Value(f64),
    /// An answer that cannot be one number (no samples, several series, a matrix), or an
    /// error Prometheus may get over (unreachable, overloaded): a failed measurement.
    Unusable(String),
    /// Prometheus refused the query itself (`bad_data`): no later measurement can pass.
    Refused(String),
}

/// Reads Prometheus' answer to an instant query (`/api/v1/query`): its HTTP status and body.
pub fn read_answer(status: u16, body: &str) -> Answer {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return Answer::Unusable(format!(
            "HTTP {status}, not a Prometheus answer: {}",
            crate::checks::excerpt(body)
        ));
    };
    if json["status"] != "success" {
        let error = json["error"].as_str().unwrap_or("no error given");
        let kind = json["errorType"].as_str().unwrap_or("");
        return if kind == "bad_data" {
            Answer::Refused(format!("Prometheus refused the query: {error}"))
        } else {
            Answer::Unusable(format!("Prometheus answered HTTP {status} ({kind}): {error}"))
        };
    }
    let data = &json["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) | None => {
                return Answer::Unusable(
                    "the query returned no samples (append `or vector(0)` if no data means none)".into(),
                );
            }
            Some(many) => {
                return Answer::Unusable(format!(
                    "the query returned {} series; aggregate them to one (sum, max, ...)",
                    many.len()
                ));
            }
        },
        other => {
            return Answer::Unusable(format!(
                "the query returned a {}, not a number; use an instant vector or a scalar",
                other.unwrap_or("nothing")
            ));
        }
    };
    // A sample is [time, "value"]; values are strings so NaN and ±Inf survive JSON.
    match sample[1].as_str().map(str::parse::<f64>) {
        Some(Ok(value)) => Answer::Value(value),
        _ => Answer::Unusable(format!("the sample {sample} is not a number")),
    }
}

/// Judges one value against the test's range: `Ok(what)` or `Err(why not)`.
pub fn judge(test: &PrometheusTest, value: f64) -> Result<String, String> {
    let within =
        !value.is_nan() && test.min.is_none_or(|min| value >= min) && test.max.is_none_or(|max| value <= max);
    if within {
        Ok(format!("{value} is {}", test.range()))
    } else {
        Err(format!("{value} is not {}", test.range()))
    }
}

/// The measurements so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Measurements that passed.
    pub passed: u32,
    /// Measurements that failed.
    pub failed: u32,
}

/// What follows a tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take another measurement after the interval.
    Measure,
    /// Every measurement is taken and few enough failed.
    Passed,
    /// More than `failureLimit` failed: the test fails now, without waiting for the rest.
    Failed,
}

/// What follows `tally` for `test`.
pub fn next(test: &PrometheusTest, tally: Tally) -> Next {
    if tally.failed > test.failure_limit {
        Next::Failed
    } else if tally.passed + tally.failed >= test.count {
        Next::Passed
    } else {
        Next::Measure
    }
}

/// Runs a Prometheus test: measures until [`next`] decides, or Prometheus refuses the query.
/// The outcome's message is the deciding measurement's; the log has one line per measurement.
/// The caller bounds the whole by the test deadline.
pub async fn run(target: CheckTarget<'_>, test: &PrometheusTest) -> (CheckOutcome, String) {
    let started = Instant::now();
    let (url, query) = request(target, test);
    let done = |passed: bool, message: String, log: String| {
        (
            CheckOutcome {
                passed,
                message,
                duration: started.elapsed(),
            },
            log,
        )
    };
    if !host_allowed(&url, target.allowed_hosts) {
        return done(
            false,
            format!("{url} is outside this environment's allowedTestHosts; refusing to call it"),
            String::new(),
        );
    }
    let mut log = format!("query: {query}\npasses when {}\n", test.range());
    let mut tally = Tally::default();
    loop {
        let taken = tally.passed + tally.failed + 1;
        let answer = measure(target.http, &url, &query, test.query_timeout()).await;
        let verdict = match answer {
            Answer::Value(value) => judge(test, value),
            Answer::Unusable(why) => Err(why),
            Answer::Refused(why) => {
                let _ = writeln!(log, "[{taken}/{}] {why}", test.count);
                return done(false, why, log);
            }
        };
        let at = started.elapsed().as_secs_f64();
        let (mark, said) = match &verdict {
            Ok(said) => ("pass", said),
            Err(said) => ("FAIL", said),
        };
        let _ = writeln!(log, "[{taken}/{}] +{at:.1}s {mark}: {said}", test.count);
        match verdict {
            Ok(_) => tally.passed += 1,
            Err(_) => tally.failed += 1,
        }
        match next(test, tally) {
            Next::Measure => tokio::time::sleep(test.measurement_interval()).await,
            Next::Passed => {
                let message = format!(
                    "{} of {} measurements passed ({})",
                    tally.passed,
                    test.count,
                    test.range()
                );
                return done(true, message, log);
            }
            Next::Failed => {
                let message = format!(
                    "measurement {taken} of {}: {said}; {} failed, {} tolerated",
                    test.count, tally.failed, test.failure_limit
                );
                return done(false, message, log);
            }
        }
    }
}

/// Why Prometheus refuses the test's query, when it does (`bad_data`); `None` when it takes
/// it, or cannot answer now, or the address is not allowed (the test itself says so). Asked
/// before a release applies anything: a query refused now would fail every measurement.
pub async fn refusal(target: CheckTarget<'_>, test: &PrometheusTest) -> Option<String> {
    let (url, query) = request(target, test);
    if !host_allowed(&url, target.allowed_hosts) {
        return None;
    }
    match measure(target.http, &url, &query, test.query_timeout()).await {
        Answer::Refused(why) => Some(why),
        Answer::Value(_) | Answer::Unusable(_) => None,
    }
}

/// The query endpoint and the query, `{namespace}` and `{environment}` filled in.
fn request(target: CheckTarget<'_>, test: &PrometheusTest) -> (String, String) {
    let address = expand(&test.address, target.namespace, target.environment);
    let query = expand(&test.query, target.namespace, target.environment);
    (format!("{}/api/v1/query", address.trim_end_matches('/')), query)
}

/// One instant query.
async fn measure(http: &reqwest::Client, url: &str, query: &str, timeout: Duration) -> Answer {
    let sent = http
        .get(url)
        .query(&[("query", query)])
        .timeout(timeout)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => {
            return Answer::Unusable(format!(
                "cannot query Prometheus: {}",
                crate::checks::describe(&err)
            ));
        }
    };
    let status = response.status().as_u16();
    match crate::checks::read_bounded(response).await {
        Ok(body) => read_answer(status, &body),
        Err(why) => Answer::Unusable(format!("reading Prometheus' answer: {why}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ship_render::config::ConfigDuration;

    fn test(min: Option<f64>, max: Option<f64>, count: u32, failure_limit: u32) -> PrometheusTest {
        PrometheusTest {
            address: "http://prometheus:9090".into(),
            query: "sum(rate(errors_total[1m]))".into(),
            min,
            max,
            count,
            interval: ConfigDuration::from_duration(Duration::from_secs(1)),
            failure_limit,
            timeout: ConfigDuration::from_duration(Duration::from_secs(5)),
        }
    }

    fn vector(samples: &[&str]) -> String {
        let result: Vec<String> = samples
            .iter()
            .map(|v| format!(r#"{{"metric":{{}},"value":[1700000000.5,"{v}"]}}"#))
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            result.join(",")
        )
    }

    #[test]
    fn answers_are_read_as_one_number_or_said_why_not() {
        assert_eq!(read_answer(200, &vector(&["0.25"])), Answer::Value(0.25));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"3"]}}"#;
        assert_eq!(read_answer(200, scalar), Answer::Value(3.0));
        assert!(matches!(read_answer(200, &vector(&["+Inf"])), Answer::Value(v) if v.is_infinite()));
        assert!(matches!(read_answer(200, &vector(&["NaN"])), Answer::Value(v) if v.is_nan()));
        let unusable = |status, body: &str| match read_answer(status, body) {
            Answer::Unusable(why) => why,
            other => panic!("{body}: {other:?}"),
        };
        assert!(unusable(200, &vector(&[])).contains("or vector(0)"));
        assert!(unusable(200, &vector(&["1", "2"])).contains("2 series"));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(unusable(200, matrix).contains("matrix"));
        assert!(unusable(502, "<html>bad gateway</html>").contains("HTTP 502"));
        let overloaded = r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert!(unusable(503, overloaded).contains("query timed out"));
        let refused = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert_eq!(
            read_answer(400, refused),
            Answer::Refused("Prometheus refused the query: parse error at char 5".into())
        );
    }

    #[test]
    fn a_value_passes_within_the_range_and_nan_never() {
        let below = test(None, Some(0.5), 1, 0);
        assert!(judge(&below, 0.5).is_ok());
        assert_eq!(judge(&below, 0.6), Err("0.6 is not <= 0.5".into()));
        assert!(judge(&below, f64::NAN).is_err());
        let between = test(Some(0.9), Some(1.0), 1, 0);
        assert!(judge(&between, 0.95).is_ok());
        assert!(judge(&between, 0.8).unwrap_err().contains("between 0.9 and 1"));
        assert!(judge(&test(Some(1.0), None, 1, 0), f64::INFINITY).is_ok());
    }

    /// Every tally: the test fails once failures pass the limit, passes once all are taken,
    /// and never asks for more than `count` measurements.
    #[test]
    fn the_tally_decides_as_soon_as_it_can() {
        for count in 1..6 {
            for limit in 0..count {
                let t = test(None, Some(0.0), count, limit);
                for passed in 0..=count {
                    for failed in 0..=count - passed {
                        let tally = Tally { passed, failed };
                        let want = if failed > limit {
                            Next::Failed
                        } else if passed + failed == count {
                            Next::Passed
                        } else {
                            Next::Measure
                        };
                        assert_eq!(next(&t, tally), want, "{tally:?} of {count}, limit {limit}");
                    }
                }
            }
        }
    }
}
