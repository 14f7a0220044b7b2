//! TLS for the device-facing listeners (MQTT gateway, image upload) and the
//! clients that talk to them: PEM loading, server configs that verify device
//! client certificates against the operator's CA, and the device identity a
//! certificate carries.
//!
//! One rustls (0.23) and one crypto provider (aws-lc-rs) in the whole
//! workspace; every config here names the provider explicitly, and
//! [`install_crypto_provider`] sets the process default for libraries that
//! build their own configs (rumqttc, reqwest).
//!
//! A device certificate names its device in the subject common name as
//! `{site}/{device}` (both in the id alphabet, which has no `/`), the same
//! string the device uses as its MQTT user name. mosquitto's
//! `use_identity_as_username` turns it into the user name too, so one ACL
//! pattern (`inspect/v1/%u/...`) serves both brokers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inspection_core::ids::{DeviceId, SiteId};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS file or config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("client certificate: {0}")]
    Identity(String),
}

impl TlsError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "read",
            TlsError::NoCertificate { .. } => "no_certificate",
            TlsError::Config(_) => "config",
            TlsError::Identity(_) => "identity",
        }
    }
}

/// The provider every config of this workspace uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process-wide default provider (idempotent), for
/// libraries that build TLS configs without naming one.
pub fn install_crypto_provider() {
    // Err means a default is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A root store holding the CA certificates of a PEM file.
pub fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA in {}: {e}", ca.display())))?;
    }
    Ok(roots)
}

/// The TLS files of a device-facing listener, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA that signs device certificates. When set, a client certificate is
    /// verified against it (and required unless `client_cert_optional`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Accept connections without a client certificate (they must then
    /// authenticate with a user name and token). Default false.
    #[serde(default)]
    pub client_cert_optional: bool,
}

impl ServerTlsConfig {
    /// Problems with the files, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.client_cert_optional && self.client_ca.is_none() {
            problems.push(format!(
                "{at}.client_cert_optional: only meaningful with {at}.client_ca"
            ));
        }
        if check_files {
            let files = [
                ("cert", Some(&self.cert)),
                ("key", Some(&self.key)),
                ("client_ca", self.client_ca.as_ref()),
            ];
            for (key, path) in files {
                if let Some(path) = path
                    && !path.is_file()
                {
                    problems.push(format!(
                        "{at}.{key}: {} is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        problems
    }

    /// The rustls server config, with `alpn` protocols (empty for MQTT).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = Arc::new(root_store(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if self.client_cert_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.key.display())))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// A rustls client config trusting `ca`, presenting `identity` (cert, key)
/// when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(root_store(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", key.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Splits `{site}/{device}` (a certificate common name or an MQTT user
/// name) into checked ids.
pub fn parse_device_name(name: &str) -> Option<(SiteId, DeviceId)> {
    let (site, device) = name.split_once('/')?;
    Some((SiteId::new(site).ok()?, DeviceId::new(device).ok()?))
}

/// The `{site}/{device}` name for a device.
pub fn device_name(site: &SiteId, device: &DeviceId) -> String {
    format!("{site}/{device}")
}

/// The device a verified client certificate names in its subject CN.
pub fn certificate_device(cert: &CertificateDer<'_>) -> Result<(SiteId, DeviceId), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Identity(format!("unparsable certificate: {e}")))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::Identity("no common name in the subject".into()))?
        .as_str()
        .map_err(|e| TlsError::Identity(format!("common name is not a string: {e}")))?;
    parse_device_name(cn).ok_or_else(|| {
        TlsError::Identity(format!(
            "common name {:?} is not `site/device`",
            cn.chars().take(140).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip_and_refuse_other_shapes() {
        let (site, device) = parse_device_name("de-muc-airport/bay-03").expect("valid");
        assert_eq!(device_name(&site, &device), "de-muc-airport/bay-03");
        for bad in ["", "site", "a/b/c", "/dev", "site/", "si te/dev", "+/#"] {
            assert!(parse_device_name(bad).is_none(), "{bad:?}");
        }
    }
}
