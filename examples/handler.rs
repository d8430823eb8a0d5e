//! A request handler with `lost()` and fences, and why the orchestrator must
//! check the fence.
//!
//! ```text
//! cargo run --example handler -- redis://127.0.0.1:6379     # or REDIS_URL=...
//! ```
//!
//! It needs a Redis 7.0+ (or Valkey 8) and writes under the namespace
//! `example-handler`, removing its sandbox at the end. It shows:
//!
//! 1. the handler pattern: `begin`, the work raced against `t.lost()`, then
//!    `succeed` or `fail`;
//! 2. a holder that stalls past its lease: the next request starts a new
//!    transition with a larger fence; when the stale holder wakes up, the
//!    orchestrator refuses its old fence (nothing runs twice) and the
//!    library refuses its `succeed` (`Fenced`, nothing written).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Error, NewSandbox};

/// The system that does the physical work. Its one obligation: refuse a
/// fence at or below the highest it has seen for the sandbox, checked and
/// recorded in one step, before the operation runs.
#[derive(Default)]
struct Orchestrator {
    highest: Mutex<HashMap<String, u64>>,
}

impl Orchestrator {
    async fn run(&self, sandbox: &str, action: Action, fence: u64) -> Result<(), String> {
        {
            let mut highest = self.highest.lock().map_err(|_| "lock poisoned")?;
            let seen = highest.entry(sandbox.to_owned()).or_default();
            if fence <= *seen {
                return Err(format!(
                    "refused {action} of {sandbox} with stale fence {fence} (already saw {seen})"
                ));
            }
            *seen = fence;
        }
        // The real work would run here (a VM paused, a snapshot taken...).
        tokio::time::sleep(Duration::from_millis(20)).await;
        println!("  orchestrator: ran {action} of {sandbox} with fence {fence}");
        Ok(())
    }
}

/// Why a handler did not succeed.
#[derive(Debug)]
enum HandlerError {
    Coordinator(Error),
    Orchestrator(String),
    LeaseLost,
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Coordinator(e) => write!(f, "{e}"),
            HandlerError::Orchestrator(why) => write!(f, "the orchestrator: {why}"),
            HandlerError::LeaseLost => write!(f, "the lease was lost"),
        }
    }
}

impl From<Error> for HandlerError {
    fn from(e: Error) -> Self {
        HandlerError::Coordinator(e)
    }
}

/// The handler pattern: begin, race the work against `lost()`, record how
/// it ended. Dropping this future at any point is safe (the library fails
/// an unfinished transition in the background).
async fn handle(
    coord: &Coordinator,
    node: &Orchestrator,
    team: &str,
    id: &str,
    action: Action,
) -> Result<(), HandlerError> {
    let t = match coord
        .begin(team, id, action, BeginOptions::default())
        .await?
    {
        Begun::Started(t) => t,
        Begun::AlreadyDone(done) => {
            println!("  {action}: nothing to do ({:?})", done.why);
            return Ok(());
        }
    };
    let sandbox = format!("{team}/{id}");
    let outcome = tokio::select! {
        done = node.run(&sandbox, action, t.fence()) => {
            done.map_err(HandlerError::Orchestrator)
        }
        () = t.lost() => Err(HandlerError::LeaseLost),
    };
    match outcome {
        Ok(()) => Ok(t.succeed().await?),
        Err(e) => {
            if let Err(finish) = t.fail(e.to_string()).await {
                println!("  could not record the failure: {finish}");
            }
            Err(e)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let coord = Coordinator::builder(&url)
        .namespace("example-handler")
        .build()
        .await?;
    let node = Orchestrator::default();
    let (team, id) = ("team-1", "sbx-1");
    // A leftover from an earlier run would make the steps below differ.
    coord.remove(team, id).await?;
    coord
        .register(NewSandbox {
            team: team.into(),
            id: id.into(),
            execution: "exec-1".into(),
            end_time: Duration::from_secs(3600).into(),
            data: String::new(),
        })
        .await?;

    println!("1. a snapshot through the handler");
    handle(&coord, &node, team, id, Action::Snapshot)
        .await
        .map_err(|e| e.to_string())?;

    println!("2. a pause whose holder stalls past its 200 ms lease");
    let stale = match coord
        .begin(
            team,
            id,
            Action::Pause,
            BeginOptions::default()
                .lease(Duration::from_millis(200))
                .watchdog(false),
        )
        .await?
    {
        Begun::Started(t) => t,
        Begun::AlreadyDone(done) => return Err(format!("unexpected: {done:?}").into()),
    };
    println!("  pause started with fence {}", stale.fence());
    tokio::time::sleep(Duration::from_millis(400)).await; // the stall
    println!("  lease lost: {}", stale.is_lost());

    println!("3. meanwhile a kill: the stuck pause is cleaned up by a new transition");
    handle(&coord, &node, team, id, Action::Kill)
        .await
        .map_err(|e| e.to_string())?;

    println!("4. the stale holder wakes up and carries on");
    match node
        .run(&format!("{team}/{id}"), Action::Pause, stale.fence())
        .await
    {
        Err(refused) => println!("  {refused}"),
        Ok(()) => return Err("the orchestrator ran a stale fence".into()),
    }
    match stale.succeed().await {
        Err(Error::Fenced { .. }) => println!("  its succeed: Fenced, nothing written"),
        other => return Err(format!("unexpected: {other:?}").into()),
    }

    let record = coord.get(team, id).await?.ok_or("the record is gone")?;
    println!("final state: {} (fence {})", record.state, record.fence);
    coord.remove(team, id).await?;
    coord.close(Duration::from_secs(5)).await;
    Ok(())
}
