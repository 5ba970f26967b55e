//! TLS for every listener (rustls, TLS 1.2 and 1.3 only): certificate and key from PEM
//! files, reloaded when the files change, optional client certificates (mTLS) checked
//! against a CA file, whose subject common name can serve as the client's username.
//!
//! A listener holds a [`TlsAcceptor`]; each handshake uses the configuration in force when
//! it starts, so a reload never disturbs connections already open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// TLS settings of one listener family (`[mqtt.tls]`, `[kafka.tls]`, `[admin.tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, PEM (leaf first).
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; enables mTLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: refuse clients without a certificate (otherwise a
    /// certificate is optional, and checked when presented).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Take the username from a verified client certificate's subject common name (MQTT:
    /// instead of a password; Kafka: the principal).
    #[serde(default)]
    pub cert_subject_as_username: bool,
    /// How often the files are checked for changes, in seconds.
    #[serde(default = "default_reload_secs")]
    pub reload_interval_secs: u64,
}

fn default_reload_secs() -> u64 {
    10
}

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsError(String);

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Builds the rustls configuration the settings describe (TLS 1.2 and 1.3 only).
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(&settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| TlsError(format!("{}: {e}", settings.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError(format!("client CA: {e}")))?,
            )
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

fn modified(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    let paths = [
        Some(&settings.cert_file),
        Some(&settings.key_file),
        settings.client_ca_file.as_ref(),
    ];
    paths
        .iter()
        .map(|p| {
            p.and_then(|p| std::fs::metadata(p).ok())
                .and_then(|m| m.modified().ok())
        })
        .collect()
}

/// Accepts TLS connections with the configuration in force, reloading it when its files
/// change. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    settings: Arc<TlsSettings>,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert_file", &self.settings.cert_file)
            .finish()
    }
}

/// A TLS connection and, when it presented a verified certificate and the settings ask for
/// it, the username its subject gives.
pub type Accepted<S> = (TlsStream<S>, Option<String>);

impl TlsAcceptor {
    /// Loads the files now (an error stops the node at start-up) and starts watching them.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = server_config(&settings)?;
        let acceptor = TlsAcceptor {
            settings: Arc::new(settings),
            current: Arc::new(RwLock::new(config)),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(acceptor.clone().watch());
        }
        Ok(acceptor)
    }

    /// Checks the files every `reload_interval_secs`; a changed set that loads replaces the
    /// configuration, one that does not is logged and the old one stays. Ends when every
    /// other handle on this acceptor is gone.
    async fn watch(self) {
        let every = Duration::from_secs(self.settings.reload_interval_secs.max(1));
        let mut seen = modified(&self.settings);
        loop {
            tokio::time::sleep(every).await;
            if Arc::strong_count(&self.current) == 1 {
                return;
            }
            let now = modified(&self.settings);
            if now == seen {
                continue;
            }
            match server_config(&self.settings) {
                Ok(config) => {
                    *self.current.write() = config;
                    seen = now;
                    tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS files changed but do not load; the previous certificate stays");
                }
            }
        }
    }

    /// Runs the handshake on `stream`, within `timeout`.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        timeout: Duration,
    ) -> std::io::Result<Accepted<S>> {
        let config = self.current.read().clone();
        let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let user = if self.settings.cert_subject_as_username {
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| subject_common_name(c))
        } else {
            None
        };
        Ok((tls, user))
    }
}

/// The subject common name of a DER certificate.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
