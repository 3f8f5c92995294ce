//! SEO read models: each URL's latest report (`seo_pages`) and that report's issues
//! (`seo_issues`), which `GET /seo/issues/{workspace_id}` lists. A newer report of a URL
//! replaces its issues; reports of other URLs are untouched.

use chrono::SubsecRound;
use cqrs_es::Aggregate;
use pulsar_domain::tracking::{SeoEvent, SeoReport, SEVERITIES};
use sqlx::PgConnection;

use crate::list::{Column, ListSpec};
use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The subscriber's name.
pub const NAME: &str = "seo";

/// The list `GET /seo/issues/{workspace_id}` serves: the issues of each URL's latest
/// report, most severe first.
pub static ISSUES: ListSpec = ListSpec {
    from: "seo_issues i",
    item: "jsonb_build_object('id', i.id, 'report_id', i.report_id, 'url', i.url,
            'type', i.type, 'severity', i.severity, 'element', i.element,
            'reported_at', rfc3339(i.reported_at))",
    id: "i.id",
    sortable: &[
        Column {
            name: "severity",
            sql: "i.severity_rank",
        },
        Column {
            name: "reported_at",
            sql: "i.reported_at",
        },
        Column {
            name: "url",
            sql: "i.url",
        },
        Column {
            name: "type",
            sql: "i.type",
        },
    ],
    nullable: &[],
    filters: &[
        Column {
            name: "severity",
            sql: "i.severity",
        },
        Column {
            name: "url",
            sql: "i.url",
        },
        Column {
            name: "type",
            sql: "i.type",
        },
        Column {
            name: "report_id",
            sql: "i.report_id",
        },
    ],
    filter_values: &[("severity", &SEVERITIES)],
    id_filters: &[("report_id", pulsar_domain::ids::prefix::SEO_REPORT)],
    contains_filters: &[],
    created_at: Some("i.reported_at"),
    updated_at: None,
    search: None,
    fields: &[
        "id",
        "report_id",
        "url",
        "type",
        "severity",
        "element",
        "reported_at",
    ],
    includes: &[],
    default_sort: "severity",
};

/// Keeps `seo_pages` and `seo_issues`.
#[derive(Debug, Default)]
pub struct SeoProjection;

/// The sort rank of a severity: 0 is the most severe.
pub fn severity_rank(severity: &str) -> i16 {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .map_or(SEVERITIES.len() as i16, |i| i as i16)
}

impl Projection for SeoProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[SeoReport::TYPE]
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec!["seo_pages", "seo_issues"],
            shared: vec![],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != SeoReport::TYPE {
            return Ok(());
        }
        let at = event.recorded_at.trunc_subsecs(3);
        match event.decode::<SeoReport>()?.payload {
            SeoEvent::SeoReportSubmitted {
                workspace_id,
                url,
                scores,
                issues,
            } => {
                let scores = serde_json::to_value(scores)
                    .map_err(|e| ProjectionError::Decode(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO seo_pages (workspace_id, url, report_id, scores, issue_count, reported_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (workspace_id, url) DO UPDATE
                        SET report_id = excluded.report_id, scores = excluded.scores,
                            issue_count = excluded.issue_count, reported_at = excluded.reported_at",
                )
                .bind(&workspace_id)
                .bind(&url)
                .bind(&event.aggregate_id)
                .bind(scores)
                .bind(issues.len() as i32)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                sqlx::query("DELETE FROM seo_issues WHERE workspace_id = $1 AND url = $2")
                    .bind(&workspace_id)
                    .bind(&url)
                    .execute(&mut *conn)
                    .await?;
                if issues.is_empty() {
                    return Ok(());
                }
                let mut types = Vec::with_capacity(issues.len());
                let mut severities = Vec::with_capacity(issues.len());
                let mut ranks = Vec::with_capacity(issues.len());
                let mut elements = Vec::with_capacity(issues.len());
                for issue in issues {
                    ranks.push(severity_rank(&issue.severity));
                    types.push(issue.issue_type);
                    severities.push(issue.severity);
                    elements.push(issue.element);
                }
                sqlx::query(
                    "INSERT INTO seo_issues (id, workspace_id, url, report_id, position, type, severity,
                                             severity_rank, element, reported_at)
                     SELECT $3 || '.' || lpad((u.n - 1)::text, 3, '0'), $1, $2, $3, u.n - 1,
                            u.t, u.s, u.r, u.e, $4
                       FROM unnest($5::text[], $6::text[], $7::smallint[], $8::text[])
                            WITH ORDINALITY AS u(t, s, r, e, n)",
                )
                .bind(&workspace_id)
                .bind(&url)
                .bind(&event.aggregate_id)
                .bind(at)
                .bind(types)
                .bind(severities)
                .bind(ranks)
                .bind(elements)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}
