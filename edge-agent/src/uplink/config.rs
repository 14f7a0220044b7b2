//! The `[uplink]` section: where central is, who this board is to it, and
//! the pacing of the transport. Optional: without it the agent runs offline
//! and only fills its outbox.

use std::path::{Path, PathBuf};
use std::time::Duration;

use inspection_core::config::{FileChecks, is_loopback_host, redact_url};
use reqwest::Url;
use serde::Deserialize;

/// `[uplink]`. `mqtt_url`, `upload_url` and a credential (`cert` + `key`,
/// or `token_file`) are required; every other key has a default. The
/// secrets themselves live in files (`key`, `token_file`) the section only
/// names; a URL written with a password in it is refused, and neither its
/// `Debug` nor a problem about it shows the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// The MQTT broker: `mqtts://host:8883`, or `mqtt://host:1883` for a
    /// broker on loopback only (plain MQTT would carry the token in clear).
    pub mqtt_url: String,
    /// The image upload service: `https://host:8443` (images go to
    /// `{upload_url}/v1/images/{sha256}`), or `http://` on loopback only.
    pub upload_url: String,
    /// CA certificate(s) (PEM) that sign central's server certificates.
    /// Required when either URL uses TLS: the fleet trusts its operator's
    /// CA, not the public web's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The device's client certificate (PEM, CN `site/device`), with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// A file holding the device token: MQTT user `site/device` with the
    /// token as password, HTTP Basic `site/device:token`. Either this or a
    /// client certificate (or both).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Seconds between telemetry messages. Default 60: fleet dashboards
    /// resolve minutes, and 5,000 boards at one message a minute is ~80
    /// messages/s for the broker, negligible.
    #[serde(default = "default_telemetry_interval_s")]
    pub telemetry_interval_s: u64,
    /// MQTT keep-alive in seconds. Default 30: a dead connection (a cut
    /// cable does not close TCP) is noticed within ~45 s, and the broker
    /// fires the last will just as fast.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// Seconds to wait for central's ack of a published event before
    /// publishing it again. Default 30: central acks after a database
    /// commit, normally well under a second; a longer wait only means a
    /// lost ack is repaired later, a shorter one floods a slow central.
    #[serde(default = "default_ack_timeout_s")]
    pub ack_timeout_s: u64,
    /// Most events published and not yet acknowledged. Default 64: enough
    /// to fill a round trip of a few hundred ms at a bay's event rate while
    /// bounding what is re-published after a reconnect.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// First reconnect / retry delay in milliseconds. Default 500.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest reconnect / retry delay in seconds. Default 60: after an
    /// outage 5,000 boards come back spread over a minute (full jitter),
    /// not in one burst.
    #[serde(default = "default_backoff_max_s")]
    pub backoff_max_s: u64,
    /// Seconds one image upload may take. Default 60: a 0.5 MB frame over a
    /// slow cellular link (~100 kbit/s) still makes it.
    #[serde(default = "default_upload_timeout_s")]
    pub upload_timeout_s: u64,
}

impl std::fmt::Debug for UplinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            mqtt_url,
            upload_url,
            ca,
            cert,
            key,
            token_file,
            telemetry_interval_s,
            keep_alive_s,
            ack_timeout_s,
            max_in_flight,
            backoff_initial_ms,
            backoff_max_s,
            upload_timeout_s,
        } = self;
        f.debug_struct("UplinkConfig")
            .field("mqtt_url", &redact_url(mqtt_url))
            .field("upload_url", &redact_url(upload_url))
            .field("ca", ca)
            .field("cert", cert)
            .field("key", key)
            .field("token_file", token_file)
            .field("telemetry_interval_s", telemetry_interval_s)
            .field("keep_alive_s", keep_alive_s)
            .field("ack_timeout_s", ack_timeout_s)
            .field("max_in_flight", max_in_flight)
            .field("backoff_initial_ms", backoff_initial_ms)
            .field("backoff_max_s", backoff_max_s)
            .field("upload_timeout_s", upload_timeout_s)
            .finish()
    }
}

fn default_telemetry_interval_s() -> u64 {
    60
}
fn default_keep_alive_s() -> u64 {
    30
}
fn default_ack_timeout_s() -> u64 {
    30
}
fn default_max_in_flight() -> usize {
    64
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_s() -> u64 {
    60
}
fn default_upload_timeout_s() -> u64 {
    60
}

/// Most events in flight `problems` accepts (MQTT packet ids are 16 bits,
/// and re-publishing thousands after a reconnect helps nobody).
pub const MAX_IN_FLIGHT: usize = 1000;

/// The broker address a validated `mqtt_url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl UplinkConfig {
    /// A configuration with every default, for tests and examples.
    pub fn new(mqtt_url: impl Into<String>, upload_url: impl Into<String>) -> Self {
        Self {
            mqtt_url: mqtt_url.into(),
            upload_url: upload_url.into(),
            ca: None,
            cert: None,
            key: None,
            token_file: None,
            telemetry_interval_s: default_telemetry_interval_s(),
            keep_alive_s: default_keep_alive_s(),
            ack_timeout_s: default_ack_timeout_s(),
            max_in_flight: default_max_in_flight(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_s: default_backoff_max_s(),
            upload_timeout_s: default_upload_timeout_s(),
        }
    }

    /// The broker's host, port and whether it speaks TLS. A message never
    /// repeats a password written into the URL.
    pub fn mqtt_endpoint(&self) -> Result<MqttEndpoint, String> {
        let shown = redact_url(&self.mqtt_url);
        let url = Url::parse(&self.mqtt_url).map_err(|e| format!("{shown:?}: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in the URL: use token_file".into());
        }
        let (tls, default_port) = match url.scheme() {
            "mqtts" => (true, 8883),
            "mqtt" => (false, 1883),
            other => {
                return Err(format!(
                    "scheme {other:?} is not mqtts:// (or mqtt:// on loopback)"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{shown:?} names no host"))?;
        if url.path() != "" && url.path() != "/" {
            return Err(format!("{shown:?}: a broker URL has no path"));
        }
        // IPv6 literals come back bracketed; the socket API wants them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !tls && !is_loopback_host(&host) {
            return Err(format!(
                "plain mqtt:// is only for a broker on loopback, not {host}: use mqtts://"
            ));
        }
        Ok(MqttEndpoint {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
        })
    }

    /// The upload base URL (no trailing slash). A message never repeats a
    /// password written into the URL.
    pub fn upload_base(&self) -> Result<Url, String> {
        let shown = redact_url(&self.upload_url);
        let url = Url::parse(&self.upload_url).map_err(|e| format!("{shown:?}: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in the URL: use token_file".into());
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let host = url.host_str().unwrap_or("");
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if !is_loopback_host(host) {
                    return Err(format!(
                        "plain http:// is only for an upload service on loopback, not {host}: use https://"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "scheme {other:?} is not https:// (or http:// on loopback)"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown:?} names no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{shown:?}: no query or fragment"));
        }
        Ok(url)
    }

    pub fn telemetry_interval(&self) -> Duration {
        Duration::from_secs(self.telemetry_interval_s)
    }
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_s)
    }
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_s)
    }
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_s)
    }
    pub fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_timeout_s)
    }

    /// Every bad value, each prefixed by `at` (e.g. `uplink`).
    pub fn problems(&self, at: &str, files: FileChecks) -> Vec<String> {
        let mut problems = Vec::new();
        let mqtt = self
            .mqtt_endpoint()
            .map_err(|e| problems.push(format!("{at}.mqtt_url: {e}")))
            .ok();
        let upload = self
            .upload_base()
            .map_err(|e| problems.push(format!("{at}.upload_url: {e}")))
            .ok();
        let any_tls = mqtt.as_ref().is_some_and(|m| m.tls)
            || upload.as_ref().is_some_and(|u| u.scheme() == "https");
        if any_tls && self.ca.is_none() {
            problems.push(format!(
                "{at}.ca: required with mqtts:// or https:// (the CA that signs central's certificates)"
            ));
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => problems.push(format!("{at}.key: required with {at}.cert")),
            (None, Some(_)) => problems.push(format!("{at}.cert: required with {at}.key")),
            (Some(_), Some(_)) if !any_tls && mqtt.is_some() && upload.is_some() => {
                problems.push(format!(
                    "{at}.cert: a client certificate needs mqtts:// or https://"
                ));
            }
            _ => {}
        }
        if self.cert.is_none() && self.key.is_none() && self.token_file.is_none() {
            problems.push(format!(
                "{at}: no credential: set cert + key (client certificate) or token_file"
            ));
        }
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("telemetry_interval_s", self.telemetry_interval_s, 1, 86_400),
            ("keep_alive_s", self.keep_alive_s, 5, 3_600),
            ("ack_timeout_s", self.ack_timeout_s, 1, 3_600),
            ("backoff_initial_ms", self.backoff_initial_ms, 1, 60_000),
            ("backoff_max_s", self.backoff_max_s, 1, 3_600),
            ("upload_timeout_s", self.upload_timeout_s, 1, 3_600),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                problems.push(format!("{at}.{key}: {value} is outside {min}..={max}"));
            }
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            problems.push(format!(
                "{at}.max_in_flight: {} is outside 1..={MAX_IN_FLIGHT}",
                self.max_in_flight
            ));
        }
        if self.backoff_max_s.saturating_mul(1000) < self.backoff_initial_ms {
            problems.push(format!(
                "{at}.backoff_max_s: {} s is below backoff_initial_ms ({} ms)",
                self.backoff_max_s, self.backoff_initial_ms
            ));
        }
        if files == FileChecks::On {
            let paths: [(&str, Option<&Path>); 4] = [
                ("ca", self.ca.as_deref()),
                ("cert", self.cert.as_deref()),
                ("key", self.key.as_deref()),
                ("token_file", self.token_file.as_deref()),
            ];
            for (key, path) in paths {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> UplinkConfig {
        UplinkConfig {
            ca: Some("/ca.pem".into()),
            cert: Some("/d.pem".into()),
            key: Some("/d.key".into()),
            ..UplinkConfig::new(
                "mqtts://central.example:8883",
                "https://central.example:8443",
            )
        }
    }

    #[test]
    fn a_valid_section_has_no_problems_and_parses_its_urls() {
        let c = valid();
        assert_eq!(c.problems("uplink", FileChecks::Off), Vec::<String>::new());
        assert_eq!(
            c.mqtt_endpoint().unwrap(),
            MqttEndpoint {
                host: "central.example".into(),
                port: 8883,
                tls: true
            }
        );
        let plain = UplinkConfig::new("mqtt://127.0.0.1", "http://[::1]:9000");
        assert_eq!(plain.mqtt_endpoint().unwrap().port, 1883);
        assert!(plain.upload_base().is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let c = UplinkConfig {
            mqtt_url: "mqtt://broker.example".into(),
            upload_url: "ftp://x".into(),
            cert: Some("/d.pem".into()),
            key: None,
            telemetry_interval_s: 0,
            keep_alive_s: 1,
            max_in_flight: 0,
            backoff_initial_ms: 5_000,
            backoff_max_s: 1,
            ..UplinkConfig::new("", "")
        };
        let problems = c.problems("uplink", FileChecks::On);
        for want in [
            "uplink.mqtt_url: plain mqtt:// is only for a broker on loopback",
            "uplink.upload_url: scheme \"ftp\"",
            "uplink.key: required with uplink.cert",
            "uplink.telemetry_interval_s: 0",
            "uplink.keep_alive_s: 1",
            "uplink.max_in_flight: 0",
            "uplink.backoff_max_s: 1 s is below",
            "uplink.cert: /d.pem is not a readable file",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn passwords_in_urls_are_refused_without_being_repeated() {
        for (mqtt, upload) in [
            ("mqtts://bay:pw-1@h:8883", "https://bay:pw-2@h:8443"),
            (
                "mqtts://bay:pw-1@h:8883/path",
                "https://bay:pw-2@h:8443/?q=1",
            ),
            ("mqtts://bay:pw-1@h:99999", "https://bay:pw-2@h:99999"),
        ] {
            let c = UplinkConfig {
                token_file: Some("/t".into()),
                ca: Some("/ca.pem".into()),
                ..UplinkConfig::new(mqtt, upload)
            };
            let problems = c.problems("uplink", FileChecks::Off).join("\n");
            assert!(problems.contains("uplink.mqtt_url"), "{problems}");
            assert!(problems.contains("uplink.upload_url"), "{problems}");
            assert!(!problems.contains("pw-"), "{problems}");
            let shown = format!("{c:?}");
            assert!(!shown.contains("pw-"), "{shown}");
            assert!(shown.contains("mqtts://bay:***@h"), "{shown}");
        }
    }

    #[test]
    fn tls_needs_a_ca_and_some_credential() {
        let c = UplinkConfig::new("mqtts://h", "https://h");
        let problems = c.problems("uplink", FileChecks::Off);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("uplink.ca: required"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("uplink: no credential"))
        );
    }
}
