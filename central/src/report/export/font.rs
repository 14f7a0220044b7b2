//! The exports' one font: rasterised for labels on pictures, embedded in
//! PDFs, and measured for the PDF's line breaks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ab_glyph::{Font as _, FontArc, PxScale, ScaleFont as _};

use super::ExportError;

/// A loaded TrueType font, cheap to clone.
#[derive(Clone)]
pub struct ExportFont {
    path: PathBuf,
    glyphs: FontArc,
    pdf: krilla::text::Font,
}

impl std::fmt::Debug for ExportFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFont")
            .field("path", &self.path)
            .finish()
    }
}

impl ExportFont {
    /// Reads and parses a font file. Unreadable or unparsable files are
    /// `ExportError::Font` naming the path.
    pub fn load(path: &Path) -> Result<ExportFont, ExportError> {
        let data = std::fs::read(path).map_err(|e| ExportError::Font {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        ExportFont::from_bytes(path, data)
    }

    /// Parses font bytes; `path` is only for messages.
    pub fn from_bytes(path: &Path, data: Vec<u8>) -> Result<ExportFont, ExportError> {
        let font_error = |reason: String| ExportError::Font {
            path: path.to_owned(),
            reason,
        };
        let glyphs = FontArc::try_from_vec(data.clone())
            .map_err(|e| font_error(format!("not a usable font: {e}")))?;
        // The PDF writer parses it itself; refuse here what it would refuse.
        let pdf = krilla::text::Font::new(Arc::new(data).into(), 0)
            .ok_or_else(|| font_error("the PDF writer cannot use this font".into()))?;
        Ok(ExportFont {
            path: path.to_owned(),
            glyphs,
            pdf,
        })
    }

    /// The font file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn glyphs(&self) -> &FontArc {
        &self.glyphs
    }

    /// The font for the PDF writer.
    pub(crate) fn pdf_font(&self) -> krilla::text::Font {
        self.pdf.clone()
    }

    /// The rasteriser's scale for an em size. Sizes here are em sizes, as
    /// in the PDF; ab_glyph's own scale is the ascent-to-descent height,
    /// about 1.16 em for DejaVu Sans, and measuring with it would let lines
    /// run past the margin.
    pub(crate) fn scale(&self, size: f32) -> PxScale {
        // Not `pt_to_px_scale`: that one also converts 72 to 96 dpi.
        match self.glyphs.units_per_em() {
            Some(upem) if upem > 0.0 => PxScale::from(size * self.glyphs.height_unscaled() / upem),
            _ => PxScale::from(size),
        }
    }

    /// The advance width of `text` at em size `size` (pixels or points),
    /// with kerning: what line breaking and label tags need.
    pub fn text_width(&self, text: &str, size: f32) -> f32 {
        let scaled = self.glyphs.as_scaled(self.scale(size));
        let mut width = 0.0;
        let mut previous = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            previous = Some(id);
        }
        width
    }

    /// Ascent at em size `size` (from the baseline up, positive).
    pub fn ascent(&self, size: f32) -> f32 {
        self.glyphs.as_scaled(self.scale(size)).ascent()
    }

    /// Descent at em size `size` (from the baseline down, negative).
    pub fn descent(&self, size: f32) -> f32 {
        self.glyphs.as_scaled(self.scale(size)).descent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_em_sizes_as_in_the_pdf() {
        let font = ExportFont::load(Path::new(super::super::DEFAULT_FONT_PATH))
            .expect("DejaVu Sans (Debian fonts-dejavu-core) is installed");
        // DejaVu Sans: "M" advances 1767 of 2048 units per em.
        let m = font.text_width("M", 10.0);
        assert!((m - 10.0 * 1767.0 / 2048.0).abs() < 0.05, "{m}");
        assert!(font.ascent(10.0) > 9.0 && font.ascent(10.0) < 10.0);
        assert!(font.descent(10.0) < 0.0);
    }
}
