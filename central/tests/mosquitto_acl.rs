//! The production ACL for a fleet on mosquitto, with client certificates
//! from `central certs`: a device publishes under its own topics only, and
//! the broker denies (and logs) the rest.

mod support;

use std::process::Command;
use std::time::Duration;

use central::certs::DevPki;
use inspection_core::ids::{DeviceId, SiteId};
use support::mosquitto::{Mosquitto, MosquittoOptions, MosquittoTls};

#[test]
fn mosquitto_with_dev_certificates_enforces_the_fleet_acl() {
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::new(pki_dir.path());
    pki.ensure_ca().expect("ca");
    pki.issue_server(&["127.0.0.1".into()], 2)
        .expect("server cert");
    let site = SiteId::new("s1").expect("id");
    let device = DeviceId::new("d1").expect("id");
    let (cert, key) = pki.issue_device(&site, &device, 2).expect("device cert");
    let acl = pki_dir.path().join("acl");
    std::fs::write(&acl, Mosquitto::fleet_acl("inspect")).expect("acl");
    let broker = Mosquitto::start(MosquittoOptions {
        tls: Some(MosquittoTls {
            ca: pki.ca_cert(),
            cert: pki.server_cert(),
            key: pki.server_key(),
        }),
        extra_config: vec![format!("acl_file {}", acl.display())],
    });
    let tls = broker.tls.expect("tls listener");

    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.plain.port().to_string()])
        .args([
            "-u",
            "bridge",
            "-t",
            "inspect/v1/+/+/events",
            "-v",
            "-W",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (installed with mosquitto-clients)");
    std::thread::sleep(Duration::from_millis(500));
    let publish = |topic: &str, message: &str| {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &tls.port().to_string()])
            .arg("--cafile")
            .arg(pki.ca_cert())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["-q", "1", "-t", topic, "-m", message])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success(), "{topic}: {status}\n{}", broker.log());
    };
    publish("inspect/v1/s1/d1/events", "own");
    publish("inspect/v1/s2/d9/events", "forged");
    let out = sub.wait_with_output().expect("mosquitto_sub output");
    let received = String::from_utf8_lossy(&out.stdout);
    assert!(
        received.contains("inspect/v1/s1/d1/events own"),
        "{received}\n{}",
        broker.log()
    );
    assert!(!received.contains("forged"), "{received}");
    assert!(
        broker.log().contains("Denied PUBLISH") && broker.log().contains("inspect/v1/s2/d9/events"),
        "{}",
        broker.log()
    );
}
