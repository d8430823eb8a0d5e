//! The evictor loop: kill every sandbox whose end time has passed, by the
//! Redis server's clock, across every team of the namespace.
//!
//! ```text
//! cargo run --example evictor -- redis://127.0.0.1:6379        # or REDIS_URL=...
//! EVICTOR_SEED=5 cargo run --example evictor                     # seed 5 sandboxes ending in 1 s, stop once they are killed
//! ```
//!
//! It needs a Redis 7.0+ (or Valkey 8) and works in the namespace
//! `EVICTOR_NAMESPACE` (default `example-evictor`). Without `EVICTOR_SEED`
//! it runs until Ctrl-C. Several evictors may run at once: eviction never
//! waits, and a sandbox someone else is already handling is skipped.

use std::time::Duration;

use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Error, NewSandbox};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let namespace = std::env::var("EVICTOR_NAMESPACE").unwrap_or_else(|_| "example-evictor".into());
    let seed: usize = match std::env::var("EVICTOR_SEED") {
        Ok(n) => n.parse().map_err(|e| format!("EVICTOR_SEED={n}: {e}"))?,
        Err(_) => 0,
    };
    let coord = Coordinator::builder(&url)
        .namespace(namespace)
        .build()
        .await?;

    for i in 0..seed {
        let id = format!("sbx-{i}");
        coord.remove("team-1", &id).await?; // a leftover of an earlier run
        coord
            .register(NewSandbox {
                team: "team-1".into(),
                id,
                execution: "exec-1".into(),
                end_time: Duration::from_secs(1).into(), // from the Redis server's now
                data: String::new(),
            })
            .await?;
    }

    let mut killed = 0;
    loop {
        let due = tokio::select! {
            due = coord.due_for_eviction_all(100) => due,
            _ = tokio::signal::ctrl_c() => break,
        };
        let due = match due {
            Ok(due) => due,
            Err(e) if e.is_retryable() => {
                eprintln!("listing what is due: {e}; trying again");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        for (team, id) in due {
            let opts = BeginOptions::default().eviction();
            match coord.begin(&team, &id, Action::Kill, opts).await {
                Ok(Begun::Started(t)) => {
                    // Destroy the VM here, passing t.fence() to the orchestrator.
                    println!("evicting {team}/{id} with fence {}", t.fence());
                    t.succeed().await?;
                    killed += 1;
                }
                Ok(Begun::AlreadyDone(_)) => {}
                // The normal races of an evictor: the end time moved (by
                // server time), another transition holds the sandbox, or
                // it was removed meanwhile.
                Err(
                    Error::EvictionNotNeeded { .. }
                    | Error::EvictionInProgress { .. }
                    | Error::NotFound { .. },
                ) => {}
                Err(e) => eprintln!("evicting {team}/{id}: {e}"),
            }
        }
        if seed > 0 && killed >= seed {
            println!("all {seed} seeded sandboxes evicted");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    coord.close(Duration::from_secs(5)).await;
    Ok(())
}
