//! The API over HTTP, against real processes and a real Redis: one
//! `sandbox-api node`, several `sandbox-api serve`, the built binary (see
//! `fleet`). What the node saw is the evidence: it records every operation
//! and every overlap of two operations on one sandbox.

#[path = "../../tests/support/mod.rs"]
mod support;

mod fleet;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;

use fleet::{Client, EndpointStats, Fleet, NodeOp, Reply};

/// Names the library records through the `metrics` facade that the
/// metrics test surely triggers (a started transition, a joined one), so
/// `GET /metrics` must carry them.
const LIBRARY_METRICS: &[&str] = &[
    "sandbox_coordinator_begins_total",
    "sandbox_coordinator_transition_seconds",
    "sandbox_coordinator_wait_seconds",
];

const TEAM: &str = "team-a";

/// `POST {api}/sandboxes` with `{"sandboxID": id}`.
async fn create(client: &Client, api: &str, team: &str, id: &str) -> Reply {
    client
        .call(
            Method::POST,
            &format!("{api}/sandboxes"),
            Some(team),
            Some(json!({ "sandboxID": id })),
        )
        .await
}

/// `method {api}/sandboxes/{id}{path}` without a body.
async fn on(client: &Client, method: Method, api: &str, team: &str, id: &str, path: &str) -> Reply {
    client
        .call(
            method,
            &format!("{api}/sandboxes/{id}{path}"),
            Some(team),
            None,
        )
        .await
}

/// The state the node's operations left a sandbox in, from its last
/// successful one.
fn node_state(action: &str) -> &'static str {
    match action {
        "create" | "resume" | "snapshot" => "running",
        "pause" => "paused",
        "kill" => "killed",
        other => panic!("unknown node action {other}"),
    }
}

fn is_fenced(action: &str) -> bool {
    matches!(action, "pause" | "kill" | "snapshot")
}

/// Every operation of the node's log, by sandbox, in the order they
/// started.
fn ops_by_sandbox(ops: &[NodeOp]) -> BTreeMap<String, Vec<NodeOp>> {
    let mut by: BTreeMap<String, Vec<NodeOp>> = BTreeMap::new();
    for op in ops {
        by.entry(op.sandbox_id.clone())
            .or_default()
            .push(op.clone());
    }
    for ops in by.values_mut() {
        ops.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    }
    by
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Endpoint {
    Create,
    List,
    Get,
    Pause,
    Resume,
    Delete,
    Snapshot,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Create => "POST /sandboxes",
            Endpoint::List => "GET /sandboxes",
            Endpoint::Get => "GET /sandboxes/{id}",
            Endpoint::Pause => "POST /sandboxes/{id}/pause",
            Endpoint::Resume => "POST /sandboxes/{id}/resume",
            Endpoint::Delete => "DELETE /sandboxes/{id}",
            Endpoint::Snapshot => "POST /sandboxes/{id}/snapshots",
        }
    }

    /// The statuses this endpoint may answer under this load: no 500, no
    /// 400, no 404 (every id asked about was created), no 429 (no limit).
    fn allowed(self) -> &'static [u16] {
        match self {
            Endpoint::Create => &[201, 502],
            Endpoint::List | Endpoint::Get => &[200],
            Endpoint::Pause => &[204, 409, 502],
            // 503 (Busy): another resume of the same sandbox holds the
            // reservation (a transition in flight is waited for instead).
            Endpoint::Resume => &[201, 409, 502, 503],
            Endpoint::Delete => &[204, 502],
            Endpoint::Snapshot => &[201, 409, 502],
        }
    }

    /// A random request, weighted like a busy API's mix.
    fn pick(rng: &mut StdRng) -> Endpoint {
        match rng.random_range(0..100) {
            0..6 => Endpoint::Create,
            6..9 => Endpoint::List,
            9..25 => Endpoint::Get,
            25..47 => Endpoint::Pause,
            47..69 => Endpoint::Resume,
            69..78 => Endpoint::Delete,
            _ => Endpoint::Snapshot,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overlap_on_the_node_and_end_where_the_node_ended() {
    const INITIAL: usize = 24;
    const REQUESTS: usize = 3000;
    const CONCURRENCY: usize = 48;
    let fleet = Fleet::start(
        "load",
        3,
        &["--latency-ms", "3", "--fail-rate", "0.05"],
        &[],
    )
    .await;
    let client = fleet.client.clone();
    let servers: Vec<String> = fleet.servers.iter().map(|s| s.url.clone()).collect();

    // Arrange: sandboxes to fight over.
    let ids = Arc::new(Mutex::new(Vec::new()));
    while ids.lock().unwrap().len() < INITIAL {
        let r = client
            .call(
                Method::POST,
                &format!("{}/sandboxes", servers[0]),
                Some(TEAM),
                Some(json!({})),
            )
            .await;
        if r.status == 201 {
            ids.lock()
                .unwrap()
                .push(r.body["sandboxID"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(r.status, 502, "create: {r:?}");
        }
    }

    // Act: REQUESTS requests, CONCURRENCY at a time, at random servers.
    let next = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(Mutex::new(HashMap::<Endpoint, EndpointStats>::new()));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (client, servers, ids, next, stats) = (
            client.clone(),
            servers.clone(),
            Arc::clone(&ids),
            Arc::clone(&next),
            Arc::clone(&stats),
        );
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed + worker as u64);
            while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let endpoint = Endpoint::pick(&mut rng);
                let server = &servers[rng.random_range(0..servers.len())];
                let id = {
                    let ids = ids.lock().unwrap();
                    ids[rng.random_range(0..ids.len())].clone()
                };
                let base = format!("{server}/sandboxes/{id}");
                let (method, url, body) = match endpoint {
                    Endpoint::Create => {
                        (Method::POST, format!("{server}/sandboxes"), Some(json!({})))
                    }
                    Endpoint::List => (Method::GET, format!("{server}/sandboxes"), None),
                    Endpoint::Get => (Method::GET, base, None),
                    Endpoint::Pause => (Method::POST, format!("{base}/pause"), None),
                    Endpoint::Resume => (Method::POST, format!("{base}/resume"), None),
                    Endpoint::Delete => (Method::DELETE, base, None),
                    Endpoint::Snapshot => (Method::POST, format!("{base}/snapshots"), None),
                };
                let reply = client.call(method, &url, Some(TEAM), body).await;
                assert!(
                    endpoint.allowed().contains(&reply.status),
                    "{} {url} answered {} {}",
                    endpoint.label(),
                    reply.status,
                    reply.body
                );
                if endpoint == Endpoint::Create && reply.status == 201 {
                    let id = reply.body["sandboxID"].as_str().unwrap().to_owned();
                    ids.lock().unwrap().push(id);
                }
                stats
                    .lock()
                    .unwrap()
                    .entry(endpoint)
                    .or_default()
                    .record(&reply);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("a worker panicked");
    }
    let wall = started.elapsed();

    // Assert, from the node's own records: never two operations at once on
    // one sandbox — create and resume included, since both run under a
    // reservation that makes every begin on the record wait.
    let ops = fleet.node_ops().await;
    let overlaps = fleet.overlaps().await;
    assert!(
        overlaps.is_empty(),
        "the node ran two operations at once on one sandbox: {overlaps:#?}"
    );

    let by_sandbox = ops_by_sandbox(&ops);
    let mut stale_received = 0;
    for (id, ops) in &by_sandbox {
        // The node ran fenced operations with strictly increasing fences,
        // and never one whose fence it had already seen beaten.
        let mut highest = 0;
        for op in ops.iter().filter(|o| is_fenced(&o.action)) {
            let fence = op.fence.expect("a fenced operation carries its fence");
            if op.result == "stale" {
                stale_received += 1;
                assert!(
                    fence <= highest,
                    "{id}: refused fence {fence} above {highest}"
                );
                continue;
            }
            assert!(
                fence > highest,
                "{id}: ran fence {fence} after fence {highest}: {ops:#?}"
            );
            highest = fence;
        }
    }
    // No lease can run out here (30 s leases, a watchdog, a 3 ms node): a
    // stale fence could only reach the node if two transitions had been
    // started at once.
    assert_eq!(stale_received, 0, "stale fences reached the node");

    // The API's final state of every sandbox agrees with the node.
    let ids = ids.lock().unwrap().clone();
    for id in &ids {
        let r = on(&client, Method::GET, &servers[0], TEAM, id, "").await;
        assert_eq!(r.status, 200, "{id}: {r:?}");
        let api_state = r.body["state"].as_str().unwrap().to_owned();
        let ops = &by_sandbox[id];
        let last_ok = ops
            .iter()
            .rev()
            .find(|o| o.result == "ok")
            .expect("a create");
        let last = ops.last().expect("an operation");
        match api_state.as_str() {
            // A failed pause or kill leaves the record stuck in flight: the
            // node's last operation on it is that failure.
            "pausing" | "killing" => {
                let action = if api_state == "pausing" {
                    "pause"
                } else {
                    "kill"
                };
                assert!(
                    last.action == action && last.result == "failed",
                    "{id} is {api_state} but the node last ran {last:?}"
                );
            }
            state => assert_eq!(
                state,
                node_state(&last_ok.action),
                "{id}: the API says {state}, the node's last successful operation was {last_ok:?}"
            ),
        }
    }
    // And its list says the same as its gets.
    let listed = client
        .call(
            Method::GET,
            &format!("{}/sandboxes", servers[1]),
            Some(TEAM),
            None,
        )
        .await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(ids.len()));

    // The summary the README quotes.
    let mut stats = stats.lock().unwrap();
    let total: usize = stats.values().map(EndpointStats::count).sum();
    let mut node_counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for op in &ops {
        *node_counts
            .entry((op.action.clone(), op.result.clone()))
            .or_default() += 1;
    }
    println!("\n==== HTTP load summary ====");
    println!(
        "{total} requests ({CONCURRENCY} concurrent, 3 servers, node latency 3 ms, fail rate 0.05) \
         in {:.2} s = {:.0} req/s; {} sandboxes",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        ids.len()
    );
    println!(
        "{:<32} {:>6} {:>9} {:>9}  statuses",
        "endpoint", "count", "p50 ms", "p99 ms"
    );
    let mut endpoints: Vec<Endpoint> = stats.keys().copied().collect();
    endpoints.sort();
    for e in endpoints {
        let s = stats.get_mut(&e).unwrap();
        let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!(
            "{:<32} {:>6} {:>9.1} {:>9.1}  {}",
            e.label(),
            s.count(),
            s.quantile(0.5).as_secs_f64() * 1e3,
            s.quantile(0.99).as_secs_f64() * 1e3,
            statuses.join(" ")
        );
    }
    let by: Vec<String> = node_counts
        .iter()
        .map(|((a, r), n)| format!("{a}/{r}:{n}"))
        .collect();
    println!("node operations: {} ({})", ops.len(), by.join(" "));
    println!(
        "node: overlaps {} (create and resume included), stale fences received {stale_received} \
         (executed: 0), fences strictly increasing per sandbox: yes; final states agree with the \
         node's last successful operation: {} of {}",
        overlaps.len(),
        ids.len(),
        ids.len()
    );
}

#[derive(Clone, Copy, Debug)]
enum Order {
    /// The resume is running on the node when the DELETE arrives.
    ResumeFirst,
    /// The kill is running on the node when the resume arrives.
    DeleteFirst,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_answered_204_is_final_even_when_a_resume_races_it() {
    const ROUNDS: usize = 20;
    let fleet = Fleet::start("delete-race", 2, &["--latency-ms", "25"], &[]).await;
    let client = fleet.client.clone();
    let (a, b) = (fleet.api(0).to_owned(), fleet.api(1).to_owned());
    let mut unforced_rounds = 0;
    for round in 0..ROUNDS {
        for order in [Order::ResumeFirst, Order::DeleteFirst] {
            // Arrange: a paused sandbox.
            let id = format!("race-{round}-{order:?}");
            let created = create(&client, &a, TEAM, &id).await;
            assert_eq!(created.status, 201, "{created:?}");
            let paused = on(&client, Method::POST, &a, TEAM, &id, "/pause").await;
            assert_eq!(paused.status, 204, "{paused:?}");

            // Act: the two requests, on two servers, the second sent once
            // the first runs on the node (or, if a poll missed it, has
            // run there: the answers below are the same either way).
            let (first_method, first_url, first_action, second_method, second_url) = match order {
                Order::ResumeFirst => (
                    Method::POST,
                    format!("{a}/sandboxes/{id}/resume"),
                    "resume",
                    Method::DELETE,
                    format!("{b}/sandboxes/{id}"),
                ),
                Order::DeleteFirst => (
                    Method::DELETE,
                    format!("{b}/sandboxes/{id}"),
                    "kill",
                    Method::POST,
                    format!("{a}/sandboxes/{id}/resume"),
                ),
            };
            let first = {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .call(first_method, &first_url, Some(TEAM), None)
                        .await
                })
            };
            let forced = fleet
                .until_node_runs(Duration::from_secs(5), |r| {
                    r.sandbox_id == id && r.action == first_action
                })
                .await;
            unforced_rounds += usize::from(!forced);
            let second = client
                .call(second_method, &second_url, Some(TEAM), None)
                .await;
            let first = first.await.unwrap();
            let (resumed, deleted) = match order {
                Order::ResumeFirst => (first, second),
                Order::DeleteFirst => (second, first),
            };

            // Assert: the DELETE succeeded; a resume that came first ran
            // (the DELETE waited for its registration and killed the new
            // execution), one that came second found the sandbox killing
            // or killed and was refused.
            assert_eq!(deleted.status, 204, "{order:?} {id}: delete {deleted:?}");
            match order {
                Order::ResumeFirst => assert_eq!(resumed.status, 201, "{id}: {resumed:?}"),
                Order::DeleteFirst => assert_eq!(
                    (resumed.status, resumed.code()),
                    (409, "not_paused"),
                    "{id}: {resumed:?}"
                ),
            }
            // The sandbox never runs again: later resumes, on either
            // server, are refused without reaching the node.
            let ran = fleet.node_ops().await;
            for server in [&a, &b] {
                let again = on(&client, Method::POST, server, TEAM, &id, "/resume").await;
                assert_eq!(
                    (again.status, again.code()),
                    (409, "not_paused"),
                    "{id}: {again:?}"
                );
                let got = on(&client, Method::GET, server, TEAM, &id, "").await;
                assert_eq!(got.body["state"], "killed", "{id}: {got:?}");
            }

            // On the node: one operation at a time, the kill last.
            let ops = fleet.node_ops().await;
            assert_eq!(ops.len(), ran.len(), "a refused resume reached the node");
            let mine = &ops_by_sandbox(&ops)[&id];
            let actions: Vec<&str> = mine.iter().map(|o| o.action.as_str()).collect();
            let want: &[&str] = match order {
                Order::ResumeFirst => &["create", "pause", "resume", "kill"],
                Order::DeleteFirst => &["create", "pause", "kill"],
            };
            assert_eq!(actions, want, "{id}: {mine:#?}");
            assert!(mine.iter().all(|o| o.result == "ok"), "{id}: {mine:#?}");
            for pair in mine.windows(2) {
                assert!(
                    pair[1].start_ms >= pair[0].end_ms,
                    "{id}: {} started before {} ended: {mine:#?}",
                    pair[1].action,
                    pair[0].action
                );
            }
        }
    }
    let overlaps = fleet.overlaps().await;
    assert!(overlaps.is_empty(), "{overlaps:#?}");
    println!("\n==== delete vs resume: {ROUNDS} rounds of each order ====");
    println!(
        "resume first: resume 201, delete 204, node create/pause/resume/kill; delete first: delete \
         204, resume 409 not_paused, node create/pause/kill; later resumes 409 and never on the \
         node; overlaps 0 ({unforced_rounds} of {} rounds where a poll missed the first \
         operation running and saw it ended)",
        2 * ROUNDS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_team_are_refused_with_400_and_a_json_body() {
    let fleet = Fleet::start("no-team", 1, &[], &[]).await;
    let api = fleet.api(0);
    let client = Client::new();
    let created = client
        .call(
            Method::POST,
            &format!("{api}/sandboxes"),
            Some(TEAM),
            Some(json!({"sandboxID": "s1"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let without = [
        (Method::POST, format!("{api}/sandboxes"), Some(json!({}))),
        (Method::GET, format!("{api}/sandboxes"), None),
        (Method::GET, format!("{api}/sandboxes/s1"), None),
        (Method::POST, format!("{api}/sandboxes/s1/pause"), None),
        (Method::POST, format!("{api}/sandboxes/s1/resume"), None),
        (Method::POST, format!("{api}/sandboxes/s1/snapshots"), None),
        (Method::DELETE, format!("{api}/sandboxes/s1"), None),
    ];
    for (method, url, body) in without {
        let r = client.call(method.clone(), &url, None, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "missing_team"),
            "{method} {url}: {r:?}"
        );
        assert!(
            r.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("X-Team-ID")),
            "{r:?}"
        );
        let empty = client.call(method.clone(), &url, Some(""), body).await;
        assert_eq!(
            (empty.status, empty.code()),
            (400, "missing_team"),
            "{method} {url} (empty)"
        );
    }
    // Nothing ran: the sandbox is still running, one node operation (its create).
    let got = client
        .call(
            Method::GET,
            &format!("{api}/sandboxes/s1"),
            Some(TEAM),
            None,
        )
        .await;
    assert_eq!(got.body["state"], "running");
    assert_eq!(fleet.node_ops().await.len(), 1);
    // A team id the library refuses is a 400 too, with the library's reason.
    let bad = client
        .call(
            Method::GET,
            &format!("{api}/sandboxes/s1"),
            Some("a:b"),
            None,
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_input"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_answers_503_with_retry_after() {
    let mut fleet = Fleet::start("redis-gone", 1, &[], &["--redis-timeout-ms", "500"]).await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    let created = client
        .call(
            Method::POST,
            &format!("{api}/sandboxes"),
            Some(TEAM),
            Some(json!({"sandboxID": "s1"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");

    fleet.stop_redis();

    for (method, url) in [
        (Method::GET, format!("{api}/sandboxes/s1")),
        (Method::POST, format!("{api}/sandboxes/s1/pause")),
        (Method::DELETE, format!("{api}/sandboxes/s1")),
        (Method::POST, format!("{api}/sandboxes/s1/snapshots")),
    ] {
        let r = client.call(method.clone(), &url, Some(TEAM), None).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "unavailable"),
            "{method} {url}: {r:?}"
        );
        assert_eq!(r.retry_after.as_deref(), Some("1"), "{method} {url}: {r:?}");
        assert!(
            r.elapsed < Duration::from_secs(5),
            "{method} {url} took {:?}",
            r.elapsed
        );
    }
    // Nothing reached the node beyond the create.
    assert_eq!(fleet.node_ops().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_api_and_library_names() {
    let fleet = Fleet::start("metrics", 1, &["--latency-ms", "200"], &[]).await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    let id = "sbx-metrics-1";
    assert_eq!(create(&client, &api, TEAM, id).await.status, 201);
    // A pause that starts (a transition) and one that joins it (a wait).
    let first = {
        let (client, api) = (client.clone(), api.clone());
        tokio::spawn(async move { on(&client, Method::POST, &api, TEAM, id, "/pause").await })
    };
    let forced = fleet
        .until_node_runs(Duration::from_secs(5), |r| {
            r.sandbox_id == id && r.action == "pause"
        })
        .await;
    assert!(forced, "the pause ended before the second one was sent");
    let joined = on(&client, Method::POST, &api, TEAM, id, "/pause").await;
    assert_eq!(joined.status, 204, "{joined:?}");
    assert_eq!(first.await.unwrap().status, 204);
    assert_eq!(
        on(&client, Method::GET, &api, TEAM, id, "").await.status,
        200
    );
    let snapshot = on(&client, Method::POST, &api, TEAM, id, "/snapshots").await;
    assert_eq!(snapshot.status, 409);
    assert_eq!(fleet.node_ops().await.len(), 2, "one create, one pause");

    let response = client
        .http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));

    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "sandbox_api_requests_total",
        "sandbox_api_request_duration_seconds",
        "sandbox_api_node_operations_total",
        "sandbox_api_node_operation_duration_seconds",
    ]
    .iter()
    .chain(LIBRARY_METRICS)
    {
        assert!(names.contains(name), "{name} missing from:\n{text}");
    }
    let pause_204 = scrape.samples.iter().find(|s| {
        s.metric == "sandbox_api_requests_total"
            && s.labels.get("route") == Some("/sandboxes/:id/pause")
            && s.labels.get("status") == Some("204")
    });
    assert!(
        matches!(pause_204.map(|s| &s.value), Some(prometheus_parse::Value::Counter(n)) if *n == 2.0),
        "{pause_204:?}"
    );
    // The library's begins, by decision: the pause started, the second
    // joined, the snapshot was invalid.
    for decision in ["start", "join", "invalid"] {
        let begins = scrape.samples.iter().find(|s| {
            s.metric == "sandbox_coordinator_begins_total"
                && s.labels.get("decision") == Some(decision)
        });
        assert!(
            matches!(begins.map(|s| &s.value), Some(prometheus_parse::Value::Counter(n)) if *n == 1.0),
            "begins {decision}: {begins:?}\n{text}"
        );
    }
    for name in [
        "sandbox_api_request_duration_seconds",
        "sandbox_coordinator_transition_seconds",
        "sandbox_coordinator_wait_seconds",
    ] {
        let histogram = scrape.samples.iter().find(|s| s.metric == name).unwrap();
        assert!(
            matches!(histogram.value, prometheus_parse::Value::Histogram(_)),
            "{histogram:?}"
        );
    }
    // Labels name routes, never sandboxes.
    assert!(!text.contains(id), "a sandbox id in a label:\n{text}");
    for help in [
        "sandbox_api_requests_total",
        "sandbox_api_node_operations_total",
        "sandbox_coordinator_begins_total",
    ] {
        assert!(scrape.docs.contains_key(help), "no HELP for {help}");
    }
    let library: Vec<&&str> = names
        .iter()
        .filter(|n| n.starts_with("sandbox_coordinator_"))
        .collect();
    println!("library metrics present: {library:?}");
}

/// `(sandboxID, state)` of a `GET /sandboxes` answer, in its order.
fn listed(reply: &Reply) -> Vec<(String, String)> {
    reply
        .body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {reply:?}"))
        .iter()
        .map(|s| {
            (
                s["sandboxID"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_team_is_refused_with_429_and_the_limit_until_a_pause_or_delete_frees_a_place() {
    let fleet = Fleet::start("team-limit", 1, &[], &["--team-limit", "2"]).await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    assert_eq!(create(&client, &api, TEAM, "s1").await.status, 201);
    assert_eq!(create(&client, &api, TEAM, "s2").await.status, 201);

    // Full: a create is refused with the limit, and never reaches the node.
    let full = create(&client, &api, TEAM, "s3").await;
    assert_eq!((full.status, full.code()), (429, "team_full"), "{full:?}");
    assert_eq!(full.body["limit"], 2, "{full:?}");
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    // Another team is not affected.
    assert_eq!(create(&client, &api, "team-b", "s3").await.status, 201);

    // A pause frees a place: the next create succeeds.
    let paused = on(&client, Method::POST, &api, TEAM, "s2", "/pause").await;
    assert_eq!(paused.status, 204);
    assert_eq!(create(&client, &api, TEAM, "s3").await.status, 201);

    // Full again: resuming the paused one would take a place.
    let resume = on(&client, Method::POST, &api, TEAM, "s2", "/resume").await;
    assert_eq!(
        (resume.status, resume.code()),
        (429, "team_full"),
        "{resume:?}"
    );
    assert_eq!(resume.body["limit"], 2, "{resume:?}");

    // A delete frees one: now the resume succeeds.
    let deleted = on(&client, Method::DELETE, &api, TEAM, "s1", "").await;
    assert_eq!(deleted.status, 204);
    let resume = on(&client, Method::POST, &api, TEAM, "s2", "/resume").await;
    assert_eq!(resume.status, 201, "{resume:?}");

    // The refused create and resume never reached the node: one create per
    // sandbox, one resume.
    let ops: Vec<(String, String)> = fleet
        .node_ops()
        .await
        .into_iter()
        .filter(|o| o.team == TEAM && matches!(o.action.as_str(), "create" | "resume"))
        .map(|o| (o.sandbox_id, o.action))
        .collect();
    assert_eq!(
        ops,
        pairs(&[
            ("s1", "create"),
            ("s2", "create"),
            ("s3", "create"),
            ("s2", "resume")
        ])
    );
    let count = fleet.coordinator().await.count(TEAM).await.unwrap();
    assert_eq!(
        (count.taken(), count.killed, count.reserved),
        (2, 1, 0),
        "{count:?}"
    );
    let list = client
        .call(Method::GET, &format!("{api}/sandboxes"), Some(TEAM), None)
        .await;
    assert_eq!(
        listed(&list),
        pairs(&[("s1", "killed"), ("s2", "running"), ("s3", "running")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_two_servers_never_take_more_places_than_the_teams_limit() {
    const CREATES: usize = 12;
    // The servers' default is far above the team's own limit, which every
    // server reads from Redis.
    let fleet = Fleet::start(
        "team-limit-race",
        2,
        &["--latency-ms", "300"],
        &["--team-limit", "100"],
    )
    .await;
    let coord = fleet.coordinator().await;
    assert_eq!(coord.set_team_limit(TEAM, Some(3)).await.unwrap(), None);

    // All at once: each holds its place from its reservation on, through
    // the node's 300 ms, so no count taken before the node call can let a
    // fourth one through.
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..CREATES {
        let (client, api) = (fleet.client.clone(), fleet.api(i % 2).to_owned());
        creates.spawn(async move { create(&client, &api, TEAM, &format!("s{i}")).await });
    }
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    while let Some(r) = creates.join_next().await {
        let r = r.unwrap();
        if r.status == 429 {
            assert_eq!(
                (r.code(), &r.body["limit"]),
                ("team_full", &json!(3)),
                "{r:?}"
            );
        }
        *statuses.entry(r.status).or_default() += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(201, 3), (429, CREATES - 3)]));
    let creates_run = fleet
        .node_ops()
        .await
        .iter()
        .filter(|o| o.action == "create")
        .count();
    assert_eq!(creates_run, 3, "only the admitted creates reach the node");
    let count = coord.count(TEAM).await.unwrap();
    assert_eq!(
        (count.live, count.reserved, count.limit),
        (3, 0, Some(3)),
        "{count:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sandboxes_lists_the_teams_sandboxes_by_id_and_no_other_teams() {
    let fleet = Fleet::start("list", 2, &[], &[]).await;
    let (a, b) = (fleet.api(0).to_owned(), fleet.api(1).to_owned());
    let client = Client::new();
    let mut executions = BTreeMap::new();
    for id in ["s-b", "s-a", "s-c"] {
        let r = create(&client, &a, TEAM, id).await;
        assert_eq!(r.status, 201, "{r:?}");
        executions.insert(id, r.body["executionID"].as_str().unwrap().to_owned());
    }
    assert_eq!(create(&client, &a, "team-b", "s-x").await.status, 201);
    assert_eq!(
        on(&client, Method::POST, &a, TEAM, "s-b", "/pause")
            .await
            .status,
        204
    );
    assert_eq!(
        on(&client, Method::DELETE, &a, TEAM, "s-c", "")
            .await
            .status,
        204
    );

    // Any server lists the team's sandboxes (from the library's team
    // index, tombstones included), by id.
    let list = client
        .call(Method::GET, &format!("{b}/sandboxes"), Some(TEAM), None)
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(
        listed(&list),
        pairs(&[("s-a", "running"), ("s-b", "paused"), ("s-c", "killed")])
    );
    for s in list.body.as_array().unwrap() {
        let id = s["sandboxID"].as_str().unwrap();
        assert_eq!(s["executionID"], executions[id], "{s}");
        // A fence once a transition ran on it (paused, killed), 0 before.
        assert_eq!(s["fence"] == 0, id == "s-a", "{s}");
    }
    let other = client
        .call(Method::GET, &format!("{b}/sandboxes"), Some("team-b"), None)
        .await;
    assert_eq!(listed(&other), pairs(&[("s-x", "running")]));
    let none = client
        .call(
            Method::GET,
            &format!("{a}/sandboxes"),
            Some("team-none"),
            None,
        )
        .await;
    assert_eq!((none.status, none.body.clone()), (200, json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_transition_leaves_no_lease_behind() {
    let fleet = Fleet::start("cancel", 1, &["--latency-ms", "1500"], &[]).await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    let created = client
        .call(
            Method::POST,
            &format!("{api}/sandboxes"),
            Some(TEAM),
            Some(json!({"sandboxID": "s1"})),
        )
        .await;
    assert_eq!(created.status, 201);
    let coord = fleet.coordinator().await;

    // A pause reaches the node; then its client goes away.
    let pause = {
        let (client, url) = (client.clone(), format!("{api}/sandboxes/s1/pause"));
        tokio::spawn(async move { client.call(Method::POST, &url, Some(TEAM), None).await })
    };
    let in_flight = fleet
        .until_node_runs(Duration::from_secs(5), |r| {
            r.sandbox_id == "s1" && r.action == "pause"
        })
        .await;
    assert!(in_flight, "the pause ended before it could be interrupted");
    let held = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert!(held.lease.is_some(), "the pause holds a lease: {held:?}");
    pause.abort();
    let _ = pause.await;

    // The server drops the handler, and with it the Transition: the library
    // fails it at once, long before its 30 s lease would expire.
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let record = coord.get(TEAM, "s1").await.unwrap().unwrap();
        if record.lease.is_none() {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the lease is still held: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let last = record.last.expect("the transition's outcome is recorded");
    assert_eq!(last.fence, held.fence);
    assert_eq!(last.outcome.as_str(), "failed", "{last:?}");
    assert_eq!(last.reason, "dropped", "{last:?}");
    let metrics = client
        .http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sandbox_api_requests_cancelled_total")
                && l.contains("/sandboxes/:id/pause")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_transitions_in_flight_finish() {
    const N: usize = 4;
    let mut fleet = Fleet::start("sigterm-drain", 1, &["--latency-ms", "800"], &[]).await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..N {
        let (client, url) = (client.clone(), format!("{api}/sandboxes"));
        let body = json!({"sandboxID": format!("s{i}")});
        creates.spawn(async move {
            client
                .call(Method::POST, &url, Some(TEAM), Some(body))
                .await
        });
    }
    while let Some(r) = creates.join_next().await {
        assert_eq!(r.unwrap().status, 201);
    }
    let mut pauses = tokio::task::JoinSet::new();
    for i in 0..N {
        let (client, url) = (client.clone(), format!("{api}/sandboxes/s{i}/pause"));
        pauses.spawn(async move { client.call(Method::POST, &url, Some(TEAM), None).await });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet
        .client
        .get_json::<Vec<fleet::Running>>(&format!("{}/inflight", fleet.node.url))
        .await
        .len()
        < N
    {
        assert!(
            Instant::now() < deadline,
            "the pauses did not reach the node"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    fleet.servers[0].terminate();

    // It stops accepting at once...
    let port = fleet.servers[0].port();
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...the requests in flight finish normally...
    while let Some(r) = pauses.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 204, "{r:?}");
    }
    // ...and it exits cleanly, every transition finished.
    let status = fleet.servers[0].wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let coord = fleet.coordinator().await;
    for i in 0..N {
        let s = coord.get(TEAM, &format!("s{i}")).await.unwrap().unwrap();
        assert_eq!(
            (s.state.as_str(), s.lease.is_none()),
            ("paused", true),
            "{s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_period_fails_transitions_and_leaves_no_lease() {
    let mut fleet = Fleet::start(
        "sigterm-grace",
        1,
        &["--latency-ms", "2000"],
        &["--shutdown-grace-ms", "200"],
    )
    .await;
    let api = fleet.api(0).to_owned();
    let client = Client::new();
    let r = client
        .call(
            Method::POST,
            &format!("{api}/sandboxes"),
            Some(TEAM),
            Some(json!({"sandboxID": "s1"})),
        )
        .await;
    assert_eq!(r.status, 201); // (the create takes the node's 2 s too)
    let pause = {
        let (client, url) = (client.clone(), format!("{api}/sandboxes/s1/pause"));
        tokio::spawn(async move { client.call(Method::POST, &url, Some(TEAM), None).await })
    };
    let in_flight = fleet
        .until_node_runs(Duration::from_secs(5), |r| {
            r.sandbox_id == "s1" && r.action == "pause"
        })
        .await;
    assert!(in_flight, "the pause ended before it could be interrupted");
    let terminated = Instant::now();
    fleet.servers[0].terminate();

    let r = pause.await.unwrap();
    assert_eq!((r.status, r.code()), (503, "shutting_down"), "{r:?}");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    let status = fleet.servers[0].wait(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        terminated.elapsed() < Duration::from_secs(3),
        "took {:?}",
        terminated.elapsed()
    );
    // The pause was failed explicitly: no lease, the failure recorded.
    let s = fleet
        .coordinator()
        .await
        .get(TEAM, "s1")
        .await
        .unwrap()
        .unwrap();
    assert!(s.lease.is_none(), "{s:?}");
    let last = s.last.expect("an outcome");
    assert_eq!(last.outcome.as_str(), "failed");
    assert!(last.reason.contains("shutting down"), "{last:?}");
}

/// The first fenced code block of `markdown` in `language`.
fn code_block<'a>(markdown: &'a str, language: &str) -> &'a str {
    let open = format!("```{language}\n");
    let start = markdown
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{language} block"))
        + open.len();
    let len = markdown[start..].find("```").expect("a closed block");
    &markdown[start..start + len]
}

/// Numbers what differs from run to run, in order of appearance: each
/// distinct `exec-<16 hex>` becomes `exec-#<n>`, each distinct nonzero
/// `"fence":<digits>` (microseconds of the Redis clock) `"fence":#<n>`.
/// Two transcripts agree if they are the same up to this renaming.
fn number_run_ids(text: &str) -> String {
    let text = number_tokens(text, "exec-", |rest| {
        let hex = rest.chars().take_while(char::is_ascii_hexdigit).count();
        (hex == 16).then_some(hex)
    });
    number_tokens(&text, "\"fence\":", |rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        (digits > 0 && !rest.starts_with('0')).then_some(digits)
    })
}

/// Replaces each token that `token_len` finds right after `prefix` with
/// `#<n>`, the same token with the same number.
fn number_tokens(text: &str, prefix: &str, token_len: impl Fn(&str) -> Option<usize>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        if let Some(len) = token_len(rest) {
            let token = &rest[..len];
            let n = seen.iter().position(|s| *s == token).unwrap_or_else(|| {
                seen.push(token);
                seen.len() - 1
            });
            out.push_str(&format!("#{n}"));
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// when dropped.
struct ProcessGroup(libc::pid_t);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group we created for the shell.
        unsafe { libc::kill(-self.0, libc::SIGTERM) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_session_runs_as_written() {
    use tokio::io::AsyncBufReadExt;

    // docs/example-server.md, exactly as written: its first `sh` block
    // starts the fleet, its first `console` block is the session.
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/example-server.md"
    ))
    .expect("docs/example-server.md");
    let redis = support::TestRedis::start().await;
    let dir = fleet::test_dir("readme");
    // The README's fixed ports, moved to free ones; its Redis, to ours.
    let ports: Vec<u16> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let substitute = |text: &str| {
        text.replace(
            "redis://127.0.0.1:6379",
            &format!("{} --namespace {}", redis.url(), redis.namespace()),
        )
        .replace("7000", &ports[0].to_string())
        .replace("8001", &ports[1].to_string())
        .replace("8002", &ports[2].to_string())
        .replace("8003", &ports[3].to_string())
    };

    // The fleet block as written, but for its `cargo build` (the test has
    // the binary: its directory goes first on PATH).
    let fleet_script: Vec<String> = code_block(&readme, "sh")
        .lines()
        .filter(|l| !l.starts_with("cargo "))
        .map(substitute)
        .collect();
    let bin_dir = std::path::Path::new(fleet::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::File::create(dir.join("fleet.log")).unwrap();
    let mut shell = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{}\nwait", fleet_script.join("\n")))
        .current_dir(&dir)
        .env("PATH", &path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("bash");
    let _group = ProcessGroup(shell.id().unwrap() as libc::pid_t);
    let mut lines = tokio::io::BufReader::new(shell.stdout.take().unwrap()).lines();
    let mut listening = Vec::new();
    while listening.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the fleet did not start; its log:\n{}",
                    fleet::tail(&dir.join("fleet.log"), 40)
                )
            })
            .unwrap()
            .expect("the fleet's output ended early");
        assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
        listening.push(line);
    }

    // The session: every `$ ` command, run in order in one shell, each
    // output compared with the lines under it.
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in code_block(&readme, "console").lines() {
        match line.strip_prefix("$ ") {
            Some(command) => steps.push((command.to_owned(), Vec::new())),
            None => steps
                .last_mut()
                .expect("output before a command")
                .1
                .push(line.to_owned()),
        }
    }
    let script: String = steps
        .iter()
        .map(|(command, _)| format!("echo @@@\n{}\n", substitute(command)))
        .collect();
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", &path)
        .output()
        .await
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let actual: Vec<&str> = stdout.split("@@@\n").skip(1).collect();
    assert_eq!(
        actual.len(),
        steps.len(),
        "output:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let trimmed = |s: &str| s.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    let want = number_run_ids(
        &steps
            .iter()
            .map(|(_, out)| trimmed(&out.join("\n")))
            .collect::<Vec<_>>()
            .join("\n@@@\n"),
    );
    let got = number_run_ids(
        &actual
            .iter()
            .map(|out| trimmed(out))
            .collect::<Vec<_>>()
            .join("\n@@@\n"),
    );
    for ((step, want), got) in steps
        .iter()
        .zip(want.split("\n@@@\n"))
        .zip(got.split("\n@@@\n"))
    {
        assert_eq!(
            got, want,
            "README command `{}` printed something else",
            step.0
        );
    }
    println!(
        "README session: {} commands, {} servers + node started as written",
        steps.len(),
        listening.len() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_refused_with_400_and_nothing_reaches_the_node() {
    let fleet = Fleet::start("bad-bodies", 1, &[], &[]).await;
    let url = format!("{}/sandboxes", fleet.api(0));
    let client = Client::new();
    for body in [
        json!({"sandboxId": "typo"}),
        json!({"timeoutSeconds": 10_000_000_000u64}),
        json!({"timeoutSeconds": "soon"}),
        json!({"sandboxID": "a b"}),
    ] {
        let r = client
            .call(Method::POST, &url, Some(TEAM), Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(
            ["bad_request", "invalid_input"].contains(&r.code()),
            "{body}: {r:?}"
        );
    }
    let text = client
        .http
        .post(&url)
        .header("X-Team-ID", TEAM)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 400);
    let body: serde_json::Value = text.json().await.unwrap();
    assert_eq!(body["code"], "bad_request", "{body}");
    // Ids are checked before the node call (by reserve), not at register.
    let ops = fleet.node_ops().await;
    assert!(ops.is_empty(), "{ops:#?}");
}

/// `GET /sandboxes` with the view's headers: (status, ids and states,
/// x-view-seq, x-view-stale-ms).
async fn list_from_view(client: &Client, api: &str) -> (u16, Vec<(String, String)>, u64, u64) {
    let r = client
        .http
        .get(format!("{api}/sandboxes"))
        .header("X-Team-ID", TEAM)
        .send()
        .await
        .expect("GET /sandboxes");
    let header = |name: &str| -> u64 {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (seq, stale) = (header("x-view-seq"), header("x-view-stale-ms"));
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    let rows = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["sandboxID"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (status, rows, seq, stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sandboxes_answers_from_the_teams_view_and_keeps_answering_without_redis() {
    let mut fleet = Fleet::start("view", 2, &[], &["--redis-timeout-ms", "300"]).await;
    let (a, b) = (fleet.api(0).to_owned(), fleet.api(1).to_owned());
    let client = Client::new();
    assert_eq!(create(&client, &a, TEAM, "s1").await.status, 201);
    let (status, rows, seq, stale) = list_from_view(&client, &b).await;
    assert_eq!((status, rows, stale), (200, pairs(&[("s1", "running")]), 0));
    assert!(seq > 0, "the view's sequence");

    // Later lists are answered from memory: 50 of them cost Redis at most
    // the view's polls (one short script per poll interval), not 50 lists.
    let mut redis = fleet.redis.as_ref().unwrap().client().await;
    let before = fixture_evalsha(&mut redis).await;
    for _ in 0..50 {
        assert_eq!(list_from_view(&client, &b).await.0, 200);
    }
    let spent = fixture_evalsha(&mut redis).await - before;
    assert!(spent <= 3, "50 lists ran {spent} scripts");

    // A change made through the other server shows in the view.
    assert_eq!(
        on(&client, Method::POST, &a, TEAM, "s1", "/pause")
            .await
            .status,
        204
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, rows, now_seq, _) = list_from_view(&client, &b).await;
        if rows == pairs(&[("s1", "paused")]) {
            assert!(now_seq > seq);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pause never showed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Redis gone: lists still answer, from the last state, saying how stale.
    fleet.stop_redis();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, rows, _, stale) = list_from_view(&client, &b).await;
        assert_eq!((status, rows), (200, pairs(&[("s1", "paused")])));
        if stale > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the view never said it was stale"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Writes fail clearly.
    let r = on(&client, Method::DELETE, &b, TEAM, "s1", "").await;
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{r:?}");
}

/// EVALSHA calls so far (`INFO commandstats`).
async fn fixture_evalsha(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
