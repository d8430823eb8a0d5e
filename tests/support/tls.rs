//! TLS for the tests: certificates made at test time with the `openssl` CLI
//! ([`TlsMaterial`]), and a native server that speaks only TLS
//! ([`TestTls`]).
//!
//! Nothing is checked in: every test gets its own private CA, so no key ever
//! outlives the test and no certificate expires in the repository. The
//! material is EC P-256 (fast to generate, accepted by rustls and OpenSSL):
//!
//! * a private CA (`ca.crt`), the one clients are given;
//! * a server certificate signed by it for `127.0.0.1` and `localhost`
//!   (subjectAltName IP and DNS), with serverAuth *and* clientAuth usage,
//!   because a server also presents it as a client on TLS replication and the
//!   TLS cluster bus;
//! * a client certificate + key signed by the CA, for mutual TLS;
//! * a second, untrusted CA with a server certificate of its own, so a test
//!   can prove a client refuses a server its CA did not sign.
//!
//! [`TestTls::start`] runs `redis-server` (or `valkey-server`, see
//! `REDIS_TEST_SERVER`) with `--port 0 --tls-port P`: no plaintext listener.
//! `tls-auth-clients` is [`ClientAuth`]. A TLS cluster is
//! [`ClusterOptions::tls`](super::cluster::ClusterOptions::tls).
//!
//! rustls needs one crypto provider per process; the harness installs ring
//! ([`install_crypto_provider`]) before building any client, so a second
//! provider enabled by another crate cannot make rustls refuse to choose.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
};

use super::server::{self, ServerInfo, ServerKind, ServerProcess};

/// Installs rustls' ring provider as the process default (once; a provider
/// installed earlier by someone else is kept).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Certificates and keys (PEM files) generated into one directory.
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub untrusted_ca_cert: PathBuf,
    pub untrusted_server_cert: PathBuf,
    pub untrusted_server_key: PathBuf,
}

/// The extensions of each certificate (`openssl -extensions <section>`).
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl TlsMaterial {
    /// Generates the whole set into `dir` (created if missing) with the
    /// `openssl` CLI. Panics with openssl's output if a step fails.
    pub fn generate(dir: &Path) -> TlsMaterial {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("[test-tls] cannot create {}: {e}", dir.display()));
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CONFIG).expect("write openssl.cnf");
        let m = TlsMaterial {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            untrusted_ca_cert: dir.join("untrusted-ca.crt"),
            untrusted_server_cert: dir.join("untrusted-server.crt"),
            untrusted_server_key: dir.join("untrusted-server.key"),
        };
        let ca_key = dir.join("ca.key");
        let untrusted_ca_key = dir.join("untrusted-ca.key");
        make_ca(&cnf, &m.ca_cert, &ca_key, "sandbox-coordinator test CA");
        make_leaf(
            &cnf,
            (&m.ca_cert, &ca_key),
            (&m.server_cert, &m.server_key),
            "localhost",
            "server_ext",
        );
        make_leaf(
            &cnf,
            (&m.ca_cert, &ca_key),
            (&m.client_cert, &m.client_key),
            "sandbox-coordinator test client",
            "client_ext",
        );
        make_ca(
            &cnf,
            &m.untrusted_ca_cert,
            &untrusted_ca_key,
            "untrusted test CA",
        );
        make_leaf(
            &cnf,
            (&m.untrusted_ca_cert, &untrusted_ca_key),
            (&m.untrusted_server_cert, &m.untrusted_server_key),
            "localhost",
            "server_ext",
        );
        m
    }

    /// The private CA's certificate (what a client must trust).
    pub fn ca_pem(&self) -> Vec<u8> {
        read(&self.ca_cert)
    }

    pub fn client_cert_pem(&self) -> Vec<u8> {
        read(&self.client_cert)
    }

    pub fn client_key_pem(&self) -> Vec<u8> {
        read(&self.client_key)
    }

    /// The CA that signed the untrusted server certificate.
    pub fn untrusted_ca_pem(&self) -> Vec<u8> {
        read(&self.untrusted_ca_cert)
    }

    /// redis-rs TLS settings trusting the private CA only, with the client
    /// certificate if `with_client_cert` (mutual TLS).
    pub fn certificates(&self, with_client_cert: bool) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: with_client_cert.then(|| redis::ClientTlsConfig {
                client_cert: self.client_cert_pem(),
                client_key: self.client_key_pem(),
            }),
            root_cert: Some(self.ca_pem()),
        }
    }

    /// A redis-rs client for `url` (a `rediss://` URL) with
    /// [`Self::certificates`].
    pub fn client(&self, url: &str, with_client_cert: bool) -> redis::Client {
        install_crypto_provider();
        redis::Client::build_with_tls(url, self.certificates(with_client_cert))
            .unwrap_or_else(|e| panic!("[test-tls] TLS client for {url}: {e}"))
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("[test-tls] cannot read {}: {e}", path.display()))
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("[test-tls] cannot run openssl ({e}): `apt-get install openssl`")
        });
    if !out.status.success() {
        panic!(
            "[test-tls] openssl {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A path as the `&str` openssl gets (the harness's paths are UTF-8).
fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A new EC P-256 key, unencrypted (`-nodes`), written as PKCS#8.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn make_ca(cnf: &Path, cert: &Path, key: &Path, cn: &str) {
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-new", "-batch", "-days", "3"];
    args.extend(EC_KEY);
    args.extend([
        "-config",
        s(cnf),
        "-extensions",
        "ca_ext",
        "-keyout",
        s(key),
        "-out",
        s(cert),
        "-subj",
        &subj,
    ]);
    openssl(&args);
}

/// A key and a certificate signed by `ca` with the extensions of `section`.
fn make_leaf(cnf: &Path, ca: (&Path, &Path), leaf: (&Path, &Path), cn: &str, section: &str) {
    let (ca_cert, ca_key) = ca;
    let (cert, key) = leaf;
    let csr = cert.with_extension("csr");
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-new", "-batch"];
    args.extend(EC_KEY);
    args.extend([
        "-config",
        s(cnf),
        "-keyout",
        s(key),
        "-out",
        s(&csr),
        "-subj",
        &subj,
    ]);
    openssl(&args);
    let serial = format!("0x{:016x}", rand::random::<u64>() >> 1);
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(ca_cert),
        "-CAkey",
        s(ca_key),
        "-set_serial",
        &serial,
        "-days",
        "3",
        "-extfile",
        s(cnf),
        "-extensions",
        section,
        "-out",
        s(cert),
    ]);
    let _ = std::fs::remove_file(csr);
}

/// `tls-auth-clients`: does the server ask for a client certificate?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `yes`: a client without a certificate signed by the CA is refused.
    Required,
    /// `no`: server authentication only (what most managed Redis do).
    #[default]
    No,
    /// `optional`: a certificate is checked if the client sends one.
    Optional,
}

impl ClientAuth {
    fn arg(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
        }
    }
}

/// How [`TestTls::start`] configures the server.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub client_auth: ClientAuth,
    /// Serve the certificate signed by the *untrusted* CA (clients that
    /// trust only the private CA must refuse the server).
    pub untrusted_server_cert: bool,
    /// Extra server arguments, e.g. `--requirepass secret`.
    pub args: Vec<String>,
}

impl TlsOptions {
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    pub fn untrusted_server_cert(mut self) -> Self {
        self.untrusted_server_cert = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// One native server listening on TLS only, with fresh certificates.
/// Dropping it kills the server and removes its directory (keys included).
pub struct TestTls {
    kind: ServerKind,
    root: PathBuf,
    material: TlsMaterial,
    port: u16,
    /// `None` only while dropping.
    process: Option<ServerProcess>,
}

impl TestTls {
    /// Generates certificates, starts the server on a free port and waits
    /// until it accepts TLS connections (checked with a PING from a client
    /// that trusts the right CA).
    pub async fn start(opts: TlsOptions) -> TestTls {
        install_crypto_provider();
        let kind = ServerKind::from_env();
        let root = server::private_dir("tls");
        let material = TlsMaterial::generate(&root.join("certs"));
        let (cert, key) = if opts.untrusted_server_cert {
            (
                &material.untrusted_server_cert,
                &material.untrusted_server_key,
            )
        } else {
            (&material.server_cert, &material.server_key)
        };
        let path = |p: &Path| p.display().to_string();
        let data = root.join("data");
        let (process, port) =
            server::start_on_free_port(&kind.server_bin(), &data, false, |port| {
                let mut args: Vec<String> = [
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--protected-mode",
                    "no",
                    "--tls-cert-file",
                    &path(cert),
                    "--tls-key-file",
                    &path(key),
                    "--tls-ca-cert-file",
                    &path(&material.ca_cert),
                    "--tls-auth-clients",
                    opts.client_auth.arg(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    &path(&data),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(opts.args.iter().cloned());
                args
            })
            .await;
        let tls = TestTls {
            kind,
            root,
            material,
            port,
            process: Some(process),
        };
        if !opts.untrusted_server_cert {
            // The listener is bound ("Ready" was logged); prove the handshake.
            let client = tls.material.client(&tls.url(), true);
            let pong: String = server::admin_query(&client, &redis::cmd("PING"))
                .await
                .unwrap_or_else(|e| panic!("[test-tls] TLS PING on port {port} failed: {e}"));
            assert_eq!(pong, "PONG");
        }
        tls
    }

    /// `rediss://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// `rediss://localhost:P` (the certificate names both).
    pub fn url_localhost(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// `redis://127.0.0.1:P`: plaintext to the TLS port (must not work).
    pub fn plaintext_url_to_tls_port(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which server runs (from the environment; [`Self::server_info`] asks it).
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn material(&self) -> &TlsMaterial {
        &self.material
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.material.ca_pem()
    }

    pub fn client_cert_pem(&self) -> Vec<u8> {
        self.material.client_cert_pem()
    }

    pub fn client_key_pem(&self) -> Vec<u8> {
        self.material.client_key_pem()
    }

    pub fn untrusted_ca_pem(&self) -> Vec<u8> {
        self.material.untrusted_ca_pem()
    }

    /// A redis-rs client for [`Self::url`] trusting the private CA, with the
    /// client certificate if `with_client_cert`.
    pub fn client(&self, with_client_cert: bool) -> redis::Client {
        self.material.client(&self.url(), with_client_cert)
    }

    /// `INFO server` over a mutual-TLS connection.
    pub async fn server_info(&self) -> ServerInfo {
        let mut conn = server::admin_connection(&self.client(true))
            .await
            .unwrap_or_else(|e| panic!("[test-tls] cannot connect to {}: {e}", self.url()));
        ServerInfo::query(&mut conn).await
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(16 * 1024))
            .unwrap_or_default()
    }
}

impl Drop for TestTls {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
