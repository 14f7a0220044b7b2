//! Writes the committed seed inputs under fuzz/seeds/<target>/ from the
//! project's own examples (`bash scripts/fuzz.sh seeds`): the wire examples
//! every schema test uses, rendered topics, plates of several countries, and
//! small images including a decompression bomb, and the configuration
//! files the project ships.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, RgbImage};
use inspection_core::image_check::with_declared_size;
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{self, examples};
use inspection_core::{DeviceId, SiteId};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create the seed folder");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn encoded(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 13) as u8, 60])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn main() {
    // The first byte selects the topic kind in the wire_decode target.
    let with_kind = |kind: u8, json: Vec<u8>| [vec![kind], json].concat();
    write(
        "wire_decode",
        "status.json",
        &with_kind(0, wire::encode(&examples::status()).unwrap()),
    );
    for (i, event) in examples::inspection().iter().enumerate() {
        let json = wire::encode(event).unwrap();
        write(
            "wire_decode",
            &format!("event-{i:02}.json"),
            &with_kind(1, json),
        );
    }
    let result = wire::encode(&examples::command_result()).unwrap();
    write(
        "wire_decode",
        "event-command-result.json",
        &with_kind(1, result),
    );
    let telemetry = wire::encode(&examples::telemetry()).unwrap();
    write("wire_decode", "telemetry.json", &with_kind(2, telemetry));
    write(
        "wire_decode",
        "ack.json",
        &with_kind(3, wire::encode(&examples::ack()).unwrap()),
    );
    let command = wire::encode(&examples::command()).unwrap();
    write("wire_decode", "command.json", &with_kind(4, command));

    let prefix = TopicPrefix::default();
    let site = SiteId::new("de-muc-airport").unwrap();
    let device = DeviceId::new("bay-03").unwrap();
    for kind in [
        TopicKind::Status,
        TopicKind::Events,
        TopicKind::Telemetry,
        TopicKind::Ack,
        TopicKind::Cmd,
    ] {
        let topic = Topic::new(site.clone(), device.clone(), kind).render(&prefix);
        write("topic_parse", &format!("{kind}.txt"), topic.as_bytes());
    }
    write("topic_parse", "wildcard.txt", b"inspect/v1/+/bay-03/events");
    write("topic_parse", "multi.txt", b"inspect/v1/de-muc-airport/#");
    write(
        "topic_parse",
        "unicode.txt",
        "inspect/v1/de-m\u{fc}n/bay-03/events".as_bytes(),
    );

    for (i, plate) in [
        "M-AB 1234",
        "B MW 1234E",
        "AB-123-CD",
        "GD 12345",
        "1-ABC-234",
        "AB12 CDE",
        "W-12345A",
        "0O1I l|8B",
        "",
    ]
    .iter()
    .enumerate()
    {
        write(
            "plate_normalize",
            &format!("plate-{i}.txt"),
            plate.as_bytes(),
        );
    }

    let jpeg = encoded(ImageFormat::Jpeg);
    write("image_decode", "small.jpg", &jpeg);
    write("image_decode", "small.png", &encoded(ImageFormat::Png));
    write(
        "image_decode",
        "bomb.jpg",
        &with_declared_size(&jpeg, 16_384, 16_384).unwrap(),
    );
    write("image_decode", "truncated.jpg", &jpeg[..jpeg.len() / 2]);

    // The configuration files the project ships: the two examples and
    // every role's file in the Kubernetes base.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let copy = |target: &str, name: &str, from: &Path| {
        write(
            target,
            name,
            &fs::read(from).expect("read an example configuration"),
        );
    };
    copy(
        "config_central",
        "example.toml",
        &root.join("central/config/central.example.toml"),
    );
    copy(
        "config_edge",
        "example.toml",
        &root.join("edge-agent/config/edge-agent.example.toml"),
    );
    let k8s = root.join("k8s/base/config");
    for entry in fs::read_dir(&k8s).expect("k8s/base/config") {
        let path = entry.expect("a k8s config file").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = format!("k8s-{}", path.file_name().unwrap().to_string_lossy());
            copy("config_central", &name, &path);
        }
    }
}
