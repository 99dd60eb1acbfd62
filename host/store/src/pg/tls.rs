//! TLS to the PostgreSQL server, with libpq's `sslmode` meanings, on
//! rustls (no system OpenSSL).
//!
//! The connection URL's `sslmode` and `sslrootcert` parameters (or, when
//! the URL has none, libpq's `PGSSLMODE` and `PGSSLROOTCERT`) choose:
//!
//! | `sslmode` | the connection | the server's certificate |
//! |---|---|---|
//! | `disable`, `allow`, `prefer` (and no `sslmode`) | plain | — |
//! | `require` | TLS or refused | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | TLS or refused | signed by a trusted root |
//! | `verify-full` | TLS or refused | signed by a trusted root and naming the host connected to |
//!
//! The trusted roots are the PEM certificates in `sslrootcert`, else the
//! Mozilla root set built into leadgate (`webpki-roots`). Unlike libpq,
//! `prefer` never tries TLS: a connection is encrypted exactly when the URL
//! asks for it, so a mistyped certificate never falls back to plaintext.

use crate::StoreError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::Arc;

/// How much transport security a connection has (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS (`disable`, `allow`, `prefer`, or none given).
    Disable,
    /// TLS; the certificate is not checked.
    Require,
    /// TLS; the certificate chains to a trusted root.
    VerifyCa,
    /// TLS; the certificate chains to a trusted root and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, StoreError> {
        match value {
            "disable" | "allow" | "prefer" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(StoreError::PgTls {
                setting: "sslmode",
                reason: format!(
                    "{other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ),
            }),
        }
    }
}

/// What a connection URL says about TLS, taken off the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL's query: the
/// URL without them (for the driver, which would treat TLS its own way),
/// and the settings, with libpq's environment variables for what the URL
/// leaves out.
pub(crate) fn split_url(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, TlsSettings), StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| StoreError::PgTls {
                    setting: if key == "sslmode" {
                        "sslmode"
                    } else {
                        "sslrootcert"
                    },
                    reason: "the value is not UTF-8 once percent-decoded".into(),
                })
        };
        match key {
            "sslmode" => mode = Some(decoded()?),
            "sslrootcert" => root_cert = Some(decoded()?),
            _ => kept.push(pair),
        }
    }
    let mode = mode.or_else(|| env("PGSSLMODE").filter(|v| !v.is_empty()));
    let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT").filter(|v| !v.is_empty()));
    let mode = match mode {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::Disable,
    };
    // libpq: `require` with a root certificate checks the chain.
    let mode = if mode == SslMode::Require && root_cert.is_some() {
        SslMode::VerifyCa
    } else {
        mode
    };
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, TlsSettings { mode, root_cert }))
}

/// How a store opens its connections: plain, or TLS as the settings say.
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Connector {
    /// The connector for `settings`; refuses an unreadable or empty root
    /// certificate file, naming it.
    pub(crate) fn new(settings: &TlsSettings) -> Result<Connector, StoreError> {
        if settings.mode == SslMode::Disable {
            return Ok(Connector::Plain);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots(settings.root_cert.as_deref())?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::PgTls {
                setting: "sslmode",
                reason: format!("no TLS protocol version available: {e}"),
            })?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| StoreError::PgTls {
                setting: "sslrootcert",
                reason: format!("cannot build the certificate verifier: {e}"),
            })?;
        let config = match settings.mode {
            SslMode::VerifyFull => builder.with_webpki_verifier(webpki).with_no_client_auth(),
            mode => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    provider,
                    check_chain: mode == SslMode::VerifyCa,
                }))
                .with_no_client_auth(),
        };
        Ok(Connector::Tls(
            tokio_postgres_rustls::MakeRustlsConnect::new(config),
        ))
    }

    /// The driver's `sslmode` for this connector: TLS is required
    /// exactly when a connector for it was made.
    pub(crate) fn driver_mode(&self) -> postgres::config::SslMode {
        match self {
            Connector::Plain => postgres::config::SslMode::Disable,
            Connector::Tls(_) => postgres::config::SslMode::Require,
        }
    }

    /// Opens a connection with `config`.
    pub(crate) fn connect(
        &self,
        config: &postgres::Config,
    ) -> Result<postgres::Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(postgres::NoTls),
            Connector::Tls(tls) => config.connect(tls.clone()),
        }
    }
}

/// The trusted roots: the certificates in `path`, else Mozilla's.
fn roots(path: Option<&str>) -> Result<RootCertStore, StoreError> {
    let Some(path) = path else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let refuse = |reason: String| StoreError::PgTls {
        setting: "sslrootcert",
        reason: format!("{path}: {reason}"),
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| refuse(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| refuse(e.to_string()))?;
        store
            .add(cert)
            .map_err(|e| refuse(format!("a certificate is not usable as a root: {e}")))?;
    }
    if store.is_empty() {
        return Err(refuse("holds no PEM certificate".into()));
    }
    Ok(store)
}

/// `require` and `verify-ca`: the handshake's signatures are checked
/// always; the chain only for `verify-ca`; the host name never.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    check_chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn tls_parameters_come_off_the_url_and_the_rest_stays() {
        let (url, s) = split_url(
            "postgres://u@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
            none,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@h/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (url, s) = split_url("postgres://u@h/db", none).unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(s.mode, SslMode::Disable);
        let (url, s) = split_url("postgres://u@h/db?sslmode=prefer", none).unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(s.mode, SslMode::Disable);
    }

    #[test]
    fn the_environment_fills_in_what_the_url_leaves_out() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_string()),
            "PGSSLROOTCERT" => Some("/ca.pem".to_string()),
            _ => None,
        };
        // require with a root certificate checks the chain, as libpq does.
        let (_, s) = split_url("postgres://u@h/db", env).unwrap();
        assert_eq!(s.mode, SslMode::VerifyCa);
        let (_, s) = split_url("postgres://u@h/db?sslmode=disable", env).unwrap();
        assert_eq!(s.mode, SslMode::Disable);
        let (_, s) = split_url("postgres://u@h/db?sslmode=require", none).unwrap();
        assert_eq!(s.mode, SslMode::Require);
    }

    #[test]
    fn a_bad_setting_is_refused_naming_it() {
        let err = split_url("postgres://u@h/db?sslmode=always", none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode") && err.contains("always"), "{err}");
        let settings = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let err = Connector::new(&settings).err().unwrap().to_string();
        assert!(
            err.contains("sslrootcert") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }
}
