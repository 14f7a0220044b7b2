//! Report exports read back by real readers: poppler's `pdftotext`,
//! `pdfinfo` and `pdfimages` (Debian poppler-utils) for the PDF, the image
//! crate for the HTML's data URIs and the Markdown's picture files.
//! `REPORT_EXPORT_KEEP=DIR` keeps the PDFs for a look.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use base64::Engine as _;
use central::report::export::{
    self, ExportConfig, ExportError, ExportFont, ExportOptions, Exported, Format, FrameSource,
    Side, annotate, side_by_side, status_color,
};
use central::report::{Language, PickupFacts, Report, ReportFrame, ReportInput, template};
use central::store::FindingStatus;
use chrono::{TimeZone, Utc};
use image::{Rgb, RgbImage};
use inspection_core::wire::Sha256Hex;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use support::report::{finding, return_input};

const POSITIONS: [&str; 3] = ["front", "left", "rear"];

/// Frames in memory: a stand-in for the object store.
struct Frames(HashMap<String, Vec<u8>>);

#[async_trait]
impl FrameSource for Frames {
    async fn frame(&self, sha256: &str) -> Result<Vec<u8>, ExportError> {
        self.0
            .get(sha256)
            .cloned()
            .ok_or_else(|| ExportError::FrameNotFound(sha256.to_owned()))
    }
}

/// A 960x540 gradient, different per seed.
fn gradient(seed: u8) -> RgbImage {
    RgbImage::from_fn(960, 540, |x, y| {
        Rgb([
            (x * 255 / 960) as u8,
            (y * 255 / 540) as u8,
            seed.wrapping_mul(40).wrapping_add(30),
        ])
    })
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

fn sha(bytes: &[u8]) -> String {
    Sha256Hex::from_digest(&Sha256::digest(bytes).into())
        .as_str()
        .to_owned()
}

/// The fixture return with a frame per position, a pickup with a frame
/// per position, findings on their position's frame, and the template's
/// report.
struct Scene {
    input: ReportInput,
    report: Report,
    frames: HashMap<String, Vec<u8>>,
    /// (pickup?, position) -> sha256.
    shas: HashMap<(bool, &'static str), String>,
}

fn scene(language: Language) -> Scene {
    let mut input = return_input(language);
    let mut frames = HashMap::new();
    let mut shas = HashMap::new();
    let mut pickup_frames = Vec::new();
    for (i, position) in POSITIONS.into_iter().enumerate() {
        for pickup in [false, true] {
            let bytes = jpeg(&gradient(i as u8 + if pickup { 10 } else { 0 }));
            let sha = sha(&bytes);
            let frame = ReportFrame {
                camera: format!("cam-{position}"),
                position: position.into(),
                sha256: sha.clone(),
                rank: 1,
                state: "ok".into(),
            };
            if pickup {
                pickup_frames.push(frame);
            } else {
                input.frames.push(frame);
            }
            frames.insert(sha.clone(), bytes);
            shas.insert((pickup, position), sha);
        }
    }
    input.pickup = Some(PickupFacts {
        inspection_id: Uuid::from_u128(7),
        started_at: Some(Utc.with_ymd_and_hms(2026, 11, 28, 8, 0, 0).unwrap()),
        frames: pickup_frames,
    });
    for f in &mut input.findings {
        f.sha256 = shas[&(
            false,
            *POSITIONS.iter().find(|p| **p == f.position).unwrap(),
        )]
            .clone();
    }
    let draft = template::render(&input);
    let report = Report {
        id: Uuid::from_u128(99),
        inspection_id: input.inspection_id,
        writer: "template".into(),
        model: None,
        language,
        summary: draft.summary,
        narrative: draft.narrative,
        attempts: Vec::new(),
        created_at: input.processed_at,
    };
    Scene {
        input,
        report,
        frames,
        shas,
    }
}

fn options() -> ExportOptions {
    ExportOptions::from_config(&ExportConfig::default())
        .expect("DejaVu Sans (Debian fonts-dejavu-core) is installed")
}

fn font() -> ExportFont {
    options().font
}

/// Runs a poppler tool; its absence is a setup error worth a clear message.
fn poppler(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool}: {e} (install Debian's poppler-utils, as .ci/test.sh does)")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn write(dir: &Path, exported: &Exported) -> std::path::PathBuf {
    let path = dir.join(&exported.file_name);
    std::fs::write(&path, &exported.bytes).unwrap();
    path
}

async fn export_scene(scene: &Scene, format: Format) -> Exported {
    export::export(
        &scene.input,
        &scene.report,
        &Frames(scene.frames.clone()),
        format,
        &options(),
    )
    .await
    .expect("export")
}

#[tokio::test]
async fn the_pdf_reads_back_with_a_pdf_reader_in_the_report_language() {
    let dir = tempfile::tempdir().unwrap();
    for (language, words) in [
        (Language::En, ["dent", "scratch", "possible new damage"]),
        (
            Language::De,
            ["Delle", "Kratzer", "möglicher neuer Schaden"],
        ),
    ] {
        let scene = scene(language);
        let started = Instant::now();
        let exported = export_scene(&scene, Format::Pdf).await;
        println!(
            "{language}: PDF of {} bytes in {:?}",
            exported.bytes.len(),
            started.elapsed()
        );
        assert_eq!(exported.content_type, "application/pdf");
        assert!(exported.file_name.ends_with(".pdf"));
        assert!(
            exported.unavailable.is_empty(),
            "{:?}",
            exported.unavailable
        );
        assert!(exported.attachments.is_empty());
        let path = write(dir.path(), &exported);
        if let Ok(keep) = std::env::var("REPORT_EXPORT_KEEP") {
            std::fs::copy(
                &path,
                Path::new(&keep).join(format!("report-{language}.pdf")),
            )
            .unwrap();
        }
        let path = path.to_str().unwrap();

        let text = poppler("pdftotext", &["-layout", path, "-"]);
        assert!(text.contains("AB 12 CDE"), "{text}");
        for reference in ["F1", "F2", "F3"] {
            assert!(text.contains(reference), "{reference} in {text}");
        }
        for word in words {
            assert!(text.contains(word), "{word} in {text}");
        }
        let opening: Vec<&str> = scene.report.narrative.split_whitespace().take(4).collect();
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&opening.join(" ")), "{opening:?} in {text}");

        let info = poppler("pdfinfo", &[path]);
        let pages: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("pdfinfo names the page count");
        assert!(pages >= 2, "{info}");

        // Three annotated frames and three pickup/return pairs, as JPEGs.
        let list = poppler("pdfimages", &["-list", path]);
        let images: Vec<&str> = list.lines().skip(2).collect();
        assert_eq!(images.len(), 6, "{list}");
        assert!(images.iter().all(|l| l.contains("jpeg")), "{list}");
    }
}

#[tokio::test]
async fn the_html_is_self_contained_in_the_report_language_and_escapes_text() {
    let mut scene = scene(Language::De);
    scene.report.narrative = format!("{}\n<script>alert(1)</script>", scene.report.narrative);
    scene.input.site = "site<b>\"0042\"".into();
    let exported = export_scene(&scene, Format::Html).await;
    assert_eq!(exported.content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(exported.bytes).unwrap();
    assert!(html.contains("<html lang=\"de\""), "{}", &html[..200]);
    assert!(html.contains("AB 12 CDE"));
    assert!(html.contains("Delle") && html.contains("Kratzer"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("site&lt;b&gt;&quot;0042&quot;"));
    assert!(!html.contains("site<b>"));

    let prefix = "data:image/jpeg;base64,";
    let mut decoded = 0;
    for part in html.split(prefix).skip(1) {
        let b64 = &part[..part.find('"').expect("closing quote")];
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let img =
            image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).expect("a JPEG");
        assert!(img.width() <= 1280);
        decoded += 1;
    }
    assert_eq!(decoded, 6);
}

#[tokio::test]
async fn the_markdown_has_the_table_and_links_its_pictures() {
    let scene = scene(Language::En);
    let exported = export_scene(&scene, Format::Markdown).await;
    let md = String::from_utf8(exported.bytes).unwrap();
    assert!(md.contains("| F1 | dent | front | new | 87 % |"), "{md}");
    assert!(
        md.contains("| F2 | possible new damage | left side | possible new damage | 64 % |"),
        "{md}"
    );
    assert!(
        md.contains("| F3 | scratch | rear | pre-existing | 71 % |"),
        "{md}"
    );
    assert!(md.contains("AB 12 CDE"));
    assert_eq!(exported.attachments.len(), 6);
    for file in &exported.attachments {
        assert!(
            md.contains(&format!("]({})", file.path)),
            "{} in {md}",
            file.path
        );
        assert!(file.path.starts_with("images/") && file.path.ends_with(".jpg"));
        image::load_from_memory_with_format(&file.bytes, image::ImageFormat::Jpeg).expect("a JPEG");
    }
    assert!(
        exported
            .attachments
            .iter()
            .any(|f| f.path == "images/front-pickup-return.jpg")
    );
}

#[test]
fn boxes_are_drawn_in_the_status_colour_and_pairs_are_side_by_side() {
    let font = font();
    let frame = gradient(3);
    let f = finding(1, "dent", "front", FindingStatus::New, 0.87);
    let out = annotate(&frame, &[&f], Language::En, &font);
    let red = status_color(FindingStatus::New);
    assert_eq!(red, Rgb([220, 20, 20]));
    // The fixture box is (100,120)-(220,200): its left and bottom edges.
    assert_eq!(*out.get_pixel(101, 160), red);
    assert_eq!(*out.get_pixel(160, 198), red);
    // Far from the box and its tag, the frame is unchanged.
    for (x, y) in [(900, 500), (600, 300), (10, 500)] {
        assert_eq!(out.get_pixel(x, y), frame.get_pixel(x, y));
    }

    let small = RgbImage::from_pixel(640, 480, Rgb([200, 200, 200]));
    let pair = side_by_side(&frame, &small, ("Pickup", "Return"), &font);
    // Both at 480 px high: 960x540 becomes 853x480.
    assert_eq!(pair.width(), 853 + 640);
    assert!(pair.height() > 480, "a caption row above the pictures");
    assert_eq!(
        *pair.get_pixel(853 + 320, pair.height() - 10),
        Rgb([200, 200, 200])
    );
}

#[tokio::test]
async fn missing_and_corrupt_frames_are_named_and_the_export_still_succeeds() {
    let scene = scene(Language::En);
    let mut frames = scene.frames.clone();
    frames.remove(&scene.shas[&(false, "front")]);
    let left = frames.get_mut(&scene.shas[&(false, "left")]).unwrap();
    left.truncate(left.len() / 2);
    frames.remove(&scene.shas[&(true, "rear")]);
    let source = Frames(frames);

    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Pdf, Format::Html, Format::Markdown] {
        let exported = export::export(&scene.input, &scene.report, &source, format, &options())
            .await
            .expect("export despite unavailable frames");
        let mut named: Vec<_> = exported
            .unavailable
            .iter()
            .map(|u| (u.side, u.position.as_str(), u.reason.as_str()))
            .collect();
        named.sort_by_key(|n| n.1);
        assert_eq!(
            named,
            [
                (Side::Return, "front", "not found"),
                (Side::Return, "left", "truncated JPEG"),
                (Side::Pickup, "rear", "not found"),
            ]
        );
        let text = match format {
            Format::Pdf => poppler(
                "pdftotext",
                &[write(dir.path(), &exported).to_str().unwrap(), "-"],
            ),
            _ => String::from_utf8(exported.bytes.clone()).unwrap(),
        };
        assert!(text.contains("image unavailable (not found)"), "{text}");
        assert!(
            text.contains("image unavailable (truncated JPEG)"),
            "{text}"
        );
        if format == Format::Markdown {
            // Only the rear frame could be drawn; no pair had both sides.
            let paths: Vec<_> = exported
                .attachments
                .iter()
                .map(|a| a.path.as_str())
                .collect();
            assert_eq!(paths, ["images/rear.jpg"]);
        }
    }
}

#[tokio::test]
async fn frames_come_from_the_object_store_the_upload_role_writes() {
    let scene = scene(Language::Fr);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    for (sha, bytes) in &scene.frames {
        if *sha == scene.shas[&(true, "left")] {
            continue;
        }
        let key = central::upload::object_key(&Sha256Hex::new(sha.clone()).unwrap());
        store
            .put(&key, PutPayload::from(bytes.clone()))
            .await
            .unwrap();
    }
    let exported = export::export(
        &scene.input,
        &scene.report,
        &store,
        Format::Html,
        &options(),
    )
    .await
    .expect("export");
    let html = String::from_utf8(exported.bytes).unwrap();
    assert!(html.contains("<html lang=\"fr\""));
    assert!(html.contains("bosse"), "the French word for dent");
    assert_eq!(html.matches("data:image/jpeg;base64,").count(), 5);
    assert_eq!(exported.unavailable.len(), 1);
    assert_eq!(exported.unavailable[0].side, Side::Pickup);
    assert_eq!(exported.unavailable[0].reason, "not found");
    assert!(html.contains("image indisponible (not found)"));

    // An id that is not a SHA-256 is a missing frame, not a failure.
    let err = store.frame("../../etc/passwd").await.unwrap_err();
    assert_eq!(err.code(), "bad_frame_id");
}

#[test]
fn a_missing_or_unusable_font_is_an_error_with_a_code() {
    let missing = ExportConfig {
        font: "/nonexistent/DejaVuSans.ttf".into(),
        ..ExportConfig::default()
    };
    let err = ExportOptions::from_config(&missing).unwrap_err();
    assert_eq!(err.code(), "font");
    assert!(err.to_string().contains("/nonexistent/DejaVuSans.ttf"));

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("font.ttf");
    std::fs::write(&garbage, b"not a font at all").unwrap();
    let err = ExportFont::load(&garbage).unwrap_err();
    assert_eq!(err.code(), "font");
}
