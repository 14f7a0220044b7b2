//! The device's TLS client configuration: central's CA as the only trust
//! anchor, the device certificate as the client identity. rustls with the
//! aws-lc-rs provider named explicitly (one provider in the workspace).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::UplinkError;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> UplinkError {
    UplinkError::Tls(format!("{}: {reason}", path.display()))
}

/// Every certificate in a PEM file (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, UplinkError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, UplinkError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(path, e))
}

/// A client config trusting only `ca` and presenting `identity` (cert, key)
/// when given. No ALPN: MQTT needs none and the upload speaks HTTP/1.1.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, UplinkError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| tls_error(ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UplinkError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| tls_error(key, e)),
        None => Ok(builder.with_no_client_auth()),
    }
}
