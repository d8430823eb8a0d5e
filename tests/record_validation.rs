//! One record validation, the same in Lua and in Rust (issue 12, point 8):
//! every record below is written into Redis and judged both by the scripts
//! (`lua/include/record.lua`, through `get`, `begin` and `finish`) and by
//! the Rust twin (`src/record.rs`); the two must agree, and a record either
//! refuses is refused by every script before any write.

mod fixture;
mod support;

use std::time::Duration;

use fixture::{TEAM, coordinator, dump_all, raw};
use sandbox_coordinator::{Action, BeginOptions, Error, Finish, Lifecycle, record_refusal};
use support::TestRedis;

/// A sound running record's fields (fence 3, one finished snapshot).
fn sound(digest: &str) -> Vec<(&'static str, String)> {
    vec![
        ("v", sandbox_coordinator::keys::SCHEMA_VERSION.into()),
        ("lc", digest.into()),
        ("state", "running".into()),
        ("exec", "e1".into()),
        ("end_ms", "4102444800000".into()),
        ("fence", "3".into()),
        ("action", "snapshot".into()),
        ("data", "{}".into()),
        ("started_ms", "1796000000000".into()),
        ("last_fence", "3".into()),
        ("last_action", "snapshot".into()),
        ("last_outcome", "succeeded".into()),
        ("last_reason", "".into()),
    ]
}

/// One record to judge: its name, field changes ("" deletes the field),
/// and whether it is sound.
type Case = (&'static str, Vec<(&'static str, &'static str)>, bool);

fn cases() -> Vec<Case> {
    vec![
        ("sound", vec![], true),
        ("largest fence", vec![("fence", "9007199254740991")], true),
        (
            "in flight with a holder",
            vec![
                ("state", "snapshotting"),
                ("holder", "h/1"),
                ("until_ms", "4102444800000"),
            ],
            true,
        ),
        ("two queued waiters", vec![("queue", "a/1@5 b/2@6")], true),
        (
            "a reservation",
            vec![("state", "paused"), ("resv", "t/1@4102444800000")],
            true,
        ),
        ("a floor", vec![("floor", "12")], true),
        ("unknown state", vec![("state", "sleeping")], false),
        ("no exec", vec![("exec", "")], false),
        ("end_ms 1e12", vec![("end_ms", "1e12")], false),
        ("end_ms -5", vec![("end_ms", "-5")], false),
        ("fence 0x10", vec![("fence", "0x10")], false),
        ("fence nan", vec![("fence", "nan")], false),
        ("fence 2^53", vec![("fence", "9007199254740992")], false),
        ("no fence", vec![("fence", "")], false),
        ("unknown action", vec![("action", "reboot")], false),
        ("until_ms without holder", vec![("until_ms", "5")], false),
        (
            "holder without until_ms",
            vec![("state", "pausing"), ("holder", "h/1")],
            false,
        ),
        (
            "holder with a space",
            vec![("state", "pausing"), ("holder", "h 1"), ("until_ms", "5")],
            false,
        ),
        (
            "holder on a settled state",
            vec![("holder", "h/1"), ("until_ms", "5")],
            false,
        ),
        ("started_ms 1.5", vec![("started_ms", "1.5")], false),
        ("last_fence 1e3", vec![("last_fence", "1e3")], false),
        (
            "unknown last_action",
            vec![("last_action", "unknown")],
            false,
        ),
        (
            "unknown last_outcome",
            vec![("last_outcome", "exploded")],
            false,
        ),
        (
            "last_outcome without last_fence",
            vec![("last_fence", "")],
            false,
        ),
        ("queue without deadline", vec![("queue", "a/1")], false),
        (
            "queue with two spaces",
            vec![("queue", "a/1@5  b/2@6")],
            false,
        ),
        (
            "queue with a trailing space",
            vec![("queue", "a/1@5 ")],
            false,
        ),
        ("resv without deadline", vec![("resv", "t")], false),
        ("floor -1", vec![("floor", "-1")], false),
        ("no lifecycle digest", vec![("lc", "")], false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_and_the_rust_parser_refuse_exactly_the_same_records() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let lc = Lifecycle::sandbox();
    let digest = lc.digest();
    let mut conn = redis.client().await;
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let mut wrong = Vec::new();
    for (name, changes, want_sound) in cases() {
        let mut fields = sound(&digest);
        for (f, v) in &changes {
            fields.retain(|(k, _)| k != f);
            if !v.is_empty() {
                fields.push((f, v.to_string()));
            }
        }
        fixture::clear_namespace(&redis).await;
        let mut hset = vec!["HSET".to_string(), keys.record.clone()];
        for (f, v) in &fields {
            hset.push(f.to_string());
            hset.push(v.clone());
        }
        raw(
            &mut conn,
            &hset.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;

        let pairs: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
        let rust = record_refusal(&lc, &pairs);
        let lua = coord.get(TEAM, "s1").await;
        let lua_refused = matches!(lua, Err(Error::Corrupt { .. }));
        if rust.is_none() != want_sound || lua_refused == want_sound {
            wrong.push(format!("{name}: rust {rust:?}, scripts {lua:?}"));
            continue;
        }
        if let (Some(why), Err(Error::Corrupt { detail })) = (&rust, &lua)
            && !detail.ends_with(why.as_str())
        {
            wrong.push(format!("{name}: rust says {why:?}, scripts {detail:?}"));
        }
        if want_sound {
            continue;
        }
        // Every writing script refuses it too, writing nothing.
        let before = dump_all(&redis).await;
        let begin = coord
            .begin(
                TEAM,
                "s1",
                Action::Kill,
                BeginOptions::default().wait_timeout(Duration::from_secs(1)),
            )
            .await;
        let finish = coord
            .finish(TEAM, "s1", Action::Snapshot, 3, "h/1", Finish::Succeeded)
            .await;
        let end = coord
            .set_end_time(TEAM, "s1", Duration::from_secs(60), None)
            .await;
        let remove = coord.remove(TEAM, "s1").await;
        for (what, got) in [
            ("begin", begin.map(|_| ())),
            ("finish", finish),
            ("set_end_time", end),
            ("remove", remove.map(|_| ())),
        ] {
            if !matches!(got, Err(Error::Corrupt { .. })) {
                wrong.push(format!("{name}: {what} gave {got:?}"));
            }
        }
        if dump_all(&redis).await != before {
            wrong.push(format!("{name}: a refusing script wrote something"));
        }
    }
    assert!(
        wrong.is_empty(),
        "validation differs:\n{}",
        wrong.join("\n")
    );
}
