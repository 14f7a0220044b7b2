//! The demo's return bay: camera directories of real-photo frames for one
//! vehicle's pickup and, later, its return with new damage.
//!
//! ```text
//! DESIGN
//!
//! No public data set has pickup/return pairs of one car with known new
//! damage, so the demo (and the end-to-end test) makes them from a real
//! photo (the bus photo of Debian's opencv-doc, fetched by models/fetch.sh):
//!
//! - the vehicle: the photo with a synthetic EU plate rendered on it
//!   (plates.rs, readable size), seeded so a run is reproducible;
//! - two cameras, `front` and `left`, each a different window of it;
//! - each pass: a few frames of the empty bay (a textured floor), the
//!   vehicle's frames (the camera window moving a few pixels as the car
//!   rolls in), then the empty bay again, so the edge agent's pre-screen
//!   sees a car arrive (the plate triggers the inspection) and leave;
//! - the return pass: the windows shifted and rescaled, the light warmer
//!   and dimmer, a scratch painted on the front camera's view and a dent
//!   on the left camera's (compare::synth), each box recorded so the
//!   findings can be checked against where the damage really is.
//!
//! Files are `NN.jpg` in name order, what the edge agent's `directory`
//! source replays.
//! ```

pub mod plates;
mod run;

pub use run::{DemoError, DemoOutcome, DemoPass, DemoSettings, PLATE_FONT, run};

/// The demo's site and device.
pub const SITE: &str = "demo-site";
pub const DEVICE: &str = "bay-1";

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use inspection_core::compare::synth;
use inspection_core::geometry::BBox;
use inspection_core::plate::Country;
use inspection_core::wire::InspectionKind;
use rand::SeedableRng;

/// What a pass holds: how many vehicles drive through, seen by how many
/// cameras, in how many frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BayShape {
    /// 1 (`front`) or 2 (`front` and `left`).
    pub cameras: usize,
    /// Vehicles per pass, one after the other (each its own inspection).
    pub vehicles: usize,
    /// Empty-bay frames before each vehicle's.
    pub empty_before: usize,
    /// Each vehicle's frames.
    pub vehicle_frames: usize,
    /// Empty-bay frames after each vehicle's: at the camera's pace they
    /// must last longer than the session's absence time.
    pub empty_after: usize,
}

impl BayShape {
    /// The demo's: one vehicle, two cameras.
    pub const DEMO: BayShape = BayShape {
        cameras: 2,
        vehicles: 1,
        empty_before: 3,
        vehicle_frames: 8,
        empty_after: 6,
    };
}

/// How fast the agent's directory cameras replay and when it decides that
/// a vehicle has left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Frames per second per camera (an upper bound: a replay waits for
    /// the pre-screen).
    pub fps: f32,
    /// The session's `absence_seconds`.
    pub absence_seconds: f32,
}

impl Pace {
    /// The demo's: a frame every 2 s, gone after 8 s.
    pub const DEMO: Pace = Pace {
        fps: 0.5,
        absence_seconds: 8.0,
    };
}

/// One camera of the demo bay.
#[derive(Debug, Clone)]
pub struct DemoCamera {
    pub id: String,
    pub position: String,
    /// Its frames for the pickup pass and for the return pass.
    pub pickup_dir: PathBuf,
    pub return_dir: PathBuf,
}

/// Damage painted on the return frames.
#[derive(Debug, Clone)]
pub struct PaintedDamage {
    pub camera: String,
    pub position: String,
    /// `scratch` or `dent`.
    pub kind: &'static str,
    /// Where it is in each of that camera's return vehicle frames.
    pub bbox: BBox,
}

/// What [`write_bay`] wrote.
#[derive(Debug, Clone)]
pub struct DemoBay {
    /// The plate as printed (`B AB 1234`) and its canonical key.
    pub printed_plate: String,
    pub plate: String,
    pub cameras: Vec<DemoCamera>,
    pub damage: Vec<PaintedDamage>,
}

/// A camera's window on the vehicle photo: left, top, scale.
type Window = (f32, f32, f32);

/// Camera windows on the vehicle photo: (id, position, pickup window,
/// return window).
const CAMERAS: [(&str, &str, Window, Window); 2] = [
    ("cam-front", "front", (40.0, 30.0, 1.0), (58.0, 41.0, 1.02)),
    ("cam-left", "left", (70.0, 60.0, 1.04), (84.0, 52.0, 1.05)),
];

/// The local ports of a demo run.
#[derive(Debug, Clone, Copy)]
pub struct DemoPorts {
    /// The broker's TLS listener (devices) and its internal one (bridge).
    pub mqtts: u16,
    pub internal: u16,
    /// HTTPS image upload.
    pub upload: u16,
    /// Central's /metrics, /healthz, /readyz.
    pub ops: u16,
    /// The staff API (plain HTTP on loopback).
    pub api: u16,
}

/// The certificate files a demo run uses.
#[derive(Debug, Clone)]
pub struct DemoPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub device_cert: PathBuf,
    pub device_key: PathBuf,
}

/// Central's configuration for a demo run under `dir`: every role a single
/// machine needs, SQLite and images under `dir`, the fetched plate model
/// (`plate_model`), report writers at their defaults (the embedded model
/// when it is fetched and `embedded_writer`, the template always).
pub fn central_config(
    dir: &Path,
    pki: &DemoPki,
    ports: &DemoPorts,
    plate_model: &Path,
    embedded_writer: bool,
) -> String {
    format!(
        r#"# Written by central's demo: all roles in one process.
[ops]
listen = "127.0.0.1:{ops}"
log_format = "text"

[store]
url = "sqlite://{db}"

[detectors.plate]
model = "{plate}"

[broker]
internal_listen = "127.0.0.1:{internal}"
tls_listen = "127.0.0.1:{mqtts}"
tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}" }}

[bridge]
url = "mqtt://127.0.0.1:{internal}"

[upload]
listen = "127.0.0.1:{upload}"
tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}" }}
object_store = {{ kind = "local", path = "{images}" }}

[worker]
poll_interval_ms = 100
image_wait_s = 120
image_recheck_s = 1
plate = {{ kind = "local", model = "plate" }}

[report.embedded]
enabled = {embedded_writer}

[api]
listen = "127.0.0.1:{api}"
tokens = "{tokens}"
"#,
        ops = ports.ops,
        db = dir.join("central.sqlite3").display(),
        plate = plate_model.display(),
        internal = ports.internal,
        mqtts = ports.mqtts,
        upload = ports.upload,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca.display(),
        images = dir.join("images").display(),
        api = ports.api,
        tokens = dir.join("api-tokens.toml").display(),
    )
}

/// The models an agent of the demo bay runs.
#[derive(Debug, Clone, Copy)]
pub struct AgentModels<'a> {
    /// The pre-screen (platedet).
    pub prescreen: &'a Path,
    /// The face detector of `[anonymise]` (CenterFace).
    pub faces: &'a Path,
}

/// The edge agent's configuration for one pass (`pickup` or `return`) of
/// the demo bay: directory cameras, the plate as the session trigger, faces
/// anonymised, the outbox under `dir` (the same for both passes, as on a
/// real board).
pub fn agent_config(
    dir: &Path,
    pki: &DemoPki,
    ports: &DemoPorts,
    bay: &DemoBay,
    kind: InspectionKind,
    models: &AgentModels<'_>,
    pace: Pace,
) -> String {
    let mut cameras = String::new();
    for camera in &bay.cameras {
        let frames = match kind {
            InspectionKind::Pickup => &camera.pickup_dir,
            InspectionKind::Return => &camera.return_dir,
        };
        cameras.push_str(&format!(
            r#"
[[cameras]]
id = "{id}"
position = "{position}"
source = {{ kind = "directory", path = "{path}", fps = {fps} }}
"#,
            id = camera.id,
            position = camera.position,
            path = frames.display(),
            fps = pace.fps,
        ));
    }
    format!(
        r#"# Written by central's demo: the {kind} pass.
[device]
site = "{site}"
device = "{device}"

[quality]
max_motion = 255.0

[prescreen]
model = "{model}"

# Faces redacted before a frame is stored (the plate's boxes are kept).
[anonymise]
model = "{face_model}"

[session]
trigger_classes = ["plate"]
min_trigger_score = 0.4
trigger_frames = 1
trigger_window = 2
absence_seconds = {absence}
frames_per_camera = 2
default_kind = "{kind}"

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"
log_format = "text"

[uplink]
mqtt_url = "mqtts://127.0.0.1:{mqtts}"
upload_url = "https://127.0.0.1:{upload}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
telemetry_interval_s = 1
ack_timeout_s = 3
backoff_initial_ms = 100
backoff_max_s = 1
{cameras}"#,
        kind = match kind {
            InspectionKind::Pickup => "pickup",
            InspectionKind::Return => "return",
        },
        model = models.prescreen.display(),
        face_model = models.faces.display(),
        absence = pace.absence_seconds,
        outbox = dir.join("outbox.sqlite3").display(),
        mqtts = ports.mqtts,
        upload = ports.upload,
        ca = pki.ca.display(),
        cert = pki.device_cert.display(),
        key = pki.device_key.display(),
        site = SITE,
        device = DEVICE,
    )
}

/// Writes the bay's camera directories under `out` (replacing what an
/// earlier run left there) from `photo` with a plate in `font`, shaped as
/// `shape` (the same vehicle `shape.vehicles` times per pass).
pub fn write_bay(
    photo: &Path,
    font: &Path,
    out: &Path,
    seed: u64,
    shape: BayShape,
) -> Result<DemoBay, String> {
    if !(1..=CAMERAS.len()).contains(&shape.cameras)
        || shape.vehicles == 0
        || shape.vehicle_frames == 0
    {
        return Err(format!(
            "bay shape {shape:?}: 1-{} cameras, at least one vehicle and one frame",
            CAMERAS.len()
        ));
    }
    let font_path = font
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", font.display()))?;
    let font = plates::load_font(font_path)?;
    let mut vehicle = plates::background(photo, 1280)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // A plate whose characters alone read back as German: "HBD6" is also
    // a valid Austrian "H BD 6", and the reader, which may not see the
    // spaces and cuts off the band, ranks the countries by format.
    let mut spec = plates::random_plate(&mut rng, Country::DE);
    for _ in 0..1000 {
        let reads_back = inspection_core::plate::candidates(&spec.canonical)
            .first()
            .is_some_and(|c| c.country == Country::DE && c.plate == spec.canonical);
        if reads_back {
            break;
        }
        spec = plates::random_plate(&mut rng, Country::DE);
    }
    let rendered = plates::render_plate(&spec, &font);
    let look = plates::Look {
        width: 220,
        degrees: 0.0,
        blur: 0.0,
        glare: None,
        light: 1.0,
    };
    plates::place(&mut vehicle, &rendered, &look, (560, 700));
    let (w, h) = (vehicle.width() - 96, vehicle.height() - 72);
    let floor = empty_bay(w, h, seed);
    let warmer = synth::Relight {
        gain: [0.92, 0.88, 0.84],
        offset: [6.0, 4.0, 2.0],
        gamma: 1.08,
        gradient: [0.06, 0.0],
    };

    let mut cameras = Vec::new();
    let mut damage = Vec::new();
    let floor = encode_jpeg(&floor)?;
    for (id, position, pickup, ret) in CAMERAS.into_iter().take(shape.cameras) {
        let camera = DemoCamera {
            id: id.to_owned(),
            position: position.to_owned(),
            pickup_dir: out.join("pickup").join(id),
            return_dir: out.join("return").join(id),
        };
        // The damage, in the return window's pixels.
        let painted = if position == "front" {
            Painted::Scratch(synth::Scratch::irregular(
                (300.0, 430.0),
                0.25,
                140.0,
                3.0,
                -70.0,
                seed ^ 11,
            ))
        } else {
            Painted::Dent(synth::Dent {
                center: (520.0, 380.0),
                radii: (46.0, 30.0),
                rotation: 0.3,
                light: 0.9,
                strength: 55.0,
            })
        };
        let mut bbox = None;
        for (dir, window, is_return) in [
            (&camera.pickup_dir, pickup, false),
            (&camera.return_dir, ret, true),
        ] {
            reset_dir(dir)?;
            let mut frames = Vec::with_capacity(shape.vehicle_frames);
            for i in 0..shape.vehicle_frames {
                // The car rolls in: the window moves a pixel or two a frame.
                let (x0, y0, scale) = window;
                let step = i as f32 * 1.5;
                let mut frame = synth::shift_scale(&vehicle, w, h, x0 + step, y0, scale);
                if is_return {
                    frame = synth::relight(&frame, &warmer);
                    let b = match &painted {
                        Painted::Scratch(s) => synth::paint_scratch(&mut frame, s),
                        Painted::Dent(d) => synth::paint_dent(&mut frame, d),
                    };
                    bbox.get_or_insert(b);
                }
                frames.push(encode_jpeg(&frame)?);
            }
            // The same vehicle again and again: its frames encoded once.
            let mut n = 0;
            let mut write = |bytes: &[u8]| -> Result<(), String> {
                let path = dir.join(format!("{n:04}.jpg"));
                n += 1;
                std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
            };
            for _ in 0..shape.vehicles {
                for _ in 0..shape.empty_before {
                    write(&floor)?;
                }
                for frame in &frames {
                    write(frame)?;
                }
                for _ in 0..shape.empty_after {
                    write(&floor)?;
                }
            }
        }
        damage.push(PaintedDamage {
            camera: id.to_owned(),
            position: position.to_owned(),
            kind: match painted {
                Painted::Scratch(_) => "scratch",
                Painted::Dent(_) => "dent",
            },
            bbox: bbox.unwrap_or(BBox::new(0.0, 0.0, 0.0, 0.0)),
        });
        cameras.push(camera);
    }
    Ok(DemoBay {
        printed_plate: spec.printed,
        plate: spec.canonical,
        cameras,
        damage,
    })
}

enum Painted {
    Scratch(synth::Scratch),
    Dent(synth::Dent),
}

/// The empty bay: a grey concrete floor with texture (sharp enough for the
/// quality gate) and a painted lane line.
fn empty_bay(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut floor = RgbImage::from_fn(width, height, |x, y| {
        let shade = 118.0 + 10.0 * ((x as f32 / 37.0).sin() + (y as f32 / 23.0).cos());
        let v = shade as u8;
        Rgb([v, v, v.saturating_sub(4)])
    });
    let lane = width / 2;
    for y in 0..height {
        for x in lane.saturating_sub(8)..(lane + 8).min(width) {
            floor.put_pixel(x, y, Rgb([214, 196, 64]));
        }
    }
    synth::add_noise(&floor, 9.0, seed)
}

fn reset_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn encode_jpeg(image: &RgbImage) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(image)
        .map_err(|e| format!("JPEG encoding: {e}"))?;
    Ok(bytes)
}
