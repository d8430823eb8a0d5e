//! Registration: new sandboxes, idempotent re-registration, refusals (live
//! record of another execution, live lease, killed tombstone), resume over a
//! paused tombstone, tombstone TTLs, removal and re-registration with fences
//! that keep increasing, and `set_end_time` on tombstones. After every
//! operation the expiry index must agree with the records.

mod fixture;
mod support;

use std::time::{Duration, SystemTime};

use fixture::{TEAM, assert_index_agrees, coordinator_with, dump_all, sandbox};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, BusyWith, Coordinator, DoneReason, Error, Registration, State,
    Transition,
};
use support::TestRedis;

const RETENTION: Duration = Duration::from_secs(3600);
const IDS: &[&str] = &["s1", "s2", "s3"];

async fn setup() -> (TestRedis, Coordinator) {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| b.tombstone_retention(RETENTION)).await;
    (redis, coord)
}

async fn start(coord: &Coordinator, id: &str, action: Action) -> Transition {
    match coord
        .begin(TEAM, id, action, BeginOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{action} {id}: {e}"))
    {
        Begun::Started(t) => t,
        Begun::AlreadyDone(d) => panic!("{action} {id}: expected Started, got {d:?}"),
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sandbox_is_created_live_and_indexed() {
    let (redis, coord) = setup().await;
    let new = sandbox("s1", "e1");
    let (sb, how) = coord.register(new.clone()).await.unwrap();
    assert_eq!(how, Registration::Created);
    assert_eq!(sb.team, TEAM);
    assert_eq!(sb.id, "s1");
    assert_eq!(sb.execution, "e1");
    assert_eq!(sb.state, State::Running);
    assert_eq!(sb.fence, 0, "no transition yet");
    assert_eq!(sb.data, new.data);
    assert_eq!(sb.end_ms(), ms(fixture::at(new.end_time)));
    assert!(sb.lease.is_none());
    assert!(sb.last.is_none());
    assert_eq!(sb.expires_in, None, "a live record does not expire");
    assert_eq!(coord.get(TEAM, "s1").await.unwrap(), Some(sb));
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_execution_again_is_idempotent_and_writes_nothing() {
    let (redis, coord) = setup().await;
    let (first, _) = coord.register(sandbox("s1", "e1")).await.unwrap();
    let before = dump_all(&redis).await;

    // Same execution, different end time and data: nothing is overwritten.
    let mut again = sandbox("s1", "e1");
    again.end_time = (fixture::at(again.end_time) + Duration::from_secs(600)).into();
    again.data = "{\"vm\":2}".into();
    let (sb, how) = coord.register(again).await.unwrap();
    assert_eq!(how, Registration::Existing);
    assert_eq!(sb, first);
    assert_eq!(dump_all(&redis).await, before, "Existing wrote something");
    assert_index_agrees(&redis, &coord, IDS).await;

    // Also while stuck after a failed pause (no lease): same execution is
    // Existing, another is refused.
    start(&coord, "s1", Action::Pause)
        .await
        .fail("hypervisor refused")
        .await
        .unwrap();
    let before = dump_all(&redis).await;
    let (sb, how) = coord.register(sandbox("s1", "e1")).await.unwrap();
    assert_eq!(how, Registration::Existing);
    assert_eq!(sb.state, State::Pausing);
    let err = coord.register(sandbox("s1", "e2")).await.unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { execution, state, .. } if execution == "e1" && *state == State::Pausing),
        "{err:?}"
    );
    assert_eq!(dump_all(&redis).await, before);
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_execution_over_a_live_record_is_refused() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let before = dump_all(&redis).await;
    let err = coord.register(sandbox("s1", "e2")).await.unwrap_err();
    match &err {
        Error::AlreadyExists {
            team,
            id,
            execution,
            state,
        } => {
            assert_eq!((team.as_str(), id.as_str()), (TEAM, "s1"));
            assert_eq!(execution, "e1");
            assert_eq!(*state, State::Running);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(dump_all(&redis).await, before);
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().execution,
        "e1"
    );
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_refused_while_a_lease_is_live() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = start(&coord, "s1", Action::Pause).await;
    assert_index_agrees(&redis, &coord, IDS).await;
    let before = dump_all(&redis).await;

    // Another execution (a resume racing the pause) and the same one alike.
    for exec in ["e2", "e1"] {
        let err = coord.register(sandbox("s1", exec)).await.unwrap_err();
        match &err {
            Error::Busy { with, .. } => assert_eq!(
                *with,
                BusyWith::Transition {
                    action: Action::Pause,
                    fence: pause.fence()
                }
            ),
            other => panic!("{exec}: expected Busy, got {other:?}"),
        }
        assert!(err.is_retryable());
    }
    // remove is refused the same way.
    assert!(matches!(
        coord.remove(TEAM, "s1").await.unwrap_err(),
        Error::Busy { .. }
    ));
    assert_eq!(dump_all(&redis).await, before, "a refusal wrote something");

    pause.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;
    let (sb, how) = coord.register(sandbox("s1", "e2")).await.unwrap();
    assert_eq!(
        how,
        Registration::Resumed {
            previous_execution: "e1".into()
        }
    );
    assert_eq!(sb.state, State::Running);
    assert_index_agrees(&redis, &coord, IDS).await;
}

/// Another caller's reservation is `Busy` with the reservation, never with
/// a made-up transition: not for a register or a second reservation of a
/// new id, nor for a remove of a paused record reserved for its resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_over_another_callers_reservation_names_the_reservation() {
    let (redis, coord) = setup().await;
    let ttl = Duration::from_secs(30);
    let _create = coord.reserve(TEAM, "s1", ttl).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    start(&coord, "s2", Action::Pause)
        .await
        .succeed()
        .await
        .unwrap();
    let _resume = coord.reserve_resume(TEAM, "s2", ttl).await.unwrap();
    let before = dump_all(&redis).await;
    let refusals = [
        ("register", coord.register(sandbox("s1", "e9")).await.err()),
        ("reserve", coord.reserve(TEAM, "s1", ttl).await.err()),
        (
            "reserve_resume",
            coord.reserve_resume(TEAM, "s2", ttl).await.err(),
        ),
        ("remove", coord.remove(TEAM, "s2").await.err()),
    ];
    for (what, err) in refusals {
        assert!(
            matches!(
                err,
                Some(Error::Busy {
                    with: BusyWith::Reservation,
                    ..
                })
            ),
            "{what}: {err:?}"
        );
    }
    assert_eq!(dump_all(&redis).await, before, "a refusal wrote something");
}

/// A live lease on a record whose action field is empty (a damaged
/// record the validation lets through) is `Corrupt` at once, with nothing
/// written: a busy answer must name the action that holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_an_action_is_corrupt_not_busy() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let _pause = start(&coord, "s1", Action::Pause).await;
    let mut conn = redis.client().await;
    let record = coord.namespace().team(TEAM).unwrap().record("s1");
    fixture::raw(&mut conn, &["HSET", &record, "action", ""]).await;
    let before = dump_all(&redis).await;
    for (what, err) in [
        ("register", coord.register(sandbox("s1", "e2")).await.err()),
        ("remove", coord.remove(TEAM, "s1").await.err()),
    ] {
        assert!(
            matches!(&err, Some(Error::Corrupt { detail }) if detail.contains("action")),
            "{what}: {err:?}"
        );
    }
    assert_eq!(dump_all(&redis).await, before, "a refusal wrote something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_a_paused_tombstone_keeps_fences_increasing() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = start(&coord, "s1", Action::Pause).await;
    let pause_fence = pause.fence();
    pause.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;

    let paused = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(paused.state, State::Paused);
    let ttl = paused.expires_in.expect("a paused tombstone expires");
    assert!(
        ttl > Duration::ZERO && ttl <= RETENTION,
        "paused tombstone TTL {ttl:?}"
    );

    let mut resume = sandbox("s1", "e2");
    resume.data = "{\"vm\":\"resumed\"}".into();
    resume.end_time = (SystemTime::now() + Duration::from_secs(7200)).into();
    let (sb, how) = coord.register(resume.clone()).await.unwrap();
    assert_eq!(
        how,
        Registration::Resumed {
            previous_execution: "e1".into()
        }
    );
    assert_eq!(sb.state, State::Running);
    assert_eq!(sb.execution, "e2");
    assert_eq!(sb.data, resume.data);
    assert_eq!(sb.end_ms(), ms(fixture::at(resume.end_time)));
    assert!(sb.fence >= pause_fence, "the record's fence is not reset");
    assert_eq!(sb.expires_in, None, "a resumed record no longer expires");
    assert!(sb.lease.is_none());
    assert_eq!(coord.get(TEAM, "s1").await.unwrap(), Some(sb.clone()));
    assert_index_agrees(&redis, &coord, IDS).await;

    // Resuming the same execution again is idempotent.
    let (again, how) = coord.register(resume).await.unwrap();
    assert_eq!(how, Registration::Existing);
    assert_eq!(again, sb);

    // The next transition's fence is above the pause's.
    let snap = start(&coord, "s1", Action::Snapshot).await;
    assert!(
        snap.fence() > pause_fence,
        "fence {} after resume is not above the pause's {pause_fence}",
        snap.fence()
    );
    snap.succeed().await.unwrap();
    let pause2 = start(&coord, "s1", Action::Pause).await;
    assert!(pause2.fence() > pause_fence);
    pause2.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tombstone_refuses_registration_and_expires() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    start(&coord, "s1", Action::Kill)
        .await
        .succeed()
        .await
        .unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;

    let killed = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(killed.state, State::Killed);
    let ttl = killed.expires_in.expect("a killed tombstone expires");
    assert!(
        ttl > Duration::ZERO && ttl <= RETENTION,
        "killed tombstone TTL {ttl:?}"
    );

    let before = dump_all(&redis).await;
    // A new incarnation, and even the killed execution itself, is refused:
    // a kill is final while the tombstone lasts.
    for exec in ["e2", "e1"] {
        let err = coord.register(sandbox("s1", exec)).await.unwrap_err();
        match &err {
            Error::AlreadyExists {
                execution, state, ..
            } => {
                assert_eq!(execution, "e1");
                assert_eq!(*state, State::Killed);
            }
            other => panic!("{exec}: expected AlreadyExists, got {other:?}"),
        }
    }
    // Kill again is AlreadyInState, pause invalid: nothing written either.
    match coord
        .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::AlreadyInState),
        Begun::Started(t) => panic!("kill of a killed sandbox started {}", t.fence()),
    }
    assert_eq!(dump_all(&redis).await, before, "a refusal wrote something");
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_then_register_gets_higher_fences_from_the_team_counter() {
    let (redis, coord) = setup().await;
    let mut seen = Vec::new();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;
    for action in [Action::Snapshot, Action::Pause] {
        let t = start(&coord, "s1", action).await;
        seen.push(t.fence());
        t.succeed().await.unwrap();
        assert_index_agrees(&redis, &coord, IDS).await;
    }
    // Another sandbox of the team draws from the same counter.
    let t = start(&coord, "s2", Action::Kill).await;
    seen.push(t.fence());
    t.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;

    assert!(coord.remove(TEAM, "s1").await.unwrap());
    assert_eq!(coord.get(TEAM, "s1").await.unwrap(), None);
    assert!(!coord.remove(TEAM, "s1").await.unwrap(), "already gone");
    assert_index_agrees(&redis, &coord, IDS).await;

    let (sb, how) = coord.register(sandbox("s1", "e9")).await.unwrap();
    assert_eq!(how, Registration::Created);
    assert_eq!(sb.state, State::Running);
    assert!(sb.last.is_none(), "a new record has no history");
    assert_index_agrees(&redis, &coord, IDS).await;

    let t = start(&coord, "s1", Action::Pause).await;
    let max = *seen.iter().max().unwrap();
    assert!(
        t.fence() > max,
        "fence {} after remove + register is not above every earlier one {seen:?}",
        t.fence()
    );
    t.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;

    // A killed tombstone can be removed, and then the id registers again.
    assert!(coord.remove(TEAM, "s2").await.unwrap());
    assert_index_agrees(&redis, &coord, IDS).await;
    let (_, how) = coord.register(sandbox("s2", "e2")).await.unwrap();
    assert_eq!(how, Registration::Created);
    let t = start(&coord, "s2", Action::Snapshot).await;
    assert!(t.fence() > max);
    t.succeed().await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_end_time_moves_live_records_only() {
    let (redis, coord) = setup().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    coord.register(sandbox("s3", "e1")).await.unwrap();

    // A live record: moved, and its index entry with it.
    let later = SystemTime::now() + Duration::from_secs(5000);
    coord
        .set_end_time(TEAM, "s1", later, Some("e1"))
        .await
        .unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().end_ms(),
        ms(later)
    );
    assert_index_agrees(&redis, &coord, IDS).await;
    coord.set_end_time(TEAM, "s1", later, None).await.unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;

    // Pinned to another execution: refused, nothing written.
    let before = dump_all(&redis).await;
    let err = coord
        .set_end_time(TEAM, "s1", SystemTime::now(), Some("e2"))
        .await
        .unwrap_err();
    match &err {
        Error::ExecutionMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, "e2");
            assert_eq!(actual, "e1");
        }
        other => panic!("expected ExecutionMismatch, got {other:?}"),
    }
    assert_eq!(dump_all(&redis).await, before);

    // Tombstones keep theirs: paused and killed.
    start(&coord, "s2", Action::Pause)
        .await
        .succeed()
        .await
        .unwrap();
    start(&coord, "s3", Action::Kill)
        .await
        .succeed()
        .await
        .unwrap();
    assert_index_agrees(&redis, &coord, IDS).await;
    let before = dump_all(&redis).await;
    for (id, state) in [("s2", State::Paused), ("s3", State::Killed)] {
        for expect in [None, Some("e1")] {
            let err = coord
                .set_end_time(TEAM, id, later, expect)
                .await
                .unwrap_err();
            match &err {
                Error::NotLive { state: s, .. } => assert_eq!(*s, state),
                other => panic!("{id}: expected NotLive, got {other:?}"),
            }
        }
    }
    assert_eq!(dump_all(&redis).await, before, "NotLive wrote something");
    assert_index_agrees(&redis, &coord, IDS).await;

    // A missing record.
    coord.remove(TEAM, "s1").await.unwrap();
    assert!(matches!(
        coord.set_end_time(TEAM, "s1", later, None).await,
        Err(Error::NotFound { .. })
    ));
    assert_index_agrees(&redis, &coord, IDS).await;
}
