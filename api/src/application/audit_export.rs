//! The operator's side of the audit log: `pulsar audit export` writes what an auditor
//! needs to check a slice of the log offline, `pulsar audit verify` checks the log in the
//! database (and that a saved checkpoint is a prefix of it), and `pulsar audit verify
//! --export` checks an export file with no database at all.
//!
//! An export is NDJSON, one object per line, in this order (docs/audit.md):
//! - `{"checkpoint": {...}}`: the latest signed checkpoint; everything below is proved
//!   against it, and only events below its `tree_size` are exported;
//! - `{"consistency": {"from", "to", "hashes"}}`, when the export was asked to extend a
//!   checkpoint the auditor saved: the RFC 9162 proof from that tree to this one;
//! - the events, each exactly as `GET /audit/events` shows it (with `hash`); when the
//!   export is filtered, each is followed by `{"inclusion": {"log_index", "tree_size",
//!   "leaf_hash", "hashes"}}`; when it is the whole log, the leaves themselves give the
//!   root;
//! - `{"end": {"events", "tree_size", "complete"}}`, so a truncated file is detected.
//!
//! Both directions stream: memory stays flat however long the log is.

use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pulsar_domain::merkle::{self, Frontier, Hash};
use pulsar_projections::audit::{self as tree, EventFilter};
use pulsar_projections::rebuild::Progress;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;

use super::audit::{latest_checkpoint, SignedCheckpoint};
use super::{Error, Result};

/// Events read per page: what an export holds in memory at once.
const PAGE: i64 = 1000;

/// What was exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub events: u64,
    pub tree_size: u64,
    /// The whole log up to `tree_size` (no filter), so the leaves give the root.
    pub complete: bool,
}

fn encode_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

fn write_line(out: &mut impl Write, value: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| Error::Internal(format!("writing the export: {e}")))
}

fn write_raw(out: &mut impl Write, line: &str) -> Result<()> {
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| Error::Internal(format!("writing the export: {e}")))
}

fn progress(name: &'static str, done: u64, total: u64, started: std::time::Instant) -> Progress {
    Progress {
        name,
        done,
        total,
        elapsed: started.elapsed(),
    }
}

/// Writes the events `filter` selects (its `below_index` is set here) with the latest
/// checkpoint and the proofs that tie them to it; with `since`, also the consistency
/// proof from that saved checkpoint. Reports progress after each page.
pub async fn export(
    pool: &PgPool,
    mut filter: EventFilter,
    since: Option<&SignedCheckpoint>,
    out: &mut impl Write,
    mut report: impl FnMut(&Progress),
) -> Result<ExportSummary> {
    let started = std::time::Instant::now();
    let checkpoint = latest_checkpoint(pool).await?.ok_or_else(|| {
        Error::Conflict(
            "No checkpoint is signed yet: run the server (role all or projector) until the \
             audit log has one."
                .into(),
        )
    })?;
    let size = checkpoint.tree_size;
    let mut conn = pool.acquire().await?;
    write_line(out, &json!({ "checkpoint": checkpoint }))?;
    if let Some(since) = since {
        if since.tree_size == 0 || since.tree_size > size {
            return Err(Error::invalid(
                "checkpoint",
                "The saved checkpoint is larger than the log's latest; it cannot be extended.",
            ));
        }
        let hashes = tree::range_roots(
            &mut conn,
            &merkle::consistency_ranges(since.tree_size, size),
        )
        .await?;
        write_line(
            out,
            &json!({ "consistency": {
                "from": since.tree_size, "to": size, "hashes": encode_all(&hashes),
            }}),
        )?;
    }
    filter.below_index = Some(size as i64);
    let complete = filter.is_everything();
    // One cursor, one snapshot: the lines come as PostgreSQL writes them.
    let mut cursor = pool.begin().await?;
    tree::declare_export(&mut cursor, &filter).await?;
    let fetch = format!("FETCH {PAGE} FROM {}", tree::EXPORT_CURSOR);
    let mut events = 0u64;
    loop {
        let page: Vec<(i64, String)> = sqlx::query_as(&fetch).fetch_all(&mut *cursor).await?;
        let Some(last) = page.last().map(|(index, _)| *index) else {
            break;
        };
        let proofs = if complete {
            Vec::new()
        } else {
            let indices: Vec<u64> = page.iter().map(|(i, _)| *i as u64).collect();
            inclusion_proofs(&mut conn, &indices, size).await?
        };
        for (offset, (_, line)) in page.iter().enumerate() {
            write_raw(out, line)?;
            if let Some(proof) = proofs.get(offset) {
                write_line(out, proof)?;
            }
        }
        events += page.len() as u64;
        report(&progress("export", last as u64 + 1, size, started));
    }
    cursor.commit().await?;
    let summary = ExportSummary {
        events,
        tree_size: size,
        complete,
    };
    write_line(out, &json!({ "end": summary }))?;
    out.flush()
        .map_err(|e| Error::Internal(format!("writing the export: {e}")))?;
    Ok(summary)
}

/// Inclusion proofs of the leaves `indices` in the tree of `size`, in one read.
async fn inclusion_proofs(
    conn: &mut sqlx::PgConnection,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Value>> {
    let per_leaf: Vec<Vec<(u64, u64)>> = indices
        .iter()
        .map(|i| {
            let mut ranges = vec![(*i, i + 1)];
            ranges.extend(merkle::inclusion_ranges(*i, size));
            ranges
        })
        .collect();
    let flat: Vec<(u64, u64)> = per_leaf.iter().flatten().copied().collect();
    let mut hashes = tree::range_roots(conn, &flat).await?.into_iter();
    Ok(indices
        .iter()
        .zip(&per_leaf)
        .map(|(index, ranges)| {
            let mut these: Vec<Hash> = hashes.by_ref().take(ranges.len()).collect();
            let leaf = these.remove(0);
            json!({ "inclusion": {
                "log_index": index, "tree_size": size,
                "leaf_hash": STANDARD.encode(leaf), "hashes": encode_all(&these),
            }})
        })
        .collect())
}

/// What `pulsar audit verify` found in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    /// Everything below holds.
    pub ok: bool,
    #[serde(flatten)]
    pub log: tree::Verification,
    /// The latest checkpoint's size, and whether its signature holds.
    pub checkpoint_size: Option<u64>,
    pub checkpoint_signature_valid: bool,
    /// The saved checkpoint, when one was given.
    pub saved: Option<SavedReport>,
}

/// A saved checkpoint checked against today's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedReport {
    pub tree_size: u64,
    pub signature_valid: bool,
    /// Signed with the key of today's latest checkpoint.
    pub same_key: bool,
    /// The consistency proof from the stored tree verifies from its root to today's.
    pub consistent: bool,
    /// The root recomputed from today's events at its size is its root.
    pub root_matches_events: bool,
}

impl SavedReport {
    fn holds(&self) -> bool {
        self.signature_valid && self.same_key && self.consistent && self.root_matches_events
    }
}

/// Re-hashes every event, recomputes the latest checkpoint's root and checks its
/// signature; with `saved`, proves that checkpoint a prefix of today's log, both with
/// a consistency proof from the stored tree and from the events themselves.
pub async fn verify_log(
    pool: &PgPool,
    saved: Option<&SignedCheckpoint>,
    mut report: impl FnMut(&Progress),
) -> Result<LogReport> {
    let started = std::time::Instant::now();
    let latest = latest_checkpoint(pool).await?;
    let latest_root = latest.as_ref().and_then(|c| c.verify().ok());
    let latest_size = latest.as_ref().map(|c| c.tree_size);
    let mut conn = pool.acquire().await?;
    let signed = match (&latest, latest_root) {
        (Some(c), Some(root)) => Some((c.tree_size, root)),
        // An unverifiable latest checkpoint: still compare the stored root.
        (Some(c), None) => STANDARD
            .decode(&c.root_hash)
            .ok()
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .map(|root| (c.tree_size, root)),
        (None, _) => None,
    };
    let sizes: Vec<u64> = saved.iter().map(|s| s.tree_size).collect();
    let (log, roots) = tree::verify_with(pool, signed, &sizes, |done, total| {
        report(&progress("verify", done, total, started));
    })
    .await?;
    let saved = match saved {
        None => None,
        Some(saved) => {
            let saved_root = saved.verify().ok();
            let consistent = match (saved_root, signed) {
                (Some(old_root), Some((size, new_root))) if saved.tree_size <= size => {
                    let proof = tree::range_roots(
                        &mut conn,
                        &merkle::consistency_ranges(saved.tree_size, size),
                    )
                    .await?;
                    merkle::verify_consistency(saved.tree_size, size, &old_root, &new_root, &proof)
                }
                _ => false,
            };
            Some(SavedReport {
                tree_size: saved.tree_size,
                signature_valid: saved_root.is_some(),
                same_key: latest
                    .as_ref()
                    .is_some_and(|l| l.public_key == saved.public_key),
                consistent,
                root_matches_events: saved_root.is_some()
                    && roots.get(&saved.tree_size).copied() == saved_root,
            })
        }
    };
    Ok(LogReport {
        ok: log.intact && latest_root.is_some() && saved.as_ref().is_none_or(SavedReport::holds),
        log,
        checkpoint_size: latest_size,
        checkpoint_signature_valid: latest_root.is_some(),
        saved,
    })
}

/// What `pulsar audit verify --export` found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub ok: bool,
    pub events: u64,
    pub tree_size: Option<u64>,
    pub complete: Option<bool>,
    /// The first thing that does not hold, with its line number.
    pub problem: Option<String>,
}

/// Checks an export with no database: the checkpoint's signature, every event's hash,
/// then the root from the leaves (a complete export) or each inclusion proof (a
/// filtered one), the consistency proof from `saved` (required when given), and the
/// end line. Reads line by line: memory stays flat.
pub fn verify_export(
    input: impl BufRead,
    saved: Option<&SignedCheckpoint>,
    mut report: impl FnMut(&Progress),
) -> ExportReport {
    let started = std::time::Instant::now();
    let mut check = ExportCheck::default();
    let mut line_number = 0u64;
    let mut problem = None;
    for line in input.lines() {
        line_number += 1;
        let outcome = line
            .map_err(|e| format!("unreadable: {e}"))
            .and_then(|line| check.line(&line, saved));
        if let Err(reason) = outcome {
            problem = Some(format!("line {line_number}: {reason}"));
            break;
        }
        if check.events % 10_000 == 0 && check.events > 0 {
            let total = check.checkpoint.as_ref().map_or(0, |c| c.0);
            report(&progress("verify export", check.events, total, started));
        }
    }
    if problem.is_none() {
        problem = check.finish(saved).err();
    }
    ExportReport {
        ok: problem.is_none(),
        events: check.events,
        tree_size: check.checkpoint.as_ref().map(|c| c.0),
        complete: check.ended.map(|e| e.complete),
        problem,
    }
}

/// The state of an export being checked.
#[derive(Default)]
struct ExportCheck {
    /// (tree size, root, public key).
    checkpoint: Option<(u64, Hash, String)>,
    consistency_checked: bool,
    /// The leaves while they run 0, 1, 2, ... (a complete export has them all).
    frontier: Frontier,
    consecutive: bool,
    /// The last event's (log_index, leaf), until its inclusion proof (if any) is read.
    pending: Option<(u64, Hash)>,
    /// The first event no inclusion proof followed.
    unproved: Option<u64>,
    last_index: Option<u64>,
    events: u64,
    ended: Option<ExportSummary>,
}

fn hashes_of(value: &Value) -> std::result::Result<Vec<Hash>, String> {
    value
        .as_array()
        .ok_or("`hashes` is not a list")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| STANDARD.decode(h).ok())
                .and_then(|h| Hash::try_from(h.as_slice()).ok())
                .ok_or_else(|| "a proof hash is not a base64 SHA-256".to_string())
        })
        .collect()
}

impl ExportCheck {
    fn line(
        &mut self,
        line: &str,
        saved: Option<&SignedCheckpoint>,
    ) -> std::result::Result<(), String> {
        if self.ended.is_some() {
            return Err("content after the end line".into());
        }
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let object = value.as_object().ok_or("not a JSON object")?;
        let single = (object.len() == 1)
            .then(|| object.iter().next())
            .flatten()
            .map(|(k, v)| (k.as_str(), v));
        match single {
            Some(("checkpoint", inner)) => self.checkpoint_line(inner, saved),
            _ if self.checkpoint.is_none() => {
                Err("the export does not start with a checkpoint".into())
            }
            Some(("consistency", inner)) => self.consistency(inner, saved),
            Some(("inclusion", inner)) => self.inclusion(inner),
            Some(("end", inner)) => {
                let ended = ExportSummary {
                    events: inner["events"].as_u64().ok_or("end: no `events`")?,
                    tree_size: inner["tree_size"].as_u64().ok_or("end: no `tree_size`")?,
                    complete: inner["complete"].as_bool().ok_or("end: no `complete`")?,
                };
                self.ended = Some(ended);
                Ok(())
            }
            _ => self.event(value),
        }
    }

    fn checkpoint_line(
        &mut self,
        inner: &Value,
        saved: Option<&SignedCheckpoint>,
    ) -> std::result::Result<(), String> {
        if self.checkpoint.is_some() {
            return Err("a second checkpoint".into());
        }
        let checkpoint: SignedCheckpoint =
            serde_json::from_value(inner.clone()).map_err(|e| format!("checkpoint: {e}"))?;
        let root = checkpoint.verify().map_err(|e| e.to_string())?;
        if let Some(saved) = saved {
            if saved.public_key != checkpoint.public_key {
                return Err(
                    "the export's checkpoint is signed with another key than the saved one".into(),
                );
            }
        }
        self.checkpoint = Some((checkpoint.tree_size, root, checkpoint.public_key));
        Ok(())
    }

    fn consistency(
        &mut self,
        inner: &Value,
        saved: Option<&SignedCheckpoint>,
    ) -> std::result::Result<(), String> {
        let Some(saved) = saved else {
            // Nothing to check it against; an auditor without the saved checkpoint
            // cannot use it.
            return Ok(());
        };
        let (size, root, _) = self
            .checkpoint
            .as_ref()
            .ok_or("consistency before checkpoint")?;
        let old_root = saved.verify().map_err(|e| format!("saved {e}"))?;
        let from = inner["from"].as_u64().ok_or("consistency: no `from`")?;
        let to = inner["to"].as_u64().ok_or("consistency: no `to`")?;
        if from != saved.tree_size || to != *size {
            return Err(format!(
                "the consistency proof is from {from} to {to}, not from the saved {} to {size}",
                saved.tree_size
            ));
        }
        let proof = hashes_of(&inner["hashes"])?;
        if !merkle::verify_consistency(from, to, &old_root, root, &proof) {
            return Err(format!(
                "the consistency proof from {from} to {to} does not verify: the log was rewritten \
                 or the proof was changed"
            ));
        }
        self.consistency_checked = true;
        Ok(())
    }

    fn event(&mut self, mut entry: Value) -> std::result::Result<(), String> {
        let (size, ..) = self.checkpoint.as_ref().ok_or("event before checkpoint")?;
        if let Some((index, _)) = self.pending.take() {
            self.unproved.get_or_insert(index);
        }
        let stated = entry
            .as_object_mut()
            .and_then(|o| o.remove("hash"))
            .and_then(|h| h.as_str().and_then(|h| hex::decode(h).ok()))
            .and_then(|h| Hash::try_from(h.as_slice()).ok())
            .ok_or("an event without a hex `hash`")?;
        let index = entry["log_index"]
            .as_u64()
            .ok_or("an event without `log_index`")?;
        if index >= *size {
            return Err(format!(
                "log_index {index} is beyond the checkpoint's size {size}"
            ));
        }
        if self.last_index.is_some_and(|last| index <= last) {
            return Err(format!("log_index {index} is out of order"));
        }
        let leaf = merkle::leaf_hash(&tree::canonical_bytes(&entry));
        if leaf != stated {
            return Err(format!(
                "the event at log_index {index} does not hash to its `hash`: it was changed"
            ));
        }
        if self.events == 0 {
            self.consecutive = true;
        }
        self.last_index = Some(index);
        self.events += 1;
        // A complete export has every leaf in order; a filtered one proves each.
        if self.consecutive && index == self.frontier.size() {
            self.frontier.push(leaf);
        } else {
            self.consecutive = false;
        }
        self.pending = Some((index, leaf));
        Ok(())
    }

    fn inclusion(&mut self, inner: &Value) -> std::result::Result<(), String> {
        let (size, root, _) = self
            .checkpoint
            .as_ref()
            .ok_or("inclusion before checkpoint")?;
        let (index, leaf) = self
            .pending
            .take()
            .ok_or("an inclusion proof without its event")?;
        let stated_index = inner["log_index"]
            .as_u64()
            .ok_or("inclusion: no `log_index`")?;
        let stated_size = inner["tree_size"]
            .as_u64()
            .ok_or("inclusion: no `tree_size`")?;
        if stated_index != index || stated_size != *size {
            return Err(format!(
                "the inclusion proof is for leaf {stated_index} of {stated_size}, not {index} of {size}"
            ));
        }
        let proof = hashes_of(&inner["hashes"])?;
        if !merkle::verify_inclusion(index, *size, &leaf, &proof, root) {
            return Err(format!(
                "the inclusion proof of log_index {index} does not verify against the checkpoint"
            ));
        }
        Ok(())
    }

    fn finish(&mut self, saved: Option<&SignedCheckpoint>) -> std::result::Result<(), String> {
        let (size, root, _) = self.checkpoint.as_ref().ok_or("no checkpoint")?;
        let ended = self.ended.ok_or("no end line: the export is truncated")?;
        if ended.events != self.events || ended.tree_size != *size {
            return Err(format!(
                "the end line says {} events of {}, the file has {} of {size}",
                ended.events, ended.tree_size, self.events
            ));
        }
        if saved.is_some() && !self.consistency_checked {
            return Err(
                "a saved checkpoint was given but the export has no consistency proof from it"
                    .into(),
            );
        }
        if let Some((index, _)) = self.pending.take() {
            self.unproved.get_or_insert(index);
        }
        if ended.complete {
            if !self.consecutive || self.frontier.size() != *size {
                return Err(format!(
                    "a complete export must hold leaves 0 to {}; it holds {}",
                    size - 1,
                    self.frontier.size()
                ));
            }
            if self.frontier.root() != *root {
                return Err("the leaves do not give the checkpoint's root".into());
            }
        } else if let Some(index) = self.unproved {
            // Each proof was checked as it came; every event must have had one.
            return Err(format!(
                "the event at log_index {index} has no inclusion proof"
            ));
        }
        Ok(())
    }
}
