//! Durations as `ship.yaml` and the command line write them (`90s`, `5m`, `1h30m`, `250ms`),
//! parsed once into a typed value when the file or flag is read. A value that is not a
//! duration fails the parse with a message naming what is expected (serde adds the field's
//! path), so no caller ever needs a fallback.
//!
//! Parsing is jiff's (its "friendly" format, and ISO 8601 `PT5M` as well): a well-kept parser
//! that already serves Ship's timestamps, in place of a hand-written one.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration, with the text it was written as (kept for messages, so a user
/// reads back what they wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDuration {
    value: Duration,
    text: String,
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not in any duration format.
    #[error("{text:?} is not a duration like 90s, 5m or 1h30m")]
    Malformed {
        /// The text given.
        text: String,
    },
    /// A negative duration (`-5s`, `5s ago`).
    #[error("{text:?} is negative; give a duration like 90s, 5m or 1h30m")]
    Negative {
        /// The text given.
        text: String,
    },
}

impl ConfigDuration {
    /// Parses `text`; see the module docs for the formats.
    pub fn parse(text: &str) -> Result<ConfigDuration, DurationError> {
        let trimmed = text.trim();
        let signed: jiff::SignedDuration = trimmed.parse().map_err(|_| DurationError::Malformed {
            text: text.to_owned(),
        })?;
        let value = Duration::try_from(signed).map_err(|_| DurationError::Negative {
            text: text.to_owned(),
        })?;
        Ok(ConfigDuration {
            value,
            text: trimmed.to_owned(),
        })
    }

    /// A default written in code: its text is the friendly form (`5m`, `1m 30s`).
    pub fn from_duration(value: Duration) -> ConfigDuration {
        let text = jiff::SignedDuration::try_from(value)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{}s", value.as_secs()));
        ConfigDuration { value, text }
    }

    /// The parsed value.
    pub fn get(&self) -> Duration {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ConfigDuration {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ConfigDuration::parse(text)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ConfigDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ConfigDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as `250ms`, `90s`, `5m` or `1h30m`.",
            "examples": ["90s", "5m", "1h30m"]
        })
    }
}

/// [`ConfigDuration::parse`] for a command-line flag (clap's `value_parser`): shipd and
/// `kubectl ship` take durations the way `ship.yaml` writes them.
pub fn duration_flag(text: &str) -> Result<Duration, String> {
    ConfigDuration::parse(text)
        .map(|d| d.get())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_formats_ship_yaml_has_always_taken_still_parse() {
        for (text, secs, millis) in [
            ("90s", 90, 0),
            ("5m", 300, 0),
            ("1h30m", 5400, 0),
            ("250ms", 0, 250),
            ("1h 30m", 5400, 0),
            (" 2s ", 2, 0),
            ("PT5M", 300, 0),
            ("0s", 0, 0),
        ] {
            let d = ConfigDuration::parse(text).unwrap();
            assert_eq!(
                d.get(),
                Duration::from_secs(secs) + Duration::from_millis(millis),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_a_duration_is_an_error_that_says_what_is_expected() {
        for text in ["", "10", "soon", "1d", "5 parsecs", "1h30", "s"] {
            let err = ConfigDuration::parse(text).unwrap_err();
            assert!(matches!(err, DurationError::Malformed { .. }), "{text}: {err:?}");
            assert!(err.to_string().contains("like 90s"), "{err}");
        }
        for text in ["-5s", "5s ago"] {
            assert!(
                matches!(ConfigDuration::parse(text), Err(DurationError::Negative { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn the_text_is_kept_for_messages_and_written_back_as_given() {
        let d: ConfigDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.to_string(), "1h30m");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert_eq!(
            ConfigDuration::from_duration(Duration::from_secs(300)).as_str(),
            "5m"
        );
        let back =
            ConfigDuration::parse(ConfigDuration::from_duration(Duration::from_millis(90_250)).as_str());
        assert_eq!(back.unwrap().get(), Duration::from_millis(90_250));
    }
}
