//! Stored events in their public form: the domain's catalog
//! ([`pulsar_domain::catalog`]) applied to rows of the log.
//!
//! A public payload is the resource after the change, folded from its aggregate's
//! stream, so publishing one event takes the events of its aggregate up to it (which a
//! subscriber reading in log order has seen, or can read by the aggregate's key).

use cqrs_es::Aggregate;
use pulsar_domain::api_key::ApiKey;
use pulsar_domain::catalog::{fold_view, publish, Envelope, PublicEvent, Published};
use pulsar_domain::metadata::{Actor, ActorType};
use pulsar_domain::tracking::{PixelEvent, SeoReport};
use pulsar_domain::usage::{EntitlementPeriod, UsageRecord};
use pulsar_domain::user::User;
use pulsar_domain::webhook::Webhook;
use pulsar_domain::workspace::Workspace;
use pulsar_domain::workspace_data::{Company, Contact, Deal, Document, Project, Task};

use crate::log::StoredEvent;
use crate::subscription::ProjectionError;

fn envelope(event: &StoredEvent) -> Envelope<'_> {
    let actor_type = match event.meta("actor_type") {
        Some("user") => ActorType::User,
        Some("api_key") => ActorType::ApiKey,
        _ => ActorType::System,
    };
    Envelope {
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        recorded_at: event.recorded_at,
        actor: Actor {
            actor_type,
            id: event.meta("actor_id").unwrap_or("system").to_string(),
        },
        workspace_id: event.workspace_id(),
    }
}

/// `events` decoded as `A`'s, each with its envelope.
fn typed<A: Aggregate>(
    events: &[StoredEvent],
) -> Result<Vec<(A::Event, Envelope<'_>)>, ProjectionError> {
    events
        .iter()
        .map(|event| Ok((event.decode::<A>()?.payload, envelope(event))))
        .collect()
}

fn stream<A: Aggregate + Published>(
    events: &[StoredEvent],
) -> Result<Vec<Option<PublicEvent>>, ProjectionError> {
    Ok(publish::<A>(typed::<A>(events)?))
}

/// The resource after the last of `events` (a prefix of one stream of `A`, in order).
pub fn view<A: Aggregate + Published>(events: &[StoredEvent]) -> Result<A::View, ProjectionError> {
    Ok(fold_view::<A>(typed::<A>(events)?))
}

/// The public events of one aggregate's stream, given in order from its first event
/// (`None` for events that are not published). Every aggregate type of the log is
/// known here; an unknown one is an error, never silently skipped.
pub fn publish_stream(events: &[StoredEvent]) -> Result<Vec<Option<PublicEvent>>, ProjectionError> {
    let Some(first) = events.first() else {
        return Ok(Vec::new());
    };
    match first.aggregate_type.as_str() {
        User::TYPE => stream::<User>(events),
        Workspace::TYPE => stream::<Workspace>(events),
        ApiKey::TYPE => stream::<ApiKey>(events),
        Project::TYPE => stream::<Project>(events),
        Task::TYPE => stream::<Task>(events),
        Contact::TYPE => stream::<Contact>(events),
        Company::TYPE => stream::<Company>(events),
        Deal::TYPE => stream::<Deal>(events),
        Document::TYPE => stream::<Document>(events),
        Webhook::TYPE => stream::<Webhook>(events),
        EntitlementPeriod::TYPE => stream::<EntitlementPeriod>(events),
        UsageRecord::TYPE => stream::<UsageRecord>(events),
        PixelEvent::TYPE => stream::<PixelEvent>(events),
        SeoReport::TYPE => stream::<SeoReport>(events),
        other => Err(ProjectionError::Decode(format!(
            "no public catalog entry for aggregate type {other}"
        ))),
    }
}
