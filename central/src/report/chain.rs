//! The writer chain: which writers are asked, in which order, and which
//! draft is kept.
//!
//! ```text
//! llm        the self-hosted endpoint, when configured
//!   |  draft rejected, error, or not configured
//! fallback   GPT-4o, when configured, only if an edge case holds
//!   |        (low confidence, unreadable plate, model vs change
//!   |        disagreement, primary failure) and the day's budget allows
//! embedded   the GGUF model on the CPU, when enabled and loaded
//!   |
//! template   always; deterministic
//! ```
//!
//! Every draft goes through the grounding check; the first accepted one is
//! the report. The template's draft is checked too, and kept even when the
//! check objects (it is the last writer, and a report that states the
//! findings verbatim is better than none); that case is logged as an error
//! and counted, since it means a template or lexicon bug.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::config::FallbackWhen;
use super::grounding::{self, Rejection};
use super::metrics::{AttemptLabels, RejectionLabels, WriterLabels};
use super::template::TemplateWriter;
use super::{Attempt, PlateFact, Report, ReportFinding, ReportInput, ReportMetrics, ReportWriter};
use crate::store::{FindingSource, FindingStatus};

/// The fallback writer with its routing rules and budget.
pub struct Fallback {
    pub writer: Arc<dyn ReportWriter>,
    pub when: FallbackWhen,
    pub budget: DailyBudget,
}

/// At most `limit` uses per UTC day, counted in this process.
pub struct DailyBudget {
    limit: u32,
    used: Mutex<(NaiveDate, u32)>,
}

impl DailyBudget {
    pub fn new(limit: u32) -> DailyBudget {
        DailyBudget {
            limit,
            used: Mutex::new((NaiveDate::MIN, 0)),
        }
    }

    /// Takes one use at `now`; `false` when the day's budget is spent.
    pub fn take(&self, now: DateTime<Utc>) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let today = now.date_naive();
        if used.0 != today {
            *used = (today, 0);
        }
        if used.1 >= self.limit {
            return false;
        }
        used.1 += 1;
        true
    }

    /// Uses left today.
    pub fn left(&self, now: DateTime<Utc>) -> u32 {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.0 == now.date_naive() {
            self.limit.saturating_sub(used.1)
        } else {
            self.limit
        }
    }
}

/// The configured writers, in the order they are asked.
pub struct WriterChain {
    llm: Option<Arc<dyn ReportWriter>>,
    fallback: Option<Fallback>,
    embedded: Option<Arc<dyn ReportWriter>>,
    template: TemplateWriter,
    metrics: ReportMetrics,
}

/// How one writer's try ended.
enum Tried {
    Accepted(super::Draft),
    Failed,
}

impl WriterChain {
    pub fn new(
        llm: Option<Arc<dyn ReportWriter>>,
        fallback: Option<Fallback>,
        embedded: Option<Arc<dyn ReportWriter>>,
        metrics: ReportMetrics,
    ) -> WriterChain {
        WriterChain {
            llm,
            fallback,
            embedded,
            template: TemplateWriter,
            metrics,
        }
    }

    /// The template alone (tests, and deployments without any model).
    pub fn template_only(metrics: ReportMetrics) -> WriterChain {
        WriterChain::new(None, None, None, metrics)
    }

    /// The writers configured, in order, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let named = |w: &Arc<dyn ReportWriter>| match w.model() {
            Some(m) => format!("{} ({m})", w.name()),
            None => w.name().to_owned(),
        };
        if let Some(w) = &self.llm {
            out.push(named(w));
        }
        if let Some(f) = &self.fallback {
            out.push(named(&f.writer));
        }
        if let Some(w) = &self.embedded {
            out.push(named(w));
        }
        out.push("template".to_owned());
        out
    }

    /// Writes the report of `input`: always returns one (the template is
    /// the floor).
    pub async fn write(&self, input: &ReportInput, now: DateTime<Utc>) -> Report {
        let mut attempts = Vec::new();
        let mut primary_failed = false;
        if let Some(llm) = &self.llm {
            if let Tried::Accepted(draft) =
                self.try_writer(llm.as_ref(), input, &mut attempts).await
            {
                return self.report(input, llm.as_ref(), draft, attempts, now);
            }
            primary_failed = true;
        }
        if let Some(fallback) = &self.fallback {
            let cases = edge_cases(input, &fallback.when, primary_failed);
            if cases.is_empty() {
                self.skip(&mut attempts, fallback.writer.name(), "not_edge_case", None);
            } else if !fallback.budget.take(now) {
                tracing::warn!(
                    inspection = %input.inspection_id,
                    cases = ?cases,
                    "fallback writer's daily budget is spent"
                );
                self.skip(
                    &mut attempts,
                    fallback.writer.name(),
                    "budget_spent",
                    Some(cases.join(", ")),
                );
            } else {
                self.metrics.fallback_requests.inc();
                tracing::info!(inspection = %input.inspection_id, cases = ?cases, "asking the fallback writer");
                if let Tried::Accepted(draft) = self
                    .try_writer(fallback.writer.as_ref(), input, &mut attempts)
                    .await
                {
                    return self.report(input, fallback.writer.as_ref(), draft, attempts, now);
                }
            }
        }
        if let Some(embedded) = &self.embedded
            && let Tried::Accepted(draft) = self
                .try_writer(embedded.as_ref(), input, &mut attempts)
                .await
        {
            return self.report(input, embedded.as_ref(), draft, attempts, now);
        }
        let started = Instant::now();
        let draft = super::template::render(input);
        let rejections = grounding::check(input, &draft);
        let seconds = started.elapsed().as_secs_f64();
        self.observe("template", seconds);
        if !rejections.is_empty() {
            // Reason codes only at error level: a rejection's detail quotes
            // the draft, which may hold the plate (kept with the report's
            // attempts, readable by staff).
            tracing::error!(
                inspection = %input.inspection_id,
                reasons = %reasons(&rejections),
                "the template's own report fails the grounding check (a template or lexicon bug); kept as the last resort"
            );
            tracing::debug!(inspection = %input.inspection_id, rejections = %join(&rejections), "template rejections");
            self.count_rejections("template", &rejections);
        }
        self.count_attempt("template", "accepted");
        attempts.push(Attempt {
            writer: "template".into(),
            outcome: "accepted".into(),
            reason: rejections.first().map(|r| r.reason.as_str().to_owned()),
            detail: (!rejections.is_empty()).then(|| join(&rejections)),
            seconds,
        });
        self.report(input, &self.template, draft, attempts, now)
    }

    async fn try_writer(
        &self,
        writer: &dyn ReportWriter,
        input: &ReportInput,
        attempts: &mut Vec<Attempt>,
    ) -> Tried {
        let name = writer.name();
        let started = Instant::now();
        let written = writer.write(input).await;
        let seconds = started.elapsed().as_secs_f64();
        self.observe(name, seconds);
        match written {
            Err(error) => {
                // The error's text may quote the model's answer or an error
                // body (with the plate): only its code above debug.
                tracing::warn!(inspection = %input.inspection_id, writer = name, code = error.code(), "report writer failed");
                tracing::debug!(inspection = %input.inspection_id, writer = name, %error, "report writer error");
                self.count_attempt(name, "error");
                attempts.push(Attempt {
                    writer: name.into(),
                    outcome: "error".into(),
                    reason: Some(error.code().into()),
                    detail: Some(error.to_string()),
                    seconds,
                });
                Tried::Failed
            }
            Ok(draft) => {
                let rejections = grounding::check(input, &draft);
                if rejections.is_empty() {
                    self.count_attempt(name, "accepted");
                    attempts.push(Attempt {
                        writer: name.into(),
                        outcome: "accepted".into(),
                        reason: None,
                        detail: None,
                        seconds,
                    });
                    Tried::Accepted(draft)
                } else {
                    tracing::warn!(
                        inspection = %input.inspection_id,
                        writer = name,
                        reasons = %reasons(&rejections),
                        "report rejected by the grounding check"
                    );
                    tracing::debug!(inspection = %input.inspection_id, writer = name, rejections = %join(&rejections), "grounding rejections");
                    self.count_attempt(name, "rejected");
                    self.count_rejections(name, &rejections);
                    attempts.push(Attempt {
                        writer: name.into(),
                        outcome: "rejected".into(),
                        reason: Some(rejections[0].reason.as_str().into()),
                        detail: Some(join(&rejections)),
                        seconds,
                    });
                    Tried::Failed
                }
            }
        }
    }

    fn report(
        &self,
        input: &ReportInput,
        writer: &dyn ReportWriter,
        draft: super::Draft,
        attempts: Vec<Attempt>,
        now: DateTime<Utc>,
    ) -> Report {
        self.metrics
            .reports
            .get_or_create(&WriterLabels {
                writer: writer.name().to_owned(),
            })
            .inc();
        Report {
            id: Uuid::now_v7(),
            inspection_id: input.inspection_id,
            writer: writer.name().to_owned(),
            model: writer.model(),
            language: input.language,
            summary: draft.summary,
            narrative: draft.narrative,
            attempts,
            created_at: now,
        }
    }

    fn skip(
        &self,
        attempts: &mut Vec<Attempt>,
        writer: &str,
        reason: &str,
        detail: Option<String>,
    ) {
        self.count_attempt(writer, "skipped");
        attempts.push(Attempt {
            writer: writer.into(),
            outcome: "skipped".into(),
            reason: Some(reason.into()),
            detail,
            seconds: 0.0,
        });
    }

    fn count_attempt(&self, writer: &str, outcome: &str) {
        self.metrics
            .attempts
            .get_or_create(&AttemptLabels {
                writer: writer.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    fn count_rejections(&self, writer: &str, rejections: &[Rejection]) {
        let mut reasons: Vec<_> = rejections.iter().map(|r| r.reason).collect();
        reasons.dedup();
        for reason in reasons {
            self.metrics
                .rejections
                .get_or_create(&RejectionLabels {
                    writer: writer.to_owned(),
                    reason: reason.as_str().to_owned(),
                })
                .inc();
        }
    }

    fn observe(&self, writer: &str, seconds: f64) {
        self.metrics
            .seconds
            .get_or_create(&WriterLabels {
                writer: writer.to_owned(),
            })
            .observe(seconds);
    }
}

/// The edge cases of `input` that `when` sends to the fallback writer.
pub fn edge_cases(
    input: &ReportInput,
    when: &FallbackWhen,
    primary_failed: bool,
) -> Vec<&'static str> {
    let mut cases = Vec::new();
    if when.low_confidence > 0.0
        && input.findings.iter().any(|f: &ReportFinding| {
            f.must_be_reported()
                && f.source == FindingSource::Model
                && f.confidence < when.low_confidence
        })
    {
        cases.push("low_confidence");
    }
    if when.unreadable_plate && input.plate == PlateFact::Unreadable {
        cases.push("unreadable_plate");
    }
    if when.disagreement
        && input.damage_model.is_some()
        && input
            .findings
            .iter()
            .any(|f| f.status == FindingStatus::PossibleNewDamage)
    {
        cases.push("disagreement");
    }
    if when.primary_failure && primary_failed {
        cases.push("primary_failure");
    }
    cases
}

/// The rejections' reason codes, for logs (no quoted text).
fn reasons(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn join(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(Rejection::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The chain `config` describes. Writers whose parts are missing (the
/// embedded model's file, an API key) are left out with a warning, so a
/// worker always starts; `central validate` reports them as problems.
pub async fn build(config: &super::ReportConfig, metrics: ReportMetrics) -> WriterChain {
    let llm = config.llm.as_ref().and_then(|endpoint| {
        endpoint_writer("llm", endpoint).map(|w| Arc::new(w) as Arc<dyn ReportWriter>)
    });
    let fallback = config.fallback.as_ref().and_then(|fallback| {
        if fallback.daily_budget == 0 {
            tracing::info!("report.fallback.daily_budget is 0: the fallback writer is off");
            return None;
        }
        endpoint_writer("fallback", &fallback.endpoint).map(|w| Fallback {
            writer: Arc::new(w),
            when: fallback.when.clone(),
            budget: DailyBudget::new(fallback.daily_budget),
        })
    });
    let embedded = if config.embedded.enabled {
        match super::embedded::EmbeddedWriter::load(&config.embedded).await {
            Ok(writer) => Some(Arc::new(writer) as Arc<dyn ReportWriter>),
            Err(error) => {
                tracing::warn!(%error, "the embedded report writer is left out");
                None
            }
        }
    } else {
        None
    };
    let chain = WriterChain::new(llm, fallback, embedded, metrics);
    tracing::info!(writers = ?chain.describe(), "report writers");
    chain
}

/// The OpenAI-compatible writer of `endpoint`, or `None` (logged) when it
/// cannot be built (its API key is missing, its URL is wrong).
fn endpoint_writer(
    name: &'static str,
    endpoint: &super::config::EndpointConfig,
) -> Option<super::openai::OpenAiWriter> {
    match super::openai::OpenAiWriter::new(name, endpoint) {
        Ok(writer) => Some(writer),
        Err(error) => {
            tracing::warn!(writer = name, %error, "report writer left out");
            None
        }
    }
}
