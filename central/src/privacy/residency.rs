//! Where personal data may be sent: the residency guard.
//!
//! ```text
//! DESIGN
//!
//! Images (people, plates), plates and reports are personal data. Under
//! `[residency] region = "eu"` (the default) every endpoint that receives
//! them must be known to be in the EU, or the configuration is refused:
//! by `central validate` and at start, with the setting named and why.
//!
//! Checked: the database (`store.url`), Redis (`api.cache.redis_url`), the
//! object store (`upload.object_store`: its region, and its endpoint's
//! host), the report writers (`report.llm.base_url`,
//! `report.fallback.base_url`) and remote detection (`worker.damage`,
//! `worker.plate` with `kind = "remote"`).
//!
//! A host is in the EU when it is
//! - inside the deployment: loopback, a private or link-local address, a
//!   name without a dot (a Kubernetes service) or under .svc,
//!   .cluster.local, .internal, .local, .localhost (the cluster itself is
//!   run in an EU region: that is the operator's declaration, and
//!   DATA-PROTECTION.md says so);
//! - a provider's name that carries an EU region: `*.<region>.amazonaws.com`
//!   (AWS) for a region of the EU list below, and eu.api.openai.com
//!   (OpenAI's European data residency);
//! - listed in `allowed_hosts` (exact, or `*.suffix`), for providers whose
//!   names do not say where they are (Azure's *.openai.azure.com, a
//!   managed database): the operator checked the resource's region.
//! Anything else (api.openai.com, a public address, a US region) is
//! refused. An object store's region must be in the EU list or in
//! `allowed_regions`.
//!
//! `override_reason` starts the service anyway and logs a warning with the
//! reason and every refused setting at every start: a conscious, visible
//! exception, never a silent one. `region = "any"` turns the guard off,
//! also logged at every start.
//! ```

use std::net::IpAddr;

use reqwest::Url;
use serde::Deserialize;

use crate::config::Config;
use crate::detect::DetectionSource;
use crate::upload::ObjectStoreConfig;

/// Cloud regions in EU member states (AWS, Azure, Google Cloud). Not in
/// the list, though near: London (eu-west-2, uksouth), Zurich
/// (eu-central-2, switzerlandnorth), both outside the EU; add them to
/// `allowed_regions` if your data-protection officer agrees.
pub const EU_REGIONS: &[&str] = &[
    // AWS
    "eu-central-1",
    "eu-west-1",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    // Azure
    "westeurope",
    "northeurope",
    "francecentral",
    "francesouth",
    "germanywestcentral",
    "germanynorth",
    "swedencentral",
    "italynorth",
    "polandcentral",
    "spaincentral",
    "austriaeast",
    // Google Cloud
    "europe-west1",
    "europe-west3",
    "europe-west4",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "europe-north1",
    "europe-north2",
    "europe-central2",
    "europe-southwest1",
];

/// Hosts known to process in the EU although their name has no region.
const EU_HOSTS: &[&str] = &["eu.api.openai.com"];

/// `[residency]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResidencyConfig {
    /// `eu` (default): every endpoint that receives personal data must be
    /// in the EU. `any`: no guard (logged at every start).
    pub region: Region,
    /// Further hosts in the EU: exact names or `*.suffix`.
    pub allowed_hosts: Vec<String>,
    /// Further regions accepted for an object store.
    pub allowed_regions: Vec<String>,
    /// Start despite refused endpoints; the reason and the endpoints are
    /// logged as a warning at every start.
    pub override_reason: Option<String>,
}

impl Default for ResidencyConfig {
    fn default() -> Self {
        ResidencyConfig {
            region: Region::Eu,
            allowed_hosts: Vec::new(),
            allowed_regions: Vec::new(),
            override_reason: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu,
    Any,
}

/// What the guard decided about a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every endpoint is in the EU.
    Resident,
    /// `region = "any"`.
    Off,
    /// Refused endpoints, each a message naming the setting.
    Refused(Vec<String>),
    /// Refused endpoints, started anyway for this reason.
    Overridden {
        reason: String,
        refused: Vec<String>,
    },
}

impl ResidencyConfig {
    /// Problems of the section itself.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for host in &self.allowed_hosts {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                problems.push(format!(
                    "{at}.allowed_hosts: {host:?} is not a host name or *.suffix"
                ));
            }
        }
        if let Some(reason) = &self.override_reason
            && reason.trim().len() < 10
        {
            problems.push(format!(
                "{at}.override_reason: say why (10 characters or more); it is logged at every start"
            ));
        }
        problems
    }

    /// Checks every endpoint of `config` that receives personal data.
    pub fn check(&self, config: &Config) -> Verdict {
        if self.region == Region::Any {
            return Verdict::Off;
        }
        let mut refused = Vec::new();
        if let Some(reason) = self.url_refused(&config.store.url) {
            refused.push(format!("store.url: the database {reason}"));
        }
        if let Some(url) = &config.api.cache.redis_url
            && let Some(reason) = self.url_refused(url)
        {
            refused.push(format!("api.cache.redis_url: Redis {reason}"));
        }
        if let Some(llm) = &config.report.llm
            && let Some(reason) = self.url_refused(&llm.base_url)
        {
            refused.push(format!("report.llm.base_url: the report writer {reason}"));
        }
        if let Some(fallback) = &config.report.fallback
            && let Some(reason) = self.url_refused(&fallback.endpoint.base_url)
        {
            let hint = if hosts_of(&fallback.endpoint.base_url)
                .and_then(|h| h.into_iter().next())
                .as_deref()
                == Some("api.openai.com")
            {
                " (OpenAI's European data residency: https://eu.api.openai.com/v1)"
            } else {
                ""
            };
            refused.push(format!(
                "report.fallback.base_url: the fallback report writer {reason}{hint}"
            ));
        }
        for (at, source) in [
            ("worker.damage", &config.worker.damage),
            ("worker.plate", &config.worker.plate),
        ] {
            if let Some(DetectionSource::Remote { url, .. }) = source
                && let Some(reason) = self.url_refused(url)
            {
                refused.push(format!(
                    "{at}.url: remote detection (it receives the images) {reason}"
                ));
            }
        }
        refused.extend(self.object_store_refused(&config.upload.object_store));
        match (&self.override_reason, refused.is_empty()) {
            (_, true) => Verdict::Resident,
            (Some(reason), false) => Verdict::Overridden {
                reason: reason.clone(),
                refused,
            },
            (None, false) => Verdict::Refused(refused),
        }
    }

    fn object_store_refused(&self, store: &ObjectStoreConfig) -> Vec<String> {
        let mut refused = Vec::new();
        match store {
            ObjectStoreConfig::Local { .. } => {}
            ObjectStoreConfig::S3 {
                bucket,
                region,
                endpoint,
                ..
            } => {
                if !self.region_allowed(region) {
                    refused.push(format!(
                        "upload.object_store.region: the bucket {bucket} is in {region}, not an EU region (residency = \"eu\"; EU regions: {}; or add it to residency.allowed_regions)",
                        EU_REGIONS
                            .iter()
                            .filter(|r| r.starts_with("eu-"))
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if let Some(endpoint) = endpoint
                    && let Some(reason) = self.url_refused(endpoint)
                {
                    refused.push(format!(
                        "upload.object_store.endpoint: the image store {reason}"
                    ));
                }
            }
        }
        refused
    }

    fn region_allowed(&self, region: &str) -> bool {
        EU_REGIONS.contains(&region) || self.allowed_regions.iter().any(|r| r == region)
    }

    /// Why a host of `url` is refused, or `None`. SQLite and other URLs
    /// without a host are local files. PostgreSQL also takes hosts from
    /// the query (`?host=a,b`, `?hostaddr=`): each is checked.
    fn url_refused(&self, url: &str) -> Option<String> {
        let Some(hosts) = hosts_of(url) else {
            return Some("is not a URL the guard can read: where it goes is not known".into());
        };
        let host = hosts.into_iter().find(|host| !self.host_allowed(host))?;
        Some(format!(
            "at {host} is not known to be in the EU (residency = \"eu\"); use an endpoint in an EU region, or add the host to residency.allowed_hosts once you have checked where it stores and processes data"
        ))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if inside_the_deployment(&host) || EU_HOSTS.contains(&host.as_str()) {
            return true;
        }
        // AWS: the region is the last label before amazonaws.com, or
        // before `rds` (`x.eu-central-1.rds.amazonaws.com`); earlier labels
        // are the customer's (a bucket or instance may be named like a
        // region).
        if let Some(rest) = host.strip_suffix(".amazonaws.com") {
            let mut labels: Vec<&str> = rest.split('.').collect();
            if labels.last() == Some(&"rds") {
                labels.pop();
            }
            if labels.last().is_some_and(|r| self.region_allowed(r)) {
                return true;
            }
        }
        self.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == allowed,
            }
        })
    }
}

/// The hosts a URL connects to: its own (brackets of an IPv6 literal
/// removed) and those of `host` and `hostaddr` query parameters (comma
/// lists, as libpq and sqlx read them). None for `sqlite:` (a file);
/// `None` for a URL that does not parse.
fn hosts_of(url: &str) -> Option<Vec<String>> {
    if url.starts_with("sqlite:") {
        return Some(Vec::new());
    }
    let parsed = Url::parse(url).ok()?;
    let mut hosts: Vec<String> = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .into_iter()
        .collect();
    for (key, value) in parsed.query_pairs() {
        if key == "host" || key == "hostaddr" {
            hosts.extend(
                value
                    .split(',')
                    .map(str::trim)
                    // A socket directory is local.
                    .filter(|h| !h.is_empty() && !h.starts_with('/'))
                    .map(str::to_owned),
            );
        }
    }
    Some(hosts)
}

/// Loopback, private and link-local addresses; cluster and local names.
fn inside_the_deployment(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
    }
    // A number the resolver reads as an address (`3405803783`, `0xcb007107`,
    // `203.0x0.113.7`) without it being written as one: not known.
    let numeric = host.split('.').all(|label| {
        !label.is_empty()
            && (label.chars().all(|c| c.is_ascii_digit())
                || label
                    .strip_prefix("0x")
                    .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit())))
    });
    if numeric {
        return false;
    }
    !host.contains('.')
        || [
            ".svc",
            ".cluster.local",
            ".internal",
            ".local",
            ".localhost",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> ResidencyConfig {
        ResidencyConfig::default()
    }

    #[test]
    fn hosts_inside_the_deployment_or_in_eu_regions_pass() {
        let g = guard();
        for url in [
            "postgres://central@postgres-rw.inspection-system.svc:5432/central",
            "postgres://central@postgres-rw:5432/central",
            "redis://10.0.3.4:6379/0",
            "redis://[::1]:6379",
            "http://localhost:8080/v1",
            "https://eu.api.openai.com/v1",
            "postgres://u@db.abc123.eu-central-1.rds.amazonaws.com/central",
            "https://s3.eu-west-3.amazonaws.com",
            "sqlite://data/central.sqlite3",
            "postgres://u@db.svc/central?host=/var/run/postgresql",
            "https://bucket.s3.dualstack.eu-north-1.amazonaws.com",
        ] {
            assert_eq!(g.url_refused(url), None, "{url}");
        }
    }

    #[test]
    fn hosts_outside_the_eu_or_unknown_are_refused() {
        let g = guard();
        for url in [
            "https://api.openai.com/v1",
            "postgres://u@db.abc123.us-east-1.rds.amazonaws.com/central",
            "https://s3.eu-west-2.amazonaws.com",
            "redis://203.0.113.7:6379",
            "https://my-resource.openai.azure.com",
            // A customer's name that looks like a region is not one.
            "postgres://u@eu-central-1.abc123.us-east-1.rds.amazonaws.com/central",
            "https://eu-west-1.s3.amazonaws.com",
            "https://eu-west-1.s3.us-east-1.amazonaws.com",
            // The query's hosts count as well.
            "postgres://u@db.svc/central?hostaddr=203.0.113.7",
            "postgres://u@db.svc/central?host=db.svc,pg.example.com",
            // Numbers a resolver takes for an address.
            "redis://3405803783:6379",
            "redis://0xcb007107:6379",
            "not a url",
        ] {
            assert!(g.url_refused(url).is_some(), "{url}");
        }
    }

    #[test]
    fn the_allowlists_extend_the_built_in_ones() {
        let g = ResidencyConfig {
            allowed_hosts: vec!["*.openai.azure.com".into(), "llm.example.eu".into()],
            allowed_regions: vec!["eu-west-2".into()],
            ..ResidencyConfig::default()
        };
        assert_eq!(g.url_refused("https://my-resource.openai.azure.com"), None);
        assert_eq!(g.url_refused("https://llm.example.eu/v1"), None);
        assert!(g.url_refused("https://evil-llm.example.eu/v1").is_some());
        assert_eq!(g.url_refused("https://s3.eu-west-2.amazonaws.com"), None);
        assert!(g.problems("residency").is_empty());
        let bad = ResidencyConfig {
            allowed_hosts: vec!["https://x".into()],
            override_reason: Some("x".into()),
            ..ResidencyConfig::default()
        };
        assert_eq!(bad.problems("residency").len(), 2);
    }
}
