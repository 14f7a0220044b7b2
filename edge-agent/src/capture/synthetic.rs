//! A generated camera for tests and demos: a car with a plate arrives, stays, leaves.
//!
//! The scene, front view of a return bay: a tiled, slightly noisy floor
//! (texture, so that sharp frames pass the quality gate), and from frame
//! `enter_at` for `stay` frames a red car seen from the front, with a white
//! EU-style plate (blue band, dark characters `AB12CDE`) on its bumper.
//! Everything is a pure function of the configuration and the frame's
//! position in the timeline, so runs are reproducible to the byte, and tests
//! know where the plate is ([`plate_box`]).

use std::collections::HashMap;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use inspection_core::BBox;
use inspection_core::ids::CameraId;

use super::clock::Pacer;
use super::config::SyntheticConfig;
use super::metrics::CameraMetrics;
use super::{CaptureError, Frame, FrameSource, SourceContext};

/// The plate's characters.
pub const PLATE_TEXT: &str = "AB12CDE";

/// 5x7 glyphs, one row per byte (the low 5 bits, leftmost pixel highest).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        _ => [0; 7],
    }
}

/// What a frame at one position of the timeline looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SceneState {
    /// The car (and its plate) is in the bay.
    pub car: bool,
    /// Rendered out of focus.
    pub blurred: bool,
    /// Rendered underexposed.
    pub dark: bool,
}

/// The state at timeline position `t` (0-based, `t < config.frames`).
pub fn scene_state(config: &SyntheticConfig, t: u64) -> SceneState {
    SceneState {
        car: t >= config.enter_at && t - config.enter_at < config.stay,
        blurred: config.blurred_frames.contains(&t),
        dark: config.dark_frames.contains(&t),
    }
}

/// The car's box in pixels (where it is while present).
pub fn car_box(config: &SyntheticConfig) -> BBox {
    let (w, h) = (config.width as f32, config.height as f32);
    BBox::new(
        (0.2 * w).round(),
        (0.35 * h).round(),
        (0.8 * w).round(),
        (0.85 * h).round(),
    )
}

/// The plate's box in pixels (while the car is present).
pub fn plate_box(config: &SyntheticConfig) -> BBox {
    let car = car_box(config);
    let plate_w = (0.22 * car.width()).round();
    // EU plates are 520 x 110 mm.
    let plate_h = (plate_w * 110.0 / 520.0).round().max(5.0);
    let cx = ((car.x1 + car.x2) / 2.0).round();
    let cy = (car.y2 - 0.14 * car.height()).round();
    let x1 = cx - (plate_w / 2.0).round();
    let y1 = cy - (plate_h / 2.0).round();
    BBox::new(x1, y1, x1 + plate_w, y1 + plate_h)
}

/// A 64-bit mix (SplitMix64's finaliser): a cheap, well-spread hash for texture.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fill(image: &mut RgbImage, b: BBox, colour: [u8; 3]) {
    let x1 = b.x1.max(0.0) as u32;
    let y1 = b.y1.max(0.0) as u32;
    let x2 = (b.x2.max(0.0) as u32).min(image.width());
    let y2 = (b.y2.max(0.0) as u32).min(image.height());
    for y in y1..y2 {
        for x in x1..x2 {
            image.put_pixel(x, y, Rgb(colour));
        }
    }
}

/// A box relative to `outer`, in fractions of its size.
fn sub(outer: BBox, fx1: f32, fy1: f32, fx2: f32, fy2: f32) -> BBox {
    let (w, h) = (outer.width(), outer.height());
    BBox::new(
        (outer.x1 + fx1 * w).round(),
        (outer.y1 + fy1 * h).round(),
        (outer.x1 + fx2 * w).round(),
        (outer.y1 + fy2 * h).round(),
    )
}

fn floor(config: &SyntheticConfig) -> RgbImage {
    let tile = (config.width / 12).max(8);
    let height = config.height.max(1);
    RgbImage::from_fn(config.width, config.height, |x, y| {
        // Lighter towards the camera, like a lit bay floor.
        let base = 95 + (45 * y / height) as i32;
        let noise = (mix(config.seed ^ (u64::from(x) << 32) ^ u64::from(y)) & 31) as i32 - 16;
        let luma = if x % tile == 0 || y % tile == 0 {
            60
        } else {
            base + noise
        };
        let l = luma.clamp(0, 255) as u8;
        Rgb([l, l, l.saturating_add(8)])
    })
}

fn draw_car(image: &mut RgbImage, config: &SyntheticConfig) {
    let car = car_box(config);
    let body = [150, 32, 36];
    // Shadow on the floor, then cabin, windscreen, body, details.
    fill(image, sub(car, -0.03, 0.9, 1.03, 1.03), [35, 35, 40]);
    fill(image, sub(car, 0.1, 0.0, 0.9, 0.42), body);
    fill(image, sub(car, 0.16, 0.05, 0.84, 0.38), [70, 82, 104]);
    fill(image, sub(car, 0.0, 0.4, 1.0, 0.92), body);
    fill(image, sub(car, 0.05, 0.5, 0.22, 0.6), [235, 232, 205]);
    fill(image, sub(car, 0.78, 0.5, 0.95, 0.6), [235, 232, 205]);
    fill(image, sub(car, 0.35, 0.52, 0.65, 0.64), [38, 38, 42]);
    fill(image, sub(car, 0.0, 0.76, 1.0, 0.92), [58, 58, 62]);
    fill(image, sub(car, 0.04, 0.88, 0.18, 1.0), [18, 18, 20]);
    fill(image, sub(car, 0.82, 0.88, 0.96, 1.0), [18, 18, 20]);
    draw_plate(image, plate_box(config));
}

fn draw_plate(image: &mut RgbImage, plate: BBox) {
    fill(image, plate, [25, 25, 25]);
    let inner = BBox::new(
        plate.x1 + 1.0,
        plate.y1 + 1.0,
        plate.x2 - 1.0,
        plate.y2 - 1.0,
    );
    fill(image, inner, [240, 240, 236]);
    let band_w = (inner.width() / 11.0).round().max(1.0);
    fill(
        image,
        BBox::new(inner.x1, inner.y1, inner.x1 + band_w, inner.y2),
        [0, 51, 153],
    );
    // Characters: 5x7 glyphs with one column of spacing, scaled to about
    // two thirds of the plate's height, centred right of the band.
    let text_x1 = inner.x1 + band_w;
    let chars = PLATE_TEXT.chars().count() as f32;
    let by_height = (inner.height() * 0.7 / 7.0).floor();
    let by_width = ((inner.x2 - text_x1 - 2.0) / (chars * 6.0)).floor();
    let scale = by_height.min(by_width).max(1.0) as u32;
    let text_w = chars as u32 * 6 * scale - scale;
    let free_w = (inner.x2 - text_x1).max(0.0) as u32;
    let x0 = text_x1 as u32 + free_w.saturating_sub(text_w) / 2;
    let y0 = inner.y1 as u32 + (inner.height() as u32).saturating_sub(7 * scale) / 2;
    for (i, c) in PLATE_TEXT.chars().enumerate() {
        let gx = x0 + i as u32 * 6 * scale;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) != 0 {
                    let px = gx + col * scale;
                    let py = y0 + row as u32 * scale;
                    let b = BBox::new(
                        px as f32,
                        py as f32,
                        (px + scale) as f32,
                        (py + scale) as f32,
                    );
                    fill(image, b, [20, 20, 24]);
                }
            }
        }
    }
}

/// Renders the frame at timeline position `t`.
pub fn render(config: &SyntheticConfig, t: u64) -> RgbImage {
    render_state(config, scene_state(config, t))
}

fn render_state(config: &SyntheticConfig, state: SceneState) -> RgbImage {
    let mut image = floor(config);
    if state.car {
        draw_car(&mut image, config);
    }
    if state.blurred {
        // Wide enough to smear the floor texture and the plate's strokes at
        // any frame size, like a lens far out of focus.
        let sigma = (config.width as f32 / 160.0).max(4.0);
        image = image::imageops::fast_blur(&image, sigma);
    }
    if state.dark {
        // About an eighth of the light: mean luma far below the gate's 40.
        for p in image.pixels_mut() {
            for c in &mut p.0 {
                *c /= 8;
            }
        }
    }
    image
}

/// JPEG-encodes a frame as the source does.
pub fn encode(image: &RgbImage, quality: u8) -> Result<Vec<u8>, CaptureError> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode_image(image)
        .map_err(CaptureError::Encode)?;
    Ok(bytes)
}

/// The synthetic camera. Frames carry both the pixels and their JPEG bytes;
/// the pixels are the rendered ones (not decoded back from the JPEG).
#[derive(Debug)]
pub struct SyntheticSource {
    camera: CameraId,
    config: SyntheticConfig,
    index: u64,
    pacer: Pacer,
    ctx: SourceContext,
    metrics: CameraMetrics,
    /// At most eight distinct frames exist per pass (car x blur x dark), so
    /// each is rendered and encoded once and then shared.
    cache: HashMap<SceneState, (Arc<RgbImage>, Arc<[u8]>)>,
    /// The pass the cache was rendered for (`vary_per_loop`).
    cached_pass: u64,
}

impl SyntheticSource {
    /// A source at the start of its timeline.
    pub fn new(
        camera: CameraId,
        config: &SyntheticConfig,
        ctx: &SourceContext,
    ) -> Result<Self, CaptureError> {
        let problems = config.problems("source");
        if !problems.is_empty() {
            return Err(CaptureError::InvalidConfig(problems.join("; ")));
        }
        Ok(Self {
            metrics: ctx.metrics.for_camera(camera.as_str()),
            camera,
            config: config.clone(),
            index: 0,
            pacer: Pacer::new(config.fps),
            ctx: ctx.clone(),
            cache: HashMap::new(),
            cached_pass: 0,
        })
    }
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if !self.config.looped && self.index >= self.config.frames {
            return Ok(None);
        }
        let t = self.index % self.config.frames;
        let pass = if self.config.vary_per_loop {
            self.index / self.config.frames
        } else {
            0
        };
        if pass != self.cached_pass {
            self.cache.clear();
            self.cached_pass = pass;
        }
        let state = scene_state(&self.config, t);
        let (image, jpeg) = match self.cache.get(&state) {
            Some(hit) => hit.clone(),
            None => {
                let seed = self.config.seed.wrapping_add(pass);
                let image = render_state(
                    &SyntheticConfig {
                        seed,
                        ..self.config.clone()
                    },
                    state,
                );
                let jpeg: Arc<[u8]> = encode(&image, self.config.jpeg_quality)?.into();
                let entry = (Arc::new(image), jpeg);
                self.cache.insert(state, entry.clone());
                entry
            }
        };
        self.pacer.wait(self.ctx.clock.as_ref(), &self.ctx.stop)?;
        let frame = Frame {
            camera: self.camera.clone(),
            index: self.index,
            captured_at: self.ctx.clock.now(),
            image,
            jpeg: Some(jpeg),
        };
        self.index += 1;
        self.metrics.frame();
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "synthetic {}x{} at {} fps, {} frames{}, car at {}..{}",
            c.width,
            c.height,
            c.fps,
            c.frames,
            if c.looped { " (loop)" } else { "" },
            c.enter_at,
            c.enter_at.saturating_add(c.stay)
        )
    }
}

#[cfg(test)]
mod tests {
    use inspection_core::quality::{QualityThresholds, assess};

    use super::*;

    #[test]
    fn timeline_states() {
        let config = SyntheticConfig {
            frames: 10,
            enter_at: 3,
            stay: 4,
            blurred_frames: vec![5],
            dark_frames: vec![8],
            ..SyntheticConfig::default()
        };
        let cars: Vec<bool> = (0..10).map(|t| scene_state(&config, t).car).collect();
        assert_eq!(
            cars,
            [
                false, false, false, true, true, true, true, false, false, false
            ]
        );
        assert!(scene_state(&config, 5).blurred && !scene_state(&config, 4).blurred);
        assert!(scene_state(&config, 8).dark);
    }

    #[test]
    fn plate_lies_on_the_car_and_is_plate_shaped() {
        for (w, h) in [(640, 480), (1920, 1080), (160, 120)] {
            let config = SyntheticConfig {
                width: w,
                height: h,
                ..SyntheticConfig::default()
            };
            let (car, plate) = (car_box(&config), plate_box(&config));
            assert!(plate.x1 > car.x1 && plate.x2 < car.x2, "{w}x{h}");
            assert!(plate.y1 > car.y1 && plate.y2 < car.y2, "{w}x{h}");
            let aspect = plate.width() / plate.height();
            assert!((3.0..6.0).contains(&aspect), "{w}x{h}: {aspect}");
        }
    }

    #[test]
    fn the_plate_is_bright_with_dark_strokes() {
        let config = SyntheticConfig::default();
        let image = render(&config, config.enter_at);
        let plate = plate_box(&config);
        let mut bright = 0;
        let mut dark = 0;
        for y in plate.y1 as u32 + 1..plate.y2 as u32 - 1 {
            for x in plate.x1 as u32 + 1..plate.x2 as u32 - 1 {
                match image.get_pixel(x, y).0 {
                    [r, g, b] if r > 200 && g > 200 && b > 200 => bright += 1,
                    [r, g, b] if r < 40 && g < 40 && b < 40 => dark += 1,
                    _ => {}
                }
            }
        }
        assert!(
            bright > 3 * dark && dark > 50,
            "bright {bright}, dark {dark}"
        );
        // No plate while the bay is empty.
        let empty = render(&config, 0);
        let centre = empty.get_pixel(plate.center().0 as u32, plate.center().1 as u32);
        assert!(centre.0[0] < 200, "{centre:?}");
    }

    #[test]
    fn quality_gate_sees_sharp_blurred_and_dark_frames_as_configured() {
        let config = SyntheticConfig {
            blurred_frames: vec![1, 20],
            dark_frames: vec![2, 21],
            ..SyntheticConfig::default()
        };
        let thresholds = QualityThresholds::default();
        for t in [0, 15] {
            let verdict = assess(&render(&config, t).into(), &thresholds);
            assert!(verdict.accepted(), "frame {t}: {verdict:?}");
        }
        for t in [1, 20] {
            let verdict = assess(&render(&config, t).into(), &thresholds);
            assert!(verdict.has_reason("blurry"), "frame {t}: {verdict:?}");
        }
        for t in [2, 21] {
            let verdict = assess(&render(&config, t).into(), &thresholds);
            assert!(verdict.has_reason("too_dark"), "frame {t}: {verdict:?}");
        }
    }
}
