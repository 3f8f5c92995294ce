//! `/seo`: SEO reports in, current issues out.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulsar_domain::tracking::{SeoIssue, SeoScores};
use pulsar_projections::seo::ISSUES;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{CreatedOut, ErrorOut, ListOut};
use crate::application::seo::{self, ReportOut};
use crate::application::{AppState, Auth, Principal, Result};
use crate::http::extract::{Json, PathId, QueryPairs, WorkspaceIds};
use crate::http::openapi::{ListQuery, Listed};
use pulsar_projections::list::ListSpec;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report))
        .routes(routes!(issues))
}

/// The `/seo/issues/{workspace_id}` collection, for the document.
#[derive(Debug)]
pub struct SeoIssues;

impl Listed for SeoIssues {
    const SPEC: &'static ListSpec = &ISSUES;
}

/// `POST /seo/report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIn {
    /// The audited page: an http(s) URL.
    #[schema(max_length = 2048)]
    pub url: String,
    pub scores: SeoScores,
    /// At most 500.
    #[serde(default)]
    pub issues: Vec<SeoIssue>,
}

/// One issue of a URL's latest report.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct IssueOut {
    /// `<report_id>.<position>`.
    pub id: String,
    pub report_id: String,
    pub url: String,
    #[serde(rename = "type")]
    pub issue_type: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    pub element: Option<String>,
    pub reported_at: String,
}

/// Record an SEO audit of one URL (`seo:write`); its issues replace that URL's previous
/// ones.
#[utoipa::path(post, path = "/seo/report", tag = "seo", request_body = ReportIn,
    responses((status = 201, body = CreatedOut<ReportOut>), (status = 400, body = ErrorOut),
        (status = 403, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn report(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<ReportIn>,
) -> Result<Response> {
    let out = seo::report(&state, &auth, input.url, input.scores, input.issues).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"message": "SEO report created successfully.", "data": out})),
    )
        .into_response())
}

/// The issues of each URL's latest report, most severe first (`seo:read`). Filters
/// `severity`, `url`, `type`, `report_id`; sorts `severity`, `reported_at`, `url`, `type`.
#[utoipa::path(get, path = "/seo/issues/{workspace_id}", tag = "seo",
    params(("workspace_id" = String, Path), ListQuery<SeoIssues>),
    responses((status = 200, body = ListOut<IssueOut>), (status = 400, body = ErrorOut),
        (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn issues(
    State(state): State<AppState>,
    principal: Principal,
    PathId(workspace_id, _): PathId<WorkspaceIds>,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&ISSUES, &query)?;
    let page = seo::issues(&state, &principal, &workspace_id, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}
