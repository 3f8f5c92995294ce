//! The list machinery every collection endpoint shares: pagination, exact filters,
//! time ranges, full-text search, multi-field sort and sparse fields, compiled to one
//! SQL query over a read model.
//!
//! Each collection declares a [`ListSpec`]; [`ListRequest::parse`] turns query pairs into
//! a request checked against it (unknown parameters, sort fields and fields are errors,
//! never ignored) and [`fetch`] runs it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use pulsar_domain::ids;

use crate::position::Position;

/// Default and largest page sizes.
pub const DEFAULT_PER_PAGE: u32 = 25;
pub const MAX_PER_PAGE: u32 = 100;
/// Most values one filter's comma list may name.
pub const MAX_FILTER_VALUES: usize = 100;

/// A column a list can sort or filter on.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Name in the query string and in the JSON item.
    pub name: &'static str,
    /// SQL expression.
    pub sql: &'static str,
}

/// The SQL of an item's `created_by` with the actor's display name joined as the item is
/// read: `{type, id}` as the event stated it, plus `name` (a user's name or email, a
/// key's name). A plain expression, not a SQL function, so it costs one primary-key
/// lookup per item of the page and no per-query function call (PostgreSQL parses a
/// non-inlinable SQL function's body on every execution).
macro_rules! with_actor_name {
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            ".created_by || jsonb_build_object('name', CASE ",
            $alias,
            ".created_by ->> 'type' ",
            "WHEN 'user' THEN (SELECT coalesce(au.name, au.email) FROM users au WHERE au.id = ",
            $alias,
            ".created_by ->> 'id') ",
            "WHEN 'api_key' THEN (SELECT ak.name FROM api_keys ak WHERE ak.id = ",
            $alias,
            ".created_by ->> 'id') END))"
        )
    };
}
pub(crate) use with_actor_name;

/// A relation `include` may embed: a `jsonb` expression (usually a correlated
/// subquery) evaluated per item. It must itself stay within the item's workspace.
#[derive(Debug, Clone, Copy)]
pub struct Include {
    pub name: &'static str,
    pub sql: &'static str,
}

/// What one collection supports.
#[derive(Debug)]
pub struct ListSpec {
    /// `FROM` clause, with aliases and joins.
    pub from: &'static str,
    /// A `jsonb` expression for one item.
    pub item: &'static str,
    /// Unique column, the final tie-breaker so pages are stable.
    pub id: &'static str,
    pub sortable: &'static [Column],
    /// Sortable columns that may be NULL: they sort last in both directions. The others
    /// get no NULLS clause, so a descending sort can walk an ascending index backwards
    /// (`DESC NULLS LAST` would not match it and forces a sort of every match).
    pub nullable: &'static [&'static str],
    /// Exact-match filters, e.g. `status`; a comma list matches any of its values.
    pub filters: &'static [Column],
    /// The values a filter accepts, where they are a closed set (anything else is 400).
    pub filter_values: &'static [(&'static str, &'static [&'static str])],
    /// Filters whose values are ids, with the prefix they must have (anything that
    /// cannot be such an id is 400, and never reaches SQL).
    pub id_filters: &'static [(&'static str, &'static str)],
    /// Array-membership filters, e.g. `tag`: a comma list matches items having all.
    pub contains_filters: &'static [Column],
    pub created_at: Option<&'static str>,
    pub updated_at: Option<&'static str>,
    /// A `tsvector` expression `search` matches against.
    pub search: Option<&'static str>,
    /// The keys an item has (what `fields` may name).
    pub fields: &'static [&'static str],
    /// Relations `include` may name.
    pub includes: &'static [Include],
    /// Sort when none is given, e.g. `-created_at`.
    pub default_sort: &'static str,
}

/// One sort key.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub column: Column,
    pub descending: bool,
}

/// A list request, checked against its [`ListSpec`].
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub page: u32,
    pub per_page: u32,
    pub sort: Vec<SortKey>,
    pub fields: Option<Vec<String>>,
    pub include: Vec<String>,
    pub search: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    pub filters: Vec<(Column, Vec<String>)>,
    pub contains: Vec<(Column, Vec<String>)>,
}

/// One page of items.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{name}` must be an RFC 3339 timestamp, e.g. 2026-01-15T10:30:00Z."))
}

fn parse_sort(spec: &ListSpec, value: &str) -> Result<Vec<SortKey>, String> {
    parse_list("sort", value)?
        .iter()
        .map(|key| {
            let (descending, name) = match key.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, key.strip_prefix('+').unwrap_or(key)),
            };
            let column = spec
                .sortable
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    let allowed: Vec<_> = spec.sortable.iter().map(|c| c.name).collect();
                    format!(
                        "Cannot sort by `{name}`; sortable fields: {}.",
                        allowed.join(", ")
                    )
                })?;
            Ok(SortKey {
                column: *column,
                descending,
            })
        })
        .collect()
}

/// A comma list: entries trimmed; an empty entry (`a,,b`, a trailing comma) is refused
/// rather than skipped.
fn parse_list(name: &str, value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|entry| {
            if entry.is_empty() {
                Err(format!("`{name}` has an empty entry."))
            } else {
                Ok(entry.to_string())
            }
        })
        .collect()
}

/// A closed-set filter accepts only its listed values.
fn check_values(spec: &ListSpec, name: &str, values: &[String]) -> Result<(), String> {
    let Some((_, allowed)) = spec.filter_values.iter().find(|(n, _)| *n == name) else {
        return Ok(());
    };
    match values.iter().find(|v| !allowed.contains(&v.as_str())) {
        Some(bad) => Err(format!(
            "`{name}` cannot be `{bad}`; values: {}.",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

impl ListRequest {
    /// Parses query pairs. `passthrough` names parameters the caller handles itself
    /// (e.g. `workspaceId`); anything else unknown is an error message for a 400.
    pub fn parse(
        spec: &ListSpec,
        pairs: &[(String, String)],
        passthrough: &[&str],
    ) -> Result<Self, String> {
        let mut request = ListRequest {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            sort: parse_sort(spec, spec.default_sort)?,
            fields: None,
            include: Vec::new(),
            search: None,
            created_after: None,
            created_before: None,
            updated_after: None,
            updated_before: None,
            filters: Vec::new(),
            contains: Vec::new(),
        };
        let number = |name: &str, value: &str, max: u32| -> Result<u32, String> {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("`{name}` must be an integer from 1 to {max}."))
        };
        let mut seen = std::collections::HashSet::new();
        for (name, value) in pairs {
            if !seen.insert(name.as_str()) {
                return Err(format!("`{name}` is given more than once."));
            }
            match name.as_str() {
                "page" => request.page = number(name, value, 1_000_000)?,
                "per_page" | "limit" => {
                    let per_page = number(name, value, MAX_PER_PAGE)?;
                    // The alias may repeat the same size; two different sizes are a guess.
                    if seen.contains("per_page")
                        && seen.contains("limit")
                        && per_page != request.per_page
                    {
                        return Err("`per_page` and its alias `limit` give different sizes.".into());
                    }
                    request.per_page = per_page;
                }
                "sort" => {
                    request.sort = parse_sort(spec, value)?;
                    if request.sort.is_empty() {
                        return Err("`sort` names no field.".into());
                    }
                }
                "fields" => {
                    let fields = parse_list(name, value)?;
                    let known = |f: &str| {
                        spec.fields.contains(&f) || spec.includes.iter().any(|r| r.name == f)
                    };
                    if let Some(bad) = fields.iter().find(|f| !known(f)) {
                        return Err(format!(
                            "Unknown field `{bad}`; fields: {}.",
                            spec.fields.join(", ")
                        ));
                    }
                    if fields.is_empty() {
                        return Err("`fields` names no field.".into());
                    }
                    request.fields = Some(fields);
                }
                "include" => {
                    let include = parse_list(name, value)?;
                    if let Some(bad) = include
                        .iter()
                        .find(|i| !spec.includes.iter().any(|r| r.name == i.as_str()))
                    {
                        let names: Vec<_> = spec.includes.iter().map(|r| r.name).collect();
                        return Err(if names.is_empty() {
                            format!("Cannot include `{bad}`; this collection has no relations to include.")
                        } else {
                            format!("Cannot include `{bad}`; relations: {}.", names.join(", "))
                        });
                    }
                    request.include = include;
                }
                "search" if spec.search.is_some() => {
                    let search = value.trim();
                    if search.chars().count() > 200 {
                        return Err("`search` may not be longer than 200 characters.".into());
                    }
                    request.search = (!search.is_empty()).then(|| search.to_string());
                }
                "created_after" if spec.created_at.is_some() => {
                    request.created_after = Some(parse_time(name, value)?)
                }
                "created_before" if spec.created_at.is_some() => {
                    request.created_before = Some(parse_time(name, value)?)
                }
                "updated_after" if spec.updated_at.is_some() => {
                    request.updated_after = Some(parse_time(name, value)?)
                }
                "updated_before" if spec.updated_at.is_some() => {
                    request.updated_before = Some(parse_time(name, value)?)
                }
                other if passthrough.contains(&other) => {}
                other => {
                    let values = parse_list(other, value)?;
                    if values.len() > MAX_FILTER_VALUES {
                        return Err(format!(
                            "`{other}` may name at most {MAX_FILTER_VALUES} values."
                        ));
                    }
                    if let Some((_, prefix)) = spec.id_filters.iter().find(|(n, _)| *n == other) {
                        if let Some(bad) = values.iter().find(|v| !ids::is_id(prefix, v)) {
                            return Err(format!(
                                "`{other}` names ids such as {prefix}_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f, not `{bad}`."
                            ));
                        }
                    }
                    if let Some(column) = spec.filters.iter().find(|c| c.name == other) {
                        check_values(spec, other, &values)?;
                        request.filters.push((*column, values));
                    } else if let Some(column) =
                        spec.contains_filters.iter().find(|c| c.name == other)
                    {
                        request.contains.push((*column, values));
                    } else {
                        return Err(format!("Unknown query parameter `{other}`."));
                    }
                }
            }
        }
        Ok(request)
    }
}

fn push_conditions<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    spec: &ListSpec,
    request: &'a ListRequest,
    scope: &'a [(&'static str, String)],
) {
    qb.push(" WHERE TRUE");
    for (column, value) in scope {
        qb.push(format_args!(" AND {column} = ")).push_bind(value);
    }
    for (column, values) in &request.filters {
        qb.push(format_args!(" AND {}::text = ANY(", column.sql))
            .push_bind(values)
            .push(")");
    }
    for (column, values) in &request.contains {
        qb.push(format_args!(" AND {} @> ", column.sql))
            .push_bind(values)
            .push("::text[]");
    }
    let ranges = [
        (spec.created_at, request.created_after, ">"),
        (spec.created_at, request.created_before, "<"),
        (spec.updated_at, request.updated_after, ">"),
        (spec.updated_at, request.updated_before, "<"),
    ];
    for (column, bound, op) in ranges {
        if let (Some(column), Some(bound)) = (column, bound) {
            qb.push(format_args!(" AND {column} {op} "))
                .push_bind(bound);
        }
    }
    if let (Some(search), Some(query)) = (spec.search, &request.search) {
        qb.push(format_args!(
            " AND {search} @@ websearch_to_tsquery('simple', "
        ))
        .push_bind(query)
        .push(")");
    }
}

/// Runs a list request. `scope` adds `column = value` conditions the client cannot
/// change (the workspace, the member).
pub async fn fetch(
    pool: &PgPool,
    spec: &ListSpec,
    request: &ListRequest,
    scope: &[(&'static str, String)],
) -> Result<Page, sqlx::Error> {
    fetch_page(pool, spec, request, scope, Total::Count(None)).await
}

/// As [`fetch`], reusing the total of an identical query (same scope, filters, ranges
/// and search; any page, sort or fields) while the read model's checkpoint is still at
/// `at`. Paging through a large result then counts it once.
pub async fn fetch_counted(
    pool: &PgPool,
    spec: &ListSpec,
    request: &ListRequest,
    scope: &[(&'static str, String)],
    counts: &CountCache,
    at: Position,
) -> Result<Page, sqlx::Error> {
    fetch_page(pool, spec, request, scope, Total::Count(Some((counts, at)))).await
}

/// The totals of recent list queries, each valid while its read model's checkpoint stays
/// where it was when the total was counted (read models change only with their
/// checkpoint). Bounded: it is emptied when full.
#[derive(Debug, Default)]
pub struct CountCache {
    entries: Mutex<HashMap<String, (Position, i64)>>,
}

impl CountCache {
    /// Most totals kept at once.
    const CAPACITY: usize = 10_000;

    fn get(&self, key: &str, at: Position) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .and_then(|(position, total)| (*position == at).then_some(*total))
    }

    fn put(&self, key: String, at: Position, total: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(key, (at, total));
    }

    /// Totals currently kept.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What decides a total: everything in the WHERE clause, nothing about the page.
fn count_key(spec: &ListSpec, request: &ListRequest, scope: &[(&'static str, String)]) -> String {
    let mut key = String::from(spec.from);
    for (column, value) in scope {
        let _ = write!(key, "|{column}={value:?}");
    }
    for (column, values) in &request.filters {
        let _ = write!(key, "|{}={values:?}", column.name);
    }
    for (column, values) in &request.contains {
        let _ = write!(key, "|{}@>{values:?}", column.name);
    }
    let _ = write!(
        key,
        "|{:?}|{:?}|{:?}|{:?}|{:?}",
        request.created_after,
        request.created_before,
        request.updated_after,
        request.updated_before,
        request.search
    );
    key
}

/// How a page gets its total.
enum Total<'a> {
    /// Single items: the number of rows found.
    Rows,
    /// Counted, optionally through a cache at a read-model position.
    Count(Option<(&'a CountCache, Position)>),
}

/// The item expression, with the requested relations embedded.
fn item_sql(spec: &ListSpec, request: &ListRequest) -> String {
    let included: Vec<String> = spec
        .includes
        .iter()
        .filter(|r| request.include.iter().any(|i| i == r.name))
        .map(|r| format!("'{}', {}", r.name, r.sql))
        .collect();
    if included.is_empty() {
        spec.item.to_string()
    } else {
        format!(
            "({} || jsonb_build_object({}))",
            spec.item,
            included.join(", ")
        )
    }
}

fn push_page(qb: &mut QueryBuilder<'_, Postgres>, spec: &ListSpec, request: &ListRequest) {
    qb.push(" ORDER BY ");
    for key in &request.sort {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let nulls = if spec.nullable.contains(&key.column.name) {
            " NULLS LAST"
        } else {
            ""
        };
        qb.push(format_args!("{} {direction}{nulls}, ", key.column.sql));
    }
    qb.push(format_args!("{} ASC", spec.id));
    qb.push(" LIMIT ")
        .push_bind(i64::from(request.per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(request.page - 1) * i64::from(request.per_page));
}

/// A page in two narrow steps rather than one wide query: the page's ids with the
/// total (sorted, counted and limited on plain columns), then the items built for those
/// ids only. One query building each item's JSON before the sort would build it for
/// every matching row: on 100,000 rows that was most of a list's time.
async fn fetch_page(
    pool: &PgPool,
    spec: &ListSpec,
    request: &ListRequest,
    scope: &[(&'static str, String)],
    total: Total<'_>,
) -> Result<Page, sqlx::Error> {
    let item = item_sql(spec, request);
    let counts = match total {
        Total::Count(counts) => counts,
        Total::Rows => {
            let mut qb = QueryBuilder::new(format!("SELECT {item} FROM {}", spec.from));
            push_conditions(&mut qb, spec, request, scope);
            push_page(&mut qb, spec, request);
            let items = qb.build_query_scalar::<Value>().fetch_all(pool).await?;
            let total = items.len() as i64;
            return Ok(shape(request, items, total));
        }
    };
    let key = counts.map(|_| count_key(spec, request, scope));
    let known = counts
        .zip(key.as_deref())
        .and_then(|((cache, at), key)| cache.get(key, at));
    // The page and the total are separate queries, run concurrently: the page can
    // walk an index in sort order and stop at its last row, while counting wants a
    // bitmap of every match. One query with `count(*) OVER ()` gets one plan for both.
    let page = async {
        let mut qb = QueryBuilder::new(format!("SELECT {}::text FROM {}", spec.id, spec.from));
        push_conditions(&mut qb, spec, request, scope);
        push_page(&mut qb, spec, request);
        qb.build_query_scalar::<String>().fetch_all(pool).await
    };
    let count = async {
        if let Some(total) = known {
            return Ok(total);
        }
        let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {}", spec.from));
        push_conditions(&mut qb, spec, request, scope);
        qb.build_query_scalar::<i64>().fetch_one(pool).await
    };
    let (ids, total) = futures::try_join!(page, count)?;
    if let (Some((cache, at)), Some(key), None) = (counts, key, known) {
        cache.put(key, at, total);
    }
    if ids.is_empty() {
        return Ok(shape(request, Vec::new(), total));
    }
    let mut qb = QueryBuilder::new(format!(
        "SELECT {}::text AS id, {item} AS item FROM {} WHERE TRUE",
        spec.id, spec.from
    ));
    for (column, value) in scope {
        qb.push(format_args!(" AND {column} = ")).push_bind(value);
    }
    qb.push(format_args!(" AND {}::text = ANY(", spec.id))
        .push_bind(&ids)
        .push(")");
    let mut by_id: std::collections::HashMap<String, Value> = qb
        .build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("item")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let items: Vec<Value> = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok(shape(request, items, total))
}

/// Applies `fields` (keeping included relations) and wraps the page.
fn shape(request: &ListRequest, mut items: Vec<Value>, total: i64) -> Page {
    for item in &mut items {
        request.select(item);
    }
    Page {
        items,
        total,
        page: request.page,
        per_page: request.per_page,
    }
}

impl Page {
    /// Number of the last page (at least 1).
    pub fn last_page(&self) -> u32 {
        let pages = (self.total.max(0) as u64).div_ceil(u64::from(self.per_page.max(1)));
        pages.max(1) as u32
    }

    /// 1-based index of the first item on this page, `None` when the page is empty.
    pub fn from(&self) -> Option<u64> {
        (!self.items.is_empty()).then(|| u64::from(self.page - 1) * u64::from(self.per_page) + 1)
    }

    /// 1-based index of the last item on this page.
    pub fn to(&self) -> Option<u64> {
        self.from().map(|from| from + self.items.len() as u64 - 1)
    }
}

impl ListRequest {
    /// Keeps the members of `item` that `fields` (and `include`) name; all without
    /// `fields`.
    pub fn select(&self, item: &mut Value) {
        if let (Some(fields), Value::Object(map)) = (&self.fields, item) {
            map.retain(|key, _| {
                fields.iter().any(|f| f == key) || self.include.iter().any(|i| i == key)
            });
        }
    }

    /// A single-item request from query pairs: only `fields` and `include` apply to one
    /// item; anything else is an error message for a 400.
    pub fn item(
        spec: &ListSpec,
        pairs: &[(String, String)],
        passthrough: &[&str],
    ) -> Result<Self, String> {
        if let Some((name, _)) = pairs.iter().find(|(name, _)| {
            name != "fields" && name != "include" && !passthrough.contains(&name.as_str())
        }) {
            return Err(format!(
                "`{name}` does not apply to a single item; use `fields` or `include`."
            ));
        }
        let mut request = Self::parse(spec, pairs, passthrough)?;
        request.per_page = 1;
        Ok(request)
    }
}

/// One item by scope conditions (typically the id and the tenant), `None` when absent.
pub async fn fetch_one(
    pool: &PgPool,
    spec: &ListSpec,
    scope: &[(&'static str, String)],
) -> Result<Option<Value>, sqlx::Error> {
    let request = ListRequest::item(spec, &[], &[]).map_err(sqlx::Error::Protocol)?;
    fetch_item(pool, spec, &request, scope).await
}

/// One item shaped by `request` (its `fields` and `include`), `None` when absent.
pub async fn fetch_item(
    pool: &PgPool,
    spec: &ListSpec,
    request: &ListRequest,
    scope: &[(&'static str, String)],
) -> Result<Option<Value>, sqlx::Error> {
    Ok(fetch_page(pool, spec, request, scope, Total::Rows)
        .await?
        .items
        .into_iter()
        .next())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    static SPEC: ListSpec = ListSpec {
        from: "things t",
        item: "to_jsonb(t)",
        id: "t.id",
        sortable: &[
            Column {
                name: "name",
                sql: "t.name",
            },
            Column {
                name: "created_at",
                sql: "t.created_at",
            },
        ],
        nullable: &[],
        filters: &[
            Column {
                name: "status",
                sql: "t.status",
            },
            Column {
                name: "owner_id",
                sql: "t.owner_id",
            },
        ],
        filter_values: &[("status", &["open", "closed"])],
        id_filters: &[("owner_id", "usr")],
        contains_filters: &[Column {
            name: "tag",
            sql: "t.tags",
        }],
        created_at: Some("t.created_at"),
        updated_at: None,
        search: Some("t.search"),
        fields: &["id", "name", "status"],
        includes: &[],
        default_sort: "-created_at",
    };

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refuses_what_it_does_not_know_and_what_is_ambiguous() {
        for bad in [
            &[("sort", "nope")][..],
            &[("sort", "name,")],
            &[("fields", "id,,name")],
            &[("status", "open,maybe")],
            &[("owner_id", "usr_1")],
            &[("page", "0")],
            &[("per_page", "101")],
            &[("per_page", "10"), ("limit", "20")],
            &[("page", "1"), ("page", "2")],
            &[("updated_after", "2026-01-01T00:00:00Z")],
            &[("created_after", "yesterday")],
            &[("x", "1")],
        ] {
            assert!(
                ListRequest::parse(&SPEC, &pairs(bad), &[]).is_err(),
                "{bad:?}"
            );
        }
        let ok = ListRequest::parse(
            &SPEC,
            &pairs(&[("per_page", "10"), ("limit", "10"), ("workspaceId", "x")]),
            &["workspaceId"],
        )
        .expect("the alias may repeat the same size; passthrough is ignored");
        assert_eq!(ok.per_page, 10);
    }

    proptest! {
        /// No query makes the parser panic; what it accepts is within the spec.
        #[test]
        fn any_query_is_refused_or_within_the_spec(
            query in proptest::collection::vec(
                (
                    "page|per_page|limit|sort|fields|include|search|status|owner_id|tag|created_after|created_before|updated_after|x",
                    "\\PC{0,30}|-?(name|created_at)(,[+-]?(name|status|id)){0,3}|open(,closed)?|usr_[0-9a-f]{32}|[0-9]{1,7}",
                ),
                0..6,
            )
        ) {
            let pairs: Vec<(String, String)> = query;
            if let Ok(request) = ListRequest::parse(&SPEC, &pairs, &[]) {
                prop_assert!(request.page >= 1);
                prop_assert!((1..=MAX_PER_PAGE).contains(&request.per_page));
                prop_assert!(!request.sort.is_empty());
                for key in &request.sort {
                    prop_assert!(SPEC.sortable.iter().any(|c| c.name == key.column.name));
                }
                for field in request.fields.iter().flatten() {
                    prop_assert!(SPEC.fields.contains(&field.as_str()));
                }
                for (column, values) in &request.filters {
                    prop_assert!(!values.is_empty() && values.len() <= MAX_FILTER_VALUES);
                    if column.name == "status" {
                        prop_assert!(values.iter().all(|v| v == "open" || v == "closed"));
                    }
                    if column.name == "owner_id" {
                        prop_assert!(values.iter().all(|v| ids::is_id("usr", v)));
                    }
                    prop_assert!(values.iter().all(|v| !v.is_empty() && v.trim() == v));
                }
                prop_assert!(request.updated_after.is_none(), "no updated_at column");
            }
        }

        /// Every comma list of sortable names, signed or not, sorts by exactly those keys.
        #[test]
        fn sort_lists_parse_to_their_keys(keys in proptest::collection::vec(("[-+]?", "name|created_at"), 1..5)) {
            let text: Vec<String> = keys.iter().map(|(sign, name)| format!("{sign}{name}")).collect();
            let request = ListRequest::parse(&SPEC, &pairs(&[("sort", &text.join(","))]), &[])
                .expect("valid sort");
            prop_assert_eq!(request.sort.len(), keys.len());
            for (key, (sign, name)) in request.sort.iter().zip(&keys) {
                prop_assert_eq!(key.column.name, name.as_str());
                prop_assert_eq!(key.descending, sign == "-");
            }
        }
    }
}
