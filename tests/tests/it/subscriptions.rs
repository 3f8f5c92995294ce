//! The event log's ordered subscriptions: never skip, resume exactly, one consumer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulsar_projections::subscription::{SubscriberState, Subscriptions};
use pulsar_projections::{Projection, ProjectionError, StoredEvent};
use pulsar_tests::{fast_subscriptions, TestDb};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

/// Records every event it applies in `seen`, in the batch's transaction; the primary key
/// on the position makes a double apply fail loudly.
#[derive(Clone, Default)]
struct Recorder {
    /// Fail on the event with this global position while set.
    poison: Arc<std::sync::Mutex<Option<i64>>>,
    /// Sleep this long per event (to be killed mid-batch).
    slow: Arc<AtomicBool>,
    applied: Arc<AtomicUsize>,
}

impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let poison = *self.poison.lock().expect("lock");
        if poison == Some(event.position.global_position) {
            return Err(ProjectionError::Decode("poison event".into()));
        }
        if self.slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("INSERT INTO seen (global_position, transaction_id, applied_order) VALUES ($1, $2::text::xid8, (SELECT count(*) FROM seen))")
            .bind(event.position.global_position)
            .bind(event.position.transaction_text())
            .execute(conn)
            .await?;
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE seen (global_position bigint PRIMARY KEY, transaction_id xid8 NOT NULL, applied_order bigint NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("create seen");
    db
}

/// Appends an event the way postgres-es does (explicit column list).
async fn append(conn: &mut PgConnection, aggregate_id: &str, sequence: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Test', $1, $2, 'Tested', '1.0', '{}', '{}') RETURNING global_position",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(conn)
    .await
    .expect("append")
}

async fn seen(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT global_position FROM seen ORDER BY applied_order")
        .fetch_all(pool)
        .await
        .expect("seen")
}

async fn wait_until_seen(pool: &PgPool, count: usize) -> Vec<i64> {
    for _ in 0..200 {
        let rows = seen(pool).await;
        if rows.len() >= count {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the subscriber did not apply {count} events; it applied {:?}",
        seen(pool).await
    );
}

fn subscriptions(pool: &PgPool) -> (Subscriptions, watch::Sender<bool>) {
    let (stop, stop_rx) = watch::channel(false);
    let subscriptions = Subscriptions::new(pool.clone(), fast_subscriptions(), stop_rx);
    subscriptions.spawn_listener();
    (subscriptions, stop)
}

#[tokio::test]
async fn a_late_committing_transaction_is_never_skipped() {
    let db = setup().await;
    let (subs, _stop) = subscriptions(&db.pool);
    subs.spawn(Recorder::default());

    // A appends first and stays open.
    let mut a = db.pool.begin().await.expect("begin a");
    let a_position = append(&mut a, "a", 1).await;
    // B appends after it and commits.
    let mut b = db.pool.begin().await.expect("begin b");
    let b_position = append(&mut b, "b", 1).await;
    b.commit().await.expect("commit b");
    assert!(a_position < b_position);

    // B is committed and visible, yet the subscriber must not pass A's slot: give it
    // several polls and notifications worth of time.
    subs.wake();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(seen(&db.pool).await, Vec::<i64>::new(), "B must wait for A");
    let status = &subs.statuses()[0];
    assert_eq!(
        status.global_position, 0,
        "the checkpoint must not move past A"
    );

    a.commit().await.expect("commit a");
    assert_eq!(
        wait_until_seen(&db.pool, 2).await,
        vec![a_position, b_position]
    );
}

#[tokio::test]
async fn order_is_by_transaction_then_position() {
    let db = setup().await;
    // A takes its transaction id first but allocates its position last.
    let mut a = db.pool.begin().await.expect("begin a");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *a)
        .await
        .expect("xid");
    let mut b = db.pool.begin().await.expect("begin b");
    let b_position = append(&mut b, "b", 1).await;
    b.commit().await.expect("commit b");
    let a_position = append(&mut a, "a", 1).await;
    a.commit().await.expect("commit a");
    assert!(b_position < a_position);

    let (subs, _stop) = subscriptions(&db.pool);
    subs.spawn(Recorder::default());
    // Commit order was B then A, allocation order B then A, but A's transaction is older:
    // the log order is A, B, and it is the same on every replay.
    assert_eq!(
        wait_until_seen(&db.pool, 2).await,
        vec![a_position, b_position]
    );
}

#[tokio::test]
async fn a_killed_projector_resumes_from_its_checkpoint() {
    let db = setup().await;
    let mut conn = db.pool.acquire().await.expect("conn");
    for i in 0..60 {
        append(&mut conn, &format!("agg-{}", i % 7), i / 7 + 1).await;
    }
    let recorder = Recorder::default();
    recorder.slow.store(true, Ordering::Relaxed);
    let (subs, stop) = subscriptions(&db.pool);
    let task = subs.spawn(recorder.clone());
    // Let it get into its first batch, then kill it mid-batch.
    while recorder.applied.load(Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    let _ = stop.send(true);
    // What is applied is exactly what the checkpoint covers: the killed batch rolled
    // back entirely. (Usually nothing: one batch holds all 60, unless another test's
    // open transaction held the cluster-wide horizon back and split them.)
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT last_global_position FROM subscription_checkpoints WHERE name = 'recorder'",
    )
    .fetch_optional(&db.pool)
    .await
    .expect("checkpoint")
    .unwrap_or(0);
    let applied = seen(&db.pool).await;
    assert!(
        applied.iter().all(|p| *p <= checkpoint) && applied.len() as i64 == checkpoint,
        "the killed batch must have rolled back entirely: checkpoint {checkpoint}, applied {applied:?}"
    );

    // A new process picks up from the checkpoint.
    let (subs, _stop) = subscriptions(&db.pool);
    let recorder = Recorder::default();
    subs.spawn(recorder.clone());
    let rows = wait_until_seen(&db.pool, 60).await;
    let mut sorted = rows.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 60, "every event exactly once");

    // More appends after the restart arrive too, and nothing twice.
    append(&mut conn, "late", 1).await;
    assert_eq!(wait_until_seen(&db.pool, 61).await.len(), 61);
}

#[tokio::test]
async fn a_dropped_connection_loses_nothing() {
    let db = setup().await;
    let (subs, _stop) = subscriptions(&db.pool);
    let recorder = Recorder::default();
    subs.spawn(recorder.clone());
    let mut conn = db.pool.acquire().await.expect("conn");
    for i in 0..20 {
        append(&mut conn, "x", i + 1).await;
    }
    wait_until_seen(&db.pool, 20).await;
    // Kill every other backend of this database: the listener and pooled connections.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *conn)
    .await
    .expect("terminate");
    for i in 20..40 {
        append(&mut conn, "x", i + 1).await;
    }
    let rows = wait_until_seen(&db.pool, 40).await;
    assert_eq!(rows.len(), 40);
}

#[tokio::test]
async fn a_poison_event_stops_the_subscriber_visibly_and_is_never_skipped() {
    let db = setup().await;
    // The first two in one transaction, so they always fall in the same batch (the
    // horizon is cluster-wide: another test's open transaction may split batches).
    let mut tx = db.pool.begin().await.expect("begin");
    let first = append(&mut tx, "p", 1).await;
    let poison = append(&mut tx, "p", 2).await;
    tx.commit().await.expect("commit");
    let mut conn = db.pool.acquire().await.expect("conn");
    let last = append(&mut conn, "p", 3).await;
    let recorder = Recorder::default();
    *recorder.poison.lock().expect("lock") = Some(poison);
    let (subs, _stop) = subscriptions(&db.pool);
    subs.spawn(recorder.clone());

    let mut stuck = false;
    for _ in 0..100 {
        let status = subs.statuses()[0].clone();
        if status.stuck {
            assert_eq!(status.state, SubscriberState::Failing);
            assert!(status
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("poison"));
            stuck = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stuck, "the subscriber must report itself stuck");
    // The batch is all or nothing: not even the event before the poison is applied.
    assert!(seen(&db.pool).await.is_empty());

    // Fixed: it resumes and applies everything, in order, once.
    *recorder.poison.lock().expect("lock") = None;
    assert_eq!(
        wait_until_seen(&db.pool, 3).await,
        vec![first, poison, last]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!subs.statuses()[0].stuck);
}

#[tokio::test]
async fn one_active_consumer_across_processes() {
    let db = setup().await;
    // Two independent "processes" run the same subscriber on one database.
    let (first, _stop1) = subscriptions(&db.pool);
    let (second, _stop2) = subscriptions(&db.pool);
    first.spawn(Recorder::default());
    second.spawn(Recorder::default());
    let mut conn = db.pool.acquire().await.expect("conn");
    for i in 0..200 {
        append(&mut conn, &format!("c{}", i % 13), i / 13 + 1).await;
    }
    // A double apply would hit the primary key and show as a failure.
    let rows = wait_until_seen(&db.pool, 200).await;
    assert_eq!(rows.len(), 200);
    let last = *rows.iter().max().expect("rows");
    for subs in [&first, &second] {
        // Both learn how far the subscriber got, whichever applied it (the standby
        // through the progress notification or its poll).
        let mut status = subs.statuses()[0].clone();
        for _ in 0..100 {
            if status.global_position == last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = subs.statuses()[0].clone();
        }
        assert_eq!(status.global_position, last, "{status:?}");
        assert_eq!(status.failures_total, 0, "{status:?}");
    }
    let states: Vec<_> = [&first, &second]
        .iter()
        .map(|s| s.statuses()[0].state)
        .collect();
    assert!(
        states.contains(&SubscriberState::Standby)
            || states.iter().all(|s| *s == SubscriberState::Active),
        "{states:?}"
    );
}

#[tokio::test]
async fn order_holds_across_a_transaction_id_digit_boundary() {
    // Regression: ordering by the text form of the xid put '1000' before '999' and the
    // checkpoint went backwards. Straddle the next power of ten on purpose.
    let db = setup().await;
    let current: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&db.pool)
        .await
        .expect("xid");
    let current: u64 = current.parse().expect("number");
    let boundary = 10u64.pow(current.to_string().len() as u32);
    // Leave a margin: other tests take transaction ids concurrently.
    let burn = boundary.saturating_sub(current + 300);
    if burn > 0 {
        sqlx::query(&format!(
            "DO $$ BEGIN FOR i IN 1..{burn} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        ))
        .execute(&db.pool)
        .await
        .expect("burn transaction ids");
    }
    let mut conn = db.pool.acquire().await.expect("conn");
    let mut positions = Vec::new();
    let mut xids: Vec<u64> = Vec::new();
    // One event per transaction until the ids have crossed the boundary.
    while xids.last().is_none_or(|x| *x < boundary) && positions.len() < 2000 {
        let mut tx = conn.begin_tx().await;
        positions.push(append(&mut tx, "boundary", positions.len() as i64 + 1).await);
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
            .fetch_one(&mut *tx)
            .await
            .expect("xid");
        xids.push(xid.parse::<u64>().expect("number"));
        tx.commit().await.expect("commit");
    }
    assert!(
        xids.first() < Some(&boundary) && xids.last() >= Some(&boundary),
        "{xids:?} around {boundary}"
    );
    let (subs, _stop) = subscriptions(&db.pool);
    subs.spawn(Recorder::default());
    assert_eq!(wait_until_seen(&db.pool, positions.len()).await, positions);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(subs.statuses()[0].failures_total, 0);
}

trait BeginTx {
    async fn begin_tx(&mut self) -> sqlx::Transaction<'_, sqlx::Postgres>;
}

impl BeginTx for sqlx::pool::PoolConnection<sqlx::Postgres> {
    async fn begin_tx(&mut self) -> sqlx::Transaction<'_, sqlx::Postgres> {
        sqlx::Connection::begin(&mut **self).await.expect("begin")
    }
}

/// An API-only process and a projector process on one database, with polling slowed
/// to 30 s so that only notifications can wake anyone: a write on the API node is
/// projected by the other process (woken by the typed append notification) and answered
/// once the API node learns of the progress (woken by the progress notification).
#[tokio::test]
async fn notifications_carry_writes_across_processes_without_polling() {
    use axum::body::Body;
    use pulsar_api::runtime::{Role, Runtime};

    let db = TestDb::new().await;
    let slow_poll = pulsar_projections::subscription::SubscriptionConfig {
        poll_interval: Duration::from_secs(30),
        ..fast_subscriptions()
    };
    let projector = Runtime::start_with(
        pulsar_tests::test_config(),
        db.pool.clone(),
        Role::Projector,
        slow_poll.clone(),
    )
    .await
    .expect("projector");
    // Waits bounded under the 30 s poll, yet long enough for a busy 2-core machine
    // running the rest of the suite (a full run once needed more than 10 s): only a
    // notification can end them in time.
    let api_config = pulsar_api::Config {
        consistency_timeout: Duration::from_secs(20),
        ..pulsar_tests::test_config()
    };
    let api = Runtime::start_with(api_config, db.pool.clone(), Role::Api, slow_poll)
        .await
        .expect("api");
    let router = pulsar_api::app(api.state.clone());
    let call = |method: &str, path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        let router = router.clone();
        async move {
            let response = pulsar_tests::send(&router, request).await;
            (response.status, response.body)
        }
    };
    // Let both processes' listeners connect before the first write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, body) = call(
        "POST",
        "/api/v1/auth/signup",
        None,
        serde_json::json!({"email": "two@example.com", "password": "correct horse battery staple", "workspace_name": "Two"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let (status, body) = call(
        "POST",
        "/api/v1/projects",
        Some(&token),
        serde_json::json!({"name": "Across"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["data"]["name"], "Across",
        "the read model had it when the write answered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "woken by notifications, not by the 30 s poll: {:?}",
        started.elapsed()
    );
    let timeouts = api
        .state
        .metrics
        .consistency_timeouts_total
        .load(Ordering::Relaxed);
    assert_eq!(timeouts, 0, "no read-your-writes wait ran out");
    api.stop().await;
    projector.stop().await;
}
