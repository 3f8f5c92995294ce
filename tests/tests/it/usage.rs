//! `/usage`: metered calls counted in memory, flushed as minute rows, rolled up in any
//! time zone, as JSON or CSV.

use std::time::Duration;

use chrono::DurationRound;
use pulsar_api::runtime::Role;
use pulsar_tests::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn n_calls_show_up_as_exactly_n_and_two_processes_add_up() {
    let app = TestApp::start().await;
    let owner = app.signup("meter@usage.example", "Meter").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &owner,
            json!({"name": "counted", "scopes": ["projects:read"]}),
        )
        .await;
    created.expect(201);
    let key_id = created.body["data"]["id"].as_str().expect("id").to_string();
    let key = created.body["data"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let second = app.another_process(Role::Api).await;
    for _ in 0..7 {
        app.call("GET", "/api/v1/projects", Some(&key), None, &[])
            .await
            .expect(200);
    }
    for _ in 0..5 {
        second
            .call("GET", "/api/v1/projects", Some(&key), None, &[])
            .await
            .expect(200);
    }
    // The second process flushes its counts as it stops.
    second.stop().await;
    let path = format!("/api/v1/usage?granularity=day&group_by=api_key&api_key_id={key_id}");
    let mut rows = Value::Null;
    for _ in 0..50 {
        let usage = app.get(&path, &owner).await;
        usage.expect(200);
        rows = usage.body["data"].clone();
        if rows[0]["count"] == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["count"], 12, "{rows}");
    assert_eq!(rows[0]["api_key_id"], key_id.as_str());
    assert_eq!(rows[0]["feature"], "api_calls");
    // Another process, started afterwards, reads the same: the counts are stored.
    let third = app.another_process(Role::Api).await;
    let again = third
        .call("GET", &path, Some(&owner.token), None, &[])
        .await;
    assert_eq!(again.body["data"], rows);
    third.stop().await;
    // The hourly rollup (whole-workspace series with hour-aligned bounds) agrees, also
    // after two processes added to the same minute (an update of the minute row).
    let hour = chrono::Utc::now()
        .duration_trunc(chrono::TimeDelta::hours(1))
        .expect("hour");
    let rollup = app
        .get(
            &format!(
                "/api/v1/usage?granularity=day&from={}&to={}",
                (hour - chrono::TimeDelta::hours(2))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (hour + chrono::TimeDelta::hours(2))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            &owner,
        )
        .await;
    let total: i64 = rollup.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(total, 12, "{}", rollup.body);
    // The rollup's triggers saw the insert and the update of the same minute.
    let rolled: i64 = sqlx::query_scalar("SELECT sum(count)::bigint FROM usage_hours")
        .fetch_one(app.pool())
        .await
        .expect("sum");
    assert_eq!(rolled, 12);
    // Exactly 12 stored, not more: the owner's own (session) calls are not metered.
    let stored: i64 = sqlx::query_scalar("SELECT sum(count)::bigint FROM usage_minutes")
        .fetch_one(app.pool())
        .await
        .expect("sum");
    assert_eq!(stored, 12);
    app.stop().await;
}

/// Berlin moves its clocks forward on 2026-03-29 at 01:00 UTC: that day has 23 hours.
#[tokio::test]
async fn day_buckets_follow_the_time_zone_across_a_dst_change_and_csv_has_a_header() {
    let app = TestApp::start().await;
    let owner = app.signup("dst@usage.example", "Dst").await;
    // One call an hour from 2026-03-27T23:00Z (Berlin midnight) to 2026-03-30T21:00Z.
    sqlx::query(
        "INSERT INTO usage_minutes (workspace_id, feature, api_key_id, minute, count)
         SELECT $1, 'api_calls', 'key_0123456789abcdef0123456789abcdef', m, 1
           FROM generate_series('2026-03-27T23:00:00Z'::timestamptz,
                                '2026-03-30T21:00:00Z'::timestamptz, interval '1 hour') AS m",
    )
    .bind(&owner.workspace_id)
    .execute(app.pool())
    .await
    .expect("usage rows");
    let hours: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_hours")
        .fetch_one(app.pool())
        .await
        .expect("hours");
    assert_eq!(hours, 71, "one rollup row per hour written");
    let query = "/api/v1/usage?from=2026-03-27T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=day&tz=Europe/Berlin";
    let days = app.get(query, &owner).await;
    days.expect(200);
    assert_eq!(
        days.body["data"],
        json!([
            {"bucket": "2026-03-28T00:00:00+01:00", "feature": "api_calls", "count": 24},
            {"bucket": "2026-03-29T00:00:00+01:00", "feature": "api_calls", "count": 23},
            {"bucket": "2026-03-30T00:00:00+02:00", "feature": "api_calls", "count": 24},
        ])
    );
    assert_eq!(days.body["meta"]["tz"], "Europe/Berlin");
    // In UTC the same calls fall into other days.
    let utc = app
        .get(
            "/api/v1/usage?from=2026-03-27T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=day",
            &owner,
        )
        .await;
    let counts: Vec<i64> = utc.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .collect();
    assert_eq!(counts, [1, 24, 24, 22]);
    // Grouped by key in UTC, days come from the per-key daily rollup (one row per key
    // and day); an update of a minute row (as a second process's flush does) reaches it.
    let days_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_days")
        .fetch_one(app.pool())
        .await
        .expect("days");
    assert_eq!(days_rows, 4, "one rollup row per key and UTC day");
    sqlx::query("UPDATE usage_minutes SET count = count + 2 WHERE minute = '2026-03-29T05:00:00Z'")
        .execute(app.pool())
        .await
        .expect("update");
    let utc_by_key = app
        .get(
            "/api/v1/usage?from=2026-03-27T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=day&group_by=api_key",
            &owner,
        )
        .await;
    let counts: Vec<i64> = utc_by_key.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .collect();
    assert_eq!(counts, [1, 24, 26, 22], "{}", utc_by_key.body);
    let month_by_key = app
        .get(
            "/api/v1/usage?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=month&group_by=api_key&api_key_id=key_0123456789abcdef0123456789abcdef",
            &owner,
        )
        .await;
    assert_eq!(
        month_by_key.body["data"][0]["count"], 73,
        "{}",
        month_by_key.body
    );
    sqlx::query("UPDATE usage_minutes SET count = count - 2 WHERE minute = '2026-03-29T05:00:00Z'")
        .execute(app.pool())
        .await
        .expect("update back");

    // The same series from the minute rows (grouped by key, then summed) and from a zone
    // whose offset is not whole hours (minute rows too) agree with the rollup.
    let by_key = app.get(&format!("{query}&group_by=api_key"), &owner).await;
    let by_key: Vec<i64> = by_key.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .collect();
    assert_eq!(by_key, [24, 23, 24]);
    let kolkata = app
        .get(
            "/api/v1/usage?from=2026-03-27T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=day&tz=Asia/Kolkata",
            &owner,
        )
        .await;
    let kolkata: Vec<(String, i64)> = kolkata.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().expect("bucket").to_string(),
                r["count"].as_i64().expect("count"),
            )
        })
        .collect();
    // Kolkata days start at 18:30 UTC: the 28th there holds 23:00Z on the 27th and
    // 00:00Z to 18:00Z on the 28th (20 hours); the 31st holds 19:00Z to 21:00Z.
    assert_eq!(
        kolkata,
        [
            ("2026-03-28T00:00:00+05:30".to_string(), 20),
            ("2026-03-29T00:00:00+05:30".to_string(), 24),
            ("2026-03-30T00:00:00+05:30".to_string(), 24),
            ("2026-03-31T00:00:00+05:30".to_string(), 3),
        ]
    );

    // CSV, read back by Python's csv module.
    let csv = app
        .call(
            "GET",
            query,
            Some(&owner.token),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    csv.expect(200);
    assert!(csv
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/csv")));
    let (ok, parsed, stderr) = pulsar_tests::python(
        "import csv, json, sys; print(json.dumps(list(csv.DictReader(sys.stdin))))",
        csv.text.as_bytes(),
    );
    assert!(ok, "{stderr}");
    let parsed: Value = serde_json::from_str(parsed.trim()).expect("json");
    assert_eq!(
        parsed,
        json!([
            {"bucket": "2026-03-28T00:00:00+01:00", "feature": "api_calls", "count": "24"},
            {"bucket": "2026-03-29T00:00:00+01:00", "feature": "api_calls", "count": "23"},
            {"bucket": "2026-03-30T00:00:00+02:00", "feature": "api_calls", "count": "24"},
        ])
    );

    for (query, status) in [
        ("tz=Mars/Olympus", 422),
        ("granularity=week", 422),
        ("group_by=colour", 422),
        ("feature=bogus", 422),
        ("api_key_id=nope", 422),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", 422),
        (
            "granularity=minute&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            422,
        ),
        ("from=yesterday", 422),
        ("colour=red", 400),
        ("tz=UTC&tz=UTC", 400),
    ] {
        let response = app.get(&format!("/api/v1/usage?{query}"), &owner).await;
        assert_eq!(response.status, status, "{query}: {}", response.body);
    }
    app.stop().await;
}
