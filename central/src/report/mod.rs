//! Inspection reports: a chain of writers, each report checked against the
//! structured findings before it is kept.
//!
//! ```text
//! DESIGN
//!
//! WHAT A WRITER GETS AND RETURNS
//!
//! Every writer gets the same `ReportInput`: the facts of one processed
//! inspection (plate, findings with short references F1, F2, ..., the
//! comparison with the pickup, frame counts) and the language wanted. It
//! returns a `Draft`: a structured `ReportSummary` (the plate it states, the
//! damage it reports, each by reference, class, position and status) and
//! the narrative for people. The language models are asked for both as
//! JSON; the embedded model is too small for reliable JSON, so its summary
//! is what its narrative states, read back with the lexicon.
//!
//! GROUNDING (grounding.rs)
//!
//! A draft is rejected, and the next writer used, when its summary or its
//! narrative names damage that is not among the findings, leaves out a new
//! finding, states another plate, position or status (new damage called
//! pre-existing, or the reverse), or is not written in the language asked
//! for. The check is deterministic and cheap (a lexicon
//! per language, no model), so it runs on every draft of every writer,
//! including the template's own (a template bug is caught the same way).
//!
//! THE CHAIN (chain.rs)
//!
//! llm (self-hosted, OpenAI-compatible) -> fallback (GPT-4o, only for the
//! configured edge cases and under a daily budget) -> embedded (GGUF through
//! candle, when no endpoint is configured or all failed) -> template (always
//! last, always available). The writer that produced a report is stored with
//! it and counted in `central_reports_total{writer}`; each rejection in
//! `central_report_rejections_total{writer,reason}`.
//! ```

pub mod chain;
pub mod config;
pub mod embedded;
pub mod export;
pub mod grounding;
pub mod lexicon;
pub mod metrics;
pub mod openai;
pub mod prompt;
pub mod template;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inspection_core::geometry::BBox;
use inspection_core::wire::InspectionKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{
    Comparison, FindingSource, FindingStatus, FrameState, InspectionRecord, InspectionResult,
};

pub use chain::WriterChain;
pub use config::ReportConfig;
pub use metrics::ReportMetrics;

/// The languages reports and prompts are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
    Fr,
    It,
    Es,
    Nl,
}

impl Language {
    pub const ALL: [Language; 6] = [
        Language::En,
        Language::De,
        Language::Fr,
        Language::It,
        Language::Es,
        Language::Nl,
    ];

    /// ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
            Language::It => "it",
            Language::Es => "es",
            Language::Nl => "nl",
        }
    }

    /// The language's English name, for prompts.
    pub fn english_name(self) -> &'static str {
        match self {
            Language::En => "English",
            Language::De => "German",
            Language::Fr => "French",
            Language::It => "Italian",
            Language::Es => "Spanish",
            Language::Nl => "Dutch",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        Self::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The facts of one processed inspection: all a writer may state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    pub inspection_id: Uuid,
    pub kind: InspectionKind,
    pub site: String,
    pub device: String,
    pub started_at: Option<DateTime<Utc>>,
    pub processed_at: DateTime<Utc>,
    pub plate: PlateFact,
    /// Findings worth a report, in reference order (F1, F2, ...): every
    /// finding but rejected ones.
    pub findings: Vec<ReportFinding>,
    pub comparison: Comparison,
    /// The frames of the inspection, for exports.
    pub frames: Vec<ReportFrame>,
    /// The pickup compared with, when there was one.
    pub pickup: Option<PickupFacts>,
    pub frames_ok: u32,
    pub frames_skipped: u32,
    /// The damage model's id, `None` when none is configured.
    pub damage_model: Option<String>,
    pub language: Language,
}

/// What is known of the vehicle's plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlateFact {
    Read {
        /// Canonical `A-Z0-9`.
        plate: String,
        /// With the country's separators.
        display: String,
        country: String,
        confidence: f32,
    },
    /// A plate was seen but could not be read with confidence.
    Unreadable,
    /// No plate was seen (or plates are not read by this deployment).
    NotFound,
}

impl PlateFact {
    /// The canonical plate, when read.
    pub fn canonical(&self) -> Option<&str> {
        match self {
            PlateFact::Read { plate, .. } => Some(plate),
            _ => None,
        }
    }
}

/// One finding as a writer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportFinding {
    /// `F1`, `F2`, ...: how reports refer to it.
    pub reference: String,
    pub id: Uuid,
    /// The damage class (`dent`, `scratch`, ...) or `change`.
    pub class: String,
    pub status: FindingStatus,
    /// The camera position (`front`, `left`, ...).
    pub position: String,
    pub camera: String,
    pub confidence: f32,
    pub source: FindingSource,
    /// The frame it is on, and the box in that frame's pixels.
    pub sha256: String,
    pub bbox: BBox,
}

impl ReportFinding {
    /// New damage a report must mention: new, possible new, or confirmed.
    pub fn must_be_reported(&self) -> bool {
        matches!(
            self.status,
            FindingStatus::New | FindingStatus::PossibleNewDamage | FindingStatus::Confirmed
        )
    }
}

/// One frame, for exports (annotated images, pickup vs return).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportFrame {
    pub camera: String,
    pub position: String,
    pub sha256: String,
    pub rank: u32,
    /// `ok`, `corrupt`, `rejected`, `missing`.
    pub state: String,
}

/// The pickup a return was compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickupFacts {
    pub inspection_id: Uuid,
    pub started_at: Option<DateTime<Utc>>,
    /// Its usable frames, best first per position.
    pub frames: Vec<ReportFrame>,
}

impl ReportInput {
    /// The facts of a processed inspection. `pickup` is the pickup's record
    /// and result when the return was compared with one.
    pub fn new(
        record: &InspectionRecord,
        result: &InspectionResult,
        pickup: Option<(&InspectionRecord, &InspectionResult)>,
        language: Language,
    ) -> ReportInput {
        let plate = match &result.plate {
            Some(p) => PlateFact::Read {
                plate: p.plate.clone(),
                display: p.display.clone(),
                country: p.country.clone(),
                confidence: p.confidence,
            },
            None if result
                .plate_reads
                .iter()
                .any(|r| r.outcome != crate::store::PlateOutcome::NotFound) =>
            {
                PlateFact::Unreadable
            }
            None => PlateFact::NotFound,
        };
        let mut findings: Vec<_> = result
            .findings
            .iter()
            .filter(|f| f.status != FindingStatus::Rejected)
            .collect();
        // New damage first, then what was known; stable within a status.
        findings.sort_by_key(|f| {
            (
                !matches!(
                    f.status,
                    FindingStatus::New
                        | FindingStatus::Confirmed
                        | FindingStatus::PossibleNewDamage
                ),
                f.position.clone(),
            )
        });
        let findings = findings
            .into_iter()
            .enumerate()
            .map(|(i, f)| ReportFinding {
                reference: format!("F{}", i + 1),
                id: f.id,
                class: f.class.clone(),
                status: f.status,
                position: f.position.clone(),
                camera: f.camera.to_string(),
                confidence: f.confidence,
                source: f.source,
                sha256: f.sha256.clone(),
                bbox: f.bbox,
            })
            .collect();
        let frames = |r: &InspectionResult| -> Vec<ReportFrame> {
            r.frames
                .iter()
                .map(|f| ReportFrame {
                    camera: f.camera.to_string(),
                    position: f.position.clone(),
                    sha256: f.sha256.clone(),
                    rank: f.rank,
                    state: f.state.name().to_owned(),
                })
                .collect()
        };
        ReportInput {
            inspection_id: result.inspection_id,
            kind: record.kind.unwrap_or(InspectionKind::Return),
            site: record.site.to_string(),
            device: record.device.to_string(),
            started_at: record.started_at,
            processed_at: result.processed_at,
            plate,
            findings,
            comparison: result.comparison.clone(),
            frames: frames(result),
            pickup: pickup.map(|(rec, res)| PickupFacts {
                inspection_id: res.inspection_id,
                started_at: rec.started_at,
                frames: frames(res)
                    .into_iter()
                    .filter(|f| f.state == FrameState::Ok.name())
                    .collect(),
            }),
            frames_ok: result.summary.frames_ok,
            frames_skipped: result.summary.frames_skipped,
            damage_model: match &result.damage_model {
                crate::store::DamageModel::Used { model, .. } => Some(model.clone()),
                crate::store::DamageModel::NotConfigured => None,
            },
            language,
        }
    }

    pub fn finding(&self, reference: &str) -> Option<&ReportFinding> {
        self.findings
            .iter()
            .find(|f| f.reference.eq_ignore_ascii_case(reference.trim()))
    }
}

/// What a report states, for machines: checked against the findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// The plate the report states (any spelling; compared canonically),
    /// `None` when it says the plate was not read.
    pub plate: Option<String>,
    /// The damage the report reports.
    pub damages: Vec<SummaryDamage>,
}

/// One damage a report reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryDamage {
    /// The finding's reference (`F1`); empty when the writer gave none.
    #[serde(default)]
    pub finding: String,
    /// Class as in the findings (`dent`, `scratch`, ..., `change`).
    pub class: String,
    /// Camera position as in the findings.
    pub position: String,
    /// `new`, `pre_existing`, `possible_new_damage`, ...
    pub status: String,
}

/// A writer's output before the grounding check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub summary: ReportSummary,
    pub narrative: String,
}

/// A chat message (OpenAI's shape), for the language-model writers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Why a writer produced no draft. The chain moves to the next writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The endpoint answered with an error status (after retries).
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The connection failed (after retries).
    #[error("connection: {0}")]
    Connection(String),
    /// The answer was not what the protocol or the prompt asked for.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// Not usable now (no model file, no API key, budget spent, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl WriteError {
    /// A stable code for metric labels and the stored attempt list.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::Timeout(_) => "timeout",
            WriteError::Http { .. } => "http",
            WriteError::Connection(_) => "connection",
            WriteError::Malformed(_) => "malformed",
            WriteError::Unavailable(_) => "unavailable",
            WriteError::Internal(_) => "internal",
        }
    }
}

/// One report writer.
#[async_trait]
pub trait ReportWriter: Send + Sync {
    /// The writer's name, stored with its reports and used as the metric
    /// label: `llm`, `fallback`, `embedded` or `template`.
    fn name(&self) -> &'static str;

    /// The model behind it (for the stored report), if any.
    fn model(&self) -> Option<String>;

    async fn write(&self, input: &ReportInput) -> Result<Draft, WriteError>;
}

/// One writer's try, kept with the report: which writers were asked and
/// why their drafts were not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub writer: String,
    /// `accepted`, `skipped` (not an edge case, budget spent), `error`
    /// (timeout, HTTP, malformed) or `rejected` (grounding).
    pub outcome: String,
    /// The error code or the first rejection reason.
    pub reason: Option<String>,
    /// For people: the error or every rejection.
    pub detail: Option<String>,
    pub seconds: f64,
}

/// A report as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: Uuid,
    pub inspection_id: Uuid,
    /// The writer that produced it.
    pub writer: String,
    pub model: Option<String>,
    pub language: Language,
    pub summary: ReportSummary,
    pub narrative: String,
    /// Every writer asked, in order, the last one accepted.
    pub attempts: Vec<Attempt>,
    pub created_at: DateTime<Utc>,
}
