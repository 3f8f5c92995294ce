//! The one error type every aggregate returns.

use std::collections::BTreeMap;
use std::fmt;

/// Per-field validation messages, in the shape API.md's 422 body uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ValidationErrors(BTreeMap<String, Vec<String>>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// One error on one field.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// Records the outcome of a field check.
    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(field, message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> &BTreeMap<String, Vec<String>> {
        &self.0
    }

    /// `Ok(())` when nothing was recorded, else the errors as a [`DomainError`].
    pub fn into_result(self) -> Result<(), DomainError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(self))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.0.keys().map(String::as_str).collect();
        write!(f, "invalid fields: {}", fields.join(", "))
    }
}

/// Why an aggregate refused a command. The API maps each variant to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command's data is invalid (422).
    #[error("{0}")]
    Validation(ValidationErrors),
    /// The aggregate does not exist or was deleted (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The aggregate already exists (409).
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// The command contradicts the current state (409), e.g. removing the last owner.
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this, whatever its scopes say (403).
    #[error("{0}")]
    Forbidden(String),
}

impl From<ValidationErrors> for DomainError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Validation(errors)
    }
}
