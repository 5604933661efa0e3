//! TLS settings shared by the daemon (`tls://`, `https://`) and the tools:
//! the one crypto provider, certificates and keys from PEM, the self-signed
//! certificate of a `serve` without `--tls-cert`, the reloadable
//! certificate every reactor's handshakes read, and the client's
//! verification choices.
//!
//! Nothing here does I/O on a socket: the connections drive rustls's
//! state machine themselves (`services::tls`, `probe::tls`).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// What a finished handshake negotiated, for logs, `status` and
/// `https://`'s JSON `tls` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    /// The key exchange group (`X25519`).
    pub group: String,
    /// The name the client asked for, if it sent one.
    pub sni: Option<String>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// From accept to the handshake's end.
    pub handshake: Duration,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} handshake {:.1}ms",
            self.version,
            self.cipher,
            self.group,
            self.handshake.as_secs_f64() * 1e3
        )?;
        if let Some(sni) = &self.sni {
            write!(f, " sni {sni}")?;
        }
        if let Some(alpn) = &self.alpn {
            write!(f, " alpn {alpn}")?;
        }
        Ok(())
    }
}

/// How long a handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The names the self-signed certificate is good for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The variable an upgrade passes the self-signed certificate and key in
/// (PEM), so the new process presents the certificate clients trusted.
pub const INHERITED_SELF_SIGNED: &str = "ECHOPLEX_TLS_SELF_SIGNED";

/// The one crypto provider: ring, passed to every config explicitly, so no
/// process-wide default is installed and only ring is compiled in.
/// rustls 0.23.48 deprecates it for lacking the post-quantum hybrid group
/// (X25519MLKEM768, aws-lc-rs only); X25519, P-256 and P-384 remain, which
/// is what nginx with OpenSSL 3.0 negotiates too.
///
/// Key exchange: X25519 first, then P-256, then P-384. rustls's ring list
/// puts P-384 first, which two rustls peers (our tools against our daemon)
/// then agree on at several times X25519's cost (a profile of `bench
/// --churn 1` spent 70 % of the server's CPU in P-384); OpenSSL and nginx
/// prefer X25519 too, so comparisons do the same work.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    Arc::new(provider)
}

/// TLS 1.3 and 1.2, nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// SHA-256 of a certificate, as `openssl x509 -fingerprint -sha256` shows it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// `--tls-cert` and `--tls-key`: read again on every reload.
    Files {
        /// The certificate chain, end entity first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// Made at start-up (or inherited from the process we replace).
    SelfSigned {
        /// The certificate, PEM.
        cert_pem: String,
        /// The key, PEM: never logged.
        key_pem: String,
    },
}

/// A certificate with its key, ready for handshakes.
pub struct Loaded {
    /// What rustls presents.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the end-entity certificate.
    pub fingerprint: String,
    /// Said once at start-up or reload (a key file others can read).
    pub warnings: Vec<String>,
}

/// Largest certificate or key file read (a long chain is a few KiB).
const PEM_LIMIT: u64 = 1 << 20;

/// Reads a certificate or key file. Symlinks are followed (certbot's
/// `live/` directory is made of them), but only a regular file is read,
/// opened non-blocking and bounded: a FIFO or device at the path cannot
/// stall a reload on the reactor's thread.
fn read_pem_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > PEM_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {PEM_LIMIT} bytes: not a PEM certificate or key"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(PEM_LIMIT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn io_text(path: &Path, err: &io::Error) -> String {
    format!("{}: {}", path.display(), crate::error::describe(err))
}

/// A certificate or key file's bytes, read as `read_pem_file` does.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    read_pem_file(path).map_err(|err| io_text(path, &err))
}

/// Reads a PEM certificate chain; at least one certificate.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem_file(path).map_err(|err| io_text(path, &err))?;
    certs_from_pem(&pem).map_err(|err| format!("{}: {err}", path.display()))
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("not a PEM certificate: {err}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (PEM 'BEGIN CERTIFICATE' expected)".into());
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    // The key's bytes never go into a message: only what kind of problem.
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no private key in it (PEM 'BEGIN PRIVATE KEY', 'EC' or 'RSA' expected)".to_string()
        }
        _ => "not a readable PEM private key".to_string(),
    })
}

fn certified(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Loaded, String> {
    let fingerprint = fingerprint(&certs[0]);
    let key = CertifiedKey::from_der(certs, key, &provider()).map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_string(),
        other => format!("unusable certificate or key: {other}"),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        fingerprint,
        warnings: Vec::new(),
    })
}

impl Source {
    /// Reads (or parses) the certificate and key and checks they match.
    pub fn load(&self) -> Result<Loaded, String> {
        match self {
            Source::Files { cert, key } => {
                let certs = read_certs(cert)?;
                let pem = read_pem_file(key).map_err(|err| io_text(key, &err))?;
                let mut warnings = Vec::new();
                if let Ok(meta) = fs::metadata(key) {
                    if meta.mode() & 0o077 != 0 {
                        warnings.push(format!(
                            "the key file {} can be read by others (mode {:o}): chmod 600 it",
                            key.display(),
                            meta.mode() & 0o777
                        ));
                    }
                }
                let der = key_from_pem(&pem).map_err(|err| format!("{}: {err}", key.display()))?;
                let mut loaded = certified(certs, der)
                    .map_err(|err| format!("{} and {}: {err}", cert.display(), key.display()))?;
                loaded.warnings = warnings;
                Ok(loaded)
            }
            Source::SelfSigned { cert_pem, key_pem } => {
                let certs = certs_from_pem(cert_pem.as_bytes())?;
                certified(certs, key_from_pem(key_pem.as_bytes())?)
            }
        }
    }

    /// A new self-signed certificate (ECDSA P-256) for `SELF_SIGNED_NAMES`.
    pub fn self_signed() -> Result<Source, String> {
        let failed = |err: rcgen::Error| format!("cannot make a self-signed certificate: {err}");
        let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "echoplex self-signed");
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Source::SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The self-signed certificate an upgrade passed us, in the
    /// `INHERITED_SELF_SIGNED` form (certificate PEM then key PEM).
    pub fn inherited(value: &str) -> Option<Source> {
        let split = value.find("-----BEGIN PRIVATE KEY-----")?;
        Some(Source::SelfSigned {
            cert_pem: value[..split].to_string(),
            key_pem: value[split..].to_string(),
        })
    }

    /// What an upgrade passes on: the self-signed pair; files are read anew.
    pub fn to_inherit(&self) -> Option<String> {
        match self {
            Source::SelfSigned { cert_pem, key_pem } => Some(format!("{cert_pem}{key_pem}")),
            Source::Files { .. } => None,
        }
    }

    /// The certificate as PEM, for `--tls-cert-out`.
    pub fn cert_pem(&self) -> Option<&str> {
        match self {
            Source::SelfSigned { cert_pem, .. } => Some(cert_pem),
            Source::Files { .. } => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Files { cert, key } => write!(f, "{} ({})", cert.display(), key.display()),
            Source::SelfSigned { .. } => f.write_str("self-signed for localhost, 127.0.0.1, ::1"),
        }
    }
}

/// The certificate every handshake presents, shared by all reactors: a
/// reload swaps it, and handshakes that start afterwards see the new one
/// (established connections keep what they negotiated).
pub struct Certs {
    source: Source,
    current: RwLock<Arc<CertifiedKey>>,
    fingerprint: RwLock<String>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Certs")
            .field("source", &self.source.to_string())
            .finish()
    }
}

impl Certs {
    /// Loads the first certificate; an error is a startup failure.
    pub fn new(source: Source) -> Result<(Certs, Loaded), String> {
        let loaded = source.load()?;
        let certs = Certs {
            current: RwLock::new(loaded.key.clone()),
            fingerprint: RwLock::new(loaded.fingerprint.clone()),
            source,
        };
        Ok((certs, loaded))
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// SHA-256 of the certificate presented now.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; on success new handshakes present the new
    /// certificate, on failure the old one stays and the reason is returned.
    pub fn reload(&self) -> Result<Loaded, String> {
        let loaded = self.source.load()?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.key.clone();
        *self.fingerprint.write().unwrap_or_else(|p| p.into_inner()) = loaded.fingerprint.clone();
        Ok(loaded)
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The server side's config: TLS 1.2 and 1.3, the shared certificate,
/// ALPN protocols offered in order of preference (`http/1.1` on https://).
pub fn server_config(certs: Arc<Certs>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| format!("TLS: {err}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// What every TLS endpoint of a `serve` shares, across reactors: the
/// certificate (one reload for all) and the configs built on it (one
/// session cache for all).
#[derive(Debug)]
pub struct ServerTls {
    /// The certificate presented, reloadable.
    pub certs: Arc<Certs>,
    /// `tls://`: no ALPN.
    pub echo: Arc<ServerConfig>,
    /// `https://`: ALPN `http/1.1`.
    pub http: Arc<ServerConfig>,
}

impl ServerTls {
    /// The configs over `certs`.
    pub fn new(certs: Arc<Certs>) -> Result<ServerTls, String> {
        Ok(ServerTls {
            echo: server_config(certs.clone(), &[])?,
            http: server_config(certs.clone(), &[b"http/1.1"])?,
            certs,
        })
    }
}

/// How a tool checks the server it talks to.
#[derive(Clone, Debug, Default)]
pub struct Verify {
    /// Trust these certificates (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Check nothing (`-k`, as curl).
    pub insecure: bool,
    /// The name to send and verify instead of the endpoint's host.
    pub sni: Option<String>,
    /// Offer session resumption on reconnects (bench --churn).
    pub resume: bool,
}

/// The client side's config for `verify`.
pub fn client_config(verify: &Verify, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| format!("TLS: {err}"))?;
    let mut config = if verify.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &verify.ca {
            Some(path) => {
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|err| format!("{}: {err}", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "no trusted roots found on this system: use --tls-ca FILE or -k".into(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !verify.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The name a client sends (SNI) and verifies: `--tls-sni`, else the host
/// as written in the endpoint (an IP address is verified as one, not sent).
pub fn server_name(verify: &Verify, host: &str) -> Result<ServerName<'static>, String> {
    let name = verify.sni.as_deref().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string()).map_err(|_| format!("'{name}' is not a server name"))
}

/// `-k`: accepts any certificate (signatures are still checked, so the
/// handshake is a real one).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `TLSv1.3`, as openssl names versions.
pub fn version_name(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(_) => "TLS?",
        None => "-",
    }
}

/// The key exchange group's name (`X25519`, `secp256r1`).
pub fn group_name(group: Option<&'static dyn rustls::crypto::SupportedKxGroup>) -> String {
    group.map_or("-".into(), |g| {
        let name = g.name();
        name.as_str()
            .map_or_else(|| format!("{name:?}"), str::to_string)
    })
}

/// The cipher suite's IANA name (`TLS13_AES_128_GCM_SHA256`).
pub fn cipher_name(suite: Option<rustls::SupportedCipherSuite>) -> String {
    suite.map_or("-".into(), |s| {
        s.suite().as_str().unwrap_or("unknown").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_and_passes_through_the_upgrade_form() {
        let source = Source::self_signed().expect("self-signed");
        let loaded = source.load().expect("loads");
        assert_eq!(loaded.fingerprint.len(), 32 * 3 - 1);
        let passed = source.to_inherit().expect("self-signed passes on");
        let again = Source::inherited(&passed).expect("parses");
        assert_eq!(again.load().expect("loads").fingerprint, loaded.fingerprint);
    }

    #[test]
    fn a_fifo_for_a_key_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("echoplex-tls-fifo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let fifo = dir.join("key.pem");
        // mkfifo(1), not libc: unsafe lives under src/sys only.
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        let err = read_pem(&fifo).expect_err("a FIFO is refused");
        assert!(err.contains("not a regular file"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (Source::SelfSigned { cert_pem, .. }, Source::SelfSigned { key_pem, .. }) = (
            Source::self_signed().expect("one"),
            Source::self_signed().expect("two"),
        ) else {
            unreachable!("self_signed makes SelfSigned");
        };
        let mixed = Source::SelfSigned { cert_pem, key_pem };
        let err = mixed.load().err().expect("mismatch refused");
        assert!(err.contains("does not match"), "{err}");
    }
}
