//! Report exports: Markdown, HTML and PDF with annotated images.
//!
//! ```text
//! DESIGN
//!
//! ONE PREPARATION, THREE RENDERERS
//!
//! `prepare` does everything the formats share: it fetches the frames the
//! findings are on (and the best frame of every position without one) from a
//! `FrameSource`, draws each finding's box and a label tag ("F1 Delle 87%",
//! words from the lexicon in the report's language) on its frame, puts the
//! pickup frame beside the return frame of every position the pickup has,
//! and re-encodes every picture as a JPEG no wider than `max_width`. The
//! renderers (markdown.rs, html.rs, pdf.rs) only lay out the `Prepared`
//! document: they never decode an image or fetch anything.
//!
//! A MISSING PICTURE IS NOT A MISSING REPORT
//!
//! A frame that is not in the store, or that does not decode (cut off,
//! corrupt), is drawn as the text "image unavailable (reason)" in the
//! document, logged, and listed in `Exported::unavailable`; the export still
//! succeeds. Only errors that make the whole document wrong fail it: the
//! font cannot be loaded (`font`), the object store itself fails
//! (`storage`: a document without any picture would look complete), or a
//! picture cannot be encoded (`image`) or the PDF written (`pdf`).
//!
//! WHAT THE FORMATS CARRY
//!
//! - Markdown: the `.md` text, and the pictures as separate files under
//!   `images/` that the text links to (`Exported::attachments`).
//! - HTML: one self-contained file, pictures as `data:` URIs, every inserted
//!   text escaped (plates, sites, devices and narratives come from devices
//!   and models), `lang` set to the report's language, print CSS.
//! - PDF: A4, DejaVu Sans embedded and subset (real text: `pdftotext` reads
//!   the plate and the findings back), the JPEGs embedded as they are.
//!
//! The font is one TrueType file (default: Debian's fonts-dejavu-core) used
//! for the labels drawn on the pictures and for the PDF's text; a font that
//! cannot be read is `ExportError::Font`, never a panic.
//! ```

mod annotate;
mod font;
mod html;
mod labels;
mod markdown;
mod pdf;
mod prepare;
mod source;

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::{Report, ReportInput};

pub use annotate::{PictureError, annotate, annotated_jpeg, pair_jpeg, side_by_side, status_color};
pub use font::ExportFont;
pub use prepare::{FindingRow, Jpeg, Prepared, PreparedImage, Side, UnavailableFrame, prepare};
pub use source::FrameSource;

/// Debian's fonts-dejavu-core: the default font of the exports.
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Markdown,
    Html,
    Pdf,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Markdown, Format::Html, Format::Pdf];

    /// The document's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }

    /// The document's file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// A format name that is not `md`, `markdown`, `html` or `pdf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?} (expected md, markdown, html or pdf)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            _ => Err(UnknownFormat(s.chars().take(40).collect())),
        }
    }
}

/// The exports' configuration: `[report.export]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// A TrueType font with the glyphs of every report language. Default:
    /// DejaVu Sans from Debian's fonts-dejavu-core, installed with the image.
    pub font: PathBuf,
    /// Pictures wider than this are scaled down: 1280 px shows a scratch
    /// and keeps a six-camera PDF at a few megabytes.
    pub max_width: u32,
    /// JPEG quality of the re-encoded pictures: 85 keeps box edges and
    /// label text crisp at a third of the size of 95.
    pub jpeg_quality: u8,
}

impl ExportConfig {
    /// Every problem of the configuration, each prefixed with `at`; the
    /// font is read only when `check_files`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !(MIN_WIDTH..=MAX_WIDTH).contains(&self.max_width) {
            problems.push(format!(
                "{at}.max_width: {} is not within {MIN_WIDTH}..={MAX_WIDTH}",
                self.max_width
            ));
        }
        if !(MIN_QUALITY..=100).contains(&self.jpeg_quality) {
            problems.push(format!(
                "{at}.jpeg_quality: {} is not within {MIN_QUALITY}..=100",
                self.jpeg_quality
            ));
        }
        if check_files && let Err(e) = ExportFont::load(&self.font) {
            problems.push(format!("{at}.font: {e}"));
        }
        problems
    }
}

/// Narrower pictures hide scratches; wider ones make documents heavy.
const MIN_WIDTH: u32 = 320;
const MAX_WIDTH: u32 = 4096;
/// Below this, JPEG artefacts blur box edges and label text.
const MIN_QUALITY: u8 = 30;

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            font: PathBuf::from(DEFAULT_FONT_PATH),
            max_width: 1280,
            jpeg_quality: 85,
        }
    }
}

/// What an export needs besides the report: the loaded font and the
/// picture limits.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub font: ExportFont,
    pub max_width: u32,
    pub jpeg_quality: u8,
}

impl ExportOptions {
    /// Loads the configured font. Limits are checked by
    /// `ExportConfig::problems`; here they are only clamped to its ranges.
    pub fn from_config(config: &ExportConfig) -> Result<ExportOptions, ExportError> {
        Ok(ExportOptions {
            font: ExportFont::load(&config.font)?,
            max_width: config.max_width.clamp(MIN_WIDTH, MAX_WIDTH),
            jpeg_quality: config.jpeg_quality.clamp(MIN_QUALITY, 100),
        })
    }
}

/// A file that goes with an exported document (Markdown's pictures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Relative to the document, with `/` separators: `images/front.jpg`.
    pub path: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// An exported report.
#[derive(Debug, Clone)]
pub struct Exported {
    pub format: Format,
    pub content_type: &'static str,
    /// `report-{inspection id}.{ext}`.
    pub file_name: String,
    /// The document itself.
    pub bytes: Vec<u8>,
    /// Files the document refers to (Markdown only; empty otherwise).
    pub attachments: Vec<Attachment>,
    /// Frames that could not be drawn; the document says so where they
    /// would be.
    pub unavailable: Vec<UnavailableFrame>,
}

/// Why an export failed, or why a frame could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The font file cannot be read or is not a usable font.
    #[error("font {path}: {reason}")]
    Font { path: PathBuf, reason: String },
    /// The frame is not in the store (a `FrameSource` answer; the export
    /// draws "image unavailable" instead).
    #[error("frame {0} not found")]
    FrameNotFound(String),
    /// Not a SHA-256 hex digest (a `FrameSource` answer, treated like a
    /// missing frame).
    #[error("invalid frame id {0:?}")]
    BadFrameId(String),
    /// The object store failed (not a missing object).
    #[error("object store: {0}")]
    Storage(String),
    /// A picture could not be encoded.
    #[error("image: {0}")]
    Image(String),
    /// The PDF could not be written.
    #[error("pdf: {0}")]
    Pdf(String),
}

impl ExportError {
    /// A stable code for metric labels and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Font { .. } => "font",
            ExportError::FrameNotFound(_) => "frame_not_found",
            ExportError::BadFrameId(_) => "bad_frame_id",
            ExportError::Storage(_) => "storage",
            ExportError::Image(_) => "image",
            ExportError::Pdf(_) => "pdf",
        }
    }
}

/// Exports a report in one format: prepares the pictures, then renders.
pub async fn export(
    input: &ReportInput,
    report: &Report,
    frames: &dyn FrameSource,
    format: Format,
    options: &ExportOptions,
) -> Result<Exported, ExportError> {
    let prepared = prepare(input, report, frames, options).await?;
    // Rendering is CPU work (the PDF subsets the font, HTML base64-encodes
    // the pictures): off the async runtime.
    let options = options.clone();
    tokio::task::spawn_blocking(move || render(&prepared, format, &options))
        .await
        .map_err(|e| ExportError::Pdf(format!("render task failed: {e}")))?
}

/// Renders a prepared document in one format. CPU-bound: `export` runs it
/// on a blocking thread.
pub fn render(
    prepared: &Prepared,
    format: Format,
    options: &ExportOptions,
) -> Result<Exported, ExportError> {
    let (bytes, attachments) = match format {
        Format::Markdown => {
            let (text, files) = markdown::markdown(prepared);
            let attachments = files
                .into_iter()
                .map(|(path, bytes)| Attachment {
                    path,
                    content_type: "image/jpeg",
                    bytes,
                })
                .collect();
            (text.into_bytes(), attachments)
        }
        Format::Html => (html::html(prepared).into_bytes(), Vec::new()),
        Format::Pdf => (pdf::pdf(prepared, &options.font)?, Vec::new()),
    };
    Ok(Exported {
        format,
        content_type: format.content_type(),
        file_name: format!("report-{}.{}", prepared.inspection_id, format.extension()),
        bytes,
        attachments,
        unavailable: prepared.unavailable.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_themselves() {
        for f in Format::ALL {
            assert_eq!(f.extension().parse::<Format>(), Ok(f));
        }
        assert_eq!("Markdown".parse::<Format>(), Ok(Format::Markdown));
        assert_eq!(" PDF ".parse::<Format>(), Ok(Format::Pdf));
        assert!("docx".parse::<Format>().is_err());
        assert_eq!(Format::Pdf.content_type(), "application/pdf");
    }

    #[test]
    fn config_problems_are_reported_whole() {
        assert!(
            ExportConfig::default()
                .problems("report.export", true)
                .is_empty()
        );
        let config: ExportConfig =
            toml::from_str("font = \"/nonexistent/font.ttf\"\nmax_width = 10\njpeg_quality = 5")
                .unwrap();
        let problems = config.problems("report.export", true);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("report.export.max_width"));
        assert!(problems[2].starts_with("report.export.font"));
        assert_eq!(config.problems("report.export", false).len(), 2);
        assert!(toml::from_str::<ExportConfig>("fonts = \"x\"").is_err());
    }

    #[test]
    fn a_missing_font_is_an_error_with_a_code() {
        let config = ExportConfig {
            font: "/nonexistent/font.ttf".into(),
            ..ExportConfig::default()
        };
        let err = ExportOptions::from_config(&config).unwrap_err();
        assert_eq!(err.code(), "font");
        assert!(err.to_string().contains("/nonexistent/font.ttf"), "{err}");
    }
}
