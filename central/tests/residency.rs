//! The residency guard, as an operator meets it: `central validate` and
//! `central run` refuse a bucket outside the EU and a report writer outside
//! the EU, naming the setting; an override starts and says so in the log at
//! start. The S3 object store (`kind = "s3"`) against a real S3 server
//! (moto, from PyPI, installed by `.ci/test.sh` into the user cache):
//! images are stored create-if-absent, read back and deleted.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use central::upload::{ObjectStoreConfig, open_object_store};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

fn central() -> Command {
    Command::new(env!("CARGO_BIN_EXE_central"))
}

/// moto's S3 server (installed by `.ci/test.sh`), or the one `MOTO_SERVER`
/// names.
fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return path.into();
    }
    central::paths::cache_dir()
        .expect("INSPECTION_CACHE_DIR, XDG_CACHE_HOME or HOME")
        .join("venv-moto/bin/moto_server")
}

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Moto {
    let bin = moto_binary();
    assert!(
        bin.exists(),
        "{} is missing: run `bash .ci/test.sh`, which installs moto (PyPI) into the user cache",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, url }
}

/// Creates a bucket (moto takes unsigned requests).
async fn create_bucket(moto: &Moto, bucket: &str) {
    let answer = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("moto answers");
    assert!(answer.status().is_success(), "{:?}", answer.status());
}

fn s3(moto: &Moto, dir: &Path, bucket: &str, region: &str) -> ObjectStoreConfig {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, "moto-secret\n").unwrap();
    ObjectStoreConfig::S3 {
        bucket: bucket.into(),
        region: region.into(),
        endpoint: Some(moto.url.clone()),
        access_key_id: Some("moto-key".into()),
        secret_access_key_file: Some(secret),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_go_to_an_s3_bucket_create_if_absent() {
    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    create_bucket(&moto, "inspection-images").await;
    let store = open_object_store(&s3(&moto, dir.path(), "inspection-images", "eu-central-1"))
        .expect("the S3 store opens");

    let key = Key::from("images/ab/abcdef.jpg");
    let jpeg = Bytes::from_static(b"\xff\xd8\xff\xe0 a jpeg's bytes \xff\xd9");
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&key, jpeg.clone().into(), create.clone())
        .await
        .expect("first put");
    // A second create does not overwrite what is there (AWS answers 412,
    // object_store's AlreadyExists; moto answers with another 4xx).
    let again = store
        .put_opts(&key, Bytes::from_static(b"other").into(), create)
        .await;
    assert!(again.is_err(), "a second create must not succeed");
    let read = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(read, jpeg, "the first image is kept");

    let listed: Vec<_> = {
        use futures_util::TryStreamExt;
        store
            .list(Some(&Key::from("images")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, jpeg.len() as u64);
    store
        .delete(&key)
        .await
        .expect("deleted (erasure, retention)");
    assert!(matches!(
        store.get(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));

    // A bucket that does not exist: a clear error, not a hang.
    let missing =
        open_object_store(&s3(&moto, dir.path(), "no-such-bucket", "eu-central-1")).unwrap();
    let error = missing.put(&key, jpeg.into()).await.expect_err("no bucket");
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
}

/// A configuration with one S3 bucket and one fallback report writer.
fn config(dir: &Path, region: &str, fallback: &str, extra: &str) -> PathBuf {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, "secret\n").unwrap();
    let key = dir.join("openai-key");
    std::fs::write(&key, "sk-test\n").unwrap();
    let path = dir.join("central.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[ops]
listen = "127.0.0.1:0"
log_format = "text"

[store]
url = "sqlite://{db}"

[upload.object_store]
kind = "s3"
bucket = "inspection-images"
region = "{region}"
access_key_id = "key"
secret_access_key_file = "{secret}"

[report.fallback]
base_url = "{fallback}"
model = "gpt-4o"
api_key_file = "{key}"
{extra}
"#,
            db = dir.join("central.sqlite3").display(),
            secret = secret.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    path
}

fn validate(path: &Path) -> (Option<i32>, String) {
    let out = central()
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_refuses_a_bucket_and_a_report_writer_outside_the_eu() {
    let dir = tempfile::tempdir().unwrap();

    let ok = config(
        dir.path(),
        "eu-central-1",
        "https://eu.api.openai.com/v1",
        "",
    );
    let (code, stderr) = validate(&ok);
    assert_eq!(code, Some(0), "{stderr}");

    let us = config(dir.path(), "us-east-1", "https://api.openai.com/v1", "");
    let (code, stderr) = validate(&us);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("upload.object_store.region: the bucket inspection-images is in us-east-1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("report.fallback.base_url")
            && stderr.contains("api.openai.com is not known to be in the EU")
            && stderr.contains("https://eu.api.openai.com/v1"),
        "{stderr}"
    );

    // The operator's own allowlists.
    let allowed = config(
        dir.path(),
        "eu-west-2",
        "https://my-resource.openai.azure.com",
        "[residency]\nallowed_regions = [\"eu-west-2\"]\nallowed_hosts = [\"*.openai.azure.com\"]\n",
    );
    let (code, stderr) = validate(&allowed);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn run_refuses_at_start_and_an_override_is_logged_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let refused = config(dir.path(), "us-east-1", "https://eu.api.openai.com/v1", "");
    let out = central()
        .current_dir(dir.path())
        .args(["run", "--roles", "worker", "--config"])
        .arg(&refused)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("us-east-1"), "{stderr}");
    assert!(
        !dir.path().join("central.sqlite3").exists(),
        "nothing opened"
    );

    let overridden = config(
        dir.path(),
        "us-east-1",
        "https://eu.api.openai.com/v1",
        "[residency]\noverride_reason = \"DPA ticket 4711: US bucket until the migration\"\n",
    );
    for start in 0..2 {
        let mut child = central()
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .args(["run", "--roles", "worker", "--config"])
            .arg(&overridden)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log (stderr) until the process says it runs; the override's
        // warning comes before.
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if text.contains("central running") {
                    break;
                }
            }
            text
        });
        let started = Instant::now();
        while !reader.is_finished() && started.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = reader.join().unwrap();
        assert!(
            log.contains("residency override")
                && log.contains("DPA ticket 4711")
                && log.contains("us-east-1"),
            "start {start}: {log}"
        );
        assert!(log.contains("central running"), "start {start}: {log}");
    }
}

/// A configuration built in code (as the demo and the tests build theirs)
/// skips `Config::load`'s validation: `run` applies the guard itself,
/// before it opens anything.
#[tokio::test]
async fn run_applies_the_guard_to_a_configuration_built_in_code() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config(
        dir.path(),
        "us-east-1",
        "https://api.openai.com/v1",
        "",
    ))
    .unwrap();
    let config: central::config::Config = toml::from_str(&text).unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let error = central::run::run(
        config,
        &[central::run::Role::Worker],
        Default::default(),
        shutdown,
    )
    .await
    .expect_err("refused");
    let text = error.to_string();
    assert!(
        matches!(error, central::run::RunError::Residency(ref refused) if refused.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("us-east-1") && text.contains("api.openai.com"),
        "{text}"
    );
    assert!(
        !dir.path().join("central.sqlite3").exists(),
        "nothing opened"
    );
}
