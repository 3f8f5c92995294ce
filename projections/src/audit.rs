//! The audit log as an RFC 9162 Merkle tree ([`pulsar_domain::merkle`]).
//!
//! The `audit_log` subscriber reads the whole log in commit order and gives each event
//! its `log_index` (0-based, gap free, unlike `global_position`) and its leaf hash over
//! the event's canonical bytes ([`canonical_bytes`]), and stores the root of every
//! perfect subtree the new leaves complete. A batch resumes the tree from its right
//! edge ([`Frontier`]), at most 64 stored hashes, so appending costs O(1) amortised
//! hashes per event and nothing is ever rewritten.

use std::collections::{BTreeMap, HashMap};

use pulsar_domain::catalog;
use pulsar_domain::merkle::{self, Frontier, Hash, Perfect};
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, PgPool};

use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The subscriber's name.
pub const NAME: &str = "audit_log";

/// The metadata keys an audit entry carries (absent ones as `null`).
pub const METADATA_KEYS: [&str; 6] = [
    "actor_type",
    "actor_id",
    "request_id",
    "client_ip",
    "user_agent",
    "workspace_id",
];

/// An event as the audit log shows it, without its `hash`: the object whose canonical
/// bytes are hashed into the tree. [`declare_export`] builds the same object in SQL (so
/// an export decodes no payload); a member added here must be added there, and the
/// export test's independent verifier fails until it is.
pub fn entry(event: &StoredEvent, log_index: i64) -> Value {
    let metadata: Map<String, Value> = METADATA_KEYS
        .iter()
        .map(|key| {
            let value = event.metadata.get(*key).cloned().unwrap_or(Value::Null);
            ((*key).to_string(), value)
        })
        .collect();
    json!({
        "position": event.position.global_position,
        "log_index": log_index,
        "event_id": catalog::event_id(&event.aggregate_type, &event.aggregate_id, event.sequence),
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": event.payload,
        "metadata": metadata,
        "recorded_at": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

/// The canonical bytes of an entry: keys sorted at every depth, no insignificant
/// whitespace, UTF-8 unescaped (RFC 8785 for this data; Python's `json.dumps(e,
/// sort_keys=True, separators=(",", ":"), ensure_ascii=False)` gives the same bytes).
pub fn canonical_bytes(entry: &Value) -> Vec<u8> {
    // serde_json's map is ordered by key (no `preserve_order`), and its compact writer
    // escapes exactly what JSON requires.
    serde_json::to_vec(entry).unwrap_or_default()
}

/// The leaf hash of an event at `log_index`.
pub fn leaf(event: &StoredEvent, log_index: i64) -> Hash {
    merkle::leaf_hash(&canonical_bytes(&entry(event, log_index)))
}

/// Keeps `audit_leaves` and `audit_nodes`.
#[derive(Debug, Default)]
pub struct AuditLog;

impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        append(conn, std::slice::from_ref(event)).await
    }

    fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send {
        append(conn, events)
    }
}

/// The stored roots of perfect subtrees (level 0: leaves).
pub async fn perfect_roots(
    conn: &mut PgConnection,
    parts: &[Perfect],
) -> Result<Vec<(Perfect, Hash)>, ProjectionError> {
    let (levels, indices): (Vec<i32>, Vec<i64>) = parts
        .iter()
        .map(|p| (p.level as i32, p.index as i64))
        .unzip();
    let rows: Vec<(i32, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT w.level, w.index, coalesce(n.hash, l.leaf)
           FROM unnest($1::int[], $2::bigint[]) AS w(level, index)
           LEFT JOIN audit_nodes n ON w.level > 0 AND n.level = w.level AND n.index = w.index
           LEFT JOIN audit_leaves l ON w.level = 0 AND l.log_index = w.index
          WHERE n.hash IS NOT NULL OR l.leaf IS NOT NULL",
    )
    .bind(&levels)
    .bind(&indices)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(level, index, hash)| {
            let hash: Hash = hash
                .try_into()
                .map_err(|_| ProjectionError::Decode("a stored hash is not 32 bytes".into()))?;
            Ok((
                Perfect {
                    level: level as u32,
                    index: index as u64,
                },
                hash,
            ))
        })
        .collect()
}

/// The tree's size as stored.
pub async fn size(conn: &mut PgConnection) -> Result<i64, ProjectionError> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(log_index) + 1, 0) FROM audit_leaves")
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn append(conn: &mut PgConnection, events: &[StoredEvent]) -> Result<(), ProjectionError> {
    if events.is_empty() {
        return Ok(());
    }
    let start = size(conn).await?;
    let needed = Frontier::needed(start as u64);
    let roots = perfect_roots(conn, &needed).await?;
    let mut frontier = Frontier::resume(start as u64, &roots).ok_or_else(|| {
        ProjectionError::Decode(format!(
            "the audit tree's right edge at {start} is incomplete"
        ))
    })?;
    let mut log_indices = Vec::with_capacity(events.len());
    let mut transactions = Vec::with_capacity(events.len());
    let mut positions = Vec::with_capacity(events.len());
    let mut workspaces = Vec::with_capacity(events.len());
    let mut leaves = Vec::with_capacity(events.len());
    let (mut levels, mut indices, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    for (offset, event) in events.iter().enumerate() {
        let log_index = start + offset as i64;
        let hash = leaf(event, log_index);
        for (part, node) in frontier.push(hash) {
            levels.push(part.level as i32);
            indices.push(part.index as i64);
            hashes.push(node.to_vec());
        }
        log_indices.push(log_index);
        transactions.push(event.position.transaction_text());
        positions.push(event.position.global_position);
        workspaces.push(event.workspace_id().map(str::to_string));
        leaves.push(hash.to_vec());
    }
    sqlx::query(
        "INSERT INTO audit_leaves (log_index, transaction_id, global_position, workspace_id, leaf)
         SELECT i, t::xid8, p, w, l
           FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bytea[])
                AS u(i, t, p, w, l)",
    )
    .bind(&log_indices)
    .bind(&transactions)
    .bind(&positions)
    .bind(&workspaces)
    .bind(&leaves)
    .execute(&mut *conn)
    .await?;
    if !levels.is_empty() {
        sqlx::query(
            "INSERT INTO audit_nodes (level, index, hash)
             SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[])",
        )
        .bind(&levels)
        .bind(&indices)
        .bind(&hashes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// MTH of each range (ranges a proof uses), from the stored subtree roots.
pub async fn range_roots(
    conn: &mut PgConnection,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, ProjectionError> {
    let parts: Vec<Vec<Perfect>> = ranges
        .iter()
        .map(|(start, end)| merkle::perfect_parts(*start, *end))
        .collect();
    let mut wanted: Vec<Perfect> = parts.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let found: std::collections::HashMap<Perfect, Hash> =
        perfect_roots(conn, &wanted).await?.into_iter().collect();
    parts
        .iter()
        .map(|parts| {
            let hashes = parts
                .iter()
                .map(|p| {
                    found.get(p).copied().ok_or_else(|| {
                        ProjectionError::Decode(format!("audit subtree {p:?} is missing"))
                    })
                })
                .collect::<Result<Vec<Hash>, ProjectionError>>()?;
            Ok(merkle::fold_parts(&hashes))
        })
        .collect()
}

/// The root of the first `size` leaves.
pub async fn root(conn: &mut PgConnection, size: u64) -> Result<Hash, ProjectionError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    Ok(range_roots(conn, &[(0, size)]).await?.remove(0))
}

/// What `GET /audit/events` (one workspace) and `pulsar audit export` (any) select.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `None` only for operators: every workspace, and events of none (users).
    pub workspace_id: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub actor_id: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only leaves below this `log_index` (a checkpoint's tree size).
    pub below_index: Option<i64>,
}

impl EventFilter {
    /// Whether it selects every event (of the tree, when `below_index` bounds it).
    pub fn is_everything(&self) -> bool {
        self.workspace_id.is_none()
            && self.aggregate_type.is_none()
            && self.aggregate_id.is_none()
            && self.actor_id.is_none()
            && self.event_type.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

/// The `log_index` of the event at `position` in the workspace, for cursors.
pub async fn index_of_position(
    conn: &mut PgConnection,
    workspace_id: &str,
    position: i64,
) -> Result<Option<i64>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT log_index FROM audit_leaves WHERE global_position = $1 AND workspace_id = $2",
    )
    .bind(position)
    .bind(workspace_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Up to `limit` audit entries (with their `hash`) of the filter after `after_index`, in
/// commit order, with the `log_index` of the last.
pub async fn events_page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    after_index: i64,
    limit: i64,
) -> Result<(Vec<Value>, Option<i64>), ProjectionError> {
    // Only the conditions the filter sets, so each combination gets a plan of its own
    // (an `$n IS NULL OR …` in a cached generic plan hides which indexes apply).
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "SELECT l.log_index, l.leaf, e.transaction_id::text AS tx_text, e.global_position,
                e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                e.payload, e.metadata, e.recorded_at,
                coalesce(e.metadata ->> 'workspace_id', event_workspace(e)) AS workspace
           FROM audit_leaves l
           -- By the log's unique (transaction_id, global_position) index.
           JOIN events e ON e.transaction_id = l.transaction_id
                        AND e.global_position = l.global_position
          WHERE l.log_index > ",
    );
    query.push_bind(after_index);
    push_conditions(&mut query, filter);
    query.push(" ORDER BY l.log_index LIMIT ").push_bind(limit);
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut last = None;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        use sqlx::Row;
        let log_index: i64 = row.try_get("log_index")?;
        let leaf: Vec<u8> = row.try_get("leaf")?;
        let event = StoredEvent::from_row(row)?;
        let mut item = entry(&event, log_index);
        item["hash"] = Value::String(hex_string(&leaf));
        out.push(item);
        last = Some(log_index);
    }
    Ok((out, last))
}

/// The name of the cursor [`declare_export`] opens.
pub const EXPORT_CURSOR: &str = "audit_export";

/// Opens, in the caller's transaction, a cursor over the entries `filter` selects in
/// `log_index` order: the object [`entry`] makes, written by PostgreSQL, with `event_id`
/// as [`catalog::event_id`] derives it and `recorded_at` to the microsecond, UTC. Rows
/// are `(log_index, JSON text)` built by PostgreSQL with its
/// `hash` (keys in PostgreSQL's order; the canonical bytes are for the verifier to make).
/// `FETCH n FROM audit_export` reads it: one query plan and one snapshot for the whole
/// export, no payload decoded on the way.
pub async fn declare_export(
    conn: &mut PgConnection,
    filter: &EventFilter,
) -> Result<(), ProjectionError> {
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "DECLARE {EXPORT_CURSOR} NO SCROLL CURSOR FOR
         SELECT l.log_index, jsonb_build_object(
                  'position', e.global_position, 'log_index', l.log_index,
                  'event_id', 'evt_' || left(encode(sha256(convert_to(
                      e.aggregate_type || '/' || e.aggregate_id || '/' || e.sequence, 'UTF8')), 'hex'), 32),
                  'aggregate_type', e.aggregate_type, 'aggregate_id', e.aggregate_id,
                  'sequence', e.sequence, 'event_type', e.event_type,
                  'event_version', e.event_version, 'payload', e.payload,
                  'metadata', jsonb_build_object(
                      'actor_type', e.metadata -> 'actor_type', 'actor_id', e.metadata -> 'actor_id',
                      'request_id', e.metadata -> 'request_id', 'client_ip', e.metadata -> 'client_ip',
                      'user_agent', e.metadata -> 'user_agent',
                      'workspace_id', e.metadata -> 'workspace_id'),
                  'recorded_at', to_char(e.recorded_at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                  'hash', encode(l.leaf, 'hex'))::text
           FROM audit_leaves l
           JOIN events e ON e.transaction_id = l.transaction_id
                        AND e.global_position = l.global_position
          WHERE true"
    ));
    push_conditions(&mut query, filter);
    query.push(" ORDER BY l.log_index");
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// The filter's conditions, only those it sets.
fn push_conditions(query: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, filter: &EventFilter) {
    if let Some(below) = filter.below_index {
        query.push(" AND l.log_index < ").push_bind(below);
    }
    let conditions = [
        ("l.workspace_id", &filter.workspace_id),
        ("e.aggregate_type", &filter.aggregate_type),
        ("e.aggregate_id", &filter.aggregate_id),
        ("e.metadata ->> 'actor_id'", &filter.actor_id),
        ("e.event_type", &filter.event_type),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            query
                .push(format!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(from) = filter.from {
        query.push(" AND e.recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND e.recorded_at < ").push_bind(to);
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The root of the first `size` stored leaves, folded from the leaves themselves (not
/// from the stored subtree roots); `None` if some are missing.
async fn stored_leaves_root(
    conn: &mut PgConnection,
    size: u64,
) -> Result<Option<Hash>, ProjectionError> {
    const PAGE: i64 = 10_000;
    let mut frontier = Frontier::default();
    while frontier.size() < size {
        let leaves: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT log_index, leaf FROM audit_leaves WHERE log_index >= $1 AND log_index < $2
              ORDER BY log_index LIMIT $3",
        )
        .bind(frontier.size() as i64)
        .bind(size as i64)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        if leaves.is_empty() {
            return Ok(None);
        }
        for (index, leaf) in leaves {
            let Ok(leaf) = Hash::try_from(leaf.as_slice()) else {
                return Ok(None);
            };
            if index as u64 != frontier.size() {
                return Ok(None);
            }
            frontier.push(leaf);
        }
    }
    Ok(Some(frontier.root()))
}

/// What re-hashing the log found (`GET /audit/verify`, `pulsar audit verify`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub intact: bool,
    pub events_checked: u64,
    /// The `position` of the first event whose bytes no longer give its stored leaf (or
    /// of the stored leaf left without its event).
    pub first_broken_position: Option<i64>,
    pub tree_size: u64,
    /// The root recomputed from the events equals the latest signed checkpoint's.
    pub root_matches_checkpoint: bool,
}

/// Re-hashes every stored event in commit order and compares each with its stored leaf,
/// then recomputes the root of the latest checkpoint's size from the events alone and
/// compares it with the signed root. Reads in pages: memory stays flat.
pub async fn verify(
    pool: &PgPool,
    checkpoint: Option<(u64, Hash)>,
) -> Result<Verification, ProjectionError> {
    Ok(verify_with(pool, checkpoint, &[], |_, _| {}).await?.0)
}

/// A page of the log with the stored leaves of the same `log_index` range:
/// `log_index → (global_position, leaf)`.
type VerifyPage = (Vec<StoredEvent>, HashMap<i64, (i64, Vec<u8>)>);

/// Reads the whole log in pages into `pages`, each with its stored leaves, until the end
/// or until the receiver is gone.
async fn read_for_verify(
    pool: PgPool,
    pages: tokio::sync::mpsc::Sender<Result<VerifyPage, ProjectionError>>,
) {
    const PAGE: i64 = 5000;
    let read = async {
        let mut conn = pool.acquire().await?;
        let mut after = crate::position::Position::ZERO;
        let mut start = 0i64;
        loop {
            let events = crate::log::read_between_of_types(
                &mut conn,
                after,
                crate::position::Position {
                    transaction_id: u64::MAX >> 1,
                    global_position: i64::MAX,
                },
                &[],
                PAGE,
            )
            .await?;
            let Some(last) = events.last() else {
                return Ok::<_, ProjectionError>(());
            };
            after = last.position;
            let stored = sqlx::query_as(
                "SELECT log_index, global_position, leaf FROM audit_leaves
                  WHERE log_index >= $1 AND log_index < $2",
            )
            .bind(start)
            .bind(start + events.len() as i64)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(i, p, l): (i64, i64, Vec<u8>)| (i, (p, l)))
            .collect();
            start += events.len() as i64;
            if pages.send(Ok((events, stored))).await.is_err() {
                return Ok(());
            }
        }
    };
    if let Err(error) = read.await {
        let _ = pages.send(Err(error)).await;
    }
}

/// As [`verify`], also returning the root recomputed from the events at each of
/// `sizes` (those the log reaches), and reporting `(events checked, stored tree size)`
/// after each page. The next page is read on a second connection while this one is
/// hashed.
pub async fn verify_with(
    pool: &PgPool,
    checkpoint: Option<(u64, Hash)>,
    sizes: &[u64],
    mut progress: impl FnMut(u64, u64),
) -> Result<(Verification, BTreeMap<u64, Hash>), ProjectionError> {
    let mut conn = pool.acquire().await?;
    let stored_size = size(&mut conn).await? as u64;
    let mut roots = BTreeMap::new();
    let mut frontier = Frontier::default();
    let mut checkpoint_root = None;
    let mut first_broken = None;
    let mut checked = 0u64;
    let (sender, mut pages) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(read_for_verify(pool.clone(), sender));
    while let Some(page) = pages.recv().await {
        let (events, stored) = page?;
        let start = checked as i64;
        for (offset, event) in events.iter().enumerate() {
            let index = start + offset as i64;
            let hash = leaf(event, index);
            if (index as u64) < stored_size && first_broken.is_none() {
                match stored.get(&index) {
                    Some((_, stored_leaf)) if stored_leaf.as_slice() == hash.as_slice() => {}
                    // Where an event went missing or moved, the leaf names the event that
                    // should be here; otherwise the event itself changed.
                    Some((position, _)) if *position != event.position.global_position => {
                        first_broken = Some(*position);
                    }
                    _ => first_broken = Some(event.position.global_position),
                }
            }
            frontier.push(hash);
            if checkpoint.is_some_and(|(size, _)| size == frontier.size()) {
                checkpoint_root = Some(frontier.root());
            }
            if sizes.contains(&frontier.size()) {
                roots.insert(frontier.size(), frontier.root());
            }
        }
        checked += events.len() as u64;
        progress(checked, stored_size);
    }
    let _ = reader.await;
    if first_broken.is_none() && checked < stored_size {
        // Leaves whose events are gone: the first of them is where the log broke.
        first_broken =
            sqlx::query_scalar("SELECT global_position FROM audit_leaves WHERE log_index = $1")
                .bind(checked as i64)
                .fetch_optional(&mut *conn)
                .await?;
    }
    // The signed root must come out of the events and out of the stored leaves alike.
    let root_matches_checkpoint = match checkpoint {
        Some((size, signed)) => {
            checkpoint_root == Some(signed)
                && stored_leaves_root(&mut conn, size).await? == Some(signed)
        }
        None => true,
    };
    let verification = Verification {
        intact: first_broken.is_none() && root_matches_checkpoint,
        events_checked: checked,
        first_broken_position: first_broken,
        tree_size: stored_size,
        root_matches_checkpoint,
    };
    Ok((verification, roots))
}
