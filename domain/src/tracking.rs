//! Pixel tracking and SEO reports, as events.
//!
//! Pixel input comes from anyone's browser, so it is hostile by nature: every field is
//! bounded, URLs must be http(s) without credentials, control characters are refused,
//! and `properties` is a small flat object. Each tracked event is its own
//! [`PixelEvent`] aggregate (a fresh id), so a busy site never contends for one stream;
//! each counts as one `pixel_events` unit of usage.
//!
//! An [`SeoReport`] is one audit of one URL: four scores and the issues found. The read
//! model keeps each URL's latest report's issues.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DomainError, ValidationErrors};

/// Longest URL (page, referrer, reported URL).
pub const MAX_URL: usize = 2048;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 64;
/// Longest user agent kept.
pub const MAX_USER_AGENT: usize = 512;
/// Most properties on one pixel event, their longest key and string value, and the
/// largest whole object.
pub const MAX_PROPERTIES: usize = 20;
pub const MAX_PROPERTY_KEY: usize = 64;
pub const MAX_PROPERTY_VALUE: usize = 256;
/// Most issues in one SEO report, and the longest issue type and element.
pub const MAX_ISSUES: usize = 500;
pub const MAX_ISSUE_TYPE: usize = 100;
pub const MAX_ELEMENT: usize = 1024;
/// Issue severities, most severe first.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// An http(s) URL with a host and no credentials, at most [`MAX_URL`] long.
pub fn check_url(value: &str) -> Result<(), String> {
    let message = || "Must be an http or https URL with a host.".to_string();
    if value.len() > MAX_URL {
        return Err(format!("May not be longer than {MAX_URL} characters."));
    }
    if has_control(value) {
        return Err(message());
    }
    let url = url::Url::parse(value).map_err(|_| message())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(message());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("May not carry credentials.".into());
    }
    Ok(())
}

fn check_text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        Err(format!("May not be longer than {max} characters."))
    } else if has_control(value) {
        Err("May not contain control characters.".into())
    } else {
        Ok(())
    }
}

// Pixel events ---------------------------------------------------------------------------

/// One tracked event, as the pixel sent it (validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PixelHit {
    /// `pageview`, or a name the site chooses: letters, digits, `_ . : -`.
    pub event: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// A flat object of short strings, numbers, booleans and nulls.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// Field rules of a pixel event.
pub fn validate_hit(hit: &PixelHit) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    if hit.event.is_empty()
        || hit.event.len() > MAX_EVENT_NAME
        || !hit
            .event
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        errors.add(
            "event",
            format!("1 to {MAX_EVENT_NAME} letters, digits or _ . : -"),
        );
    }
    errors.check("url", check_url(&hit.url));
    if let Some(referrer) = &hit.referrer {
        errors.check("referrer", check_url(referrer));
    }
    if let Some(agent) = &hit.user_agent {
        errors.check("user_agent", check_text(agent, MAX_USER_AGENT));
    }
    if hit.properties.len() > MAX_PROPERTIES {
        errors.add(
            "properties",
            format!("At most {MAX_PROPERTIES} properties."),
        );
    } else {
        for (key, value) in &hit.properties {
            let field = format!(
                "properties.{}",
                key.chars().take(MAX_PROPERTY_KEY).collect::<String>()
            );
            if key.is_empty() || check_text(key, MAX_PROPERTY_KEY).is_err() {
                errors.add(
                    "properties",
                    format!("Property names are 1 to {MAX_PROPERTY_KEY} characters without control characters."),
                );
                continue;
            }
            match value {
                Value::String(text) => errors.check(&field, check_text(text, MAX_PROPERTY_VALUE)),
                Value::Number(_) | Value::Bool(_) | Value::Null => {}
                _ => errors.add(
                    field,
                    "Property values are strings, numbers, booleans or null.",
                ),
            }
        }
    }
    errors
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PixelEvent {
    workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum PixelCommand {
    TrackPixelEvent { workspace_id: String, hit: PixelHit },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PixelEventEvent {
    PixelEventTracked {
        workspace_id: String,
        #[serde(flatten)]
        hit: PixelHit,
    },
}

impl DomainEvent for PixelEventEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PixelEventTracked { .. } => "PixelEventTracked".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl crate::Tenanted for PixelEvent {
    fn tenant(&self, _: &str) -> Option<String> {
        self.workspace_id.clone()
    }
}

impl Aggregate for PixelEvent {
    const TYPE: &'static str = "PixelEvent";
    type Command = PixelCommand;
    type Event = PixelEventEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PixelCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            PixelCommand::TrackPixelEvent { workspace_id, hit } => {
                if self.workspace_id.is_some() {
                    return Err(DomainError::AlreadyExists("pixel event"));
                }
                validate_hit(&hit).into_result()?;
                sink.write(
                    PixelEventEvent::PixelEventTracked { workspace_id, hit },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: PixelEventEvent) {
        match event {
            PixelEventEvent::PixelEventTracked { workspace_id, .. } => {
                self.workspace_id = Some(workspace_id);
            }
        }
    }
}

// SEO reports ----------------------------------------------------------------------------

/// Lighthouse-style scores, 0 to 100 each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeoScores {
    pub performance: f64,
    pub accessibility: f64,
    pub best_practices: f64,
    pub seo: f64,
}

/// One problem found on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeoIssue {
    /// What kind of problem, e.g. `missing_meta_description`.
    #[serde(rename = "type")]
    pub issue_type: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    /// Where: a selector or a short snippet.
    #[serde(default)]
    pub element: Option<String>,
}

/// Field rules of a report.
pub fn validate_report(url: &str, scores: &SeoScores, issues: &[SeoIssue]) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    errors.check("url", check_url(url));
    for (name, score) in [
        ("performance", scores.performance),
        ("accessibility", scores.accessibility),
        ("best_practices", scores.best_practices),
        ("seo", scores.seo),
    ] {
        if !(0.0..=100.0).contains(&score) {
            errors.add(format!("scores.{name}"), "Scores are from 0 to 100.");
        }
    }
    if issues.len() > MAX_ISSUES {
        errors.add("issues", format!("At most {MAX_ISSUES} issues per report."));
        return errors;
    }
    for (i, issue) in issues.iter().enumerate() {
        if issue.issue_type.trim().is_empty() {
            errors.add(format!("issues.{i}.type"), "Name the kind of issue.");
        } else {
            errors.check(
                &format!("issues.{i}.type"),
                check_text(&issue.issue_type, MAX_ISSUE_TYPE),
            );
        }
        if !SEVERITIES.contains(&issue.severity.as_str()) {
            errors.add(
                format!("issues.{i}.severity"),
                format!("One of {}.", SEVERITIES.join(", ")),
            );
        }
        if let Some(element) = &issue.element {
            if element.chars().count() > MAX_ELEMENT {
                errors.add(
                    format!("issues.{i}.element"),
                    format!("May not be longer than {MAX_ELEMENT} characters."),
                );
            }
        }
    }
    errors
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeoReport {
    workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum SeoCommand {
    SubmitSeoReport {
        workspace_id: String,
        url: String,
        scores: SeoScores,
        issues: Vec<SeoIssue>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SeoEvent {
    SeoReportSubmitted {
        workspace_id: String,
        url: String,
        scores: SeoScores,
        issues: Vec<SeoIssue>,
    },
}

impl DomainEvent for SeoEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SeoReportSubmitted { .. } => "SeoReportSubmitted".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl crate::Tenanted for SeoReport {
    fn tenant(&self, _: &str) -> Option<String> {
        self.workspace_id.clone()
    }
}

impl Aggregate for SeoReport {
    const TYPE: &'static str = "SeoReport";
    type Command = SeoCommand;
    type Event = SeoEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SeoCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            SeoCommand::SubmitSeoReport {
                workspace_id,
                url,
                scores,
                issues,
            } => {
                if self.workspace_id.is_some() {
                    return Err(DomainError::AlreadyExists("SEO report"));
                }
                validate_report(&url, &scores, &issues).into_result()?;
                sink.write(
                    SeoEvent::SeoReportSubmitted {
                        workspace_id,
                        url,
                        scores,
                        issues,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SeoEvent) {
        match event {
            SeoEvent::SeoReportSubmitted { workspace_id, .. } => {
                self.workspace_id = Some(workspace_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit() -> PixelHit {
        PixelHit {
            event: "pageview".into(),
            url: "https://shop.example/a?b=c".into(),
            referrer: Some("https://search.example/".into()),
            user_agent: Some("Mozilla/5.0".into()),
            properties: serde_json::json!({"plan": "pro", "n": 3, "ok": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn hostile_pixel_input_is_refused_field_by_field() {
        assert!(validate_hit(&hit()).is_empty());
        let bad = PixelHit {
            event: "<script>".into(),
            url: "javascript:alert(1)".into(),
            referrer: Some("https://user:pw@x.example/".into()),
            user_agent: Some("a\u{0}b".into()),
            properties: serde_json::json!({"nested": {"a": 1}, "long": "x".repeat(300)})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let errors = validate_hit(&bad);
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            [
                "event",
                "properties.long",
                "properties.nested",
                "referrer",
                "url",
                "user_agent"
            ]
        );
        let too_long = PixelHit {
            url: format!("https://x.example/{}", "a".repeat(MAX_URL)),
            ..hit()
        };
        assert!(!validate_hit(&too_long).is_empty());
    }

    #[test]
    fn reports_need_scores_in_range_and_known_severities() {
        let scores = SeoScores {
            performance: 90.0,
            accessibility: 100.0,
            best_practices: 0.0,
            seo: 77.5,
        };
        let issue = SeoIssue {
            issue_type: "missing_alt".into(),
            severity: "high".into(),
            element: Some("img.hero".into()),
        };
        assert!(
            validate_report("https://x.example/", &scores, std::slice::from_ref(&issue)).is_empty()
        );
        let errors = validate_report(
            "ftp://x.example/",
            &SeoScores {
                seo: 101.0,
                ..scores
            },
            &[SeoIssue {
                severity: "bad".into(),
                ..issue
            }],
        );
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            ["issues.0.severity", "scores.seo", "url"]
        );
    }
}
