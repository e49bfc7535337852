//! TLS termination with rustls, and certificates that can be renewed without a restart.
//!
//! Pushi ran directly on the internet with `APP_SSL`/`SERVER_SSL`, so pushi terminates TLS
//! itself too (rustls only, TLS 1.2 and 1.3). The certificate lives behind a resolver that
//! every new handshake asks, so a renewal (SIGHUP, or the files changing on disk, as an ACME
//! client does every 60 days) swaps it for new handshakes while open connections keep the
//! session they have. A renewal with a broken file keeps the old certificate and says why; a
//! broken file at start stops the server with the file and the problem named.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

/// How often the certificate files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Where a listener's certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate or key that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub problem: String,
}

impl TlsError {
    fn new(path: &Path, problem: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// Reads a certificate chain and its key and checks that they belong together.
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::new(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::new(
            &files.cert,
            "no certificate found in the file",
        ));
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError::new(
            &files.key,
            format!("no PKCS#8, RSA or EC private key found: {e}"),
        )
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::new(&files.key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| {
        TlsError::new(
            &files.key,
            format!(
                "the key does not match the certificate in {}: {e}",
                files.cert.display()
            ),
        )
    })?;
    Ok(Arc::new(certified))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(path, format!("cannot read: {e}")))
}

/// The certificate new handshakes get; replaced in place on renewal.
#[derive(Debug)]
pub struct CertResolver {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of (cert, key) when last loaded, to notice renewals.
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl CertResolver {
    /// Loads the files once; an error here is fatal to the start.
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let current = load(&files, &provider())?;
        let stamp = modified(&files);
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(current),
            stamp: RwLock::new(stamp),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Loads the files again. On success new handshakes get the new certificate; on failure
    /// the old one stays and the reason is returned (and logged by the caller).
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = modified(&self.files);
        let fresh = load(&self.files, &provider())?;
        *self.current.write() = fresh;
        *self.stamp.write() = stamp;
        Ok(())
    }

    /// Reloads if either file changed on disk since the last load.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        if modified(&self.files) == *self.stamp.read() {
            return None;
        }
        let result = self.reload();
        if result.is_err() {
            // Do not retry a broken file every few seconds; try again when it changes again.
            *self.stamp.write() = modified(&self.files);
        }
        Some(result)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn modified(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (at(&files.cert), at(&files.key))
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A rustls server configuration over `resolver`, offering `alpn` protocols in order.
pub fn server_config(resolver: Arc<CertResolver>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|b| b.with_no_client_auth().with_cert_resolver(resolver))
        .unwrap_or_else(|_| {
            // The ring provider supports both versions; this branch cannot be reached, but a
            // default configuration is a safe answer if it ever were.
            ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(NoCertificate))
        });
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// Reloads every resolver on SIGHUP and whenever its files change, until `stopped`.
pub async fn watch_renewals(resolvers: Vec<Arc<CertResolver>>, mut stopped: watch::Receiver<bool>) {
    if resolvers.is_empty() {
        return;
    }
    let report = |resolver: &CertResolver, result: Result<(), TlsError>| match result {
        Ok(()) => tracing::info!(
            cert = %resolver.files().cert.display(),
            "TLS certificate reloaded; new connections get it"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "TLS certificate renewal failed; keeping the previous certificate"
        ),
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hangup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<()>();
        tokio::select! {
            _ = sighup => {
                for resolver in &resolvers {
                    report(resolver, resolver.reload());
                }
            }
            _ = tick.tick() => {
                for resolver in &resolvers {
                    if let Some(result) = resolver.reload_if_changed() {
                        report(resolver, result);
                    }
                }
            }
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}
