//! The staff web UI at `/ui/`: one page (HTML, CSS, a script, six
//! translations) compiled into the binary, talking to `/api/v1` like any
//! other client.
//!
//! ```text
//! DESIGN
//!
//! No Node.js, no bundler, no framework: the files under central/ui/ are
//! what the browser runs, embedded with include_bytes! (the binary is the
//! deployment; nothing to keep in step on a volume). The page routes on
//! the URL fragment (#/queue, #/inspections/<id>, ...), so the server only
//! ever serves these files.
//!
//! Sign-in is the API's: an API token pasted once (development, service
//! desks) or, with [api.oidc.sign_in], the provider's authorization-code
//! flow with PKCE run by the page itself (a public client: no secret in the
//! browser). The token stays in sessionStorage (gone with the tab) and goes
//! out as a bearer header; pictures and report files are fetched with it
//! and shown from blob: URLs, so no credential ever sits in a URL.
//!
//! Every response carries a strict Content-Security-Policy (only this
//! origin's scripts and styles, no inline code, connections only here and
//! to the provider's token endpoint, no framing), no-referrer (the code on
//! the way back from the provider leaks nowhere) and nosniff. Files are
//! revalidated with an ETag on every load, so an upgrade reaches every
//! tablet at once.
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::problem::Problem;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../ui/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("i18n/en.json", "application/json"),
    asset!("i18n/de.json", "application/json"),
    asset!("i18n/fr.json", "application/json"),
    asset!("i18n/it.json", "application/json"),
    asset!("i18n/es.json", "application/json"),
    asset!("i18n/nl.json", "application/json"),
];

/// The languages the page speaks, in the order its menu lists them.
pub const LANGUAGES: [&str; 6] = ["en", "de", "fr", "it", "es", "nl"];

/// `[api.oidc.sign_in]`: the provider's authorization-code flow with PKCE,
/// run by the page (register `https://<api host>/ui/` as its redirect URI
/// and the client as public). The access token it gets must pass
/// `[api.oidc]` (issuer, audience, roles).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// Where the browser goes to sign in.
    pub authorization_endpoint: String,
    /// Where the page trades the code for tokens (the provider must allow
    /// this origin: CORS).
    pub token_endpoint: String,
    /// The public client's id.
    pub client_id: String,
    /// Default `openid`.
    #[serde(default = "default_scope")]
    pub scope: String,
}

fn default_scope() -> String {
    "openid".to_owned()
}

impl SignInConfig {
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, url) in [
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
        ] {
            match origin(url) {
                None => out.push(format!(
                    "{at}.{name}: must be an https:// URL (http:// only on loopback): {url:?}"
                )),
                Some(_) if url.contains(['?', '#']) => out.push(format!(
                    "{at}.{name}: no query or fragment (the page adds its own): {url:?}"
                )),
                Some(_) => {}
            }
        }
        if self.client_id.is_empty() || self.client_id.len() > 200 {
            out.push(format!("{at}.client_id: 1 to 200 characters"));
        }
        if self.scope.split(' ').all(|s| s != "openid") {
            out.push(format!("{at}.scope: must include openid"));
        }
        out
    }
}

/// `https://host[:port]` of an https URL, or of an http URL to loopback;
/// `None` for anything else (another scheme, user info, no host).
pub(super) fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host_port = rest.split(['/', '?', '#']).next()?;
    if host_port.is_empty() || host_port.contains('@') || host_port.contains(char::is_whitespace) {
        return None;
    }
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match scheme {
        "https" => Some(format!("https://{host_port}")),
        "http" if inspection_core::config::is_loopback_host(host) => {
            Some(format!("http://{host_port}"))
        }
        _ => None,
    }
}

/// What the page learns at start (`/ui/config.json`).
#[derive(Debug, Clone, Serialize)]
struct PageConfig {
    sign_in: Option<SignInConfig>,
    languages: [&'static str; 6],
    version: &'static str,
}

/// The served files and their headers, built once.
struct Ui {
    files: HashMap<&'static str, (&'static Asset, HeaderValue)>,
    config_json: Bytes,
    config_etag: HeaderValue,
    csp: HeaderValue,
}

fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

/// The routes: `/` and `/ui` redirect to `/ui/`, which serves the page.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(sign_in: Option<SignInConfig>) -> Router<S> {
    let token_origin = sign_in
        .as_ref()
        .and_then(|s| origin(&s.token_endpoint))
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
         connect-src 'self'{token_origin}; manifest-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let config_json = serde_json::to_vec(&PageConfig {
        sign_in,
        languages: LANGUAGES,
        version: env!("CARGO_PKG_VERSION"),
    })
    .expect("the page config serializes");
    let ui = Arc::new(Ui {
        files: ASSETS.iter().map(|a| (a.name, (a, etag(a.body)))).collect(),
        config_etag: etag(&config_json),
        config_json: Bytes::from(config_json),
        csp: HeaderValue::from_str(&csp).expect("the CSP is a valid header value"),
    });
    let index = {
        let ui = ui.clone();
        move |headers: HeaderMap| {
            let ui = ui.clone();
            async move { ui.file("index.html", &headers) }
        }
    };
    let file = {
        let ui = ui.clone();
        move |Path(path): Path<String>, headers: HeaderMap| {
            let ui = ui.clone();
            async move { ui.file(&path, &headers) }
        }
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
}

impl Ui {
    fn file(&self, name: &str, headers: &HeaderMap) -> Response {
        let (body, content_type, tag): (Bytes, &str, &HeaderValue) = if name == "config.json" {
            (
                self.config_json.clone(),
                "application/json",
                &self.config_etag,
            )
        } else {
            match self.files.get(name) {
                Some((asset, tag)) => (Bytes::from_static(asset.body), asset.content_type, tag),
                None => return Problem::not_found(format!("no file ui/{name}")).into_response(),
            }
        };
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == tag.as_bytes());
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, tag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lang: &str) -> std::collections::BTreeSet<String> {
        let asset = ASSETS
            .iter()
            .find(|a| a.name == format!("i18n/{lang}.json"))
            .expect("a file per language");
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(asset.body).expect("the translation is a JSON object");
        for (key, value) in &map {
            let text = value.as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{lang}: {key} is empty");
        }
        map.keys().cloned().collect()
    }

    #[test]
    fn every_language_has_every_text() {
        let en = keys("en");
        for lang in LANGUAGES {
            let other = keys(lang);
            let missing: Vec<_> = en.difference(&other).collect();
            let extra: Vec<_> = other.difference(&en).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{lang}: missing {missing:?}, not in en {extra:?}"
            );
        }
    }

    #[test]
    fn every_text_the_script_asks_for_exists() {
        let en = keys("en");
        let script = std::str::from_utf8(
            ASSETS
                .iter()
                .find(|a| a.name == "app.js")
                .expect("app.js")
                .body,
        )
        .expect("utf-8");
        let mut asked = 0;
        // t("key") and t("key", {...}): the only way the script gets a text.
        for (at, _) in script.match_indices("t(\"") {
            let before = script[..at].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == '.' {
                continue; // split("...), select("...), ...
            }
            let key = script[at + 3..].split('"').next().unwrap_or_default();
            asked += 1;
            assert!(
                en.contains(key),
                "app.js asks for {key:?}, en.json lacks it"
            );
        }
        // data-i18n="key" in the page.
        let index = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        for part in index.split("data-i18n=\"").skip(1) {
            let key = part.split('"').next().unwrap_or_default();
            asked += 1;
            assert!(
                en.contains(key),
                "index.html asks for {key:?}, en.json lacks it"
            );
        }
        assert!(
            asked > 50,
            "only {asked} texts found: is the pattern still right?"
        );
    }

    #[test]
    fn sign_in_urls_are_checked() {
        let ok = SignInConfig {
            authorization_endpoint: "https://idp.example.eu/realms/r/protocol/openid-connect/auth"
                .into(),
            token_endpoint: "https://idp.example.eu/realms/r/protocol/openid-connect/token".into(),
            client_id: "inspection-ui".into(),
            scope: "openid".into(),
        };
        assert!(ok.problems("s").is_empty());
        let local = SignInConfig {
            authorization_endpoint: "http://127.0.0.1:9000/authorize".into(),
            token_endpoint: "http://localhost:9000/token".into(),
            ..ok.clone()
        };
        assert!(local.problems("s").is_empty());
        let bad = SignInConfig {
            authorization_endpoint: "http://idp.example.eu/auth".into(),
            token_endpoint: "https://idp.example.eu/token?x=1".into(),
            client_id: String::new(),
            scope: "profile".into(),
        };
        let problems = bad.problems("api.oidc.sign_in").join("\n");
        for expected in [
            "api.oidc.sign_in.authorization_endpoint: must be an https:// URL",
            "api.oidc.sign_in.token_endpoint: no query",
            "api.oidc.sign_in.client_id",
            "api.oidc.sign_in.scope: must include openid",
        ] {
            assert!(problems.contains(expected), "{expected} not in {problems}");
        }
        assert_eq!(
            origin("https://idp.example.eu:8443/t").as_deref(),
            Some("https://idp.example.eu:8443")
        );
        assert_eq!(origin("https://user@evil/t"), None);
    }
}
