//! HTTPS for the API server: certificates and the TLS listener.
//!
//! Plain HTTP without authentication is for loopback only; anywhere else the API server speaks
//! TLS (rustls with the `ring` provider, the one kube-rs already builds) and asks for a bearer
//! token (see [`crate::auth`]).
//!
//! * [`ensure_self_signed`] makes, once, a self-signed CA and a server certificate for the
//!   names clients use, in a PKI directory, and reuses them afterwards. The CA stays as long as
//!   the directory does, so kubeconfigs written earlier keep working; the server certificate is
//!   issued again (from the same CA) only when the names it must carry change.
//! * [`ServingCertificate::from_files`] loads a certificate chain and key a user brings.
//! * [`TlsListener`] accepts TCP connections and hands axum finished TLS streams. Handshakes
//!   run side by side, so a slow or silent client never holds up the others.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

pub use tokio_rustls::rustls::ServerConfig;

/// File names inside the PKI directory.
pub const CA_CERTIFICATE_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERTIFICATE_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
/// The names the current server certificate was issued for, one a line: the certificate is
/// issued again when they differ from the names asked for (parsing X.509 to find out would
/// cost a parser dependency for this one question).
pub const SERVER_NAMES_FILE: &str = "server.names";

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What the server presents, and what its clients should trust.
pub struct ServingCertificate {
    /// The rustls configuration to serve with (ALPN `http/1.1`).
    pub config: Arc<ServerConfig>,
    /// PEM certificates a client trusts to reach this server (a kubeconfig's
    /// `certificate-authority-data`).
    pub trusted_pem: String,
}

impl ServingCertificate {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key. Clients are told to
    /// trust `ca_file`, or without one the chain itself, which suits self-signed certificates
    /// and chains that end in their CA.
    pub fn from_files(
        certificate_file: &Path,
        key_file: &Path,
        ca_file: Option<&Path>,
    ) -> Result<ServingCertificate, TlsError> {
        let chain_pem = read_text(certificate_file)?;
        let key_pem = read_text(key_file)?;
        let trusted_pem = match ca_file {
            Some(path) => read_text(path)?,
            None => chain_pem.clone(),
        };
        if parse_certificates(&trusted_pem, ca_file.unwrap_or(certificate_file))?.is_empty() {
            return Err(TlsError::NoCertificate {
                path: ca_file.unwrap_or(certificate_file).to_path_buf(),
            });
        }
        Ok(ServingCertificate {
            config: server_config(&chain_pem, certificate_file, &key_pem, key_file)?,
            trusted_pem,
        })
    }
}

/// The CA and server certificate in `pki_directory`, made on first use: the server certificate
/// names `subject_alt_names` (IP addresses and DNS names alike).
pub fn ensure_self_signed(
    pki_directory: &Path,
    subject_alt_names: &[String],
) -> Result<ServingCertificate, TlsError> {
    std::fs::create_dir_all(pki_directory).map_err(|source| TlsError::File {
        action: "creating",
        path: pki_directory.to_path_buf(),
        source,
    })?;
    let ca_certificate_path = pki_directory.join(CA_CERTIFICATE_FILE);
    let ca_key_path = pki_directory.join(CA_KEY_FILE);
    let ca_key = if ca_certificate_path.exists() && ca_key_path.exists() {
        KeyPair::from_pem(&read_text(&ca_key_path)?)?
    } else {
        let ca_key = KeyPair::generate()?;
        let mut parameters = ca_parameters();
        set_validity(&mut parameters);
        let ca_certificate = parameters.self_signed(&ca_key)?;
        write_private(&ca_key_path, &ca_key.serialize_pem())?;
        write_public(&ca_certificate_path, &ca_certificate.pem())?;
        // A new CA invalidates whatever server certificate was there.
        let _ = std::fs::remove_file(pki_directory.join(SERVER_NAMES_FILE));
        ca_key
    };

    let names: BTreeSet<&str> = subject_alt_names.iter().map(String::as_str).collect();
    let names_record: String = names.iter().map(|name| format!("{name}\n")).collect();
    let certificate_path = pki_directory.join(SERVER_CERTIFICATE_FILE);
    let key_path = pki_directory.join(SERVER_KEY_FILE);
    let names_path = pki_directory.join(SERVER_NAMES_FILE);
    let current = certificate_path.exists()
        && key_path.exists()
        && std::fs::read_to_string(&names_path).ok().as_deref() == Some(names_record.as_str());
    if !current {
        let mut parameters = CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )?;
        parameters.distinguished_name = common_name("hollow API server");
        parameters.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        parameters.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        parameters.use_authority_key_identifier_extension = true;
        set_validity(&mut parameters);
        let key = KeyPair::generate()?;
        // The issuer is rebuilt from the same fixed parameters the CA was made with: its
        // subject name encodes to the same bytes, and the key identifies it.
        let issuer = Issuer::new(ca_parameters(), ca_key);
        let certificate = parameters.signed_by(&key, &issuer)?;
        write_private(&key_path, &key.serialize_pem())?;
        write_public(&certificate_path, &certificate.pem())?;
        write_public(&names_path, &names_record)?;
    }

    let mut chain_pem = read_text(&certificate_path)?;
    let trusted_pem = read_text(&ca_certificate_path)?;
    chain_pem.push_str(&trusted_pem);
    Ok(ServingCertificate {
        config: server_config(
            &chain_pem,
            &certificate_path,
            &read_text(&key_path)?,
            &key_path,
        )?,
        trusted_pem,
    })
}

/// The CA's parameters; fixed, so a server certificate can be issued again from the stored
/// CA key without parsing the stored CA certificate.
fn ca_parameters() -> CertificateParams {
    let mut parameters = CertificateParams::default();
    parameters.distinguished_name = common_name("hollow CA");
    parameters.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    parameters.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    parameters
}

/// Valid from yesterday (clocks disagree) for ten years: the material is reused across
/// restarts and nothing renews it.
fn set_validity(parameters: &mut CertificateParams) {
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let start = today.yesterday().unwrap_or(today);
    let end = start.saturating_add(jiff::Span::new().years(10));
    let at_midnight = |date: jiff::civil::Date| {
        rcgen::date_time_ymd(date.year().into(), date.month() as u8, date.day() as u8)
    };
    parameters.not_before = at_midnight(start);
    parameters.not_after = at_midnight(end);
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, DnValue::Utf8String(name.to_string()));
    distinguished_name
}

fn server_config(
    chain_pem: &str,
    chain_path: &Path,
    key_pem: &str,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = parse_certificates(chain_pem, chain_path)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: chain_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| TlsError::Pem {
        path: key_path.to_path_buf(),
        message: format!("no usable private key ({error})"),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    // HTTP/1.1 only: the router is served by axum's HTTP/1 connection handling.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_certificates(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not PEM certificates ({error})"),
        })
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file only its owner may read (keys, tokens).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_with_mode(path, contents, 0o600)
}

fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_with_mode(path, contents, 0o644)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key behind.
fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let write = || -> io::Result<()> {
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| TlsError::File {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

type Handshake = Pin<Box<dyn Future<Output = Option<(TlsStream<TcpStream>, SocketAddr)>> + Send>>;

/// A TCP listener that yields TLS streams whose handshake has finished.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<Handshake>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: FuturesUnordered::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.push(Box::pin(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }));
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Both branches are cancel-safe: pending handshakes live in `self`, so when axum drops
    // this future (to shut down) nothing is lost.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.start_handshake(stream, peer);
                    }
                    Err(error) => accept_failed(error).await,
                },
                Some(finished) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some(connection) = finished {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A connection that died while queued is the client's business; anything else (out of file
/// descriptors) would fail again at once, so wait a moment before accepting again.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn generated_material_is_reused_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let pki = directory.path().join("pki");
        let first = ensure_self_signed(&pki, &names(&["127.0.0.1", "localhost"])).unwrap();
        let server_certificate = std::fs::read(pki.join(SERVER_CERTIFICATE_FILE)).unwrap();
        let second = ensure_self_signed(&pki, &names(&["localhost", "127.0.0.1"])).unwrap();
        assert_eq!(first.trusted_pem, second.trusted_pem);
        assert_eq!(
            server_certificate,
            std::fs::read(pki.join(SERVER_CERTIFICATE_FILE)).unwrap(),
            "the same names reuse the server certificate"
        );
        for file in [CA_KEY_FILE, SERVER_KEY_FILE] {
            let mode = std::fs::metadata(pki.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn new_names_reissue_the_server_certificate_from_the_same_ca() {
        let directory = tempfile::tempdir().unwrap();
        let pki = directory.path();
        let first = ensure_self_signed(pki, &names(&["127.0.0.1"])).unwrap();
        let before = std::fs::read(pki.join(SERVER_CERTIFICATE_FILE)).unwrap();
        let second = ensure_self_signed(pki, &names(&["127.0.0.1", "hollow.example"])).unwrap();
        assert_eq!(first.trusted_pem, second.trusted_pem);
        assert_ne!(
            before,
            std::fs::read(pki.join(SERVER_CERTIFICATE_FILE)).unwrap()
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        assert!(matches!(
            ensure_self_signed(directory.path(), &names(&["not a name ü"])),
            Err(TlsError::Generate(_))
        ));
    }

    #[test]
    fn brought_files_need_certificates_and_a_key() {
        let directory = tempfile::tempdir().unwrap();
        let generated = directory.path().join("pki");
        ensure_self_signed(&generated, &names(&["127.0.0.1"])).unwrap();
        let certificate = generated.join(SERVER_CERTIFICATE_FILE);
        let key = generated.join(SERVER_KEY_FILE);
        let ca = generated.join(CA_CERTIFICATE_FILE);
        let brought = ServingCertificate::from_files(&certificate, &key, Some(&ca)).unwrap();
        assert_eq!(brought.trusted_pem, std::fs::read_to_string(&ca).unwrap());
        assert!(matches!(
            ServingCertificate::from_files(&certificate, &certificate, None),
            Err(TlsError::Pem { .. })
        ));
        assert!(matches!(
            ServingCertificate::from_files(&key, &key, None),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
