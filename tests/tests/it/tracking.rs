//! Pixel tracking and SEO reports: the pixel's exact per-IP window on two processes,
//! hostile pixel input, pageviews in usage, and SEO issues per URL.

use axum::body::Body;
use axum::http::Request;
use pulsar_api::runtime::Role;
use pulsar_tests::{test_config, TestApp, User};
use serde_json::{json, Value};

const V1: &str = "/api/v1";

async fn pixel_id(app: &TestApp, user: &User) -> String {
    let workspace = app
        .get(&format!("{V1}/workspaces/{}", user.workspace_id), user)
        .await;
    workspace.body["data"]["pixel_id"]
        .as_str()
        .expect("pixel id")
        .to_string()
}

fn pageview(pixel: &str, n: usize) -> Value {
    json!({"pixel_id": pixel, "event": "pageview", "url": format!("https://shop.example/p/{n}")})
}

#[tokio::test]
async fn the_301st_pixel_request_in_a_minute_gets_429_on_any_node_and_other_ips_pass() {
    let mut config = test_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    let app = TestApp::start_with(config.clone()).await;
    let second = app.another_process_with(config, Role::Api).await;
    let user = app.signup("pixel@tracking.example", "Pixel").await;
    let pixel = pixel_id(&app, &user).await;
    let ip = [("x-forwarded-for", "203.0.113.7")];
    // 300 requests from one IP, alternating between two processes on one database.
    for n in 0..300 {
        let answer = if n % 2 == 0 {
            app.call(
                "POST",
                &format!("{V1}/pixel/track"),
                None,
                Some(pageview(&pixel, n)),
                &ip,
            )
            .await
        } else {
            second
                .call(
                    "POST",
                    &format!("{V1}/pixel/track"),
                    None,
                    Some(pageview(&pixel, n)),
                    &ip,
                )
                .await
        };
        answer.expect(202);
    }
    for process in [0, 1] {
        let answer = if process == 0 {
            app.call(
                "POST",
                &format!("{V1}/pixel/track"),
                None,
                Some(pageview(&pixel, 300)),
                &ip,
            )
            .await
        } else {
            second
                .call(
                    "GET",
                    &format!("{V1}/pixel/config?pixel_id={pixel}"),
                    None,
                    None,
                    &ip,
                )
                .await
        };
        answer.expect_error(429, "rate_limit_exceeded");
        let wait: u64 = answer
            .header("retry-after")
            .expect("retry-after")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
    }
    // Another client is unaffected.
    app.call(
        "POST",
        &format!("{V1}/pixel/track"),
        None,
        Some(pageview(&pixel, 0)),
        &[("x-forwarded-for", "198.51.100.9")],
    )
    .await
    .expect(202);
    second.stop().await;

    // 301 pageviews were accepted: usage and the summary count exactly those.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let summary = app.get(&format!("{V1}/entitlements/summary"), &user).await;
        let used = summary.body["data"]["entitlements"]["pixel_events"]["used"].clone();
        if used == 301 || std::time::Instant::now() > deadline {
            assert_eq!(used, 301);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let from = (chrono::Utc::now() - chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let series = app
        .get(
            &format!("{V1}/usage?feature=pixel_events&granularity=hour&from={from}&to={to}"),
            &user,
        )
        .await;
    series.expect(200);
    let total: i64 = series.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(total, 301);
    app.stop().await;
}

#[tokio::test]
async fn hostile_pixel_input_gets_its_answer_and_nothing_is_echoed() {
    let app = TestApp::start().await;
    let user = app.signup("hostile@tracking.example", "Hostile").await;
    let pixel = pixel_id(&app, &user).await;
    let track = format!("{V1}/pixel/track");
    // The header names the pixel as well as the field; text/plain (a beacon) is JSON too.
    let beacon = app
        .send(
            Request::post(&track)
                .header("content-type", "text/plain;charset=UTF-8")
                .header("x-pulsar-pixel", &pixel)
                .body(Body::from(
                    json!({"event": "signup", "url": "https://shop.example/<script>",
                           "referrer": "https://search.example/?q=x",
                           "properties": {"plan": "pro", "seats": 3}})
                    .to_string(),
                ))
                .expect("request"),
        )
        .await;
    beacon.expect(202);
    assert!(beacon.body["data"]["id"]
        .as_str()
        .expect("id")
        .starts_with("pxe_"));
    assert!(!beacon.text.contains("script") && !beacon.text.contains("shop.example"));
    assert_eq!(beacon.header("access-control-allow-origin"), Some("*"));
    let preflight = app
        .send(
            Request::options(&track)
                .header("origin", "https://shop.example")
                .header("access-control-request-method", "POST")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    preflight.expect(204);
    assert!(preflight
        .header("access-control-allow-headers")
        .expect("allowed headers")
        .contains("x-pulsar-pixel"));
    let config = app
        .call(
            "GET",
            &format!("{V1}/pixel/config?pixel_id={pixel}"),
            None,
            None,
            &[],
        )
        .await;
    config.expect(200);
    assert_eq!(config.body["data"]["requests_per_minute"], 300);
    assert_eq!(config.body["data"]["pixel_id"], pixel.as_str());

    // (body, extra headers, status, error code)
    type Case<'a> = (Value, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "javascript:alert(1)"}),
            &[],
            422,
            "url",
        ),
        (
            json!({"pixel_id": pixel, "event": "page view", "url": "https://a.example/"}),
            &[],
            422,
            "event",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/", "referrer": "ftp://x"}),
            &[],
            422,
            "referrer",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/", "user_agent": "a\u{7}b"}),
            &[],
            422,
            "user_agent",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/", "properties": {"deep": {"x": 1}}}),
            &[],
            422,
            "properties.deep",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": format!("https://a.example/{}", "a".repeat(3000))}),
            &[],
            422,
            "url",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/", "extra": 1}),
            &[],
            422,
            "",
        ),
        (
            json!({"event": "pageview", "url": "https://a.example/"}),
            &[],
            400,
            "",
        ),
        (
            json!({"pixel_id": "px_00000000000000000000000000000000", "event": "pageview", "url": "https://a.example/"}),
            &[],
            404,
            "",
        ),
        (
            json!({"pixel_id": "'; DROP TABLE events; --", "event": "pageview", "url": "https://a.example/"}),
            &[],
            404,
            "",
        ),
        (
            json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/"}),
            &[("x-pulsar-pixel", "px_11111111111111111111111111111111")],
            400,
            "",
        ),
    ];
    for (body, headers, status, field) in cases {
        let answer = app
            .call("POST", &track, None, Some(body.clone()), headers)
            .await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert!(answer.body["error"].is_string(), "{}", answer.text);
        if !field.is_empty() {
            assert!(
                answer.body["errors"][field].is_array(),
                "{body}: {}",
                answer.text
            );
        }
        assert!(
            !answer.text.contains("javascript") && !answer.text.contains("DROP"),
            "{}",
            answer.text
        );
    }
    // Oversized bodies and other media types.
    let huge = json!({"pixel_id": pixel, "event": "pageview", "url": "https://a.example/",
                      "properties": {"x": "y".repeat(20_000)}});
    app.call("POST", &track, None, Some(huge), &[])
        .await
        .expect_error(413, "payload_too_large");
    let form = app
        .send(
            Request::post(&track)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("event=pageview"))
                .expect("request"),
        )
        .await;
    assert_eq!(form.status, 415);
    app.call("GET", &format!("{V1}/pixel/config"), None, None, &[])
        .await
        .expect(400);
    app.call(
        "GET",
        &format!("{V1}/pixel/config?pixel_id={pixel}&x=1"),
        None,
        None,
        &[],
    )
    .await
    .expect(400);
    // One event was tracked; nothing half-written by the refusals.
    let tracked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PixelEventTracked'")
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(tracked, 1);
    app.stop().await;
}

fn report(url: &str, issues: Value) -> Value {
    json!({"url": url,
           "scores": {"performance": 91, "accessibility": 78.5, "best_practices": 100, "seo": 64},
           "issues": issues})
}

#[tokio::test]
async fn seo_issues_are_each_urls_latest_most_severe_first_and_stay_in_their_workspace() {
    let app = TestApp::start().await;
    let user = app.signup("seo@tracking.example", "Seo").await;
    let other = app.signup("other@tracking.example", "Other").await;
    let created = app
        .post(
            &format!("{V1}/seo/report"),
            &user,
            report(
                "https://shop.example/",
                json!([{"type": "missing_alt", "severity": "medium", "element": "img.hero"},
                       {"type": "slow_lcp", "severity": "high", "element": null}]),
            ),
        )
        .await;
    created.expect(201);
    let data = &created.body["data"];
    assert!(data["id"].as_str().expect("id").starts_with("seo_"));
    assert_eq!(data["issue_count"], 2);
    assert_eq!(data["scores"]["accessibility"], 78.5);
    app.post(
        &format!("{V1}/seo/report"),
        &user,
        report(
            "https://shop.example/about",
            json!([{"type": "no_h1", "severity": "critical", "element": "body"},
                   {"type": "long_title", "severity": "info", "element": "title"}]),
        ),
    )
    .await
    .expect(201);
    let path = format!("{V1}/seo/issues/{}", user.workspace_id);
    let list = app.get(&path, &user).await;
    list.expect(200);
    let severities: Vec<&str> = list.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["severity"].as_str().expect("severity"))
        .collect();
    assert_eq!(severities, ["critical", "high", "medium", "info"]);
    assert_eq!(list.body["meta"]["total"], 4);
    // A newer report of the home page replaces its issues only.
    app.post(
        &format!("{V1}/seo/report"),
        &user,
        report(
            "https://shop.example/",
            json!([{"type": "missing_alt", "severity": "low", "element": "img"}]),
        ),
    )
    .await
    .expect(201);
    let list = app
        .get(&format!("{path}?url=https://shop.example/"), &user)
        .await;
    list.expect(200);
    assert_eq!(list.body["meta"]["total"], 1);
    assert_eq!(list.body["data"][0]["severity"], "low");
    let critical = app
        .get(&format!("{path}?severity=critical,high"), &user)
        .await;
    assert_eq!(critical.body["meta"]["total"], 1);
    // Another workspace's issues are not found; a caller acting elsewhere sees nothing.
    app.get(&format!("{V1}/seo/issues/{}", other.workspace_id), &user)
        .await
        .expect_error(404, "not_found");
    let empty = app
        .get(&format!("{V1}/seo/issues/{}", other.workspace_id), &other)
        .await;
    assert_eq!(empty.body["meta"]["total"], 0);
    // Scopes, bad input, unknown parameters.
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "seo reader", "scopes": ["seo:read"]}),
        )
        .await;
    let key = key.body["data"]["key"].as_str().expect("key").to_string();
    app.call("GET", &path, Some(&key), None, &[])
        .await
        .expect(200);
    app.call(
        "POST",
        &format!("{V1}/seo/report"),
        Some(&key),
        Some(report("https://shop.example/", json!([]))),
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    for (body, field) in [
        (report("mailto:x@y.example", json!([])), "url"),
        (
            json!({"url": "https://a.example/", "scores": {"performance": 101, "accessibility": 1, "best_practices": 1, "seo": 1}}),
            "scores.performance",
        ),
        (
            report(
                "https://a.example/",
                json!([{"type": "x", "severity": "apocalyptic"}]),
            ),
            "issues.0.severity",
        ),
        (
            report(
                "https://a.example/",
                json!((0..501)
                    .map(|_| json!({"type": "x", "severity": "low"}))
                    .collect::<Vec<_>>()),
            ),
            "issues",
        ),
    ] {
        let refused = app.post(&format!("{V1}/seo/report"), &user, body).await;
        refused.expect_error(422, "validation_failed");
        assert!(refused.body["errors"][field].is_array(), "{}", refused.text);
    }
    app.get(&format!("{path}?severity=apocalyptic"), &user)
        .await
        .expect(400);
    app.get(&format!("{path}?colour=red"), &user)
        .await
        .expect(400);
    app.get(&format!("{V1}/seo/issues/not-a-workspace"), &user)
        .await
        .expect(404);
    app.stop().await;
}
