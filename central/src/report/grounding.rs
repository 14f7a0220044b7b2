//! The grounding check: a draft is kept only if it states what the findings
//! say, all of it that matters, and nothing else.
//!
//! Both halves of a draft are checked. The structured summary must name
//! existing findings with their class, position and status, cover every
//! new finding, and state the plate that was read (or none). A narrative
//! sentence about one new finding must not call it pre-existing. The narrative is
//! read back with the lexicon ([`extract_summary`]) and held to the same
//! rules, so a narrative cannot invent a scratch that the summary leaves
//! out; its language is detected and must be the one asked for.
//!
//! The check is strict on purpose: a sentence such as "no scratches were
//! found" names a damage class that is not among the findings and is
//! rejected (the prompts say so). A wrong rejection costs a fallback to the
//! next writer; a wrong acceptance can charge a customer.

use std::collections::BTreeSet;

use serde::Serialize;

use super::lexicon;
use super::{Draft, Language, PlateFact, ReportInput, ReportSummary, SummaryDamage};

/// Why a draft was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Damage that is not among the findings (or the wrong class for one).
    InventedDamage,
    /// A new finding the report does not mention.
    OmittedFinding,
    /// Another plate than the one read, a plate where none was read, or
    /// none where one was.
    WrongPlate,
    /// A finding placed at another position.
    WrongLocation,
    /// New damage called pre-existing, or pre-existing damage called new.
    WrongStatus,
    /// Not written in the language asked for.
    WrongLanguage,
    /// No narrative.
    Empty,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::InventedDamage,
        Reason::OmittedFinding,
        Reason::WrongPlate,
        Reason::WrongLocation,
        Reason::WrongStatus,
        Reason::WrongLanguage,
        Reason::Empty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InventedDamage => "invented_damage",
            Reason::OmittedFinding => "omitted_finding",
            Reason::WrongPlate => "wrong_plate",
            Reason::WrongLocation => "wrong_location",
            Reason::WrongStatus => "wrong_status",
            Reason::WrongLanguage => "wrong_language",
            Reason::Empty => "empty",
        }
    }
}

/// One rule a draft broke, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// Every rule `draft` breaks; empty when it may be kept.
pub fn check(input: &ReportInput, draft: &Draft) -> Vec<Rejection> {
    let mut out = Vec::new();
    let narrative = draft.narrative.trim();
    if narrative.is_empty() {
        out.push(Rejection {
            reason: Reason::Empty,
            detail: "the narrative is empty".into(),
        });
        return out;
    }
    if let Some(detected) = detect_language(narrative)
        && detected != input.language
    {
        out.push(Rejection {
            reason: Reason::WrongLanguage,
            detail: format!(
                "asked for {}, written in {}",
                input.language.code(),
                detected.code()
            ),
        });
    } else if detect_language(narrative).is_none() {
        out.push(Rejection {
            reason: Reason::WrongLanguage,
            detail: format!(
                "asked for {}, the language could not be recognised",
                input.language.code()
            ),
        });
    }
    check_summary(input, &draft.summary, "summary", &mut out);
    let read_back = extract_summary(narrative, input);
    check_summary(input, &read_back, "narrative", &mut out);
    check_narrative_statuses(input, narrative, &mut out);
    // A plate-like token in the narrative that is not the vehicle's.
    let canonical = input.plate.canonical();
    for token in plate_like_tokens(narrative) {
        if Some(token.as_str()) != canonical {
            out.push(Rejection {
                reason: Reason::WrongPlate,
                detail: format!("the narrative names plate {token}"),
            });
        }
    }
    out.sort_by(|a, b| (a.reason, &a.detail).cmp(&(b.reason, &b.detail)));
    out.dedup();
    out
}

fn check_summary(
    input: &ReportInput,
    summary: &ReportSummary,
    part: &str,
    out: &mut Vec<Rejection>,
) {
    // The plate.
    let stated = summary.plate.as_deref().map(canonical_plate);
    match (&input.plate, stated.as_deref()) {
        (PlateFact::Read { plate, .. }, Some(s)) if s == plate => {}
        (PlateFact::Read { plate, .. }, Some(s)) => out.push(Rejection {
            reason: Reason::WrongPlate,
            detail: format!("the {part} states {s}, the plate read is {plate}"),
        }),
        (PlateFact::Read { plate, .. }, None) => {
            // The narrative may leave the plate to the report's header; the
            // structured summary must state it.
            if part == "summary" {
                out.push(Rejection {
                    reason: Reason::WrongPlate,
                    detail: format!("the {part} states no plate, the plate read is {plate}"),
                });
            }
        }
        (_, Some(s)) => out.push(Rejection {
            reason: Reason::WrongPlate,
            detail: format!("the {part} states {s}, but no plate was read"),
        }),
        (_, None) => {}
    }

    // Every damage stated must be a finding, with its class and position.
    let mut covered = BTreeSet::new();
    for damage in &summary.damages {
        match resolve(input, damage) {
            Resolved::Finding(reference) => {
                // A stated status (the structured summary's) must agree:
                // new damage is never "pre-existing", nor the reverse.
                if let Some(finding) = input.finding(&reference)
                    && let Some(stated) = status_group(&damage.status)
                    && Some(stated) != status_group(finding.status.as_str())
                {
                    out.push(Rejection {
                        reason: Reason::WrongStatus,
                        detail: format!(
                            "the {part} calls {reference} {}, the finding is {}",
                            damage.status.trim(),
                            finding.status.as_str()
                        ),
                    });
                }
                covered.insert(reference);
            }
            Resolved::WrongClass { reference, class } => out.push(Rejection {
                reason: Reason::InventedDamage,
                detail: format!(
                    "the {part} calls {reference} a {}, the finding is a {class}",
                    damage.class
                ),
            }),
            Resolved::WrongPosition {
                reference,
                position,
            } => {
                covered.insert(reference.clone());
                out.push(Rejection {
                    reason: Reason::WrongLocation,
                    detail: format!(
                        "the {part} places {} ({reference}) at {}, the finding is at {position}",
                        damage.class, damage.position
                    ),
                });
            }
            Resolved::Unknown => out.push(Rejection {
                reason: Reason::InventedDamage,
                detail: format!(
                    "the {part} reports {}{} that is not among the findings",
                    damage.class,
                    if damage.position.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", damage.position)
                    }
                ),
            }),
        }
    }
    // Every new finding must be stated.
    for finding in input.findings.iter().filter(|f| f.must_be_reported()) {
        if !covered.contains(&finding.reference) {
            out.push(Rejection {
                reason: Reason::OmittedFinding,
                detail: format!(
                    "the {part} leaves out {} ({} at {}, {})",
                    finding.reference,
                    finding.class,
                    finding.position,
                    finding.status.as_str()
                ),
            });
        }
    }
}

/// Statuses that mean the same to a customer: new damage (new, possible,
/// confirmed), damage there at pickup, and no damage (rejected). `None` for
/// an empty or unknown status (not stated).
fn status_group(status: &str) -> Option<u8> {
    match status
        .trim()
        .to_lowercase()
        .replace([' ', '-'], "_")
        .as_str()
    {
        "new" | "possible_new_damage" | "possible_new" | "confirmed" => Some(0),
        "pre_existing" | "preexisting" | "existing" => Some(1),
        "rejected" => Some(2),
        _ => None,
    }
}

/// A sentence that speaks of exactly one new finding and says it was
/// already there at pickup states the wrong status (a sentence covering
/// several findings is left alone: which one the words belong to is not
/// known).
fn check_narrative_statuses(input: &ReportInput, narrative: &str, out: &mut Vec<Rejection>) {
    for sentence in sentences(narrative) {
        let covered = extract_summary(sentence, input).damages;
        let [damage] = covered.as_slice() else {
            continue;
        };
        let Some(finding) = input.finding(&damage.finding) else {
            continue;
        };
        if finding.must_be_reported() && lexicon::names_pre_existing(input.language, sentence) {
            out.push(Rejection {
                reason: Reason::WrongStatus,
                detail: format!(
                    "the narrative calls {} ({} at {}, {}) pre-existing",
                    finding.reference,
                    finding.class,
                    finding.position,
                    finding.status.as_str()
                ),
            });
        }
    }
}

enum Resolved {
    Finding(String),
    WrongClass { reference: String, class: String },
    WrongPosition { reference: String, position: String },
    Unknown,
}

/// Which finding a stated damage is: by reference when given, else by class
/// and position.
fn resolve(input: &ReportInput, damage: &SummaryDamage) -> Resolved {
    let class = damage.class.trim().to_lowercase().replace(' ', "_");
    let position = damage
        .position
        .trim()
        .to_lowercase()
        .replace([' ', '-'], "_");
    if !damage.finding.trim().is_empty() {
        let Some(f) = input.finding(&damage.finding) else {
            return Resolved::Unknown;
        };
        if f.class != class {
            return Resolved::WrongClass {
                reference: f.reference.clone(),
                class: f.class.clone(),
            };
        }
        if !position.is_empty() && f.position != position {
            return Resolved::WrongPosition {
                reference: f.reference.clone(),
                position: f.position.clone(),
            };
        }
        return Resolved::Finding(f.reference.clone());
    }
    let same_class: Vec<_> = input.findings.iter().filter(|f| f.class == class).collect();
    if same_class.is_empty() {
        return Resolved::Unknown;
    }
    if position.is_empty() {
        return Resolved::Finding(same_class[0].reference.clone());
    }
    match same_class.iter().find(|f| f.position == position) {
        Some(f) => Resolved::Finding(f.reference.clone()),
        None => Resolved::WrongPosition {
            reference: same_class[0].reference.clone(),
            position: same_class[0].position.clone(),
        },
    }
}

/// What a narrative states, read back with the lexicon: per sentence, each
/// damage class named is paired with a position named in the same sentence
/// (the finding's own position when it names several), and references such
/// as `F2` count as the finding. The plate is the vehicle's when the text
/// contains it, else the first plate-like token.
pub fn extract_summary(narrative: &str, input: &ReportInput) -> ReportSummary {
    let lang = input.language;
    let mut damages: Vec<SummaryDamage> = Vec::new();
    let mut seen_refs = BTreeSet::new();
    for sentence in sentences(narrative) {
        // References first: "F2" is that finding, whatever words surround it.
        let mut named_here = BTreeSet::new();
        let positions = lexicon::positions_in(lang, sentence);
        for reference in references(sentence) {
            if let Some(f) = input.finding(&reference) {
                named_here.insert(f.class.clone());
                // A sentence that places the finding somewhere else than
                // where it is states that position.
                let position = if positions.is_empty() || positions.contains(&f.position.as_str()) {
                    String::new()
                } else {
                    positions[0].to_owned()
                };
                if seen_refs.insert(f.reference.clone()) {
                    damages.push(SummaryDamage {
                        finding: f.reference.clone(),
                        class: f.class.clone(),
                        position,
                        status: f.status.as_str().to_owned(),
                    });
                }
            }
        }
        for (class, _) in lexicon::classes_in(lang, sentence) {
            if named_here.contains(class) {
                continue;
            }
            // The finding this sentence speaks of: same class at a named
            // position, or the only one of its class when none is named.
            let candidates: Vec<_> = input.findings.iter().filter(|f| f.class == class).collect();
            let matched = candidates
                .iter()
                .find(|f| positions.contains(&f.position.as_str()))
                .or(if positions.is_empty() && candidates.len() == 1 {
                    candidates.first()
                } else {
                    None
                });
            match matched {
                Some(f) => {
                    if seen_refs.insert(f.reference.clone()) {
                        damages.push(SummaryDamage {
                            finding: f.reference.clone(),
                            class: class.to_owned(),
                            position: f.position.clone(),
                            status: f.status.as_str().to_owned(),
                        });
                    }
                }
                None => damages.push(SummaryDamage {
                    finding: String::new(),
                    class: class.to_owned(),
                    position: positions.first().map(|p| p.to_string()).unwrap_or_default(),
                    status: String::new(),
                }),
            }
        }
        // "possible new damage" and other words for change regions: a
        // sentence naming a position where change regions are, together with
        // the language's term for them, covers them.
        if lexicon::names_change(lang, sentence) {
            for f in input.findings.iter().filter(|f| {
                f.class == "change"
                    && (positions.contains(&f.position.as_str()) || positions.is_empty())
            }) {
                if seen_refs.insert(f.reference.clone()) {
                    damages.push(SummaryDamage {
                        finding: f.reference.clone(),
                        class: f.class.clone(),
                        position: f.position.clone(),
                        status: f.status.as_str().to_owned(),
                    });
                }
            }
        }
    }
    let plate = match &input.plate {
        PlateFact::Read { plate, .. } if canonical_plate(narrative).contains(plate.as_str()) => {
            Some(plate.clone())
        }
        _ => plate_like_tokens(narrative).into_iter().next(),
    };
    ReportSummary { plate, damages }
}

/// `A-Z0-9` only, upper case: how plates are compared.
pub fn canonical_plate(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Tokens that look like a licence plate: 4-10 letters and digits (with
/// spaces or hyphens between groups), at least two of each, that validate
/// for some European format. Canonical.
pub fn plate_like_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | ':'))
        .map(|w| w.trim_end_matches(['.', '!', '?']))
        .filter(|w| !w.is_empty())
        .collect();
    // Plates are written in one to three groups ("AB 12 CDE", "M-AB 1234").
    for start in 0..words.len() {
        for len in 1..=3 {
            let Some(group) = words.get(start..start + len) else {
                continue;
            };
            if group.iter().any(|w| {
                !w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
            }) {
                continue;
            }
            let joined = canonical_plate(&group.concat());
            let letters = joined.chars().filter(|c| c.is_ascii_alphabetic()).count();
            let digits = joined.chars().filter(|c| c.is_ascii_digit()).count();
            if !(4..=10).contains(&joined.len()) || letters < 2 || digits < 2 {
                continue;
            }
            if inspection_core::plate::candidates(&joined).is_empty() {
                continue;
            }
            if !out.contains(&joined) {
                out.push(joined);
            }
        }
    }
    // A longer reading that contains a shorter one is the same plate.
    let all = out.clone();
    out.retain(|t| !all.iter().any(|o| o != t && o.contains(t.as_str())));
    out
}

/// `F1`, `f12`: references to findings.
fn references(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            w.len() >= 2
                && (w.starts_with('F') || w.starts_with('f'))
                && w[1..].chars().all(|c| c.is_ascii_digit())
        })
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// Sentences, split at `.`, `!`, `?`, `;` and line breaks (not inside
/// numbers such as `0.87`).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let ends = match c {
            '!' | '?' | ';' | '\n' => true,
            '.' => next.is_none_or(|n| n.is_whitespace()),
            _ => false,
        };
        if ends {
            let s = text[start..at].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = at + c.len_utf8();
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The narrative's language among all that `whatlang` knows, mapped to a
/// report language; `None` when it is none of them or cannot be told.
pub fn detect_language(text: &str) -> Option<Language> {
    // Plates, references and numbers say nothing about the language.
    let words: String = text
        .split_whitespace()
        .filter(|w| w.chars().any(|c| c.is_lowercase()))
        .collect::<Vec<_>>()
        .join(" ");
    let info = whatlang::detect(&words)?;
    match info.lang() {
        whatlang::Lang::Eng => Some(Language::En),
        whatlang::Lang::Deu => Some(Language::De),
        whatlang::Lang::Fra => Some(Language::Fr),
        whatlang::Lang::Ita => Some(Language::It),
        whatlang::Lang::Spa => Some(Language::Es),
        whatlang::Lang::Nld => Some(Language::Nl),
        _ => None,
    }
}
