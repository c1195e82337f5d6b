//! Logging setup: JSON lines in a cluster, readable text on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, with the span fields (environment, commit, release) flattened.
    Json,
    /// Human-readable text.
    Plain,
    /// `plain` when stderr is a terminal, `json` otherwise.
    Auto,
}

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`).
pub fn init(format: Format) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let tty = std::io::stderr().is_terminal();
    let json = match format {
        Format::Json => true,
        Format::Plain => false,
        Format::Auto => !tty,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(tty).init();
    }
}
