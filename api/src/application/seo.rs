//! SEO reports: `POST /seo/report` records one (an `SeoReport` in the log) and
//! `GET /seo/issues/{workspace_id}` lists the issues of each URL's latest report.

use pulsar_domain::ids::{self, prefix};
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_domain::tracking::{SeoCommand, SeoIssue, SeoReport, SeoScores};
use pulsar_projections::list::{self, ListRequest, Page};
use pulsar_projections::seo;
use serde::Serialize;

use super::{AppState, Auth, Principal, Result};

/// A report as `POST /seo/report` returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportOut {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    pub scores: SeoScores,
    pub issue_count: usize,
}

/// Records a report of `url`; its issues replace that URL's previous ones.
pub async fn report(
    state: &AppState,
    auth: &Auth,
    url: String,
    scores: SeoScores,
    issues: Vec<SeoIssue>,
) -> Result<ReportOut> {
    auth.require(Permission(Resource::Seo, Action::Write))?;
    let url = url.trim().to_string();
    let id = ids::new_id(prefix::SEO_REPORT);
    let issue_count = issues.len();
    let command = SeoCommand::SubmitSeoReport {
        workspace_id: auth.workspace_id.clone(),
        url: url.clone(),
        scores,
        issues,
    };
    state
        .commands
        .create::<SeoReport>(&id, command, &auth.metadata(), &[seo::NAME])
        .await?;
    Ok(ReportOut {
        id,
        workspace_id: auth.workspace_id.clone(),
        url,
        scores,
        issue_count,
    })
}

/// A page of the current issues of workspace `workspace_id` (404 unless the caller acts
/// in it).
pub async fn issues(
    state: &AppState,
    principal: &Principal,
    workspace_id: &str,
    request: &ListRequest,
) -> Result<Page> {
    let auth = principal.in_workspace(&state.pool, workspace_id).await?;
    auth.require(Permission(Resource::Seo, Action::Read))?;
    Ok(list::fetch(
        &state.pool,
        &seo::ISSUES,
        request,
        &[("i.workspace_id", workspace_id.to_string())],
    )
    .await?)
}
