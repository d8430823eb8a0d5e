//! TLS in production (issue 9, point 1): a coordinator over `rediss://`
//! trusting a private CA runs the core scenarios, mutual TLS admits only a
//! coordinator with the client certificate, a server no trusted root signed
//! and plaintext to a TLS port fail fast and say why, credentials never
//! reach `Debug` output, and a TLS Redis Cluster wakes joiners over sharded
//! pub/sub on every master.
//!
//! Every server is a native TLS-only process with fresh certificates
//! (`tests/support/tls.rs`, `tests/support/cluster.rs`); Redis 7 or Valkey 8
//! by `REDIS_TEST_SERVER`. Joiners run with a 30 s poll interval, so only a
//! notification can wake them within the 5 s they are given.

mod fixture;
mod support;

use std::time::Duration;

use fixture::{TEAM, evalsha_calls, pause_joined_by_notification, sandbox};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Builder, Coordinator, DoneReason, Error, NewSandbox, State,
};
use support::{ClientAuth, ClusterOptions, ServerKind, TestCluster, TestTls, TlsOptions, server};
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Poll interval of every coordinator here: longer than any bound below, so
/// a waiter that returns in time was woken by a notification.
const POLL: Duration = Duration::from_secs(30);
/// Outer bound on a call that must fail: a hang is reported as such.
const NO_HANG: Duration = Duration::from_secs(15);

fn tuned(builder: Builder, namespace: &str) -> Builder {
    builder
        .namespace(namespace)
        .connect_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .poll_interval(POLL)
}

/// A coordinator on the TLS server trusting its private CA (and, with
/// `client_cert`, presenting the client certificate).
fn over_tls(tls: &TestTls, client_cert: bool) -> Builder {
    let builder = tuned(Coordinator::builder(tls.url()), "tls").tls_root_certificate(tls.ca_pem());
    if client_cert {
        builder.tls_client_certificate(tls.client_cert_pem(), tls.client_key_pem())
    } else {
        builder
    }
}

/// `build()` that must fail: its error and how long it took.
async fn refused(builder: Builder) -> (Error, Duration) {
    let started = Instant::now();
    match tokio::time::timeout(NO_HANG, builder.build()).await {
        Err(_) => panic!("build() hung for {NO_HANG:?} instead of failing"),
        Ok(Ok(coord)) => panic!("build() succeeded: {coord:?}"),
        Ok(Err(e)) => (e, started.elapsed()),
    }
}

/// The error with its whole chain of sources, lower case (rustls' reason
/// sits in a source of redis-rs' I/O error).
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(" / ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.to_lowercase()
}

// ----- rediss:// with a private CA ----------------------------------------------------

/// Register, a pause whose joiner is woken by its notification over TLS, a
/// kill absorbed by the pause, list and count, remove: all over `rediss://`
/// with only the test's private CA trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_over_tls_with_the_private_ca_runs_the_core_scenarios() {
    let tls = TestTls::start(TlsOptions::default()).await;
    let coord = over_tls(&tls, false)
        .build()
        .await
        .expect("connects over TLS");
    let joiner = over_tls(&tls, false)
        .build()
        .await
        .expect("connects over TLS");
    let admin = server::admin_connection(&tls.client(true)).await.unwrap();
    assert_eq!(tls.server_info().await.kind, ServerKind::from_env());

    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e2")).await.unwrap();
    pause_joined_by_notification(&coord, &joiner, TEAM, "s1", async || {
        evalsha_calls(&admin).await
    })
    .await;

    match coord
        .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
        Begun::Started(t) => panic!("a paused sandbox started a kill (fence {})", t.fence()),
    }
    let listed: Vec<(String, State)> = coord
        .list(TEAM)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.state))
        .collect();
    assert_eq!(
        listed,
        [("s1".into(), State::Paused), ("s2".into(), State::Running)]
    );
    let count = coord.count(TEAM).await.unwrap();
    assert_eq!((count.live, count.paused), (1, 1));

    assert!(coord.remove(TEAM, "s1").await.unwrap());
    assert!(coord.remove(TEAM, "s2").await.unwrap());
    assert!(coord.list(TEAM).await.unwrap().is_empty());
    assert_eq!(coord.get(TEAM, "s1").await.unwrap(), None);
}

// ----- mutual TLS ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_a_coordinator_with_the_client_certificate() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let coord = over_tls(&tls, true)
        .build()
        .await
        .expect("the client certificate is accepted");
    let joiner = over_tls(&tls, true).build().await.unwrap();
    let admin = server::admin_connection(&tls.client(true)).await.unwrap();

    coord.register(sandbox("s1", "e1")).await.unwrap();
    pause_joined_by_notification(&coord, &joiner, TEAM, "s1", async || {
        evalsha_calls(&admin).await
    })
    .await;
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Paused
    );
}

/// The server demands a client certificate; a coordinator without one is
/// refused by `build()` (connections are made eagerly) with an error, in
/// time — never a coordinator that hangs on its first call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_coordinator_without_a_client_certificate_at_build() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let (err, took) = refused(over_tls(&tls, false)).await;
    eprintln!("refused in {took:?}: {}", chain(&err));
    assert!(
        took < CONNECT_TIMEOUT + RESPONSE_TIMEOUT,
        "refused only after {took:?}: {err}"
    );
    let why = chain(&err);
    assert!(
        why.contains("certificate"),
        "the error does not say a client certificate is required: {why}"
    );
}

// ----- refusals that say why ----------------------------------------------------------

/// A server whose certificate another CA signed: `build()` fails at once
/// (the handshake, not a timeout) and the error names the certificate
/// problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_no_trusted_root_signed_is_refused_fast_naming_the_certificate() {
    let tls = TestTls::start(TlsOptions::default().untrusted_server_cert()).await;
    let (err, took) = refused(over_tls(&tls, false)).await;
    eprintln!("refused in {took:?}: {}", chain(&err));
    assert!(
        took < (CONNECT_TIMEOUT + RESPONSE_TIMEOUT) / 2,
        "refused only after {took:?} (timeouts {CONNECT_TIMEOUT:?} + {RESPONSE_TIMEOUT:?}): {err}"
    );
    let why = chain(&err);
    assert!(
        why.contains("certificate") || why.contains("unknownissuer") || why.contains("issuer"),
        "the error does not say the certificate was refused: {why}"
    );
}

/// `redis://` to a port that speaks only TLS: an error within the connect
/// and response timeouts, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_the_tls_port_fails_within_the_timeouts() {
    let tls = TestTls::start(TlsOptions::default()).await;
    let builder = tuned(Coordinator::builder(tls.plaintext_url_to_tls_port()), "tls");
    let (err, took) = refused(builder).await;
    eprintln!("refused in {took:?}: {}", chain(&err));
    assert!(
        took <= CONNECT_TIMEOUT + RESPONSE_TIMEOUT + Duration::from_millis(500),
        "failed only after {took:?}: {err}"
    );
}

// ----- credentials ----------------------------------------------------------------------

/// Neither a password in the URL nor one given to `password(...)`, nor the
/// client's private key, appears in `Debug` of the builder or of a built
/// coordinator, or in the error of a refused login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_appear_in_debug_output() {
    const URL_SECRET: &str = "url-s3cret-e4a1";
    const OPTION_SECRET: &str = "option-s3cret-9b7c";
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let mut admin = server::admin_connection(&tls.client(true)).await.unwrap();
    support::add_user(&mut admin, "coord", &[URL_SECRET, OPTION_SECRET]).await;
    let key_pem = String::from_utf8(tls.client_key_pem()).unwrap();
    let key_body = key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .expect("a PEM body line")
        .to_string();
    let secrets = [URL_SECRET, OPTION_SECRET, key_body.as_str()];
    let assert_hidden = |what: &str, shown: &str| {
        for secret in secrets {
            assert!(!shown.contains(secret), "{what} shows a secret: {shown}");
        }
    };

    let url = tls
        .url()
        .replace("rediss://", &format!("rediss://coord:{URL_SECRET}@"));
    let by_url = tuned(Coordinator::builder(url), "tls")
        .tls_root_certificate(tls.ca_pem())
        .tls_client_certificate(tls.client_cert_pem(), tls.client_key_pem());
    let by_option = over_tls(&tls, true)
        .username("coord")
        .password(OPTION_SECRET);
    assert_hidden(
        "Debug of a builder with a URL password",
        &format!("{by_url:?}"),
    );
    assert_hidden(
        "Debug of a builder with password()",
        &format!("{by_option:?}"),
    );

    for builder in [by_url, by_option] {
        let coord = builder.build().await.expect("the user logs in");
        coord.register(sandbox("s1", "e1")).await.unwrap();
        assert_hidden("Debug of a coordinator", &format!("{coord:?}"));
        assert_hidden("Coordinator::redis()", &format!("{:?}", coord.redis()));
        assert!(coord.remove(TEAM, "s1").await.unwrap());
    }

    // A refused login: the error says so without repeating the password.
    let wrong = over_tls(&tls, true)
        .username("coord")
        .password(format!("{OPTION_SECRET}-wrong"));
    let (err, _) = refused(wrong).await;
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(OPTION_SECRET),
        "a refused login shows the password: {shown}"
    );
}

/// A password with characters a URL reserves (`/`, `?`, `#`, `@`), written
/// into the URL unencoded as operators paste them, is still hidden from
/// `Debug` of the builder and from the error `build()` gives for the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_password_with_reserved_characters_never_appears_in_debug_output_or_errors() {
    let mut leaks = Vec::new();
    for password in ["pa/ss-4f1e", "pa?ss-4f1e", "pa#ss-4f1e", "p@ss-4f1e"] {
        let url = format!("rediss://coord:{password}@127.0.0.1:1");
        let builder = tuned(Coordinator::builder(url), "tls");
        let shown = format!("{builder:?}");
        if shown.contains("ss-4f1e") {
            leaks.push(format!(
                "Debug of a builder, password {password:?}: {shown}"
            ));
        }
        if let Err(e) = tokio::time::timeout(NO_HANG, builder.build())
            .await
            .expect("build() answers")
        {
            let shown = format!("{e} {e:?}");
            if shown.contains("ss-4f1e") {
                leaks.push(format!("build() error, password {password:?}: {shown}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "the password is shown:\n{}",
        leaks.join("\n")
    );
}

// ----- a TLS Redis Cluster -------------------------------------------------------------

/// `builder_cluster` over `rediss://` seed nodes with the private CA: on a
/// team of each master, a pause whose joiner (30 s poll) is woken by the
/// `SPUBLISH` of its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_cluster_pauses_with_a_joiner_woken_on_a_team_of_each_master() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 1).tls()).await;
    let ca = cluster.tls_material().expect("a TLS cluster").ca_pem();
    let seeds = cluster.seed_urls();
    assert!(
        seeds.iter().all(|u| u.starts_with("rediss://")),
        "{seeds:?}"
    );
    let build = || {
        tuned(Coordinator::builder_cluster(seeds.clone()), "tlsc")
            .tls_root_certificate(ca.clone())
            .build()
    };
    let holder = build().await.expect("connects to the TLS cluster");
    let joiner = build().await.expect("connects to the TLS cluster");
    assert!(holder.is_cluster());

    let teams = cluster.teams_on_every_master(1);
    assert_eq!(teams.len(), 3);
    for team in &teams {
        let master = cluster.master_for_slot(support::slot_of(team));
        let admin = cluster.node_connection(master.port).await;
        holder
            .register(NewSandbox {
                team: team.clone(),
                ..sandbox("s1", "e1")
            })
            .await
            .unwrap();
        pause_joined_by_notification(&holder, &joiner, team, "s1", async || {
            evalsha_calls(&admin).await
        })
        .await;
        assert_eq!(
            holder.get(team, "s1").await.unwrap().unwrap().state,
            State::Paused,
            "team {team} on master {}",
            master.port
        );
    }
    // The outcomes went out on sharded pub/sub, never on cluster-wide PUBLISH.
    let stats = cluster.commandstats_all().await;
    assert!(
        stats.get("spublish").copied().unwrap_or(0) >= 3,
        "{stats:?}"
    );
    assert_eq!(stats.get("publish").copied().unwrap_or(0), 0, "{stats:?}");
}
