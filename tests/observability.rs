//! Observability (issue 10): the metrics the library records through the
//! `metrics` facade (every name prefixed `sandbox_coordinator_`, labels of
//! few values), and the `tracing` spans of begin (with its decision), wait,
//! extend and finish carrying team, sandbox, action and fence.

mod fixture;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::{TEAM, coordinator, parked_n, sandbox};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sandbox_coordinator::{Action, BeginOptions, Begun};
use support::TestRedis;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A span's recorded fields by name.
type SpanFields = BTreeMap<String, String>;

/// Every span the library opened: name and fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, SpanFields)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Spans
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        fields.insert("#id".into(), id.into_u64().to_string());
        spans.push((attrs.metadata().name().to_string(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        let key = id.into_u64().to_string();
        if let Some((_, fields)) = spans
            .iter_mut()
            .rev()
            .find(|(_, f)| f.get("#id") == Some(&key))
        {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_spans_name_what_happened_with_few_label_values() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    recorder.install().unwrap();
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    // A start, a join, an absorbed kill, an invalid snapshot, an extend, a
    // failure, a lost lease.
    let Begun::Started(pause) = coord
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
        .unwrap()
    else {
        panic!()
    };
    let fence = pause.fence();
    let c = coord.clone();
    let join = tokio::spawn(async move {
        c.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked_n(&coord, 1).await;
    pause.extend().await.unwrap();
    pause.succeed().await.unwrap();
    join.await.unwrap().unwrap();
    coord
        .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
        .await
        .unwrap();
    assert!(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .is_err()
    );
    coord.register(sandbox("s2", "e1")).await.unwrap();
    let Begun::Started(snap) = coord
        .begin(TEAM, "s2", Action::Snapshot, BeginOptions::default())
        .await
        .unwrap()
    else {
        panic!()
    };
    snap.fail("disk full").await.unwrap();
    let Begun::Started(short) = coord
        .begin(
            TEAM,
            "s2",
            Action::Snapshot,
            BeginOptions::default()
                .lease(Duration::from_millis(50))
                .watchdog(false),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    short.lost().await;
    drop(short);
    assert!(coord.close(Duration::from_secs(10)).await);

    // ----- metrics
    let snapshot = snapshots.snapshot().into_vec();
    let mut seen: BTreeMap<String, Vec<(SpanFields, DebugValue)>> = BTreeMap::new();
    for (key, _, _, value) in snapshot {
        let labels = key
            .key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        seen.entry(key.key().name().to_string())
            .or_default()
            .push((labels, value));
    }
    eprintln!("metrics: {:#?}", seen.keys().collect::<Vec<_>>());
    for name in seen.keys() {
        assert!(name.starts_with("sandbox_coordinator_"), "{name}");
    }
    let counter = |name: &str, want: &[(&str, &str)]| -> u64 {
        seen.get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| {
                want.iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    let begins = "sandbox_coordinator_begins_total";
    assert_eq!(
        counter(begins, &[("action", "pause"), ("decision", "start")]),
        1
    );
    assert_eq!(
        counter(begins, &[("action", "pause"), ("decision", "join")]),
        1
    );
    assert_eq!(
        counter(begins, &[("action", "kill"), ("decision", "absorbed")]),
        1
    );
    assert_eq!(
        counter(begins, &[("action", "snapshot"), ("decision", "invalid")]),
        1
    );
    assert_eq!(
        counter(
            "sandbox_coordinator_leases_lost_total",
            &[("action", "snapshot")]
        ),
        1
    );
    assert!(seen.contains_key("sandbox_coordinator_transition_seconds"));
    assert!(seen.contains_key("sandbox_coordinator_wait_seconds"));
    assert!(counter("sandbox_coordinator_notifications_total", &[]) >= 1);
    // Labels take few values: never an id, a fence or a reason.
    let mut values: BTreeSet<String> = BTreeSet::new();
    for series in seen.values() {
        for (labels, _) in series {
            values.extend(labels.values().cloned());
        }
    }
    for v in &values {
        assert!(
            !v.contains("s1") && !v.contains(&fence.to_string()) && !v.contains("disk"),
            "label value {v}"
        );
    }

    // ----- spans
    let spans = spans.0.lock().unwrap().clone();
    let names: BTreeSet<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("spans: {names:?}");
    for want in ["begin", "wait", "extend", "finish"] {
        assert!(names.contains(want), "no {want} span in {names:?}");
    }
    let begin = spans
        .iter()
        .find(|(n, f)| n == "begin" && f.get("decision").map(String::as_str) == Some("\"start\""))
        .expect("a begin span with its decision");
    assert_eq!(begin.1.get("team").map(String::as_str), Some(TEAM));
    assert_eq!(begin.1.get("sandbox").map(String::as_str), Some("s1"));
    assert_eq!(begin.1.get("action").map(String::as_str), Some("pause"));
    assert_eq!(begin.1.get("fence"), Some(&fence.to_string()));
    let finish = spans.iter().find(|(n, _)| n == "finish").unwrap();
    for field in ["team", "sandbox", "action", "fence", "outcome"] {
        assert!(
            finish.1.contains_key(field),
            "finish span lacks {field}: {:?}",
            finish.1
        );
    }
}
