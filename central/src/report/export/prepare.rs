//! What every format shows, prepared once: the header facts, the findings
//! table in the report's language, and the pictures, annotated and encoded.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use image::RgbImage;
use uuid::Uuid;

use super::annotate::{annotate, caption, decode_frame, encode_bounded, side_by_side};
use super::labels::labels;
use super::{ExportError, ExportOptions, FrameSource};
use crate::report::lexicon::{class_term, position_term};
use crate::report::{Language, PlateFact, Report, ReportFinding, ReportInput};

/// A JPEG picture and its size in pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jpeg {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Which inspection a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Pickup,
    Return,
}

/// A frame that could not be drawn, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableFrame {
    pub sha256: String,
    pub position: String,
    pub side: Side,
    /// `not found`, `invalid id`, `truncated JPEG`, `corrupt image: ...`.
    pub reason: String,
}

/// One picture of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedImage {
    /// A file stem unique in the document, safe as a file name:
    /// `front`, `front-2`, `front-pickup-return`.
    pub name: String,
    /// The camera position as in the findings.
    pub position: String,
    /// For people, in the report's language: the position and the findings
    /// on it ("Front: F1").
    pub caption: String,
    /// The picture, or the sentence to show instead ("image unavailable
    /// (not found)").
    pub picture: Result<Jpeg, String>,
}

/// One row of the findings table, in the report's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub reference: String,
    pub class: String,
    pub position: String,
    pub status: String,
    /// `87 %`.
    pub confidence: String,
}

/// A report ready to be rendered in any format.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub inspection_id: Uuid,
    pub language: Language,
    /// The plate as shown (`AB 12 CDE`), or the word for unreadable or not
    /// seen.
    pub plate: String,
    /// Header rows: label and value, in the report's language.
    pub facts: Vec<(String, String)>,
    pub findings: Vec<FindingRow>,
    pub narrative: String,
    /// The return frames with their findings drawn, one or more per
    /// position.
    pub images: Vec<PreparedImage>,
    /// Pickup beside return, for each position both have.
    pub pairs: Vec<PreparedImage>,
    pub unavailable: Vec<UnavailableFrame>,
}

impl Prepared {
    /// The document title: "Prüfbericht AB 12 CDE".
    pub fn title(&self) -> String {
        format!("{} {}", labels(self.language).title, self.plate)
    }

    /// The narrative's paragraphs (its non-empty lines), trimmed.
    pub fn paragraphs(&self) -> impl Iterator<Item = &str> {
        self.narrative
            .split('\n')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// One frame to fetch and draw.
struct Planned {
    position: String,
    sha256: String,
}

/// Fetches the frames and prepares everything the renderers show. Missing
/// and undecodable frames become "image unavailable"; a failing object
/// store is an error.
pub async fn prepare(
    input: &ReportInput,
    report: &Report,
    frames: &dyn FrameSource,
    options: &ExportOptions,
) -> Result<Prepared, ExportError> {
    let lang = report.language;
    let l = labels(lang);

    // The frames the findings are on, new damage first (the findings'
    // order), then the best usable frame of every other position.
    let mut shown: Vec<Planned> = Vec::new();
    for f in &input.findings {
        if !shown.iter().any(|p| p.sha256 == f.sha256) {
            shown.push(Planned {
                position: f.position.clone(),
                sha256: f.sha256.clone(),
            });
        }
    }
    let mut by_rank: Vec<_> = input.frames.iter().filter(|f| f.state == "ok").collect();
    by_rank.sort_by_key(|f| f.rank);
    for frame in by_rank {
        if !shown.iter().any(|p| p.position == frame.position) {
            shown.push(Planned {
                position: frame.position.clone(),
                sha256: frame.sha256.clone(),
            });
        }
    }
    // The pickup's best frame of each position shown.
    let mut pickup: Vec<Planned> = Vec::new();
    if let Some(p) = &input.pickup {
        let mut by_rank: Vec<_> = p.frames.iter().filter(|f| f.state == "ok").collect();
        by_rank.sort_by_key(|f| f.rank);
        for frame in by_rank {
            let has_return = shown.iter().any(|s| s.position == frame.position);
            if has_return && !pickup.iter().any(|s| s.position == frame.position) {
                pickup.push(Planned {
                    position: frame.position.clone(),
                    sha256: frame.sha256.clone(),
                });
            }
        }
    }

    let mut fetched: HashMap<String, Result<Vec<u8>, String>> = HashMap::new();
    for planned in shown.iter().chain(&pickup) {
        if fetched.contains_key(&planned.sha256) {
            continue;
        }
        let got = match frames.frame(&planned.sha256).await {
            Ok(bytes) => Ok(bytes),
            Err(ExportError::FrameNotFound(_)) => Err("not found".to_owned()),
            Err(ExportError::BadFrameId(_)) => Err("invalid id".to_owned()),
            Err(e) => return Err(e),
        };
        fetched.insert(planned.sha256.clone(), got);
    }

    let facts = facts(input, report);
    let findings = input
        .findings
        .iter()
        .map(|f| FindingRow {
            reference: f.reference.clone(),
            class: class_term(lang, &f.class),
            position: position_term(lang, &f.position),
            status: l.status_term(f.status).to_owned(),
            confidence: format!("{:.0} %", (f.confidence * 100.0).clamp(0.0, 100.0)),
        })
        .collect();
    let plate = match &input.plate {
        PlateFact::Read { display, .. } => display.clone(),
        PlateFact::Unreadable => l.plate_unreadable.to_owned(),
        PlateFact::NotFound => l.plate_not_found.to_owned(),
    };

    // Decoding, drawing and encoding are CPU work: off the async runtime.
    let work = Work {
        lang,
        findings: input.findings.clone(),
        shown,
        pickup,
        fetched,
        pickup_at: input.pickup.as_ref().and_then(|p| p.started_at),
        return_at: input.started_at.or(Some(input.processed_at)),
        options: options.clone(),
    };
    let (images, pairs, unavailable) = tokio::task::spawn_blocking(move || work.run())
        .await
        .map_err(|e| ExportError::Image(format!("picture task failed: {e}")))??;

    Ok(Prepared {
        inspection_id: input.inspection_id,
        language: lang,
        plate,
        facts,
        findings,
        narrative: report.narrative.clone(),
        images,
        pairs,
        unavailable,
    })
}

fn facts(input: &ReportInput, report: &Report) -> Vec<(String, String)> {
    let l = labels(report.language);
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let plate = match &input.plate {
        PlateFact::Read {
            display, country, ..
        } => format!("{display} ({country})"),
        PlateFact::Unreadable => l.plate_unreadable.to_owned(),
        PlateFact::NotFound => l.plate_not_found.to_owned(),
    };
    let mut facts = vec![
        (l.plate.to_owned(), plate),
        (l.site.to_owned(), input.site.clone()),
        (l.device.to_owned(), input.device.clone()),
    ];
    if let Some(started) = input.started_at {
        facts.push((l.started.to_owned(), time(started)));
    }
    facts.push((l.processed.to_owned(), time(input.processed_at)));
    let writer = match &report.model {
        Some(model) => format!("{} ({model})", report.writer),
        None => report.writer.clone(),
    };
    facts.push((l.writer.to_owned(), writer));
    facts
}

/// The picture work, owned so it can run on a blocking thread.
struct Work {
    lang: Language,
    findings: Vec<ReportFinding>,
    shown: Vec<Planned>,
    pickup: Vec<Planned>,
    fetched: HashMap<String, Result<Vec<u8>, String>>,
    pickup_at: Option<DateTime<Utc>>,
    return_at: Option<DateTime<Utc>>,
    options: ExportOptions,
}

type Pictures = (
    Vec<PreparedImage>,
    Vec<PreparedImage>,
    Vec<UnavailableFrame>,
);

impl Work {
    fn run(self) -> Result<Pictures, ExportError> {
        let l = labels(self.lang);
        let font = &self.options.font;
        let mut unavailable = Vec::new();
        let mut decode = |planned: &Planned, side: Side| -> Result<RgbImage, String> {
            let decoded = match self.fetched.get(&planned.sha256) {
                Some(Ok(bytes)) => decode_frame(bytes),
                Some(Err(reason)) => Err(reason.clone()),
                None => Err("not found".to_owned()),
            };
            decoded.map_err(|reason| {
                tracing::warn!(
                    sha256 = %planned.sha256,
                    position = %planned.position,
                    ?side,
                    %reason,
                    "report export: frame unavailable"
                );
                unavailable.push(UnavailableFrame {
                    sha256: planned.sha256.clone(),
                    position: planned.position.clone(),
                    side,
                    reason: reason.clone(),
                });
                format!("{} ({reason})", l.unavailable)
            })
        };

        let mut names: Vec<String> = Vec::new();
        let mut unique_name = |base: String| -> String {
            let mut name = base.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            names.push(name.clone());
            name
        };

        let mut images = Vec::new();
        // The first annotated frame of each position, for the pairs.
        let mut annotated: Vec<(String, RgbImage)> = Vec::new();
        for planned in &self.shown {
            let on_frame: Vec<&ReportFinding> = self
                .findings
                .iter()
                .filter(|f| f.sha256 == planned.sha256)
                .collect();
            let refs: Vec<&str> = on_frame.iter().map(|f| f.reference.as_str()).collect();
            let position = position_term(self.lang, &planned.position);
            let caption = if refs.is_empty() {
                position
            } else {
                format!("{position}: {}", refs.join(", "))
            };
            let picture = match decode(planned, Side::Return) {
                Ok(frame) => {
                    let drawn = annotate(&frame, &on_frame, self.lang, font);
                    let jpeg =
                        encode_bounded(&drawn, self.options.max_width, self.options.jpeg_quality)?;
                    if !annotated.iter().any(|(p, _)| *p == planned.position) {
                        annotated.push((planned.position.clone(), drawn));
                    }
                    Ok(jpeg)
                }
                Err(sentence) => Err(sentence),
            };
            images.push(PreparedImage {
                name: unique_name(file_stem(&planned.position)),
                position: planned.position.clone(),
                caption,
                picture,
            });
        }

        let captions = (
            caption(self.lang, true, self.pickup_at),
            caption(self.lang, false, self.return_at),
        );
        let mut pairs = Vec::new();
        for planned in &self.pickup {
            let Some((_, ret)) = annotated.iter().find(|(p, _)| *p == planned.position) else {
                // The return frame of this position is unavailable: its
                // image already says so.
                continue;
            };
            let picture = match decode(planned, Side::Pickup) {
                Ok(frame) => {
                    let pair = side_by_side(&frame, ret, (&captions.0, &captions.1), font);
                    Ok(encode_bounded(
                        &pair,
                        self.options.max_width,
                        self.options.jpeg_quality,
                    )?)
                }
                Err(sentence) => Err(sentence),
            };
            pairs.push(PreparedImage {
                name: unique_name(format!("{}-pickup-return", file_stem(&planned.position))),
                position: planned.position.clone(),
                caption: format!(
                    "{}: {} / {}",
                    position_term(self.lang, &planned.position),
                    l.pickup,
                    l.ret
                ),
                picture,
            });
        }
        Ok((images, pairs, unavailable))
    }
}

/// A position as a file name: lowercase ASCII letters, digits, `-`, `_`.
fn file_stem(position: &str) -> String {
    let stem: String = position
        .chars()
        .take(40)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if stem.is_empty() {
        "image".to_owned()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_safe_file_names() {
        assert_eq!(file_stem("front_left"), "front_left");
        assert_eq!(file_stem("../Front Left"), "___front_left");
        assert_eq!(file_stem(""), "image");
    }
}
