//! Fleet operations at size (issue 11): `list` of a team of 10,000
//! sandboxes, and `due_for_eviction_all` over 100,000 sandboxes in 1,000
//! teams — wall time on this machine and the Redis time they cost
//! (`INFO commandstats` usec of the script calls).
//!
//! ```text
//! cargo bench --bench fleet            # private redis-server on loopback
//! cargo bench --bench fleet -- --quick # 1,000 / 10,000 sandboxes (smoke)
//! ```

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sandbox_coordinator::{Coordinator, NewSandbox};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Server {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("sbx-fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server {
        child,
        url: format!("redis://127.0.0.1:{port}"),
        dir,
    })
}

/// `INFO commandstats` usec of script calls (evalsha + eval).
async fn script_usec(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    commands_usec(conn, &["evalsha", "eval"]).await
}

/// `INFO commandstats` usec of `commands` (lower case), summed.
async fn commands_usec(
    conn: &mut redis::aio::MultiplexedConnection,
    commands: &[&str],
) -> Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut usec = 0;
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        if !commands.contains(&name) {
            continue;
        }
        for part in rest.split(',') {
            if let Some(v) = part.strip_prefix("usec=") {
                usec += v.parse::<u64>()?;
            }
        }
    }
    Ok(usec)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn register_all(coord: &Coordinator, items: Vec<NewSandbox>) -> Result<()> {
    let chunks: Vec<Vec<NewSandbox>> = items
        .chunks(items.len().div_ceil(32).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let coord = coord.clone();
        tasks.push(tokio::spawn(async move {
            for new in chunk {
                coord.register(new).await?;
            }
            Ok::<_, sandbox_coordinator::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Test runners list a harness-less target's tests first (nextest's
    // `--list --format terse`): there are none.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (team_size, fleet, teams) = if quick {
        (1_000, 10_000, 100)
    } else {
        (10_000, 100_000, 1_000)
    };
    let server = start_server()?;
    let client = redis::Client::open(server.url.as_str())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(e.into()),
        }
    };
    let coord = Coordinator::builder(&server.url)
        .namespace("fleet")
        .build()
        .await?;
    let data = "x".repeat(162);

    // list of one team of `team_size`.
    let started = Instant::now();
    register_all(
        &coord,
        (0..team_size)
            .map(|i| NewSandbox {
                team: "big".into(),
                id: format!("i{i:019}"),
                execution: format!("e{i}"),
                end_time: Duration::from_secs(3600).into(),
                data: data.clone(),
            })
            .collect(),
    )
    .await?;
    println!(
        "registered {team_size} sandboxes in one team in {:.1?}",
        started.elapsed()
    );
    let mut times = Vec::new();
    let mut usec = Vec::new();
    // What list sends: the id index's page and TIME, then HGETALL and PTTL
    // of each record (no script).
    const LIST: &[&str] = &["evalsha", "eval", "zrangebylex", "time", "hgetall", "pttl"];
    for _ in 0..9 {
        let before = commands_usec(&mut conn, LIST).await?;
        let t0 = Instant::now();
        let all = coord.list("big").await?;
        times.push(t0.elapsed());
        usec.push(commands_usec(&mut conn, LIST).await? - before);
        assert_eq!(all.len(), team_size);
    }
    usec.sort();
    let list_usec = usec[usec.len() / 2];
    println!(
        "list of a team of {team_size}: median {:.1?} wall, {} ms of Redis time (median of 9; pages of 1,000)",
        median(times),
        list_usec / 1000
    );
    // The floor of reading the same records: a pipelined HGETALL of each,
    // in pages of the same 1,000.
    let records: Vec<String> = (0..team_size)
        .map(|i| {
            coord
                .namespace()
                .sandbox("big", &format!("i{i:019}"))
                .map(|k| k.record)
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut hgetall = Vec::new();
    for _ in 0..9 {
        let before = commands_usec(&mut conn, &["hgetall"]).await?;
        for page in records.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in page {
                pipe.cmd("HGETALL").arg(key);
            }
            let _: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        }
        hgetall.push(commands_usec(&mut conn, &["hgetall"]).await? - before);
    }
    hgetall.sort();
    let floor_usec = hgetall[hgetall.len() / 2];
    let ratio = list_usec as f64 / (floor_usec as f64).max(1.0);
    println!(
        "list vs a pipelined HGETALL of the same records: {:.2} vs {:.2} µs of Redis time per sandbox = {ratio:.2} × (target ≤ 1.5 ×: {})",
        list_usec as f64 / team_size as f64,
        floor_usec as f64 / team_size as f64,
        if ratio <= 1.5 { "met" } else { "missed" }
    );
    let t0 = Instant::now();
    let count = coord.count("big").await?;
    println!(
        "count of a team of {team_size}: {:.1?} ({} live)",
        t0.elapsed(),
        count.live
    );

    // due_for_eviction_all over `fleet` sandboxes in `teams` teams, 1% due.
    let started = Instant::now();
    let past = SystemTime::now() - Duration::from_secs(60);
    register_all(
        &coord,
        (0..fleet)
            .map(|i| NewSandbox {
                team: format!("t{:04}", i % teams),
                id: format!("i{i:019}"),
                execution: format!("e{i}"),
                end_time: if i % 100 == 0 {
                    past.into()
                } else {
                    Duration::from_secs(3600).into()
                },
                data: data.clone(),
            })
            .collect(),
    )
    .await?;
    println!(
        "registered {fleet} sandboxes in {teams} teams in {:.1?}",
        started.elapsed()
    );
    let mut times = Vec::new();
    let mut usec = Vec::new();
    for _ in 0..9 {
        let before = script_usec(&mut conn).await?;
        let t0 = Instant::now();
        let due = coord.due_for_eviction_all(100).await?;
        times.push(t0.elapsed());
        usec.push(script_usec(&mut conn).await? - before);
        assert_eq!(due.len(), 100.min(fleet / 100));
    }
    usec.sort();
    println!(
        "due_for_eviction_all(100) over {fleet} sandboxes in {teams} teams ({} due): median {:.1?} wall, {:.1} ms of Redis time (median of 9)",
        fleet / 100,
        median(times),
        usec[usec.len() / 2] as f64 / 1000.0
    );
    Ok(())
}
