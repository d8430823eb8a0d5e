//! REFERENCE PROTOCOL BASELINE — NOT THIS LIBRARY.
//!
//! A re-implementation, for comparison only, of the lock-based protocol
//! that the reference system (E2B's API, Go, go-redis + bsm/redislock) uses
//! to start and complete a sandbox state transition, as described in the
//! issue that asked for this benchmark. It is written here from that
//! description; no code of the reference system is used. Nothing in the
//! library depends on it.
//!
//! Start a transition (`begin`):
//!   1. acquire the sandbox's lock: `SET <record>:lock <token> NX PX`, with
//!      jittered exponential backoff while it is taken;
//!   2. `GET` the record (a JSON string);
//!   3. `GET` the transition key (empty when none is in flight);
//!   4. decide in the client, then one Lua script writes the new record
//!      (state), the execution-id key, the transition key (with a TTL) and
//!      an empty result key (with a TTL) — an `EVALSHA`;
//!   5. release the lock with a compare-and-delete script (`EVALSHA`) and
//!      publish the lock release (`PUBLISH`, fire-and-forget).
//!
//! Complete it (the callback):
//!   6. acquire the transition key's lock (`SET NX PX`);
//!   7. `SET` the result key ("" for success) with its TTL;
//!   8. `DEL` the transition key;
//!   9. release (compare-and-delete `EVALSHA`, then the lock-release
//!      `PUBLISH`, fire-and-forget);
//!  10. `PUBLISH` the transition's routing key so waiters wake
//!      (fire-and-forget, as the reference hands it to a publisher).
//!
//! So one uncontended transition costs 9 sequential round trips and 12
//! commands. Fire-and-forget publishes run as spawned tasks (goroutines in
//! the reference) and are not part of the measured latency, only of the
//! load. A subscriber task consumes the notification channel, as every
//! reference API server does.
//!
//! Simplification that favours the baseline: the reference's snapshot is a
//! "transient" action whose callback first restores `running` with another
//! locked read-modify-write of the record; here that step is left out and a
//! record left in `snapshotting` with no transition key counts as running,
//! so the baseline's figures are better than the real system's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use redis::Value;

use crate::conns::{Conns, Strategy};
use crate::load::{self, Run};
use crate::ours::{DATA, Fleet, end_time};
use crate::result::Result;
use crate::server::Admin;

/// Lock TTL (`SET NX PX`).
const LOCK_TTL_MS: u64 = 10_000;
/// Transition key TTL, seconds.
const TRANSITION_TTL_S: u64 = 60;
/// Result key TTL, seconds.
const RESULT_TTL_S: u64 = 30;
/// Lock retry backoff bounds.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(100);

/// Step 4 (`lua/reference_start.lua`).
pub const START_SCRIPT: &str = include_str!("lua/reference_start.lua");

/// Steps 5 and 9 (`lua/reference_release.lua`).
pub const RELEASE_SCRIPT: &str = include_str!("lua/reference_release.lua");

/// The reference protocol over one pool.
pub struct Reference {
    pool: Conns,
    prefix: String,
    start_sha: String,
    release_sha: String,
    /// Fire-and-forget publishes still in flight (the command count waits
    /// for them to land).
    publishing: Arc<AtomicUsize>,
    subscriber: tokio::task::JoinHandle<()>,
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// A started transition, for its completion callback.
pub struct Started {
    transition_key: String,
    result_key: String,
    routing: String,
}

impl Reference {
    pub async fn new(
        url: &str,
        strategy: Strategy,
        concurrency: usize,
        prefix: &str,
    ) -> Result<Reference> {
        let pool = Conns::new(url, strategy, concurrency).await?;
        let start_sha = pool.load(START_SCRIPT).await?;
        let release_sha = pool.load(RELEASE_SCRIPT).await?;
        let channel = format!("{prefix}:notify");
        let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let subscriber = tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(m) = messages.next().await {
                // The reference routes each payload to its waiters; here
                // there are none, but the message is still read and decoded.
                let _ = m.get_payload::<String>();
            }
        });
        Ok(Reference {
            pool,
            prefix: prefix.to_string(),
            start_sha,
            release_sha,
            publishing: Arc::new(AtomicUsize::new(0)),
            subscriber,
        })
    }

    fn record_key(&self, team: &str, id: &str) -> String {
        format!("{}:{{{team}}}:sandboxes:{id}", self.prefix)
    }

    fn transition_key(&self, team: &str, id: &str) -> String {
        format!("{}:{{{team}}}:transition:{id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:notify", self.prefix)
    }

    /// Stores the fleet's records (JSON strings) and execution-id keys.
    pub async fn seed(&self, fleet: &Fleet) -> Result<()> {
        for chunk in fleet.ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for (team, id) in chunk {
                let key = self.record_key(team, id);
                let exec = format!("exec-{id}");
                pipe.set(&key, record_json(team, id, &exec, "running"))
                    .ignore()
                    .set(format!("{key}:eid"), exec)
                    .ignore();
            }
            self.pool.query_pipe(&pipe).await?;
        }
        Ok(())
    }

    async fn acquire(&self, lock_key: &str) -> Result<String> {
        let token = format!("{:032x}", rand::rng().random::<u128>());
        let mut backoff = RETRY_MIN;
        loop {
            let got = self
                .pool
                .query(
                    redis::cmd("SET")
                        .arg(lock_key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_TTL_MS),
                )
                .await?;
            if got != Value::Nil {
                return Ok(token);
            }
            let jitter = rand::rng().random_range(0.8..1.2);
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    async fn release(&self, lock_key: &str, token: &str) -> Result<()> {
        self.pool
            .query(
                redis::cmd("EVALSHA")
                    .arg(&self.release_sha)
                    .arg(1)
                    .arg(lock_key)
                    .arg(token),
            )
            .await?;
        self.publish_later(format!("lock {lock_key}"));
        Ok(())
    }

    /// A `PUBLISH` that nobody waits for.
    fn publish_later(&self, payload: String) {
        let (pool, channel, pending) = (
            self.pool.clone(),
            self.channel(),
            Arc::clone(&self.publishing),
        );
        pending.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = pool
                .query(redis::cmd("PUBLISH").arg(channel).arg(payload))
                .await;
            pending.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Waits until every fire-and-forget publish has been answered.
    pub async fn settle(&self) {
        while self.publishing.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Steps 1–5: start a snapshot of `team/id`.
    pub async fn begin(&self, team: &str, id: &str) -> Result<Started> {
        let key = self.record_key(team, id);
        let transition_key = self.transition_key(team, id);
        let lock_key = format!("{key}:lock");
        let token = self.acquire(&lock_key).await?;
        let outcome = self.begin_locked(team, id, &key, &transition_key).await;
        self.release(&lock_key, &token).await?;
        outcome
    }

    async fn begin_locked(
        &self,
        team: &str,
        id: &str,
        key: &str,
        transition_key: &str,
    ) -> Result<Started> {
        let record: String = match self.pool.query(redis::cmd("GET").arg(key)).await? {
            Value::Nil => return Err(format!("reference record {key}: none").into()),
            v => redis::from_redis_value(v)?,
        };
        let in_flight = self
            .pool
            .query(redis::cmd("GET").arg(transition_key))
            .await?;
        if in_flight != Value::Nil {
            return Err(
                format!("reference: {transition_key} is in flight (bench is uncontended)").into(),
            );
        }
        // Snapshot is allowed from running (and, see the header, from a
        // leftover snapshotting).
        let state = json_field(&record, "state").unwrap_or("");
        if state != "running" && state != "snapshotting" {
            return Err(format!("reference: snapshot not allowed from {state:?}").into());
        }
        let exec = json_field(&record, "executionID").unwrap_or("").to_string();
        let updated = record_json(team, id, &exec, "snapshotting");
        let transition_id = format!("{:032x}", rand::rng().random::<u128>());
        let result_key = format!("{transition_key}:{transition_id}");
        let written = self
            .pool
            .query(
                redis::cmd("EVALSHA")
                    .arg(&self.start_sha)
                    .arg(4)
                    .arg(key)
                    .arg(transition_key)
                    .arg(&result_key)
                    .arg(format!("{key}:eid"))
                    .arg(updated)
                    .arg(&transition_id)
                    .arg(TRANSITION_TTL_S)
                    .arg(RESULT_TTL_S)
                    .arg("")
                    .arg(&exec),
            )
            .await?;
        if written != Value::Int(1) {
            return Err(format!("reference start script replied {written:?}").into());
        }
        Ok(Started {
            transition_key: transition_key.to_string(),
            result_key,
            routing: format!("{team}/{id}/{transition_id}"),
        })
    }

    /// Steps 6–10: the completion callback, success.
    pub async fn succeed(&self, started: Started) -> Result<()> {
        let lock_key = format!("{}:lock", started.transition_key);
        let token = self.acquire(&lock_key).await?;
        self.pool
            .query(
                redis::cmd("SET")
                    .arg(&started.result_key)
                    .arg("")
                    .arg("EX")
                    .arg(RESULT_TTL_S),
            )
            .await?;
        self.pool
            .query(redis::cmd("DEL").arg(&started.transition_key))
            .await?;
        self.release(&lock_key, &token).await?;
        self.publish_later(started.routing);
        Ok(())
    }

    /// One uncontended transition.
    pub async fn transition(&self, team: &str, id: &str) -> Result<()> {
        let started = self.begin(team, id).await?;
        self.succeed(started).await
    }

    /// Transitions per second at `concurrency` over `fleet`.
    pub async fn throughput(
        self: &Arc<Self>,
        fleet: &Fleet,
        admin: &Admin,
        concurrency: usize,
        warmup: Duration,
        window: Duration,
    ) -> Result<Run> {
        let (me, fleet) = (Arc::clone(self), fleet.clone());
        load::closed_loop(admin, concurrency, warmup, window, move |w, i| {
            let (me, fleet) = (Arc::clone(&me), fleet.clone());
            async move {
                let (team, id) = fleet.pick(w, concurrency, i);
                me.transition(team, id).await
            }
        })
        .await
    }
}

/// The reference keeps a sandbox as one JSON document.
fn record_json(team: &str, id: &str, exec: &str, state: &str) -> String {
    let end_ms = end_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        r#"{{"sandboxID":"{id}","teamID":"{team}","executionID":"{exec}","state":"{state}","endTime":{end_ms},"data":{DATA}}}"#
    )
}

/// A top-level string field of the record (the ids and states contain no
/// quotes, so a scan suffices; the reference decodes JSON here).
fn json_field<'a>(json: &'a str, field: &str) -> Option<&'a str> {
    let pat = format!("\"{field}\":\"");
    let start = json.find(&pat)? + pat.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}
