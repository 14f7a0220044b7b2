//! The PDF export (krilla): A4 pages laid out top to bottom, the font
//! embedded and subset, text as real text, pictures as the JPEGs they are.

use std::sync::Arc;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::TextDirection;

use super::font::ExportFont;
use super::labels::labels;
use super::{ExportError, Prepared, PreparedImage};

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 48.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const BODY: f32 = 10.5;
const LINE: f32 = 1.35;

type Color = (u8, u8, u8);
const BLACK: Color = (0, 0, 0);
const GREY: Color = (90, 90, 90);
const RED: Color = (170, 0, 0);

/// What is drawn, in page points from the top-left corner.
enum Op {
    /// `y` is the baseline.
    Text {
        x: f32,
        y: f32,
        size: f32,
        text: String,
        color: Color,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Color,
    },
    Image {
        index: usize,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

/// Pages of ops, a cursor moving down, a new page when one is full.
struct Layout<'a> {
    font: &'a ExportFont,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl<'a> Layout<'a> {
    fn new(font: &'a ExportFont) -> Layout<'a> {
        Layout {
            font,
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    fn new_page(&mut self) {
        if self.pages.last().is_some_and(|p| !p.is_empty()) {
            self.pages.push(Vec::new());
        }
        self.y = MARGIN;
    }

    /// Room for `height` more points, or a new page.
    fn ensure(&mut self, height: f32) {
        if self.y + height > PAGE_H - MARGIN {
            self.new_page();
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    /// Wrapped text at `x`, `width` wide.
    fn text(&mut self, x: f32, width: f32, size: f32, text: &str, color: Color) {
        for line in wrap(self.font, text, size, width) {
            self.ensure(size * LINE);
            let baseline = self.y + self.font.ascent(size);
            self.push(Op::Text {
                x,
                y: baseline,
                size,
                text: line,
                color,
            });
            self.y += size * LINE;
        }
    }

    fn heading(&mut self, text: &str, size: f32) {
        // Keep a heading with at least a few lines of what follows.
        self.ensure(size * LINE + 4.0 * BODY * LINE);
        self.y += size * 0.4;
        self.text(MARGIN, CONTENT_W, size, text, BLACK);
        self.push(Op::Rect {
            x: MARGIN,
            y: self.y,
            w: CONTENT_W,
            h: 0.6,
            color: GREY,
        });
        self.y += size * 0.5;
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }
}

/// Breaks `text` into lines no wider than `width` at word boundaries; a
/// word wider than a line is broken between characters.
fn wrap(font: &ExportFont, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if font.text_width(&candidate, size) <= width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if font.text_width(&line, size) > width && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::replace(&mut line, c.to_string()));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The whole document.
pub(crate) fn pdf(prepared: &Prepared, font: &ExportFont) -> Result<Vec<u8>, ExportError> {
    let l = labels(prepared.language);
    let mut layout = Layout::new(font);

    layout.text(MARGIN, CONTENT_W, 18.0, &prepared.title(), BLACK);
    layout.gap(6.0);
    let label_w = prepared
        .facts
        .iter()
        .map(|(label, _)| font.text_width(label, BODY))
        .fold(0.0, f32::max)
        + 12.0;
    for (label, value) in &prepared.facts {
        let top = layout.y;
        layout.text(MARGIN, label_w, BODY, label, GREY);
        let after_label = layout.y;
        layout.y = top;
        layout.text(MARGIN + label_w, CONTENT_W - label_w, BODY, value, BLACK);
        layout.y = layout.y.max(after_label);
    }

    layout.heading(l.report, 14.0);
    for paragraph in prepared.paragraphs() {
        layout.text(MARGIN, CONTENT_W, BODY, paragraph, BLACK);
        layout.gap(BODY * 0.5);
    }

    layout.heading(l.findings, 14.0);
    if prepared.findings.is_empty() {
        layout.text(MARGIN, CONTENT_W, BODY, l.no_findings, BLACK);
    } else {
        const COLUMNS: [f32; 5] = [44.0, 150.0, 120.0, 120.0, 65.0];
        let header = [l.reference, l.class, l.position, l.status, l.confidence];
        table_row(&mut layout, &COLUMNS, &header, true);
        for f in &prepared.findings {
            let cells = [
                f.reference.as_str(),
                &f.class,
                &f.position,
                &f.status,
                &f.confidence,
            ];
            table_row(&mut layout, &COLUMNS, &cells, false);
        }
    }

    let mut images: Vec<Image> = Vec::new();
    for (title, section) in [
        (l.images, &prepared.images),
        (l.comparison, &prepared.pairs),
    ] {
        if section.is_empty() {
            continue;
        }
        layout.new_page();
        layout.heading(title, 14.0);
        for image in section.iter() {
            picture(&mut layout, &mut images, image)?;
        }
    }

    render(prepared, font, layout.pages, &images)
}

/// One table row: cells wrapped in their columns, a rule below.
fn table_row(layout: &mut Layout<'_>, columns: &[f32], cells: &[&str], header: bool) {
    const PAD: f32 = 3.0;
    let font = layout.font;
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(columns)
        .map(|(text, w)| wrap(font, text, BODY, w - 2.0 * PAD))
        .collect();
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let height = lines as f32 * BODY * LINE + 2.0 * PAD;
    layout.ensure(height);
    let top = layout.y;
    if header {
        layout.push(Op::Rect {
            x: MARGIN,
            y: top,
            w: columns.iter().sum(),
            h: height,
            color: (225, 225, 225),
        });
    }
    let mut x = MARGIN;
    for (cell, w) in wrapped.iter().zip(columns) {
        for (i, line) in cell.iter().enumerate() {
            layout.push(Op::Text {
                x: x + PAD,
                y: top + PAD + i as f32 * BODY * LINE + font.ascent(BODY),
                size: BODY,
                text: line.clone(),
                color: BLACK,
            });
        }
        x += w;
    }
    layout.push(Op::Rect {
        x: MARGIN,
        y: top + height,
        w: columns.iter().sum(),
        h: 0.5,
        color: GREY,
    });
    layout.y = top + height + 0.5;
}

/// A caption and its picture scaled to the page width and at most half a
/// page high (two per page), or the sentence saying why there is none.
fn picture(
    layout: &mut Layout<'_>,
    images: &mut Vec<Image>,
    image: &PreparedImage,
) -> Result<(), ExportError> {
    const CAPTION: f32 = 11.0;
    let caption_h = CAPTION * LINE + 2.0;
    match &image.picture {
        Ok(jpeg) => {
            let max_h = (PAGE_H - 2.0 * MARGIN) / 2.0 - caption_h - 24.0;
            let scale =
                (CONTENT_W / jpeg.width.max(1) as f32).min(max_h / jpeg.height.max(1) as f32);
            let (w, h) = (jpeg.width as f32 * scale, jpeg.height as f32 * scale);
            layout.ensure(caption_h + h + 12.0);
            layout.text(MARGIN, CONTENT_W, CAPTION, &image.caption, BLACK);
            layout.gap(2.0);
            let data: krilla::Data = Arc::new(jpeg.bytes.clone()).into();
            let embedded = Image::from_jpeg(data, true)
                .map_err(|e| ExportError::Pdf(format!("picture {}: {e}", image.name)))?;
            images.push(embedded);
            layout.push(Op::Image {
                index: images.len() - 1,
                x: MARGIN,
                y: layout.y,
                w,
                h,
            });
            layout.y += h + 12.0;
        }
        Err(sentence) => {
            layout.ensure(caption_h + BODY * LINE * 2.0);
            layout.text(MARGIN, CONTENT_W, CAPTION, &image.caption, BLACK);
            layout.text(MARGIN, CONTENT_W, BODY, sentence, RED);
            layout.gap(12.0);
        }
    }
    Ok(())
}

fn fill(color: Color) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        ..Fill::default()
    }
}

fn render(
    prepared: &Prepared,
    font: &ExportFont,
    pages: Vec<Vec<Op>>,
    images: &[Image],
) -> Result<Vec<u8>, ExportError> {
    let pdf_font = font.pdf_font();
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(prepared.title())
            .language(prepared.language.code().to_owned())
            .creator("central report export".to_owned()),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| ExportError::Pdf("invalid page size".into()))?;
    for ops in pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    text,
                    color,
                } => {
                    surface.set_fill(Some(fill(color)));
                    surface.draw_text(
                        Point::from_xy(x, y),
                        pdf_font.clone(),
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect { x, y, w, h, color } => {
                    let Some(rect) = Rect::from_xywh(x, y, w, h) else {
                        continue;
                    };
                    let mut path = PathBuilder::new();
                    path.push_rect(rect);
                    if let Some(path) = path.finish() {
                        surface.set_fill(Some(fill(color)));
                        surface.draw_path(&path);
                    }
                }
                Op::Image { index, x, y, w, h } => {
                    let (Some(image), Some(size)) = (images.get(index), Size::from_wh(w, h)) else {
                        continue;
                    };
                    surface.push_transform(&Transform::from_translate(x, y));
                    surface.draw_image(image.clone(), size);
                    surface.pop();
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| ExportError::Pdf(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_lines_within_the_width_and_every_word() {
        let font = ExportFont::load(std::path::Path::new(super::super::DEFAULT_FONT_PATH))
            .expect("DejaVu Sans (Debian fonts-dejavu-core) is installed");
        let text = "Rückgabeprüfung des Fahrzeugs mit dem Kennzeichen AB 12 CDE am Standort \
                    site-0042. Donaudampfschifffahrtsgesellschaftskapitänsmütze";
        let lines = wrap(&font, text, 10.0, 120.0);
        assert!(lines.len() > 3, "{lines:?}");
        for line in &lines {
            assert!(font.text_width(line, 10.0) <= 120.0, "{line}");
        }
        let joined: String = lines.concat();
        let original: String = text.split_whitespace().collect();
        assert_eq!(joined.replace(' ', ""), original);
        assert!(wrap(&font, "", 10.0, 100.0).is_empty());
    }
}
