//! Synthetic EU licence plates for the demo, the plate-reading tests and
//! the benchmark:
//! valid plate strings per country (checked against
//! `inspection_core::plate`), rendered like the real thing (white or yellow,
//! black border, the blue EU band with stars and the country letters) and
//! placed on a real photo the way a bay camera sees them: 100-300 px wide,
//! tilted, blurred, with glare, then JPEG-compressed.

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use image::{RgbImage, Rgba, RgbaImage};
use inspection_core::geometry::BBox;
use inspection_core::plate::{self, Country};
use rand::Rng;
use rand::seq::IndexedRandom;

/// Bold fonts of Debian's `fonts-dejavu-core`: plates use heavy strokes.
pub const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
];

/// A font file; the error names the file and the Debian package.
pub fn load_font(path: &str) -> Result<FontVec, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{path}: {e} (install the Debian package fonts-dejavu-core)"))?;
    FontVec::try_from_vec(bytes).map_err(|e| format!("{path}: not a TrueType font: {e}"))
}

/// The countries the synthetic set covers.
pub const COUNTRIES: [Country; 11] = [
    Country::DE,
    Country::FR,
    Country::NL,
    Country::IT,
    Country::ES,
    Country::PL,
    Country::BE,
    Country::AT,
    Country::GB,
    Country::SE,
    Country::CZ,
];

/// A plate to render.
#[derive(Debug, Clone)]
pub struct PlateSpec {
    pub country: Country,
    /// As printed, with the country's separators.
    pub printed: String,
    /// The canonical key `inspection_core::plate` gives for it.
    pub canonical: String,
    pub yellow: bool,
}

const ALL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn pick(rng: &mut impl Rng, set: &str, n: usize) -> String {
    let b = set.as_bytes();
    (0..n)
        .map(|_| char::from(*b.choose(rng).unwrap()))
        .collect()
}

fn digits(rng: &mut impl Rng, n: usize, leading_zero: bool) -> String {
    (0..n)
        .map(|i| {
            let lo = if i == 0 && !leading_zero { 1 } else { 0 };
            char::from(b'0' + rng.random_range(lo..10u8))
        })
        .collect()
}

fn without(excluded: &str) -> String {
    ALL.chars().filter(|c| !excluded.contains(*c)).collect()
}

/// A random current-format plate of `country` that validates as itself.
pub fn random_plate(rng: &mut impl Rng, country: Country) -> PlateSpec {
    loop {
        let printed = match country {
            Country::DE => {
                let d = rng.random_range(1..=3);
                let l = rng.random_range(1..=2);
                let n = rng.random_range(1..=(8 - d - l).min(4));
                format!(
                    "{} {} {}",
                    pick(rng, ALL, d),
                    pick(rng, ALL, l),
                    digits(rng, n, false)
                )
            }
            Country::FR => {
                let l = without("IOU");
                let n = format!("{:03}", rng.random_range(1..1000));
                format!("{}-{n}-{}", pick(rng, &l, 2), pick(rng, &l, 2))
            }
            Country::NL => {
                let c = "BDFGHJKLNPRSTVXZ";
                match rng.random_range(0..4) {
                    0 => format!(
                        "{}-{}-{}",
                        digits(rng, 1, false),
                        pick(rng, c, 3),
                        digits(rng, 2, true)
                    ),
                    1 => format!(
                        "{}-{}-{}",
                        pick(rng, c, 3),
                        digits(rng, 2, true),
                        pick(rng, c, 1)
                    ),
                    2 => format!(
                        "{}-{}-{}",
                        digits(rng, 2, true),
                        pick(rng, c, 3),
                        digits(rng, 1, true)
                    ),
                    _ => format!(
                        "{}-{}-{}",
                        pick(rng, c, 2),
                        digits(rng, 3, true),
                        pick(rng, c, 1)
                    ),
                }
            }
            Country::IT => {
                let l = without("IOQU");
                format!(
                    "{} {} {}",
                    pick(rng, &l, 2),
                    digits(rng, 3, true),
                    pick(rng, &l, 2)
                )
            }
            Country::ES => format!(
                "{} {}",
                digits(rng, 4, true),
                pick(rng, "BCDFGHJKLMNPRSTVWXYZ", 3)
            ),
            Country::PL => {
                let first = pick(rng, "BCDEFGKLNOPRSTWZ", 1);
                if rng.random_bool(0.5) {
                    format!("{first}{} {}", pick(rng, ALL, 1), digits(rng, 5, true))
                } else {
                    let s = without("BDIOZ");
                    format!(
                        "{first}{} {}{}",
                        pick(rng, ALL, 2),
                        digits(rng, 2, true),
                        pick(rng, &s, 2)
                    )
                }
            }
            Country::BE => format!(
                "{}-{}-{}",
                digits(rng, 1, false),
                pick(rng, ALL, 3),
                digits(rng, 3, true)
            ),
            Country::AT => {
                let d = rng.random_range(1..=2);
                let n = rng.random_range(2..=4);
                let l = rng.random_range(1..=2);
                format!(
                    "{} {} {}",
                    pick(rng, ALL, d),
                    digits(rng, n, false),
                    pick(rng, ALL, l)
                )
            }
            Country::GB => {
                let area = without("IQZ");
                let age = *["02", "12", "19", "23", "51", "62", "69", "73"]
                    .choose(rng)
                    .unwrap();
                format!(
                    "{}{age} {}",
                    pick(rng, &area, 2),
                    pick(rng, &without("IQ"), 3)
                )
            }
            Country::SE => {
                let l = without("IQV");
                format!("{} {}", pick(rng, &l, 3), digits(rng, 3, true))
            }
            Country::CZ => format!(
                "{}{}{} {}",
                digits(rng, 1, false),
                pick(rng, "ABCEHJKLMPSTUZ", 1),
                digits(rng, 1, true),
                digits(rng, 4, true)
            ),
        };
        let canonical = plate::normalize(&printed);
        // Only strings whose best reading is themselves: an exact read must
        // score as exact.
        let best = plate::candidates(&printed).into_iter().next();
        if best.is_some_and(|b| b.plate == canonical && b.country == country) {
            let yellow = country == Country::NL || (country == Country::GB && rng.random_bool(0.5));
            return PlateSpec {
                country,
                printed,
                canonical,
                yellow,
            };
        }
    }
}

/// Pixels of a rendered plate: the EU size 520x110 mm at 1 px per mm.
pub const PLATE_W: u32 = 520;
pub const PLATE_H: u32 = 110;

fn draw_text(
    canvas: &mut RgbaImage,
    font: &FontVec,
    text: &str,
    px: f32,
    (x0, y0, w, h): (u32, u32, u32, u32),
    colour: [u8; 3],
) {
    let scaled = font.as_scaled(PxScale::from(px));
    // Lay out on a scratch canvas, then squeeze it into the box when too
    // wide: plate fonts are narrower than DejaVu.
    let mut glyphs = Vec::new();
    let mut x = 0.0f32;
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(px, ab_glyph::point(x, scaled.ascent())));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    let tw = x.ceil().max(1.0) as u32;
    let th = (scaled.ascent() - scaled.descent()).ceil() as u32;
    let mut cover = image::GrayImage::new(tw, th);
    for g in glyphs {
        if let Some(o) = font.outline_glyph(g) {
            let b = o.px_bounds();
            o.draw(|gx, gy, c| {
                let (px_, py_) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                if px_ >= 0 && py_ >= 0 && (px_ as u32) < tw && (py_ as u32) < th {
                    let p = cover.get_pixel_mut(px_ as u32, py_ as u32);
                    p[0] = p[0].max((c * 255.0) as u8);
                }
            });
        }
    }
    // Cap height is what fills the plate; trim the empty ascent/descent.
    let (mut top, mut bottom) = (th, 0);
    for (_, y, p) in cover.enumerate_pixels() {
        if p[0] > 0 {
            top = top.min(y);
            bottom = bottom.max(y + 1);
        }
    }
    if bottom <= top {
        return;
    }
    let cover = image::imageops::crop_imm(&cover, 0, top, tw, bottom - top).to_image();
    let fit_w = cover.width().min(w);
    let fit_h = cover.height().min(h);
    let cover =
        image::imageops::resize(&cover, fit_w, fit_h, image::imageops::FilterType::Triangle);
    let ox = x0 + (w - fit_w) / 2;
    let oy = y0 + (h - fit_h) / 2;
    for (cx, cy, p) in cover.enumerate_pixels() {
        let a = f32::from(p[0]) / 255.0;
        let dst = canvas.get_pixel_mut(ox + cx, oy + cy);
        for c in 0..3 {
            dst[c] = (f32::from(dst[c]) * (1.0 - a) + f32::from(colour[c]) * a) as u8;
        }
    }
}

/// The plate at 520x110 px.
pub fn render_plate(spec: &PlateSpec, font: &FontVec) -> RgbaImage {
    let bg = if spec.yellow {
        [247, 200, 20]
    } else {
        [245, 245, 240]
    };
    let mut img = RgbaImage::from_pixel(PLATE_W, PLATE_H, Rgba([bg[0], bg[1], bg[2], 255]));
    // Black border, 4 px, inset 3 px; the rounded corners are left square.
    for (x, y, p) in img.enumerate_pixels_mut() {
        let d = x.min(y).min(PLATE_W - 1 - x).min(PLATE_H - 1 - y);
        if d < 3 {
            *p = Rgba([60, 60, 60, 255]);
        } else if d < 7 {
            *p = Rgba([15, 15, 15, 255]);
        }
    }
    // The blue band with twelve yellow stars and the country letters.
    let band = (7u32, 7u32, 44u32, PLATE_H - 14);
    for y in band.1..band.1 + band.3 {
        for x in band.0..band.0 + band.2 {
            img.put_pixel(x, y, Rgba([0, 51, 153, 255]));
        }
    }
    let (scx, scy) = (band.0 as f32 + band.2 as f32 / 2.0, 34.0);
    for k in 0..12 {
        let a = k as f32 * std::f32::consts::TAU / 12.0;
        let (sx, sy) = (scx + 13.0 * a.cos(), scy + 13.0 * a.sin());
        for y in (sy - 2.5) as u32..=(sy + 2.5) as u32 {
            for x in (sx - 2.5) as u32..=(sx + 2.5) as u32 {
                if (x as f32 - sx).powi(2) + (y as f32 - sy).powi(2) <= 6.0 {
                    img.put_pixel(x, y, Rgba([255, 204, 0, 255]));
                }
            }
        }
    }
    let code = spec.country.band_codes().last().copied().unwrap_or("EU");
    draw_text(
        &mut img,
        font,
        code,
        30.0,
        (band.0 + 4, 62, band.2 - 8, 28),
        [255, 255, 255],
    );
    draw_text(
        &mut img,
        font,
        &spec.printed,
        110.0,
        (58, 17, PLATE_W - 58 - 14, 76),
        [10, 10, 10],
    );
    img
}

/// How a plate looks to a bay camera.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// Width in the frame, px.
    pub width: u32,
    /// Clockwise tilt on screen, degrees.
    pub degrees: f32,
    /// Gaussian blur sigma, px.
    pub blur: f32,
    /// Glare: (centre as a fraction of the width, peak strength 0..1).
    pub glare: Option<(f32, f32)>,
    /// Illumination factor on the plate (shade < 1).
    pub light: f32,
}

impl Look {
    pub fn random(rng: &mut impl Rng) -> Self {
        Self {
            width: rng.random_range(100..=300),
            degrees: rng.random_range(-6.0..=6.0),
            blur: rng.random_range(0.0..1.0),
            glare: rng
                .random_bool(0.3)
                .then(|| (rng.random_range(0.2..0.8), rng.random_range(0.3..0.6))),
            light: rng.random_range(0.65..1.0),
        }
    }
}

/// Scales, lights, tilts and blurs the rendered plate and composites it
/// onto `frame` with its top-left corner region at `(x, y)`; returns the
/// plate's box in the frame.
pub fn place(frame: &mut RgbImage, rendered: &RgbaImage, look: &Look, (x, y): (u32, u32)) -> BBox {
    let h = (look.width as f32 * PLATE_H as f32 / PLATE_W as f32).round() as u32;
    let mut small = image::imageops::resize(
        rendered,
        look.width,
        h,
        image::imageops::FilterType::Triangle,
    );
    let w = look.width;
    for (px, py, p) in small.enumerate_pixels_mut() {
        let mut glare = 0.0;
        if let Some((gx, strength)) = look.glare {
            let dx = (px as f32 / w as f32 - gx) / 0.18;
            let dy = (py as f32 / h as f32 - 0.3) / 0.6;
            glare = strength * (-(dx * dx + dy * dy)).exp();
        }
        for c in 0..3 {
            let v = f32::from(p[c]) * look.light;
            p[c] = (v + (255.0 - v) * glare).clamp(0.0, 255.0) as u8;
        }
    }
    // Rotate about the centre onto a transparent canvas large enough.
    let (sin, cos) = look.degrees.to_radians().sin_cos();
    let cw = (w as f32 * cos.abs() + h as f32 * sin.abs()).ceil() as u32 + 4;
    let ch = (w as f32 * sin.abs() + h as f32 * cos.abs()).ceil() as u32 + 4;
    let mut rotated = RgbaImage::new(cw, ch);
    let (ccx, ccy) = (cw as f32 / 2.0, ch as f32 / 2.0);
    let (pcx, pcy) = (w as f32 / 2.0, h as f32 / 2.0);
    for (u, v, out) in rotated.enumerate_pixels_mut() {
        let (dx, dy) = (u as f32 + 0.5 - ccx, v as f32 + 0.5 - ccy);
        // Inverse rotation: canvas to plate coordinates.
        let sx = dx * cos + dy * sin + pcx - 0.5;
        let sy = -dx * sin + dy * cos + pcy - 0.5;
        if sx < -1.0 || sy < -1.0 || sx > w as f32 || sy > h as f32 {
            continue;
        }
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let mut acc = [0f32; 4];
        for (ox, oy, wgt) in [
            (0, 0, (1.0 - fx) * (1.0 - fy)),
            (1, 0, fx * (1.0 - fy)),
            (0, 1, (1.0 - fx) * fy),
            (1, 1, fx * fy),
        ] {
            let (xi, yi) = (x0 as i64 + ox, y0 as i64 + oy);
            if xi < 0 || yi < 0 || xi >= w as i64 || yi >= h as i64 {
                continue;
            }
            let p = small.get_pixel(xi as u32, yi as u32);
            // Premultiplied, so the transparent outside does not darken edges.
            let a = f32::from(p[3]) / 255.0;
            for c in 0..3 {
                acc[c] += f32::from(p[c]) * a * wgt;
            }
            acc[3] += a * wgt;
        }
        if acc[3] > 0.0 {
            *out = Rgba([
                (acc[0] / acc[3]) as u8,
                (acc[1] / acc[3]) as u8,
                (acc[2] / acc[3]) as u8,
                (acc[3] * 255.0) as u8,
            ]);
        }
    }
    let rotated = if look.blur > 0.05 {
        image::imageops::blur(&rotated, look.blur)
    } else {
        rotated
    };
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (u, v, p) in rotated.enumerate_pixels() {
        let (fx, fy) = (x + u, y + v);
        if fx >= frame.width() || fy >= frame.height() || p[3] == 0 {
            continue;
        }
        let a = f32::from(p[3]) / 255.0;
        let dst = frame.get_pixel_mut(fx, fy);
        for c in 0..3 {
            dst[c] = (f32::from(dst[c]) * (1.0 - a) + f32::from(p[c]) * a) as u8;
        }
        if p[3] >= 128 {
            x1 = x1.min(fx);
            y1 = y1.min(fy);
            x2 = x2.max(fx + 1);
            y2 = y2.max(fy + 1);
        }
    }
    BBox::new(x1 as f32, y1 as f32, x2 as f32, y2 as f32)
}

/// The frame after a camera's JPEG encoder (quality 85).
pub fn jpeg_roundtrip(frame: &RgbImage) -> RgbImage {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(frame)
        .expect("JPEG encodes");
    image::load_from_memory(&bytes)
        .expect("JPEG decodes")
        .to_rgb8()
}

/// A photo scaled to `width` px, as a bay camera frame's background.
pub fn background(path: &std::path::Path, width: u32) -> Result<RgbImage, String> {
    let photo = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgb8();
    let h = (photo.height() as f32 * width as f32 / photo.width() as f32).round() as u32;
    Ok(image::imageops::resize(
        &photo,
        width,
        h,
        image::imageops::FilterType::CatmullRom,
    ))
}
