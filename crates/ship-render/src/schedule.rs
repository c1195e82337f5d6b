//! The promotion schedule: a five-field cron expression in an IANA time zone.
//!
//! Pure. The controller asks [`Schedule::latest_due`] for the scheduled time to run now (the
//! latest one since the last handled, so missed weeks collapse into one run) and
//! [`Schedule::next_after`] for when to look again.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: TimeZone,
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "{expression:?} is not a cron expression (minute hour day month weekday, e.g. \"0 10 * * TUE\"): {problem}"
    )]
    Cron {
        /// The expression.
        expression: String,
        /// croner's explanation.
        problem: String,
    },
    /// The time zone is unknown.
    #[error("{0:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)")]
    TimeZone(String),
}

/// How far back [`Schedule::latest_due`] looks; a schedule that fires less often than this
/// (for example yearly, after two years down) is treated as not due.
const LOOKBACK_DAYS: i64 = 400;

impl Schedule {
    /// Parses `expression` (five fields; day and month names allowed) in time zone `zone`.
    pub fn parse(expression: &str, zone: &str) -> Result<Self, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| ScheduleError::Cron {
                expression: expression.to_owned(),
                problem: e.to_string(),
            })?;
        let zone = TimeZone::get(zone).map_err(|_| ScheduleError::TimeZone(zone.to_owned()))?;
        Ok(Self { cron, zone })
    }

    /// The cron expression.
    pub fn expression(&self) -> &str {
        self.cron.as_str()
    }

    /// The time zone's IANA name.
    pub fn zone_name(&self) -> String {
        self.zone.iana_name().unwrap_or("UTC").to_owned()
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest scheduled time `t` with `last_handled < t <= now`: what to run now. Only the
    /// latest counts, so a controller that was down for three weeks runs once, not three times.
    pub fn latest_due(&self, last_handled: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let floor = now
            .checked_sub(jiff::SignedDuration::from_hours(24 * LOOKBACK_DAYS))
            .unwrap_or(Timestamp::MIN)
            .max(last_handled);
        let now_zoned = now.to_zoned(self.zone.clone());
        let due = self
            .cron
            .find_previous_occurrence(&now_zoned, true)
            .ok()?
            .timestamp();
        (due > floor).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn tuesday_at_ten_utc() {
        let s = Schedule::parse("0 10 * * TUE", "UTC").unwrap();
        // 2026-11-22 is a Sunday.
        assert_eq!(
            s.next_after(at("2026-11-22T12:00:00Z")),
            Some(at("2026-11-24T10:00:00Z"))
        );
        // Exactly on time counts as due; a minute before does not.
        let last = at("2026-11-17T10:00:00Z");
        assert_eq!(s.latest_due(last, at("2026-11-24T09:59:00Z")), None);
        assert_eq!(
            s.latest_due(last, at("2026-11-24T10:00:00Z")),
            Some(at("2026-11-24T10:00:00Z"))
        );
        // Handled: not due again until next week.
        let handled = at("2026-11-24T10:00:00Z");
        assert_eq!(s.latest_due(handled, at("2026-11-30T23:00:00Z")), None);
    }

    #[test]
    fn missed_weeks_collapse_into_one_run() {
        let s = Schedule::parse("0 10 * * TUE", "UTC").unwrap();
        let last = at("2026-11-03T10:00:00Z");
        // Down for three Tuesdays: the latest one is due, once.
        let due = s.latest_due(last, at("2026-11-26T08:00:00Z"));
        assert_eq!(due, Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.latest_due(due.unwrap(), at("2026-11-26T08:01:00Z")), None);
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let s = Schedule::parse("0 10 * * TUE", "Europe/Berlin").unwrap();
        // Winter: CET is UTC+1.
        assert_eq!(
            s.next_after(at("2026-11-22T00:00:00Z")),
            Some(at("2026-11-24T09:00:00Z"))
        );
        // Summer: CEST is UTC+2.
        assert_eq!(
            s.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-07T08:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        assert!(matches!(
            Schedule::parse("every tuesday", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 10 * * TUE", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert_eq!(
            Schedule::parse("0 10 * * TUE", "Mars/Olympus").unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
    }
}
