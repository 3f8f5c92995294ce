//! `/usage`: metered usage as a time series for analysts, as JSON or CSV.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use pulsar_domain::entitlements::Feature;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ErrorOut, SCOPING_PARAMETER};
use crate::application::usage::{self, Granularity, UsageQuery, UsageRow};
use crate::application::AppState;
use crate::application::{Auth, Error, Result};
use crate::http::extract::QueryPairs;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_usage))
}

const PARAMETERS: [&str; 7] = [
    "feature",
    "from",
    "to",
    "granularity",
    "group_by",
    "api_key_id",
    "tz",
];

fn usage_query(query: &QueryPairs, now: DateTime<Utc>) -> Result<UsageQuery> {
    let mut given: Vec<(&str, &str)> = Vec::new();
    for (name, value) in &query.0 {
        if name == SCOPING_PARAMETER {
            continue;
        }
        let Some(known) = PARAMETERS.iter().find(|p| **p == name.as_str()) else {
            return Err(Error::BadRequest(format!(
                "Unknown query parameter `{name}`."
            )));
        };
        if given.iter().any(|(n, _)| n == known) {
            return Err(Error::BadRequest(format!("`{name}` is given twice.")));
        }
        given.push((known, value.as_str()));
    }
    let get = |name: &str| given.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
        get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        Error::invalid(name, format!("`{name}` must be an RFC 3339 time."))
                    })
            })
            .transpose()
    };
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - TimeDelta::hours(24));
    let feature = get("feature")
        .map(|f| Feature::parse(f).ok_or_else(|| Error::invalid("feature", "Unknown feature.")))
        .transpose()?;
    let granularity = match get("granularity") {
        None => Granularity::Hour,
        Some(g) => Granularity::parse(g).ok_or_else(|| {
            Error::invalid(
                "granularity",
                "The granularity is minute, hour, day or month.",
            )
        })?,
    };
    let by_key = match get("group_by") {
        None | Some("feature") => false,
        Some("api_key") => true,
        Some(_) => {
            return Err(Error::invalid(
                "group_by",
                "group_by is api_key or feature.",
            ))
        }
    };
    let api_key_ids: Vec<String> = get("api_key_id")
        .map(|v| v.split(',').map(|k| k.trim().to_string()).collect())
        .unwrap_or_default();
    if api_key_ids
        .iter()
        .any(|k| !pulsar_domain::ids::is_id(pulsar_domain::ids::prefix::API_KEY, k))
    {
        return Err(Error::invalid(
            "api_key_id",
            "api_key_id is a comma-separated list of key ids.",
        ));
    }
    Ok(UsageQuery {
        feature,
        from,
        to,
        granularity,
        by_key,
        api_key_ids,
        tz: get("tz").unwrap_or("UTC").to_string(),
    })
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv(rows: &[UsageRow], by_key: bool) -> String {
    let mut out = String::from(if by_key {
        "bucket,feature,api_key_id,count\n"
    } else {
        "bucket,feature,count\n"
    });
    for row in rows {
        out.push_str(&csv_field(&row.bucket));
        out.push(',');
        out.push_str(&csv_field(&row.feature));
        if by_key {
            out.push(',');
            out.push_str(&csv_field(row.api_key_id.as_deref().unwrap_or("")));
        }
        out.push(',');
        out.push_str(&row.count.to_string());
        out.push('\n');
    }
    out
}

/// Metered usage (API calls by key today) in buckets of a minute, hour, day or month,
/// aligned to `tz` (an IANA zone; default UTC), grouped by feature or by key
/// (`usage:read`). `Accept: text/csv` gives CSV with a header row.
#[utoipa::path(get, path = "/usage", tag = "usage",
    params(("feature" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339, included; default `to` − 24 h"),
        ("to" = Option<String>, Query, description = "RFC 3339, excluded; default now"),
        ("granularity" = Option<String>, Query, description = "minute, hour (default), day or month"),
        ("group_by" = Option<String>, Query, description = "feature (default) or api_key"),
        ("api_key_id" = Option<String>, Query, description = "comma-separated key ids"),
        ("tz" = Option<String>, Query, description = "IANA time zone; default UTC")),
    responses((status = 200, description = "`{data: [{bucket, feature, api_key_id?, count}], meta}`, or CSV"),
        (status = 400, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_usage(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response> {
    let query = usage_query(&query, state.clock.now())?;
    let rows = usage::query(&state, &auth, &query).await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&rows, query.by_key),
        )
            .into_response());
    }
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(axum::Json(json!({
        "data": rows,
        "meta": {
            "from": at(query.from),
            "to": at(query.to),
            "granularity": query.granularity.as_str(),
            "group_by": if query.by_key { "api_key" } else { "feature" },
            "tz": query.tz,
        },
    }))
    .into_response())
}
