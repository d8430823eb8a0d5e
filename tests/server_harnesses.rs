//! Self-tests of the TLS and replication harnesses (`tests/support/tls.rs`,
//! `tests/support/replicated.rs`): who can and cannot talk to a TLS-only
//! server, and what `WAIT` and a manual failover look like on a primary
//! with replicas. Native processes only (no Docker); Redis 7 or Valkey 8
//! by `REDIS_TEST_SERVER`.

mod support;

use std::time::Duration;

use redis::AsyncCommands;
use support::{ClientAuth, Member, ServerKind, TestReplicated, TestTls, TlsOptions};

/// Bound on a refused connection attempt (handshake or first reply).
const REFUSED_WITHIN: Duration = Duration::from_secs(10);
/// `WAIT` timeout where an acknowledgement is expected (WAIT returns as
/// soon as it has one; the bound only matters on a starved machine).
const ACK_TIMEOUT_MS: u64 = 10_000;

async fn ping(client: &redis::Client) -> redis::RedisResult<String> {
    tokio::time::timeout(
        REFUSED_WITHIN,
        support::server::admin_query(client, &redis::cmd("PING")),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer, not even a refusal, within {REFUSED_WITHIN:?}"))
}

fn client_trusting(url: &str, root: Vec<u8>, cert: Option<(Vec<u8>, Vec<u8>)>) -> redis::Client {
    support::tls::install_crypto_provider();
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: cert.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
            root_cert: Some(root),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_the_private_ca_connects_over_tls() {
    let tls = TestTls::start(TlsOptions::default()).await;
    assert!(tls.url().starts_with("rediss://127.0.0.1:"));
    let client = client_trusting(&tls.url(), tls.ca_pem(), None);
    assert_eq!(ping(&client).await.unwrap(), "PONG");
    // The certificate names localhost too.
    let by_name = client_trusting(&tls.url_localhost(), tls.ca_pem(), None);
    assert_eq!(ping(&by_name).await.unwrap(), "PONG");
    let info = tls.server_info().await;
    assert_eq!(info.kind, ServerKind::from_env(), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_private_ca_is_refused() {
    let tls = TestTls::start(TlsOptions::default()).await;
    support::tls::install_crypto_provider();
    // The system's roots only: the private CA is unknown to them.
    let client = redis::Client::open(tls.url()).unwrap();
    let refused = ping(&client).await;
    assert!(refused.is_err(), "a client without the CA got {refused:?}");
    eprintln!("refused as expected: {}", refused.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let tls = TestTls::start(TlsOptions::default().untrusted_server_cert()).await;
    let trusting_ours = client_trusting(&tls.url(), tls.ca_pem(), None);
    let refused = ping(&trusting_ours).await;
    assert!(
        refused.is_err(),
        "a certificate signed by another CA was accepted: {refused:?}"
    );
    // It is the chain that is refused: a client trusting the other CA talks.
    let trusting_theirs = client_trusting(&tls.url(), tls.untrusted_ca_pem(), None);
    assert_eq!(ping(&trusting_theirs).await.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let with_cert = client_trusting(
        &tls.url(),
        tls.ca_pem(),
        Some((tls.client_cert_pem(), tls.client_key_pem())),
    );
    assert_eq!(ping(&with_cert).await.unwrap(), "PONG");
    let without = client_trusting(&tls.url(), tls.ca_pem(), None);
    let refused = ping(&without).await;
    assert!(refused.is_err(), "no client certificate, yet {refused:?}");
    // A certificate the CA did not sign: the server's own from the other CA.
    let m = tls.material();
    let foreign = client_trusting(
        &tls.url(),
        tls.ca_pem(),
        Some((
            std::fs::read(&m.untrusted_server_cert).unwrap(),
            std::fs::read(&m.untrusted_server_key).unwrap(),
        )),
    );
    let refused = ping(&foreign).await;
    assert!(
        refused.is_err(),
        "a foreign client certificate got {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_admits_clients_with_and_without_a_certificate() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Optional)).await;
    assert_eq!(ping(&tls.client(true)).await.unwrap(), "PONG");
    assert_eq!(ping(&tls.client(false)).await.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_the_tls_port_gets_no_answer() {
    let tls = TestTls::start(TlsOptions::default()).await;
    let plain = redis::Client::open(tls.plaintext_url_to_tls_port()).unwrap();
    let refused = ping(&plain).await;
    assert!(refused.is_err(), "plaintext PING answered: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_a_linked_replica_and_not_a_killed_one() {
    let group = TestReplicated::start(1).await;
    let mut conn = group.connection(Member::Primary).await;
    let _: () = conn.set("k", "v1").await.unwrap();
    // WAIT answers as soon as the replica acknowledges: a long timeout costs
    // nothing here and keeps a starved CI machine from turning it into 0.
    let acked: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(ACK_TIMEOUT_MS)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 1, "a linked replica acknowledges");

    group.kill(Member::Replica(0));
    // A new write: the dead replica can never acknowledge it, so WAIT runs
    // out its 500 ms whatever the machine's load.
    let _: () = conn.set("k", "v2").await.unwrap();
    let acked: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(500)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 0, "a killed replica acknowledged a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_takes_writes_after_the_primary_dies() {
    let group = TestReplicated::start(2).await;
    assert_eq!(group.server_info().await.kind, ServerKind::from_env());
    let mut primary = group.connection(Member::Primary).await;
    let _: () = primary.set("k", "kept").await.unwrap();
    let acked: u64 = redis::cmd("WAIT")
        .arg(2)
        .arg(ACK_TIMEOUT_MS)
        .query_async(&mut primary)
        .await
        .unwrap();
    assert_eq!(acked, 2);

    let mut replica = group.connection(Member::Replica(0)).await;
    let readonly: redis::RedisResult<()> = replica.set("k", "no").await;
    let err = readonly.expect_err("a replica took a write");
    assert_eq!(err.code(), Some("READONLY"), "{err}");

    group.kill_primary();
    assert!(!group.is_running(Member::Primary));
    group.promote(Member::Replica(0)).await;
    let got: Option<String> = replica.get("k").await.unwrap();
    assert_eq!(got.as_deref(), Some("kept"));
    let _: () = replica.set("k", "after").await.unwrap();

    // The other replica follows the new primary once told to.
    group
        .replicate(Member::Replica(1), Member::Replica(0))
        .await;
    let acked: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(ACK_TIMEOUT_MS)
        .query_async(&mut replica)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let mut other = group.connection(Member::Replica(1)).await;
    let got: Option<String> = other.get("k").await.unwrap();
    assert_eq!(got.as_deref(), Some("after"));
}
