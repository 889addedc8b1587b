//! Errors that point at one field of what a client sent.
//!
//! A [`FieldError`] is the domain's way of saying "this input is wrong, and here is where".
//! The server maps it to a 4xx response body `{"error":{"code","message","field"}}`; the
//! domain itself never chooses an HTTP status, only a machine-readable `code`.

use std::fmt;

/// One problem with one field of a client's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Stable, machine-readable kind: `invalid_json`, `invalid_field`, `missing_field`,
    /// `unknown_field`, `invalid_query`, `too_large`, ...
    pub code: &'static str,
    /// A sentence for a human.
    pub message: String,
    /// The path of the field at fault (`actor.type`, `changes[0].field`, `since`), when known.
    pub field: Option<String>,
}

impl FieldError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An invalid value for a known field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new("invalid_field", field, message)
    }

    /// An error that concerns the input as a whole rather than one field.
    pub fn whole(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Prefixes the field path, e.g. `ip` inside `context` becomes `context.ip`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = Some(match self.field {
            Some(f) if f.starts_with('[') => format!("{parent}{f}"),
            Some(f) => format!("{parent}.{f}"),
            None => parent.to_owned(),
        });
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FieldError {}
