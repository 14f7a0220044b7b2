//! The staff API over HTTPS (`[api.tls]`), and the rule every listener
//! follows: TLS, loopback, or an explicit `plain_http = true`.

use std::sync::Arc;

use central::api::{ApiConfig, ApiMetrics, ApiServer, Role};
use central::certs::{DevPki, append_api_token, new_token};
use central::config::Config;
use central::report::export::ExportConfig;
use central::store::{SqliteStore, Store, StoreConfig};
use central::tls::ServerTlsConfig;
use central::upload::{ObjectStoreConfig, open_object_store};
use inspection_core::config::FileChecks;
use inspection_core::topic::TopicPrefix;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

#[tokio::test]
async fn the_api_serves_https_and_refuses_plain_http_on_its_tls_port() {
    central::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::new(dir.path().join("pki"));
    pki.ensure_ca().unwrap();
    pki.issue_server(&["127.0.0.1".into(), "localhost".into()], 2)
        .unwrap();
    let tokens = dir.path().join("api-tokens.toml");
    let token = new_token();
    append_api_token(&tokens, "dashboard", Role::Viewer, &["*".into()], &token).unwrap();
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(ServerTlsConfig {
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_ca: None,
            client_cert_optional: false,
        }),
        tokens: Some(tokens),
        ..ApiConfig::default()
    };
    assert_eq!(config.problems("api"), Vec::<String>::new());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&StoreConfig::sqlite(&dir.path().join("central.db")))
            .await
            .unwrap(),
    );
    let images = open_object_store(&ObjectStoreConfig::Local {
        path: dir.path().join("images"),
        fsync: false,
    })
    .unwrap();
    let metrics = ApiMetrics::default();
    let server = ApiServer::bind(
        &config,
        &ExportConfig::default(),
        TopicPrefix::default(),
        store,
        images,
        metrics.clone(),
    )
    .await
    .expect("bind");
    let addr = server.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));

    let tls = central::tls::client_config(&pki.ca_cert(), None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", addr.port());
    let sites = client
        .get(format!("{base}/api/v1/sites"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("https request");
    assert_eq!(sites.status(), 200);
    let unauthenticated = client
        .get(format!("{base}/api/v1/sites"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // Plain HTTP to the TLS port: no HTTP answer, and the dropped connection
    // is counted.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/sites", addr.port()))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that sends nothing is closed after the handshake time limit;
    // here a garbage first flight, refused at once.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while metrics.connections_failed("tls_handshake") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refused handshakes counted: {}",
            metrics.connections_failed("tls_handshake")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn a_listener_off_loopback_needs_tls_or_an_explicit_plain_http() {
    // One rule for the api, the inference role and the ops endpoint; the
    // broker's plain listener and the upload role have theirs (their unit
    // tests). Checked through the whole file, as `central validate` does.
    let refused = Config::from_toml(
        "[ops]\nlisten = \"0.0.0.0:9465\"\n\n[api]\nlisten = \"0.0.0.0:8080\"\n\n\
         [inference]\nlisten = \"0.0.0.0:8444\"\n",
        FileChecks::Off,
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "ops.listen: 0.0.0.0:9465 is not a loopback address",
        "api.listen: 0.0.0.0:8080 is not a loopback address",
        "set api.tls, or api.plain_http = true",
    ] {
        assert!(refused.contains(needle), "{needle} missing from\n{refused}");
    }
    Config::from_toml(
        "[ops]\nlisten = \"0.0.0.0:9465\"\nplain_http = true\n\n\
         [api]\nlisten = \"0.0.0.0:8080\"\nplain_http = true\n",
        FileChecks::Off,
    )
    .expect("an explicit choice is accepted");
    Config::from_toml("", FileChecks::Off).expect("the defaults are loopback");
}
