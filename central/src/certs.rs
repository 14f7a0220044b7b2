//! A development PKI: a CA, a server certificate and per-device client
//! certificates (`central certs ...`), and random device tokens.
//!
//! For development, CI and trials only. In production the operator's PKI
//! issues these (see `k8s/README.md`, "Certificates"); the service needs
//! nothing from this module at run time, only PEM files:
//!
//! - a server certificate whose SANs cover the names devices connect to;
//! - the CA that signs device certificates (`client_ca`);
//! - device certificates with subject CN `{site}/{device}`, extended key
//!   usage clientAuth.
//!
//! Files in `dir`: `ca.pem`, `ca.key`, `server.pem`, `server.key`,
//! `devices/{site}_{device}.pem` and `.key`. Keys are ECDSA P-256, written
//! with mode 0600. An existing CA is reused, never overwritten, so devices
//! issued earlier stay valid.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::tls::device_name;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CertsError + '_ {
    move |e| CertsError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Writes `contents` to `path` via a temporary file; keys get mode 0600.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertsError> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = Utc::now();
    let yesterday = now - chrono::Duration::days(1);
    let until = now + chrono::Duration::days(i64::from(days));
    let ymd =
        |d: chrono::DateTime<Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(yesterday);
    params.not_after = ymd(until);
}

/// The files of a development PKI in one folder.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
}

impl DevPki {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// `(cert, key)` of a device.
    pub fn device_files(&self, site: &SiteId, device: &DeviceId) -> (PathBuf, PathBuf) {
        let stem = format!("{site}_{device}");
        let dir = self.dir.join("devices");
        (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        )
    }

    /// Creates the CA unless one exists; returns whether it was created.
    pub fn ensure_ca(&self) -> Result<bool, CertsError> {
        if self.ca_cert().is_file() && self.ca_key().is_file() {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let key = KeyPair::generate()?;
        let params = ca_params()?;
        let cert = params.self_signed(&key)?;
        write_file(&self.ca_key(), &key.serialize_pem(), true)?;
        write_file(&self.ca_cert(), &cert.pem(), false)?;
        Ok(true)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CertsError> {
        let key_pem = fs::read_to_string(self.ca_key()).map_err(io(&self.ca_key()))?;
        let cert_pem = fs::read_to_string(self.ca_cert()).map_err(io(&self.ca_cert()))?;
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&cert_pem, key)?)
    }

    /// Issues (or re-issues) the server certificate for the given DNS names
    /// and IP addresses (at least one).
    pub fn issue_server(&self, names: &[String], days: u32) -> Result<(), CertsError> {
        if names.is_empty() {
            return Err(CertsError::Invalid(
                "a server certificate needs at least one name".into(),
            ));
        }
        let issuer = self.issuer()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_file(&self.server_key(), &key.serialize_pem(), true)?;
        write_file(&self.server_cert(), &cert.pem(), false)
    }

    /// Issues a device client certificate with CN `{site}/{device}`;
    /// returns `(cert, key)` paths.
    pub fn issue_device(
        &self,
        site: &SiteId,
        device: &DeviceId,
        days: u32,
    ) -> Result<(PathBuf, PathBuf), CertsError> {
        let issuer = self.issuer()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, device_name(site, device));
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, site.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = self.device_files(site, device);
        let dir = self.dir.join("devices");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&cert_path, &cert.pem(), false)?;
        Ok((cert_path, key_path))
    }
}

fn ca_params() -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "inspection-system development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 3650);
    Ok(params)
}

/// A new random token: 32 bytes as 64 lowercase hex characters.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    inspection_core::wire::Sha256Hex::from_digest(&bytes).to_string()
}

/// Appends a device's token hash to a credentials file (created if absent).
pub fn append_device_credential(
    credentials: &Path,
    site: &SiteId,
    device: &DeviceId,
    token: &str,
) -> Result<(), CertsError> {
    append(
        credentials,
        &format!(
            "\n[[device]]\nsite = \"{site}\"\ndevice = \"{device}\"\ntoken_sha256 = \"{}\"\n",
            crate::auth::hash_token(token)
        ),
    )
}

/// Appends a service's token hash to a credentials file (created if absent).
pub fn append_service_credential(
    credentials: &Path,
    name: &str,
    token: &str,
) -> Result<(), CertsError> {
    if name.is_empty() || name.contains(['/', '"', '\\', '\n']) || name.len() > 64 {
        return Err(CertsError::Invalid(format!(
            "service name {name:?} must be 1-64 characters without '/' or quotes"
        )));
    }
    append(
        credentials,
        &format!(
            "\n[[service]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n",
            crate::auth::hash_token(token)
        ),
    )
}

/// Appends a staff API token's hash to an API tokens file (created if
/// absent), after checking that the file with it still loads.
pub fn append_api_token(
    tokens: &Path,
    name: &str,
    role: crate::api::Role,
    sites: &[String],
    token: &str,
) -> Result<(), CertsError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(CertsError::Invalid(format!(
            "token name {name:?} must be 1-64 characters without spaces or quotes"
        )));
    }
    if sites.is_empty() || sites.iter().any(|s| s.contains(['"', '\\', '\n'])) {
        return Err(CertsError::Invalid(
            "name at least one site (or *), without quotes".into(),
        ));
    }
    let entry = format!(
        "\n[[token]]\nname = \"{name}\"\nrole = \"{}\"\nsites = [{}]\ntoken_sha256 = \"{}\"\n",
        role.as_str(),
        sites
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", "),
        crate::auth::hash_token(token)
    );
    let mut text = match fs::read_to_string(tokens) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Staff API tokens: hashes only (see central/src/api/auth.rs).\n".into()
        }
        Err(e) => return Err(io(tokens)(e)),
    };
    text.push_str(&entry);
    // The result must still load: refuse to write a file the API rejects.
    crate::api::ApiTokens::parse(&text)
        .map_err(|e| CertsError::Invalid(format!("{}: {e}", tokens.display())))?;
    write_file(tokens, &text, true)
}

fn append(path: &Path, entry: &str) -> Result<(), CertsError> {
    let mut text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Token hashes for the broker and upload roles (see central/src/auth.rs).\n".into()
        }
        Err(e) => return Err(io(path)(e)),
    };
    text.push_str(entry);
    // The result must still load: refuse to write a file the service rejects.
    crate::auth::Credentials::from_toml(&text, &path.display().to_string())
        .map_err(|e| CertsError::Invalid(e.to_string()))?;
    write_file(path, &text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;

    #[test]
    fn api_tokens_are_appended_as_hashes_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-tokens.toml");
        let (a, b) = (new_token(), new_token());
        append_api_token(
            &path,
            "billing",
            crate::api::Role::Viewer,
            &["de-muc-airport".into()],
            &a,
        )
        .expect("first");
        append_api_token(&path, "ops", crate::api::Role::Admin, &["*".into()], &b).expect("second");
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a) && !text.contains(&b), "hashes only");
        assert_eq!(crate::api::ApiTokens::load(&path).unwrap().len(), 2);
        // A second account with the same name is refused, the file unchanged.
        assert!(
            append_api_token(
                &path,
                "ops",
                crate::api::Role::Viewer,
                &["*".into()],
                &new_token()
            )
            .is_err()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        assert!(
            append_api_token(&path, "x y", crate::api::Role::Viewer, &["*".into()], &a).is_err()
        );
    }

    #[test]
    fn dev_pki_issues_certificates_that_rustls_accepts_and_that_name_the_device() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::new(dir.path());
        assert!(pki.ensure_ca().expect("ca"));
        assert!(
            !pki.ensure_ca().expect("ca again"),
            "an existing CA is reused"
        );
        pki.issue_server(&["localhost".into(), "127.0.0.1".into()], 30)
            .expect("server");
        let site = SiteId::new("de-muc-airport").expect("id");
        let device = DeviceId::new("bay-03").expect("id");
        let (cert, key) = pki.issue_device(&site, &device, 30).expect("device");

        let server = tls::ServerTlsConfig {
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_ca: Some(pki.ca_cert()),
            client_cert_optional: false,
        };
        server.server_config(&[]).expect("server config builds");
        tls::client_config(&pki.ca_cert(), Some((&cert, &key))).expect("client config builds");
        let der = tls::load_certs(&cert).expect("pem");
        assert_eq!(
            tls::certificate_device(&der[0]).expect("identity"),
            (site.clone(), device.clone())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "keys are private");
        }

        let creds = dir.path().join("credentials.toml");
        let token = new_token();
        append_device_credential(&creds, &site, &device, &token).expect("append");
        append_service_credential(&creds, "bridge", "bridge-token").expect("append");
        let loaded = crate::auth::Credentials::load(&creds).expect("loads");
        assert!(
            loaded
                .authenticate("de-muc-airport/bay-03", token.as_bytes())
                .is_some()
        );
        assert!(
            append_device_credential(&creds, &site, &device, "again").is_err(),
            "a second token for the same device is refused"
        );
    }
}
