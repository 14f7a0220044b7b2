//! Pictures for the exports: finding boxes and label tags drawn on a frame,
//! pickup and return side by side, and the bounded JPEG re-encoding.

use std::io::Cursor;

use ab_glyph::{Font as _, ScaleFont as _, point};
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageFormat, ImageReader, Rgb, RgbImage};

use super::font::ExportFont;
use super::labels::labels;
use super::{ExportError, Jpeg};
use crate::report::lexicon::class_term;
use crate::report::{Language, ReportFinding};
use crate::store::FindingStatus;

/// The outline and tag colour of a finding: what staff must look at is red
/// (new, confirmed), what may be new is orange, what was known is blue.
pub fn status_color(status: FindingStatus) -> Rgb<u8> {
    match status {
        FindingStatus::New | FindingStatus::Confirmed => Rgb([220, 20, 20]),
        FindingStatus::PossibleNewDamage => Rgb([255, 140, 0]),
        FindingStatus::PreExisting | FindingStatus::Baseline => Rgb([30, 90, 220]),
        FindingStatus::Rejected => Rgb([128, 128, 128]),
    }
}

/// The label tag of a finding: "F1 Delle 87%".
pub(crate) fn tag_text(finding: &ReportFinding, language: Language) -> String {
    format!(
        "{} {} {:.0}%",
        finding.reference,
        class_term(language, &finding.class),
        (finding.confidence * 100.0).clamp(0.0, 100.0)
    )
}

/// Draws every finding's box (a thick outline in its status colour) and
/// label tag on a copy of `frame`. Boxes are in the frame's pixels; those
/// outside it are clamped, empty ones skipped.
pub fn annotate(
    frame: &RgbImage,
    findings: &[&ReportFinding],
    language: Language,
    font: &ExportFont,
) -> RgbImage {
    let mut out = frame.clone();
    let (w, h) = out.dimensions();
    if w == 0 || h == 0 {
        return out;
    }
    // Sized to the frame so they read the same once it is scaled down.
    let thickness = (w.max(h) / 320).max(3);
    let text_px = (w.max(h) as f32 / 56.0).max(12.0);
    for finding in findings {
        let b = finding.bbox.clamp_to(w as f32, h as f32);
        if !b.is_finite() || b.width() < 1.0 || b.height() < 1.0 {
            continue;
        }
        let color = status_color(finding.status);
        let (x1, y1) = (b.x1 as i64, b.y1 as i64);
        let (x2, y2) = (b.x2.ceil() as i64 - 1, b.y2.ceil() as i64 - 1);
        let t = i64::from(thickness);
        fill_rect(&mut out, x1, y1, x2, y1 + t - 1, color);
        fill_rect(&mut out, x1, y2 - t + 1, x2, y2, color);
        fill_rect(&mut out, x1, y1, x1 + t - 1, y2, color);
        fill_rect(&mut out, x2 - t + 1, y1, x2, y2, color);

        // The tag sits on the box's top edge, above it when there is room,
        // inside it otherwise; it never leaves the frame.
        let text = tag_text(finding, language);
        let pad = (text_px * 0.25).round() as i64;
        let tag_w = font.text_width(&text, text_px).ceil() as i64 + 2 * pad;
        let tag_h = (font.ascent(text_px) - font.descent(text_px)).ceil() as i64 + 2 * pad;
        let tag_x = x1.min(i64::from(w) - tag_w).max(0);
        let tag_y = if y1 - tag_h >= 0 { y1 - tag_h } else { y1 };
        fill_rect(
            &mut out,
            tag_x,
            tag_y,
            tag_x + tag_w - 1,
            tag_y + tag_h - 1,
            color,
        );
        draw_text(
            &mut out,
            font,
            text_px,
            (tag_x + pad) as f32,
            (tag_y + pad) as f32,
            &text,
            Rgb([255, 255, 255]),
        );
    }
    out
}

/// Pickup and return side by side, both scaled to the lower of the two
/// heights, each under a caption row ("Pickup 2026-11-30 09:15"). The
/// width is the sum of the scaled widths.
pub fn side_by_side(
    pickup: &RgbImage,
    ret: &RgbImage,
    captions: (&str, &str),
    font: &ExportFont,
) -> RgbImage {
    let height = pickup.height().min(ret.height()).max(1);
    let scale = |img: &RgbImage| -> RgbImage {
        if img.height() == height {
            return img.clone();
        }
        let width = ((img.width() as f64 * height as f64 / img.height().max(1) as f64).round()
            as u32)
            .max(1);
        resize(img, width, height)
    };
    let (left, right) = (scale(pickup), scale(ret));
    let text_px = (height as f32 / 16.0).max(14.0);
    let caption_h = (text_px * 1.6).ceil() as u32;
    let mut out = RgbImage::from_pixel(
        left.width() + right.width(),
        height + caption_h,
        Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut out, &left, 0, i64::from(caption_h));
    image::imageops::replace(
        &mut out,
        &right,
        i64::from(left.width()),
        i64::from(caption_h),
    );
    let top = ((caption_h as f32 - (font.ascent(text_px) - font.descent(text_px))) / 2.0).max(0.0);
    let black = Rgb([0, 0, 0]);
    draw_text(
        &mut out,
        font,
        text_px,
        text_px * 0.5,
        top,
        captions.0,
        black,
    );
    draw_text(
        &mut out,
        font,
        text_px,
        left.width() as f32 + text_px * 0.5,
        top,
        captions.1,
        black,
    );
    out
}

/// The caption of one side: "Pickup 2026-11-30 09:15".
pub(crate) fn caption(
    language: Language,
    pickup: bool,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let l = labels(language);
    let word = if pickup { l.pickup } else { l.ret };
    match at {
        Some(at) => format!("{word} {}", at.format("%Y-%m-%d %H:%M")),
        None => word.to_owned(),
    }
}

/// Decodes a stored frame. Like the upload role's check, a JPEG must end
/// with its end-of-image marker: the decoder returns grey rows for a file
/// cut in half rather than an error.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<RgbImage, String> {
    let format = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if !bytes.ends_with(&[0xFF, 0xD9]) {
            return Err("truncated JPEG".into());
        }
        ImageFormat::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else {
        return Err("not a JPEG or PNG".into());
    };
    ImageReader::with_format(Cursor::new(bytes), format)
        .decode()
        .map(|img| img.to_rgb8())
        .map_err(|e| format!("corrupt image: {}", truncate(&e.to_string(), 160)))
}

/// Scales down to at most `max_width` and encodes as JPEG.
pub(crate) fn encode_bounded(
    img: &RgbImage,
    max_width: u32,
    quality: u8,
) -> Result<Jpeg, ExportError> {
    let bounded;
    let img = if img.width() > max_width && max_width > 0 {
        let height =
            ((img.height() as f64 * max_width as f64 / img.width() as f64).round() as u32).max(1);
        bounded = resize(img, max_width, height);
        &bounded
    } else {
        img
    };
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| ExportError::Image(e.to_string()))?;
    Ok(Jpeg {
        width: img.width(),
        height: img.height(),
        bytes,
    })
}

/// Resizes through `DynamicImage`, whose code is compiled (and optimised)
/// in the image crate, rather than the generic `imageops::resize`, which
/// would be compiled here at the project's unoptimised dev level.
fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    DynamicImage::ImageRgb8(img.clone())
        .resize_exact(width, height, FilterType::Triangle)
        .into_rgb8()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Fills the inclusive rectangle, clipped to the image.
fn fill_rect(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, color: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in y1.max(0)..=y2.min(h - 1) {
        for x in x1.max(0)..=x2.min(w - 1) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// Draws one line of text at em size `px`, its top-left corner at (x, y), anti-aliased
/// onto what is there.
fn draw_text(
    img: &mut RgbImage,
    font: &ExportFont,
    px: f32,
    x: f32,
    y: f32,
    text: &str,
    color: Rgb<u8>,
) {
    let glyphs = font.glyphs();
    let scale = font.scale(px);
    let scaled = glyphs.as_scaled(scale);
    let baseline = y + scaled.ascent();
    let mut caret = x;
    let mut previous = None;
    let (w, h) = img.dimensions();
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, baseline));
        caret += scaled.h_advance(id);
        previous = Some(id);
        let Some(outline) = glyphs.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px_x = bounds.min.x as i64 + i64::from(gx);
            let px_y = bounds.min.y as i64 + i64::from(gy);
            if px_x < 0 || px_y < 0 || px_x >= i64::from(w) || px_y >= i64::from(h) {
                return;
            }
            let pixel = img.get_pixel_mut(px_x as u32, px_y as u32);
            let a = coverage.clamp(0.0, 1.0);
            for (channel, target) in pixel.0.iter_mut().zip(color.0) {
                *channel = (f32::from(*channel) * (1.0 - a) + f32::from(target) * a).round() as u8;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inspection_core::geometry::BBox;
    use uuid::Uuid;

    fn font() -> ExportFont {
        ExportFont::load(std::path::Path::new(super::super::DEFAULT_FONT_PATH))
            .expect("DejaVu Sans (Debian fonts-dejavu-core) is installed")
    }

    fn finding(status: FindingStatus, bbox: BBox) -> ReportFinding {
        ReportFinding {
            reference: "F1".into(),
            id: Uuid::nil(),
            class: "dent".into(),
            status,
            position: "front".into(),
            camera: "cam-front".into(),
            confidence: 0.87,
            source: crate::store::FindingSource::Model,
            sha256: "ab".repeat(32),
            bbox,
        }
    }

    #[test]
    fn boxes_are_drawn_in_the_status_colour_and_nothing_else_changes() {
        let frame = RgbImage::from_pixel(400, 300, Rgb([10, 200, 10]));
        let f = finding(
            FindingStatus::PossibleNewDamage,
            BBox::new(100.0, 150.0, 300.0, 280.0),
        );
        let out = annotate(&frame, &[&f], Language::De, &font());
        assert_eq!(
            *out.get_pixel(200, 279),
            status_color(FindingStatus::PossibleNewDamage)
        );
        assert_eq!(
            *out.get_pixel(100, 200),
            status_color(FindingStatus::PossibleNewDamage)
        );
        assert_eq!(
            *out.get_pixel(200, 215),
            Rgb([10, 200, 10]),
            "inside the box"
        );
        assert_eq!(
            *out.get_pixel(10, 10),
            Rgb([10, 200, 10]),
            "far from the box"
        );
        // The tag is above the box and carries white text.
        let tag_row = (100..300).map(|x| *out.get_pixel(x, 140));
        assert!(
            tag_row
                .clone()
                .any(|p| p == status_color(FindingStatus::PossibleNewDamage))
        );
        assert!((100..300).any(|x| out.get_pixel(x, 140).0.iter().all(|c| *c > 200)));
    }

    #[test]
    fn a_box_outside_the_frame_is_clamped_not_a_panic() {
        let frame = RgbImage::from_pixel(64, 48, Rgb([0, 0, 0]));
        let f = finding(FindingStatus::New, BBox::new(-50.0, -50.0, 500.0, 500.0));
        let out = annotate(&frame, &[&f], Language::En, &font());
        assert_eq!(*out.get_pixel(63, 47), status_color(FindingStatus::New));
        let empty = finding(FindingStatus::New, BBox::new(f32::NAN, 0.0, 1.0, 1.0));
        annotate(&frame, &[&empty], Language::En, &font());
    }

    #[test]
    fn tags_use_the_report_language() {
        let f = finding(FindingStatus::New, BBox::new(0.0, 0.0, 1.0, 1.0));
        assert_eq!(tag_text(&f, Language::De), "F1 Delle 87%");
        assert_eq!(tag_text(&f, Language::En), "F1 dent 87%");
    }

    #[test]
    fn truncated_and_foreign_bytes_do_not_decode() {
        let img = RgbImage::from_pixel(32, 32, Rgb([1, 2, 3]));
        let jpeg = encode_bounded(&img, 1280, 85).unwrap();
        assert_eq!((jpeg.width, jpeg.height), (32, 32));
        assert!(decode_frame(&jpeg.bytes).is_ok());
        let cut = &jpeg.bytes[..jpeg.bytes.len() / 2];
        assert_eq!(decode_frame(cut).unwrap_err(), "truncated JPEG");
        assert!(decode_frame(b"GIF89a").is_err());
    }

    #[test]
    fn encoding_bounds_the_width_and_keeps_the_aspect() {
        let img = RgbImage::from_pixel(2000, 1000, Rgb([1, 2, 3]));
        let jpeg = encode_bounded(&img, 1280, 85).unwrap();
        assert_eq!((jpeg.width, jpeg.height), (1280, 640));
    }
}

/// Why a single picture could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PictureError {
    /// A stored frame does not decode (`truncated JPEG`, ...): the frame's
    /// problem, not the caller's.
    Unreadable(String),
    /// Encoding the result failed.
    Encode(String),
}

/// One frame with `findings` drawn, as a bounded JPEG: the staff API's
/// annotated image. CPU work: call it on a blocking thread.
pub fn annotated_jpeg(
    frame: &[u8],
    findings: &[&ReportFinding],
    language: Language,
    options: &super::ExportOptions,
) -> Result<Jpeg, PictureError> {
    let frame = decode_frame(frame).map_err(PictureError::Unreadable)?;
    let drawn = annotate(&frame, findings, language, &options.font);
    encode_bounded(&drawn, options.max_width, options.jpeg_quality)
        .map_err(|e| PictureError::Encode(e.to_string()))
}

/// The pickup frame (with its own findings drawn) beside the return frame
/// (with `ret_findings` drawn), captioned with both times, as a bounded
/// JPEG: the staff API's pair for one finding. CPU work.
pub fn pair_jpeg(
    pickup: (
        &[u8],
        &[&ReportFinding],
        Option<chrono::DateTime<chrono::Utc>>,
    ),
    ret: (
        &[u8],
        &[&ReportFinding],
        Option<chrono::DateTime<chrono::Utc>>,
    ),
    language: Language,
    options: &super::ExportOptions,
) -> Result<Jpeg, PictureError> {
    let font = &options.font;
    let left = decode_frame(pickup.0)
        .map_err(|e| PictureError::Unreadable(format!("pickup frame: {e}")))?;
    let right =
        decode_frame(ret.0).map_err(|e| PictureError::Unreadable(format!("return frame: {e}")))?;
    let left = annotate(&left, pickup.1, language, font);
    let right = annotate(&right, ret.1, language, font);
    let captions = (
        caption(language, true, pickup.2),
        caption(language, false, ret.2),
    );
    let pair = side_by_side(&left, &right, (&captions.0, &captions.1), font);
    encode_bounded(&pair, options.max_width, options.jpeg_quality)
        .map_err(|e| PictureError::Encode(e.to_string()))
}
