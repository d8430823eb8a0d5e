//! A coordinator for production Redis: a Redis Cluster over TLS with a
//! private CA (optionally mutual TLS), an ACL user, and every write
//! acknowledged by a replica before it counts.
//!
//! ```text
//! CLUSTER_NODES=rediss://10.0.0.1:7000,rediss://10.0.0.2:7000 \
//! TLS_CA=ca.pem [TLS_CERT=client.pem TLS_KEY=client.key] \
//! REDIS_USERNAME=coord REDIS_PASSWORD_FILE=/run/secrets/redis \
//! REPLICAS=1 cargo run --example cluster_tls
//! ```
//!
//! `CLUSTER_NODES` is any subset of the cluster's nodes (the rest are
//! discovered). Every other variable is optional: without `TLS_CA` the
//! system roots are trusted; without `REPLICAS` writes are not waited on;
//! `REDIS_PASSWORD` may replace `REDIS_PASSWORD_FILE`. With `SINGLE=1`
//! the first URL is one server (with or without replicas) instead of a
//! cluster. It registers a sandbox in the namespace `example-cluster`,
//! pauses it, and removes it. Certificates must be X.509 v3 (rustls refuses
//! v1 certificates, which `openssl x509 -req` makes without `-extfile`).

use std::time::Duration;

use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Error, NewSandbox};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(nodes) = var("CLUSTER_NODES") else {
        eprintln!(
            "set CLUSTER_NODES to one or more node URLs, comma-separated (see the file's header)"
        );
        std::process::exit(2);
    };
    let nodes: Vec<String> = nodes.split(',').map(|n| n.trim().to_owned()).collect();
    let mut builder = if var("SINGLE").is_some() {
        Coordinator::builder(nodes[0].clone())
    } else {
        Coordinator::builder_cluster(nodes)
    };
    builder = builder.namespace("example-cluster");
    if let Some(ca) = var("TLS_CA") {
        builder = builder.tls_root_certificate(read("the CA certificate", &ca)?);
    }
    match (var("TLS_CERT"), var("TLS_KEY")) {
        (Some(cert), Some(key)) => {
            builder = builder.tls_client_certificate(
                read("the client certificate", &cert)?,
                read("the client key", &key)?,
            );
        }
        (None, None) => {}
        _ => return Err("TLS_CERT and TLS_KEY go together".into()),
    }
    if let Some(user) = var("REDIS_USERNAME") {
        builder = builder.username(user);
    }
    // A password from a file keeps it out of the environment and `ps`.
    let password = match var("REDIS_PASSWORD_FILE") {
        Some(path) => Some(
            String::from_utf8(read("the password file", &path)?)?
                .trim_end()
                .to_owned(),
        ),
        None => var("REDIS_PASSWORD"),
    };
    if let Some(password) = password {
        builder = builder.password(password);
    }
    if let Some(n) = var("REPLICAS") {
        let n: usize = n.parse().map_err(|e| format!("REPLICAS={n}: {e}"))?;
        // Each write script is followed by WAIT n in the same round trip;
        // fewer acknowledgements are Error::NotReplicated (retryable).
        builder = builder.wait_for_replicas(n, Duration::from_millis(500));
    }
    // Debug output never shows the password.
    println!("connecting: {builder:?}");
    let coord = builder.build().await?;
    println!(
        "connected to {:?} (cluster: {})",
        coord.redis(),
        coord.is_cluster()
    );

    let (team, id) = ("team-1", "sbx-1");
    coord.remove(team, id).await?;
    coord
        .register(NewSandbox {
            team: team.into(),
            id: id.into(),
            execution: "exec-1".into(),
            end_time: Duration::from_secs(600).into(),
            data: String::new(),
        })
        .await?;
    match coord
        .begin(team, id, Action::Pause, BeginOptions::default())
        .await?
    {
        Begun::Started(t) => {
            println!("pause started with fence {}", t.fence());
            match t.succeed().await {
                Ok(()) => println!("pause recorded and acknowledged"),
                // Recorded on the primary, not yet on enough replicas:
                // finishing again returns the recorded outcome.
                Err(e @ Error::NotReplicated { .. }) => println!("{e}"),
                Err(e) => return Err(e.into()),
            }
        }
        Begun::AlreadyDone(done) => println!("nothing to do: {:?}", done.why),
    }
    println!("{:?}", coord.count(team).await?);
    coord.remove(team, id).await?;
    coord.close(Duration::from_secs(5)).await;
    Ok(())
}
