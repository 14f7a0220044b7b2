//! Image upload: `PUT {upload_url}/v1/images/{sha256}` with the JPEG as the
//! body, authenticated by the device's client certificate or its token
//! (HTTP Basic `site/device:token`).

use std::time::Duration;

use bytes::Bytes;
use inspection_core::wire::Sha256Hex;
use reqwest::{StatusCode, Url};

use super::UplinkError;

/// What one PUT came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Central has the image: `created` for 201, false for 200 (it was there).
    Stored { created: bool },
    /// Try the same image again after a backoff: the network, central, or
    /// this device's credentials are at fault, not the image.
    Retry { code: String, detail: String },
    /// Central refuses this image for good (bad JPEG, hash mismatch, too
    /// large): retrying can never succeed.
    Rejected { status: u16, detail: String },
}

/// Statuses that say the image itself is unacceptable. Everything else that
/// is not a success is retried: 401/403 mean the device's credentials are
/// misconfigured (an operator fixes them; the images must still be there
/// then), 404/405 a wrong `upload_url`, 408/429/5xx a busy or broken central.
const PERMANENT: [StatusCode; 4] = [
    StatusCode::BAD_REQUEST,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::UNPROCESSABLE_ENTITY,
];

/// The HTTP side of the uplink.
#[derive(Clone)]
pub struct Uploader {
    client: reqwest::Client,
    base: String,
    basic: Option<(String, String)>,
}

/// Without the device's token: a `?uploader` log field or a panic message
/// shows the user it authenticates as, never the secret.
impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("base", &self.base)
            .field("user", &self.basic.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// `tls` is required for an `https://` base; `basic` is `(user, token)`.
    pub fn new(
        base: &Url,
        tls: Option<rustls::ClientConfig>,
        basic: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Uploader, UplinkError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // The upload service is named in the config; a redirect would
            // send the device's credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none());
        if base.scheme() == "https" {
            let tls = tls.ok_or_else(|| UplinkError::Tls("https:// needs a CA".into()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder
            .build()
            .map_err(|e| UplinkError::Tls(format!("HTTP client: {e}")))?;
        Ok(Uploader {
            client,
            base: base.as_str().trim_end_matches('/').to_owned(),
            basic,
        })
    }

    /// One PUT of one image.
    pub async fn put(&self, sha256: &Sha256Hex, jpeg: Bytes) -> UploadOutcome {
        let url = format!("{}/v1/images/{sha256}", self.base);
        let mut request = self
            .client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, crate::session::JPEG)
            .body(jpeg);
        if let Some((user, token)) = &self.basic {
            request = request.basic_auth(user, Some(token));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(error) => {
                let code = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                return UploadOutcome::Retry {
                    code: code.into(),
                    detail: error_chain(&error),
                };
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let detail: String = body.chars().take(256).collect();
        if status == StatusCode::CREATED {
            UploadOutcome::Stored { created: true }
        } else if status.is_success() {
            UploadOutcome::Stored { created: false }
        } else if PERMANENT.contains(&status) {
            UploadOutcome::Rejected {
                status: status.as_u16(),
                detail,
            }
        } else {
            UploadOutcome::Retry {
                code: status.as_u16().to_string(),
                detail,
            }
        }
    }
}

/// The error and its causes, as reqwest's top-level message alone says
/// little ("error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_the_user_but_not_the_token() {
        let base = Url::parse("http://127.0.0.1:8443").unwrap();
        let uploader = Uploader::new(
            &base,
            None,
            Some(("site-1/bay-1".into(), "device-token-hunter2".into())),
            Duration::from_secs(5),
        )
        .unwrap();
        for shown in [format!("{uploader:?}"), format!("{uploader:#?}")] {
            assert!(shown.contains("site-1/bay-1"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
