//! Self-test of the shared test harness in `tests/support/mod.rs`.

mod support;

use std::time::Duration;

use redis::AsyncCommands;
use support::{Backend, Capability, ServerKind, TestRedis};

async fn ping(conn: &mut redis::aio::MultiplexedConnection) -> String {
    redis::cmd("PING").query_async(conn).await.expect("PING")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_gives_a_working_server() {
    let redis = TestRedis::start().await;
    eprintln!("backend={} url={}", redis.backend(), redis.url());
    let mut conn = redis.client().await;
    assert_eq!(ping(&mut conn).await, "PONG");

    let key = redis.key("greeting");
    let _: () = conn.set(&key, "hello").await.unwrap();
    let got: String = conn.get(&key).await.unwrap();
    assert_eq!(got, "hello");

    // Scripts work too (the coordinator relies on EVALSHA).
    let script = redis::Script::new("return redis.call('GET', KEYS[1])");
    let got: String = script.key(&key).invoke_async(&mut conn).await.unwrap();
    assert_eq!(got, "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_unique_and_safe() {
    let a = TestRedis::start().await;
    let b = TestRedis::start().await;
    for ns in [a.namespace(), b.namespace()] {
        assert!(ns.starts_with('t') && ns.len() > 8, "{ns}");
        assert!(
            !ns.contains([':', '{', '}', ' ']),
            "namespace {ns:?} contains a reserved character"
        );
    }
    assert_ne!(a.namespace(), b.namespace());
    assert_eq!(a.key("x"), format!("{}:x", a.namespace()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_are_independent() {
    let a = TestRedis::start().await;
    let b = TestRedis::start().await;
    assert_eq!(a.backend(), b.backend());
    if a.backend() == Backend::External {
        // One shared server: isolation comes from the namespaces alone.
        assert_ne!(a.namespace(), b.namespace());
        return;
    }
    assert_ne!(a.url(), b.url());
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    let _: () = ca.set("shared-name", "from-a").await.unwrap();
    let in_b: Option<String> = cb.get("shared-name").await.unwrap();
    assert_eq!(in_b, None, "servers share data");
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut cb).await.unwrap();
    assert_eq!(dbsize, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_pause_pause_blocks_and_unpause_restores() {
    support::require(Capability::Pause);
    let redis = TestRedis::start().await;
    redis.require(Capability::Pause);
    let mut conn = redis.client().await;
    let key = redis.key("k");
    let _: () = conn.set(&key, "v").await.unwrap();

    redis.pause().await;
    let blocked = tokio::time::timeout(Duration::from_millis(800), async {
        let r: redis::RedisResult<Option<String>> = conn.get(&key).await;
        r
    })
    .await;
    assert!(
        blocked.is_err(),
        "a paused server answered: {:?}",
        blocked.unwrap()
    );
    // A new connection can't get an answer either.
    let fresh = redis.redis_client();
    let blocked = tokio::time::timeout(Duration::from_millis(800), async {
        let mut c = fresh.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    })
    .await;
    assert!(
        !matches!(blocked, Ok(Ok(_))),
        "paused server accepted PING: {blocked:?}"
    );

    redis.unpause().await;
    let got: Option<String> = tokio::time::timeout(Duration::from_secs(5), conn.get(&key))
        .await
        .expect("no answer after unpause")
        .unwrap();
    assert_eq!(got.as_deref(), Some("v"));
    let mut conn2 = redis.client().await;
    assert_eq!(ping(&mut conn2).await, "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_restart_loses_data_without_aof() {
    support::require(Capability::Restart);
    let redis = TestRedis::start().await;
    redis.require(Capability::Restart);
    let mut conn = redis.client().await;
    let key = redis.key("volatile");
    let _: () = conn.set(&key, "v").await.unwrap();
    let before = redis.url();

    redis.restart().await;

    // The old connection is broken (or at least not required to work); a new
    // one on the (possibly new) URL works and the data is gone.
    let mut conn = redis.client().await;
    assert_eq!(ping(&mut conn).await, "PONG");
    let got: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(got, None, "data survived a restart without AOF");
    eprintln!("url before restart {before}, after {}", redis.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_restart_keeps_data_with_aof() {
    support::require(Capability::Restart);
    let redis =
        TestRedis::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    redis.require(Capability::Restart);
    let mut conn = redis.client().await;
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(aof, vec!["appendonly".to_string(), "yes".to_string()]);
    let key = redis.key("durable");
    let _: () = conn.set(&key, "kept").await.unwrap();

    redis.restart().await;

    let mut conn = redis.client().await;
    let got: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(got.as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_removes_the_server() {
    let redis = TestRedis::start().await;
    match redis.backend() {
        Backend::Container { .. } => {
            let id = redis.container_id().unwrap();
            assert_eq!(support::docker_container_exists(&id), Some(true));
            redis.pause().await; // removal must also work for a paused container
            drop(redis);
            assert_eq!(support::docker_container_exists(&id), Some(false));
        }
        Backend::Native => {
            let url = redis.url();
            let socket = url.strip_prefix("redis+unix://").unwrap().to_string();
            let dir = std::path::Path::new(&socket)
                .parent()
                .unwrap()
                .to_path_buf();
            assert!(dir.exists());
            drop(redis);
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        Backend::External => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_test_still_cleans_up() {
    let (tx, rx) = tokio::sync::oneshot::channel::<(Backend, String)>();
    let task = tokio::spawn(async move {
        let redis = TestRedis::start().await;
        let id = match redis.backend() {
            Backend::Container { .. } => redis.container_id().unwrap(),
            _ => redis.url(),
        };
        tx.send((redis.backend(), id)).unwrap();
        panic!("simulated test failure while holding a TestRedis");
    });
    let err = task.await.expect_err("task must panic");
    assert!(err.is_panic());
    let (backend, id) = rx.await.unwrap();
    match backend {
        Backend::Container { .. } => {
            assert_eq!(support::docker_container_exists(&id), Some(false))
        }
        Backend::Native => {
            let socket = id.strip_prefix("redis+unix://").unwrap();
            let dir = std::path::Path::new(socket).parent().unwrap();
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        Backend::External => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_matches_environment() {
    let redis = TestRedis::start().await;
    if std::env::var("REDIS_URL").is_ok_and(|u| !u.is_empty()) {
        assert_eq!(redis.backend(), Backend::External);
    } else if support::container_required() {
        assert!(matches!(redis.backend(), Backend::Container { .. }));
    }
    if let Backend::Container { image } = redis.backend() {
        let want = std::env::var("REDIS_TEST_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| support::default_image().to_string());
        assert_eq!(image, want);
        assert!(redis.url().starts_with("redis://"));
    }
    if redis.backend() == Backend::Native {
        assert!(redis.url().starts_with("redis+unix://"));
    }
}

/// `REDIS_TEST_SERVER` decides the server on every backend: the one that
/// answers says so in `INFO server` (Valkey: `server_name:valkey`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kind_matches_redis_test_server() {
    let redis = TestRedis::start().await;
    let info = redis.server_info().await;
    eprintln!("backend={} server={info}", redis.backend());
    if redis.backend() == Backend::External {
        // Someone else's server: whatever it is, it is reported.
        assert!(!info.version.is_empty(), "{info:?}");
        return;
    }
    let want = ServerKind::from_env();
    assert_eq!(
        info.kind,
        want,
        "REDIS_TEST_SERVER={:?} but the server is {info}",
        std::env::var("REDIS_TEST_SERVER").unwrap_or_default()
    );
    match want {
        ServerKind::Redis => assert!(info.major() >= 7, "Redis 7+ expected, got {info}"),
        ServerKind::Valkey => assert!(info.major() >= 8, "Valkey 8+ expected, got {info}"),
    }
}

/// The skip mechanism's contract: `require` passes exactly when the
/// planned backend can serve the capability, and the prefixes are the
/// ones `make test` filters on.
#[test]
fn capabilities_match_backends_and_test_prefixes() {
    use support::Capability::{Pause, Restart};
    let container = Backend::Container { image: "x".into() };
    assert!(Pause.supported_by(&container) && Restart.supported_by(&container));
    assert!(!Pause.supported_by(&Backend::Native) && Restart.supported_by(&Backend::Native));
    assert!(!Pause.supported_by(&Backend::External) && !Restart.supported_by(&Backend::External));
    assert_eq!(Pause.test_prefix(), "needs_pause_");
    assert_eq!(Restart.test_prefix(), "needs_restart_");
    let planned = support::planned_backend();
    for cap in [Pause, Restart] {
        let passed = std::panic::catch_unwind(|| support::require(cap)).is_ok();
        assert_eq!(passed, cap.supported_by(&planned), "{cap:?} on {planned}");
    }
}
