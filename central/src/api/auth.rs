//! Who is calling the staff API, and what they may do.
//!
//! Two kinds of bearer token:
//!
//! - **JWTs** from the company's OpenID Connect provider, signed RS256 or
//!   ES256 with a key from its JWKS (a URL, refreshed every
//!   `jwks_refresh_seconds` and when a token names a key id it does not
//!   know, at most once per 30 s; or a file). `iss`, `aud`, `exp`, `nbf`
//!   and `sub` are checked. The role comes from a configurable claim (a
//!   dotted path such as `realm_access.roles`, a string or a list; the
//!   highest of `viewer`, `reviewer`, `admin` it holds wins, under the names
//!   `[api.oidc.role_names]` maps them to), the sites a user may see from
//!   another (`sites`; `*` for every site). A user without a sites claim
//!   sees no site unless they are an admin.
//! - **API tokens** for service accounts: 64 hex characters made by
//!   `central certs token`, of which the tokens file keeps only the SHA-256,
//!   with a name, a role and sites:
//!
//! ```toml
//! [[token]]
//! name = "billing-export"
//! role = "viewer"
//! sites = ["de-muc-airport"]   # or ["*"]
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! Every refusal says why in its problem `detail` (expired, wrong audience,
//! unknown key, ...) and is counted by reason; the token itself is never
//! logged.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inspection_core::config::redact_url;
use inspection_core::ids::SiteId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use utoipa::ToSchema;

use super::problem::Problem;

/// A staff role. Each includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads inspections, reports, vehicles and the fleet.
    Viewer,
    /// And decides findings, marks inspections reviewed, approves charges,
    /// asks a board to start or stop an inspection or capture a frame.
    Reviewer,
    /// And reloads boards' configuration, reads the audit log (admins of
    /// every site), erases personal data.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Reviewer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }
}

/// The sites a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteScope {
    All,
    Only(BTreeSet<SiteId>),
}

impl SiteScope {
    pub fn allows(&self, site: &SiteId) -> bool {
        match self {
            SiteScope::All => true,
            SiteScope::Only(sites) => sites.contains(site),
        }
    }

    fn from_names(names: &[String]) -> Result<SiteScope, String> {
        if names.iter().any(|n| n == "*") {
            return Ok(SiteScope::All);
        }
        names
            .iter()
            .map(|n| SiteId::new(n).map_err(|e| format!("site {n:?}: {e}")))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(SiteScope::Only)
    }

    /// Narrows a requested site filter to this scope: `None` (all sites)
    /// when neither restricts, else the sites both allow.
    pub fn narrow(&self, requested: Option<&SiteId>) -> Option<Vec<SiteId>> {
        match (self, requested) {
            (SiteScope::All, None) => None,
            (SiteScope::All, Some(site)) => Some(vec![site.clone()]),
            (SiteScope::Only(sites), None) => Some(sites.iter().cloned().collect()),
            (SiteScope::Only(sites), Some(site)) => {
                Some(sites.iter().filter(|s| *s == site).cloned().collect())
            }
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// For the audit log: `user:<sub>` or `token:<name>`.
    pub actor: String,
    pub role: Role,
    pub sites: SiteScope,
}

impl Caller {
    /// `Forbidden` unless the caller holds `role` (or a higher one).
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs the {} role; {} has {}",
                role.as_str(),
                self.actor,
                self.role.as_str()
            )))
        }
    }
}

/// `[api.oidc]`: where JWTs come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Accepted `aud` values (a token must name one of them).
    pub audience: Vec<String>,
    /// The provider's JWKS document (https; http only on loopback), or
    pub jwks_url: Option<String>,
    /// a JWKS file (the keys are read once, at start).
    pub jwks_file: Option<PathBuf>,
    /// Dotted path of the roles claim: `roles`, `realm_access.roles`, ...
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Dotted path of the sites claim.
    #[serde(default = "default_sites_claim")]
    pub sites_claim: String,
    /// The claim values that mean each role.
    #[serde(default)]
    pub role_names: RoleNames,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_seconds: u64,
    /// The web UI's sign-in through this provider; without it the UI asks
    /// for an API token.
    #[serde(default)]
    pub sign_in: Option<super::ui::SignInConfig>,
}

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_sites_claim() -> String {
    "sites".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_refresh() -> u64 {
    300
}

/// `[api.oidc.role_names]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleNames {
    pub viewer: String,
    pub reviewer: String,
    pub admin: String,
}

impl Default for RoleNames {
    fn default() -> Self {
        RoleNames {
            viewer: "viewer".into(),
            reviewer: "reviewer".into(),
            admin: "admin".into(),
        }
    }
}

impl OidcConfig {
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.issuer.is_empty() {
            out.push(format!("{at}.issuer: empty"));
        }
        if self.audience.is_empty() || self.audience.iter().any(String::is_empty) {
            out.push(format!("{at}.audience: name at least one, none empty"));
        }
        match (&self.jwks_url, &self.jwks_file) {
            (None, None) => out.push(format!("{at}: set jwks_url or jwks_file")),
            (Some(_), Some(_)) => out.push(format!("{at}: set jwks_url or jwks_file, not both")),
            (Some(url), None) if !url.starts_with("https://") && !is_loopback_http(url) => out
                .push(format!(
                    "{at}.jwks_url: must be https:// (plain http only on loopback): {}",
                    redact_url(url)
                )),
            _ => {}
        }
        for (name, path) in [
            ("roles_claim", &self.roles_claim),
            ("sites_claim", &self.sites_claim),
        ] {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                out.push(format!("{at}.{name}: not a dotted claim path: {path:?}"));
            }
        }
        if self.jwks_refresh_seconds < 30 {
            out.push(format!("{at}.jwks_refresh_seconds: at least 30"));
        }
        if let Some(sign_in) = &self.sign_in {
            out.extend(sign_in.problems(&format!("{at}.sign_in")));
        }
        out
    }
}

/// `http://` to a loopback address: signing keys fetched in clear could be
/// swapped by anyone on the path, so only a local provider may skip TLS.
fn is_loopback_http(url: &str) -> bool {
    url.starts_with("http://") && super::ui::origin(url).is_some()
}

/// Why a token was refused: the problem's detail and the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    sites: Vec<String>,
    token_sha256: String,
}

/// The API tokens file, loaded.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    by_hash: HashMap<[u8; 32], (String, Role, SiteScope)>,
}

impl ApiTokens {
    pub fn load(path: &Path) -> Result<ApiTokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ApiTokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<ApiTokens, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_hash = HashMap::new();
        let mut names = BTreeSet::new();
        for entry in file.token {
            if entry.name.is_empty()
                || entry.name.len() > 64
                || entry.name.contains(char::is_whitespace)
            {
                return Err(format!(
                    "token name {:?}: 1-64 characters, no spaces",
                    entry.name
                ));
            }
            if !names.insert(entry.name.clone()) {
                return Err(format!("token name {:?} appears twice", entry.name));
            }
            let hash = parse_sha256(&entry.token_sha256).ok_or_else(|| {
                format!(
                    "token {:?}: token_sha256 is not 64 hex characters",
                    entry.name
                )
            })?;
            let sites = SiteScope::from_names(&entry.sites)
                .map_err(|e| format!("token {:?}: {e}", entry.name))?;
            if by_hash
                .insert(hash, (entry.name.clone(), entry.role, sites))
                .is_some()
            {
                return Err(format!(
                    "token {:?}: the same token as another entry",
                    entry.name
                ));
            }
        }
        Ok(ApiTokens { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn find(&self, token: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&hash).map(|(name, role, sites)| Caller {
            actor: format!("token:{name}"),
            role: *role,
            sites: sites.clone(),
        })
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The JWKS and when it was fetched.
#[derive(Debug, Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
    last_error: Option<String>,
}

/// Least time between two fetches caused by unknown key ids.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// Verifies JWTs against the provider's keys.
#[derive(Debug)]
pub struct Oidc {
    config: OidcConfig,
    keys: RwLock<Keys>,
    /// When an unknown `kid` last caused a fetch.
    last_forced: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl Oidc {
    /// Loads the JWKS file, or fetches the URL once (a failure is logged
    /// and retried: API tokens keep working while the provider is down).
    pub async fn new(config: OidcConfig) -> Result<Oidc, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let oidc = Oidc {
            config,
            keys: RwLock::new(Keys::default()),
            last_forced: Mutex::new(None),
            http,
        };
        if let Some(path) = &oidc.config.jwks_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?;
            *oidc.keys.write().await = Keys {
                set: Some(set),
                fetched: Some(Instant::now()),
                last_error: None,
            };
        } else if let Err(e) = oidc.refresh().await {
            tracing::error!(error = %e, "JWKS fetch failed; JWTs are refused until it succeeds");
        }
        Ok(oidc)
    }

    /// Fetches the JWKS URL (a file is never re-read).
    pub async fn refresh(&self) -> Result<(), String> {
        let Some(url) = &self.config.jwks_url else {
            return Ok(());
        };
        // These messages are logged and shown in /api/v1 problems: a
        // password written into the URL (or quoted by reqwest's message)
        // is masked.
        let shown = redact_url(url);
        let fetched = async {
            let response = self.http.get(url).send().await.map_err(|e| {
                format!("GET {shown}: {}", redact_url(&e.without_url().to_string()))
            })?;
            if !response.status().is_success() {
                return Err(format!("GET {shown}: HTTP {}", response.status()));
            }
            response
                .json::<JwkSet>()
                .await
                .map_err(|e| format!("GET {shown}: not a JWKS: {}", e.without_url()))
        }
        .await;
        let mut keys = self.keys.write().await;
        match fetched {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), "JWKS fetched");
                *keys = Keys {
                    set: Some(set),
                    fetched: Some(Instant::now()),
                    last_error: None,
                };
                Ok(())
            }
            Err(e) => {
                keys.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Whether the keys are due for their periodic refresh.
    pub async fn refresh_due(&self) -> bool {
        let keys = self.keys.read().await;
        self.config.jwks_url.is_some()
            && keys.fetched.is_none_or(|at| {
                at.elapsed() >= Duration::from_secs(self.config.jwks_refresh_seconds)
            })
    }

    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Refusal> {
        for attempt in 0..2 {
            {
                let keys = self.keys.read().await;
                let Some(set) = &keys.set else {
                    return Err(Refusal::new(
                        "keys_unavailable",
                        format!(
                            "the identity provider's keys are not available: {}",
                            keys.last_error.as_deref().unwrap_or("not fetched yet")
                        ),
                    ));
                };
                let found = match kid {
                    Some(kid) => set.find(kid),
                    // Without a kid, only an unambiguous set will do.
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                };
                if let Some(jwk) = found {
                    if let Some(key_alg) = jwk.common.key_algorithm
                        && key_alg != jsonwebtoken::jwk::KeyAlgorithm::from(alg)
                    {
                        return Err(Refusal::new(
                            "wrong_algorithm",
                            format!("the key is for {key_alg}, the token says {alg:?}"),
                        ));
                    }
                    return DecodingKey::from_jwk(jwk).map_err(|e| {
                        Refusal::new("bad_key", format!("the provider's key is unusable: {e}"))
                    });
                }
            }
            // An unknown kid: the provider may have rotated its keys.
            if attempt == 0 && self.may_force_refresh() {
                let _ = self.refresh().await;
                continue;
            }
            break;
        }
        Err(Refusal::new(
            "unknown_key",
            match kid {
                Some(kid) => format!("no key {kid:?} in the identity provider's JWKS"),
                None => "the token names no key id (kid)".into(),
            },
        ))
    }

    fn may_force_refresh(&self) -> bool {
        if self.config.jwks_url.is_none() {
            return false;
        }
        let mut last = self.last_forced.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Verifies a JWT and maps its claims to a caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        let header = decode_header(token)
            .map_err(|e| Refusal::new("malformed", format!("not a valid JWT: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Refusal::new(
                "wrong_algorithm",
                format!("{:?} is not accepted (RS256 or ES256)", header.alg),
            ));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        let data = decode::<serde_json::Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let reason = match e.kind() {
                K::ExpiredSignature => "expired",
                K::ImmatureSignature => "not_yet_valid",
                K::InvalidAudience => "wrong_audience",
                K::InvalidIssuer => "wrong_issuer",
                K::InvalidSignature => "bad_signature",
                K::MissingRequiredClaim(_) => "missing_claim",
                K::InvalidAlgorithm => "wrong_algorithm",
                _ => "invalid",
            };
            Refusal::new(reason, format!("token refused: {e}"))
        })?;
        self.caller(&data.claims)
    }

    fn caller(&self, claims: &serde_json::Value) -> Result<Caller, Refusal> {
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Refusal::new("missing_claim", "the token has no subject (sub)"))?;
        let names = &self.config.role_names;
        let held = strings_at(claims, &self.config.roles_claim);
        let role = [
            (Role::Admin, &names.admin),
            (Role::Reviewer, &names.reviewer),
            (Role::Viewer, &names.viewer),
        ]
        .into_iter()
        .find(|(_, name)| held.iter().any(|h| h == *name))
        .map(|(role, _)| role)
        .ok_or_else(|| {
            Refusal::new(
                "no_role",
                format!(
                    "the token's {} claim holds none of {}, {}, {}",
                    self.config.roles_claim, names.viewer, names.reviewer, names.admin
                ),
            )
        })?;
        let site_names = strings_at(claims, &self.config.sites_claim);
        let sites = if site_names.is_empty() {
            if role == Role::Admin {
                SiteScope::All
            } else {
                SiteScope::Only(BTreeSet::new())
            }
        } else {
            SiteScope::from_names(&site_names).map_err(|e| {
                Refusal::new("bad_claim", format!("{}: {e}", self.config.sites_claim))
            })?
        };
        Ok(Caller {
            actor: format!("user:{sub}"),
            role,
            sites,
        })
    }
}

/// The strings at a dotted claim path: a string, or a list of them.
fn strings_at(claims: &serde_json::Value, path: &str) -> Vec<String> {
    let mut at = claims;
    for part in path.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return Vec::new(),
        }
    }
    match at {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Both kinds of token, checked in turn.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    pub oidc: Option<Arc<Oidc>>,
    pub tokens: ApiTokens,
}

impl Authenticator {
    /// The caller behind an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        let value = authorization
            .ok_or_else(|| Refusal::new("missing", "send Authorization: Bearer <token>"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::new("malformed", "the Authorization header is not Bearer"))?;
        // A JWT has three dot-separated parts; an API token is hex.
        if token.split('.').count() == 3 {
            return match &self.oidc {
                Some(oidc) => oidc.verify(token).await,
                None => Err(Refusal::new(
                    "jwt_not_configured",
                    "JWTs are not accepted here ([api.oidc] is not configured)",
                )),
            };
        }
        self.tokens
            .find(token)
            .ok_or_else(|| Refusal::new("unknown_token", "unknown API token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc_at(jwks_url: &str) -> OidcConfig {
        toml::from_str(&format!(
            "issuer = \"https://idp.example\"\naudience = [\"central\"]\njwks_url = \"{jwks_url}\"\n"
        ))
        .expect("parses")
    }

    /// A JWKS URL written with a password: neither the validation problem
    /// nor a failed fetch (logged, and shown in the API's problems) quotes it.
    #[tokio::test]
    async fn a_jwks_url_password_stays_out_of_problems_and_fetch_errors() {
        let remote = oidc_at("http://keys:hunter2@idp.example/jwks");
        let problems = remote.problems("api.oidc");
        assert!(
            problems.iter().any(|p| p.contains("keys:***@idp.example")),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|p| p.contains("hunter2")),
            "{problems:?}"
        );

        // Nothing listens on the port (bound, then dropped): a connect error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let oidc = Oidc::new(oidc_at(&format!(
            "http://keys:hunter2@127.0.0.1:{port}/jwks"
        )))
        .await
        .unwrap();
        let e = oidc.refresh().await.unwrap_err();
        assert!(e.starts_with("GET http://keys:***@127.0.0.1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");

        // A server that answers, with something that is not a JWKS.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = "{\"not\":\"keys\"}";
                let _ = socket
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        let oidc = Oidc::new(oidc_at(&format!("http://keys:hunter2@{addr}/jwks")))
            .await
            .unwrap();
        let e = oidc.refresh().await.unwrap_err();
        assert!(e.contains("not a JWKS") && !e.contains("hunter2"), "{e}");
    }
}
