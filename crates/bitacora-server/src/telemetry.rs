//! Tracing setup: one global subscriber, pretty for people or JSON for collectors.
//!
//! Never log event payloads or secrets: spans carry the method, the route pattern, the
//! request id and the key id — never bodies, query strings or `Authorization`.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

static INIT: Once = Once::new();

/// Installs the global subscriber once; later calls do nothing. `level` is a tracing filter
/// (`info`, `bitacora_server=debug,info`); `RUST_LOG`, when set, wins.
pub fn init_tracing(format: LogFormat, level: &str) {
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level))
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let result = match format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init(),
            LogFormat::Pretty => builder.compact().try_init(),
        };
        // Another subscriber (an embedding program's) already owns the process: keep it.
        let _ = result;
    });
}

/// For tests: silent unless `TEST_LOG` is set (then at that level, or `debug`).
pub fn init_test_tracing() {
    if let Ok(level) = std::env::var("TEST_LOG") {
        let level = if level.is_empty() || level == "1" {
            "debug".to_owned()
        } else {
            level
        };
        init_tracing(LogFormat::Pretty, &level);
    }
}
