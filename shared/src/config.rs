//! What the binaries' configuration validators have in common: a report of
//! every problem in a file, whether referenced files are checked, and
//! [`redact_url`], which keeps the passwords of URLs (a database, Redis, a
//! broker) out of problems, errors, logs and `Debug`.

use std::fmt;

use serde::Deserialize;

use crate::topic::{DEFAULT_PREFIX, TopicError, TopicPrefix};

/// Every problem found in a configuration, in file order. Validators collect
/// all of them so an operator fixes a file in one pass, not one per deploy.
/// Build it with [`ConfigErrors::new`] (or [`ConfigErrors::into_result`]),
/// which removes URL passwords from the problems (a problem may quote the
/// value it is about); `Display` removes them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {}", redact_url(p))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The problems, with the passwords of URLs in them replaced by `***`.
    pub fn new(problems: impl IntoIterator<Item = String>) -> ConfigErrors {
        ConfigErrors(
            problems
                .into_iter()
                .map(|p| redact_url(&p).into_owned())
                .collect(),
        )
    }

    /// `Ok(())` when nothing was found; the problems as [`ConfigErrors::new`]
    /// keeps them otherwise.
    pub fn into_result(problems: Vec<String>) -> Result<(), ConfigErrors> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors::new(problems))
        }
    }
}

/// Whether validation looks at the files a config names. Off when checking a
/// config away from the machine it is for (a board's file in CI, a
/// Kubernetes ConfigMap before it is applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    On,
    Off,
}

/// `[mqtt]` as both binaries read it: the topic prefix they must share.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// Topic prefix; default `inspect`. Edge agents and the central service
    /// must agree on it; several environments can share a broker with
    /// different prefixes.
    pub topic_prefix: String,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            topic_prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl MqttSection {
    /// The validated prefix.
    pub fn prefix(&self) -> Result<TopicPrefix, TopicError> {
        TopicPrefix::new(self.topic_prefix.as_str())
    }
}

/// What stands in for a secret in text meant for people.
pub const REDACTED: &str = "***";

/// Whether a URL query parameter holds a secret (`password=`, `token=`,
/// `api_key=`, a signature, ...).
fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    key == "sig"
        || key == "key"
        || [
            "pass",
            "pwd",
            "secret",
            "token",
            "api_key",
            "apikey",
            "access_key",
            "signature",
            "credential",
        ]
        .iter()
        .any(|s| key.contains(s))
}

/// `text` with the credentials of every URL in it replaced by `***`: the
/// password of `scheme://user:password@host/...` (the user name stays) and
/// the values of query parameters that name a secret (`password=`,
/// `token=`, `api_key=`, ...). Everything else is left as it is, so a
/// message still says which server was meant.
///
/// For error messages, log fields and `Debug` output that may hold a URL
/// (a database, Redis, a broker): a URL runs from its `scheme://` to the
/// next whitespace, and its credentials end at its last `@`, so a
/// malformed URL (a `/`, `?` or `"` in the password) is redacted whole
/// rather than cut short. Pure text: no URL is parsed or resolved.
pub fn redact_url(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (mut url, mut tail) = after.split_at(end);
        // A URL inside this one (a query's `next=https://...`) is the next
        // turn's: this one ends where that one's scheme begins.
        if let Some(j) = url.find("://") {
            // After the last character that cannot be in a scheme (which
            // may be wider than one byte).
            let cut = url[..j]
                .char_indices()
                .rev()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                .map_or(0, |(k, c)| k + c.len_utf8());
            (url, tail) = (&after[..cut], &after[cut..]);
        }
        let host_on = match url.rfind('@') {
            Some(at) => {
                let userinfo = &url[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                &url[at + 1..]
            }
            None => url,
        };
        match host_on.split_once('?') {
            Some((before, query)) => {
                out.push_str(before);
                out.push('?');
                redact_query(query, &mut out);
            }
            None => out.push_str(host_on),
        }
        rest = tail;
    }
    out.push_str(rest);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

fn redact_query(query: &str, out: &mut String) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, value)) if is_secret_param(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
                // What follows the value in `Debug` output (`",`) stays.
                if let Some(end) = value.find(['#', '"', '\'', ',', ';', ')', ']', '}']) {
                    out.push_str(&value[end..]);
                }
            }
            _ => out.push_str(pair),
        }
    }
}

/// The `Debug` of a value with [`redact_url`] applied to it: for the
/// `Debug` of a configuration whose sections hold URLs (`{:#?}` is kept).
pub struct RedactedDebug<'a, T: ?Sized>(pub &'a T);

impl<T: fmt::Debug + ?Sized> fmt::Debug for RedactedDebug<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if f.alternate() {
            format!("{:#?}", self.0)
        } else {
            format!("{:?}", self.0)
        };
        f.write_str(&redact_url(&text))
    }
}

/// Whether a URL's host (`localhost`, or an IP literal, IPv6 without its
/// brackets) is this machine: the one place plain text may go without TLS.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The problem with a plain-HTTP metrics and health endpoint (`[ops]`) at
/// `listen`, if any: off loopback it needs `plain_http = true`, a choice
/// made where only the scraper can reach it. `at` names the section.
pub fn plain_ops_listener_problem(
    at: &str,
    listen: std::net::SocketAddr,
    plain_http: bool,
) -> Option<String> {
    (!plain_http && !listen.ip().is_loopback()).then(|| {
        format!(
            "{at}.listen: {listen} is not a loopback address; the endpoint is plain HTTP: set {at}.plain_http = true where only the scraper can reach it"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ops_listener_off_loopback_only_as_an_explicit_choice() {
        let loopback = "127.0.0.1:9464".parse().unwrap();
        let any = "0.0.0.0:9464".parse().unwrap();
        assert_eq!(plain_ops_listener_problem("ops", loopback, false), None);
        let problem = plain_ops_listener_problem("ops", any, false).unwrap();
        assert!(
            problem.starts_with("ops.listen: 0.0.0.0:9464 is not a loopback"),
            "{problem}"
        );
        assert_eq!(plain_ops_listener_problem("ops", any, true), None);
    }

    #[test]
    fn lists_every_problem() {
        let e = ConfigErrors(vec!["a: bad".into(), "b: worse".into()]);
        assert_eq!(
            e.to_string(),
            "2 problem(s) in the configuration:\n  - a: bad\n  - b: worse\n"
        );
        assert!(ConfigErrors::into_result(vec![]).is_ok());
    }

    #[test]
    fn a_url_inside_a_url_after_a_wide_character_is_cut_on_a_character_boundary() {
        // Found by the config_central fuzz target: the cut after `Ø` (two
        // bytes) fell inside it and panicked.
        let text = "x = \"https://a.example/Øhttps://u:pw@b.example/\"";
        let redacted = redact_url(text);
        assert_eq!(
            redacted,
            "x = \"https://a.example/Øhttps://u:***@b.example/\""
        );
        // No byte position panics, whatever character comes before.
        for c in ['é', 'Ø', '€', '😀', '\u{0}'] {
            let _ = redact_url(&format!("a://{c}b://c:d@e {c}://{c}:{c}@{c}"));
        }
    }

    #[test]
    fn problems_lose_their_url_passwords() {
        let quoted = "bridge.url: \"mqtt://u:pw@h:1883/x\" has a path".to_owned();
        let e = ConfigErrors::into_result(vec![quoted.clone()]).unwrap_err();
        assert_eq!(e.0, ["bridge.url: \"mqtt://u:***@h:1883/x\" has a path"]);
        // Built by hand: Display still hides it.
        assert!(!ConfigErrors(vec![quoted]).to_string().contains("pw"));
    }

    #[test]
    fn url_passwords_are_redacted_and_the_rest_kept() {
        let cases = [
            (
                "postgres://central:pw@db:5432/central?sslmode=require",
                "postgres://central:***@db:5432/central?sslmode=require",
            ),
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            // No password: nothing to hide.
            (
                "sqlite://data/central.sqlite3",
                "sqlite://data/central.sqlite3",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("redis://user@host", "redis://user@host"),
            ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
            ("no url here", "no url here"),
            // Malformed passwords are hidden whole.
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                r#"StoreConfig { url: "postgres://u:p\"w@h/db", max_connections: 4 }"#,
                r#"StoreConfig { url: "postgres://u:***@h/db", max_connections: 4 }"#,
            ),
            // Secret query parameters.
            (
                "postgres://h/db?user=u&password=pw&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "https://h/x?api-key=abc\", y",
                "https://h/x?api-key=***\", y",
            ),
            // Several URLs in a message, and one inside another.
            (
                "a http://x:1@h and https://y:2@k/",
                "a http://x:***@h and https://y:***@k/",
            ),
            (
                "https://h/cb?next=http://u:p@evil/",
                "https://h/cb?next=http://u:***@evil/",
            ),
            (
                "bridge.url: \"mqtt://bridge:pw@broker:1883\" must be only scheme://host[:port]",
                "bridge.url: \"mqtt://bridge:***@broker:1883\" must be only scheme://host[:port]",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
        assert!(matches!(
            redact_url("sqlite://x"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn redacted_debug_keeps_the_layout() {
        let value = ("postgres://a:b@c/d", 1);
        assert_eq!(
            format!("{:?}", RedactedDebug(&value)),
            r#"("postgres://a:***@c/d", 1)"#
        );
        assert_eq!(
            format!("{:#?}", RedactedDebug(&value)),
            "(\n    \"postgres://a:***@c/d\",\n    1,\n)"
        );
    }
}
