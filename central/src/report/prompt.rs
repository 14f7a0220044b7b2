//! The prompts of the language-model writers, and reading their answers.
//!
//! The facts go to the model as a short list with one line per finding,
//! each with its reference; the system message states the rules the
//! grounding check enforces (only the listed damage, every new finding, the
//! plate as given, the language asked for). Endpoint models answer in JSON
//! (`PromptStyle::Json`); the embedded model writes the narrative only
//! (`PromptStyle::Narrative`).

use super::lexicon;
use super::{ChatMessage, Draft, PlateFact, ReportInput, ReportSummary, SummaryDamage, WriteError};
use crate::store::Comparison;
use inspection_core::wire::InspectionKind;

/// What the model is asked to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptStyle {
    /// A JSON object `{"summary": {...}, "narrative": "..."}`.
    Json,
    /// The narrative only, as plain text.
    Narrative,
}

/// The facts, one per line, in English words with the language's terms for
/// classes and positions (models copy what they see).
pub fn facts(input: &ReportInput) -> String {
    let lang = input.language;
    let mut out = String::new();
    let kind = match input.kind {
        InspectionKind::Pickup => "pickup (vehicle handed to the customer)",
        InspectionKind::Return => "return (vehicle brought back)",
    };
    out.push_str(&format!("Inspection: {kind}\n"));
    out.push_str(&format!("Site: {}\n", input.site));
    match &input.plate {
        PlateFact::Read { display, .. } => out.push_str(&format!("Plate: {display}\n")),
        PlateFact::Unreadable => out.push_str("Plate: not readable\n"),
        PlateFact::NotFound => out.push_str("Plate: not seen\n"),
    }
    match &input.comparison {
        Comparison::Compared { .. } => {
            out.push_str("Compared with: the pickup inspection of the same vehicle\n")
        }
        Comparison::NoPickup => out.push_str("Compared with: no earlier pickup found\n"),
        Comparison::NotApplicable => {}
    }
    if input.findings.is_empty() {
        out.push_str("Findings: none\n");
    } else {
        out.push_str("Findings:\n");
        for f in &input.findings {
            out.push_str(&format!(
                "- {}: {} ({}) at {} ({}), status {}, confidence {:.2}\n",
                f.reference,
                lexicon::class_term(lang, &f.class),
                f.class,
                lexicon::position_term(lang, &f.position),
                f.position,
                f.status.as_str(),
                f.confidence,
            ));
        }
    }
    out
}

/// The messages for one report.
pub fn messages(input: &ReportInput, style: PromptStyle) -> Vec<ChatMessage> {
    let lang = input.language;
    let name = lang.english_name();
    let mut rules = format!(
        "You write vehicle inspection reports for a car rental company. Write in {name} only. \
         Report only the damage in the findings list, with its position; never add damage \
         that is not listed. Mention every finding whose status is new or \
         possible_new_damage. Give the plate exactly as listed, or say it was not read. \
         Findings with status pre_existing were already there at pickup: say so. \
         If there are no findings, say that no damage was found, without naming any kind of damage."
    );
    match style {
        PromptStyle::Json => rules.push_str(
            " Answer with one JSON object and nothing else: \
             {\"summary\": {\"plate\": string or null, \"damages\": [{\"finding\": \"F1\", \
             \"class\": class as listed in brackets, \"position\": position as listed in brackets, \
             \"status\": status as listed}]}, \"narrative\": a short paragraph for staff}.",
        ),
        PromptStyle::Narrative => rules
            .push_str(" Answer with a short paragraph of plain text (three sentences at most)."),
    }
    let mut user = facts(input);
    user.push_str(&format!("\nWrite the report in {name}."));
    vec![ChatMessage::system(rules), ChatMessage::user(user)]
}

/// Reads a JSON answer: the object may be wrapped in a Markdown fence or
/// surrounded by text; everything else is `Malformed`.
pub fn parse_json_draft(text: &str) -> Result<Draft, WriteError> {
    let start = text
        .find('{')
        .ok_or_else(|| WriteError::Malformed("no JSON object in the answer".into()))?;
    let end = text
        .rfind('}')
        .filter(|&e| e > start)
        .ok_or_else(|| WriteError::Malformed("unterminated JSON object".into()))?;
    #[derive(serde::Deserialize)]
    struct Answer {
        summary: AnswerSummary,
        narrative: String,
    }
    #[derive(serde::Deserialize)]
    struct AnswerSummary {
        #[serde(default)]
        plate: Option<String>,
        #[serde(default)]
        damages: Vec<SummaryDamage>,
    }
    let answer: Answer = serde_json::from_str(&text[start..=end])
        .map_err(|e| WriteError::Malformed(format!("answer is not the requested JSON: {e}")))?;
    if answer.narrative.trim().is_empty() {
        return Err(WriteError::Malformed("empty narrative".into()));
    }
    Ok(Draft {
        summary: ReportSummary {
            plate: answer.summary.plate.filter(|p| !p.trim().is_empty()),
            damages: answer.summary.damages,
        },
        narrative: answer.narrative.trim().to_owned(),
    })
}
