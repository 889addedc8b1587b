//! A libpq connection URL to a tokio-postgres configuration and a TLS connector (rustls), with
//! libpq's meaning of `sslmode` and `sslrootcert`, for the store and for capture sources.
//!
//! | `sslmode` | bitacora (as libpq) |
//! |---|---|
//! | `disable` | plain TCP |
//! | `allow`, `prefer` (the default) | TLS when the server offers it, else plain; the certificate is not checked |
//! | `require` | TLS or no connection; the certificate is not checked |
//! | `verify-ca` | TLS; the certificate must chain to a root in `sslrootcert` |
//! | `verify-full` | as `verify-ca`, and the certificate must name the host connected to |
//!
//! As in libpq, `require` with an `sslrootcert` checks the chain like `verify-ca`, the default
//! root file is `~/.postgresql/root.crt`, and `sslrootcert=system` trusts the usual public
//! certificate authorities (here the Mozilla set built into the binary, `webpki-roots`).
//! Client certificates (`sslcert`, `sslkey`) are not supported and are refused, not ignored.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// What a connection needs: the parsed configuration and the TLS connector for its `sslmode`.
pub struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub ssl_mode: SslMode,
}

/// Parses a libpq URL (`postgres://user@host/db?sslmode=verify-full&sslrootcert=ca.pem`) or
/// key/value string (`host=... sslmode=require`). Errors never repeat the URL, which may hold
/// a password.
pub fn parse(url: &str) -> Result<Connector, String> {
    let (rest, params) = take_params(url, &["sslmode", "sslrootcert", "sslcert", "sslkey"]);
    if params.iter().any(|(k, _)| k == "sslcert" || k == "sslkey") {
        return Err("client certificates (sslcert, sslkey) are not supported".into());
    }
    let value = |key: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let ssl_mode = match value("sslmode") {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => WireMode::Disable,
        SslMode::Prefer => WireMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root_file = value("sslrootcert");
    let verifier: Arc<dyn ServerCertVerifier> = match (ssl_mode, root_file) {
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => {
            Arc::new(Unchecked(provider.clone()))
        }
        (SslMode::VerifyFull, roots) => web_pki(roots, &provider)?,
        (_, roots) => Arc::new(AnyHostName(web_pki(roots, &provider)?)),
    };
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connector {
        config,
        tls: MakeRustlsConnect::new(tls),
        ssl_mode,
    })
}

/// Removes `keys` from the URL's query or the key/value string, returning what is left and the
/// removed pairs in order. tokio-postgres would refuse the ones it does not know.
fn take_params(url: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), taken);
        };
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if keys.contains(&k.as_ref()) {
                taken.push((k.into_owned(), v.into_owned()));
            } else {
                kept.append_pair(&k, &v);
            }
        }
        let kept = kept.finish();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        };
        return (rest, taken);
    }
    let mut rest = Vec::new();
    for token in url.split_whitespace() {
        match token.split_once('=') {
            Some((k, v)) if keys.contains(&k) => {
                taken.push((k.to_owned(), v.trim_matches('\'').to_owned()));
            }
            _ => rest.push(token),
        }
    }
    (rest.join(" "), taken)
}

/// The roots to check a chain against: `sslrootcert`'s PEM file, libpq's default file, or the
/// public authorities for `system`.
fn web_pki(
    root_file: Option<String>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    match root_file.as_deref() {
        Some("system") => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        file => {
            let path = match file {
                Some(file) => PathBuf::from(file),
                None => std::env::home_dir()
                    .unwrap_or_default()
                    .join(".postgresql/root.crt"),
            };
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "sslrootcert `{}`: cannot read PEM certificates: {e}",
                        path.display()
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert `{}` holds no usable certificate",
                    path.display()
                ));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS roots: {e}"))
}

/// `prefer` and `require` without roots: encrypted, but whoever answers is believed (libpq's
/// meaning). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not compared.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
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
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, taken) = take_params(
            "postgres://u:p@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fca.pem",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(rest, "postgres://u:p@db:5432/app?application_name=x");
        assert_eq!(
            taken,
            [
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/ca.pem".to_owned())
            ]
        );
        let (rest, taken) = take_params("host=db user=u sslmode='require'", &["sslmode"]);
        assert_eq!(rest, "host=db user=u");
        assert_eq!(taken, [("sslmode".to_owned(), "require".to_owned())]);
        let (rest, taken) = take_params("postgres://db/app", &["sslmode"]);
        assert_eq!((rest.as_str(), taken.len()), ("postgres://db/app", 0));
    }

    #[test]
    fn modes_map_to_the_wire_and_bad_ones_are_named() {
        let mode = |url: &str| parse(url).map(|c| (c.ssl_mode, c.config.get_ssl_mode()));
        assert_eq!(
            mode("postgres://db/app").unwrap(),
            (SslMode::Prefer, WireMode::Prefer)
        );
        assert_eq!(
            mode("postgres://db/app?sslmode=disable").unwrap(),
            (SslMode::Disable, WireMode::Disable)
        );
        assert_eq!(
            mode("postgres://db/app?sslmode=verify-full&sslrootcert=system").unwrap(),
            (SslMode::VerifyFull, WireMode::Require)
        );
        let err = mode("postgres://u:secret@db/app?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(
            err.contains("sometimes") && !err.contains("secret"),
            "{err}"
        );
        let err = mode("postgres://db/app?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent.pem"), "{err}");
        let err = mode("postgres://db/app?sslmode=require&sslcert=c.pem")
            .err()
            .unwrap();
        assert!(err.contains("client certificates"), "{err}");
    }
}
