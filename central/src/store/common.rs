//! Pieces both backends share: the audit entry of a processing result,
//! lease arithmetic, the spelling of unit enums in the database, the staff
//! API's rules (staff.rs), checked on what each backend read inside its
//! write transaction, with their messages and audit entries, and the audit
//! entries of retention, erasure and device commands (with the redaction
//! of a plate in audit JSON).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    AuditEntry, Charge, CommandRecord, DataClass, Erasure, FindingDecision, FindingReview,
    FindingStatus, ImageRef, InspectionResult, InspectionReview, StoreError,
};

/// `now + lease` to the microsecond (what both databases keep, so the
/// `Job` a claim returns equals the stored lease), refusing a lease that
/// does not fit in a date.
pub(crate) fn lease_end(
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<DateTime<Utc>, StoreError> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map(|t| t.trunc_subsecs(6))
        .ok_or_else(|| StoreError::Data(format!("a lease of {lease:?} is out of range")))
}

/// A unit enum's serde spelling (`PlateOutcome::NotFound` -> `not_found`).
pub(crate) fn enum_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(StoreError::Data(format!("{other} is not a unit variant"))),
        Err(e) => Err(StoreError::Data(e.to_string())),
    }
}

/// The unit enum spelled `text` (the inverse of [`enum_text`]).
pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| StoreError::Data(format!("stored {what} {text:?}: {e}")))
}

/// The audit entry `record_result` appends: who processed the inspection,
/// and its status and plate before and after.
pub(crate) fn processed_audit(
    result: &InspectionResult,
    before_status: &str,
    before_plate: Option<&str>,
) -> AuditEntry {
    AuditEntry {
        at: result.processed_at,
        actor: format!("worker:{}", result.worker),
        action: "inspection.processed".to_owned(),
        target: format!("inspection:{}", result.inspection_id),
        before: Some(json!({ "status": before_status, "plate": before_plate })),
        after: Some(json!({
            "status": "processed",
            "plate": result.plate.as_ref().map(|p| p.plate.as_str()),
            "findings": result.findings.len(),
            "new": result.summary.new,
            "pre_existing": result.summary.pre_existing,
            "possible_new_damage": result.summary.possible_new_damage,
        })),
    }
}

/// The detail a job's inspection gets when its lease ran out on the last
/// attempt.
pub(crate) fn lease_expired_error(owner: Option<&str>, attempts: i64) -> String {
    format!(
        "the lease of worker {} ran out on the last attempt ({attempts}); the worker died or hung",
        owner.unwrap_or("?")
    )
}

// --- The staff API's rules ----------------------------------------------------

/// What a staff write reads about its inspection first (in its transaction,
/// the inspection locked).
#[derive(Debug, Clone)]
pub(crate) struct Standing {
    /// `InspectionStatus` as stored.
    pub(crate) status: String,
    /// `InspectionKind` as stored (`None` before `inspection_started`).
    pub(crate) kind: Option<String>,
    pub(crate) reviewed: Option<InspectionReview>,
    /// A charge is approved.
    pub(crate) charged: bool,
}

/// `NotFound` for an inspection the store does not know.
pub(crate) fn no_inspection(id: Uuid) -> StoreError {
    StoreError::NotFound(format!("no inspection {id}"))
}

/// Why `record_result` refuses an inspection staff have begun to review.
pub(crate) fn review_begun(id: Uuid) -> StoreError {
    StoreError::Conflict(format!(
        "staff have begun reviewing inspection {id} (finding decisions, the review mark or a \
         charge): its result is kept, reprocessing would wipe their decisions"
    ))
}

/// Why `record_result` refuses an erased inspection: a worker that read it
/// before the erasure must not write its plate back.
pub(crate) fn erased_inspection(id: Uuid) -> StoreError {
    StoreError::Conflict(format!(
        "inspection {id} was erased (GDPR): its personal data is gone and a result is not \
         stored again"
    ))
}

/// Only processed inspections are reviewed.
fn check_processed(id: Uuid, standing: &Standing) -> Result<(), StoreError> {
    if standing.status == "processed" {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "inspection {id} is {}, not processed: only processed inspections are reviewed",
            standing.status
        )))
    }
}

/// Checks a review action on a finding whose current status is `current`
/// (`None`: not a finding of the inspection); returns its status before and
/// after the action.
pub(crate) fn check_finding_review(
    review: &FindingReview,
    standing: &Standing,
    current: Option<FindingStatus>,
) -> Result<(FindingStatus, FindingStatus), StoreError> {
    check_processed(review.inspection_id, standing)?;
    let current = current.ok_or_else(|| {
        StoreError::NotFound(format!(
            "finding {} is not a finding of inspection {}",
            review.finding_id, review.inspection_id
        ))
    })?;
    if current == FindingStatus::Baseline {
        return Err(StoreError::Conflict(format!(
            "finding {} is a pickup's baseline: only return findings are reviewed",
            review.finding_id
        )));
    }
    let after = match review.decision {
        FindingDecision::Annotate => current,
        decision if standing.charged => {
            return Err(StoreError::Conflict(format!(
                "a charge is approved for inspection {}: its findings can no longer be {}ed, only \
             annotated",
                review.inspection_id,
                decision.as_str()
            )));
        }
        FindingDecision::Confirm => FindingStatus::Confirmed,
        FindingDecision::Reject => FindingStatus::Rejected,
    };
    Ok((current, after))
}

/// The note a finding keeps after a review action: an annotation sets it
/// (`None` clears it); a confirm or reject replaces it only when it has one.
pub(crate) fn note_after<'a>(
    review: &'a FindingReview,
    before: Option<&'a str>,
) -> Option<&'a str> {
    match review.decision {
        FindingDecision::Annotate => review.note.as_deref(),
        FindingDecision::Confirm | FindingDecision::Reject => review.note.as_deref().or(before),
    }
}

/// Checks marking an inspection reviewed, given its findings in order.
pub(crate) fn check_mark_reviewed(
    id: Uuid,
    standing: &Standing,
    findings: &[(Uuid, FindingStatus)],
) -> Result<(), StoreError> {
    check_processed(id, standing)?;
    let undecided: Vec<String> = findings
        .iter()
        .filter(|(_, s)| matches!(s, FindingStatus::New | FindingStatus::PossibleNewDamage))
        .map(|(f, s)| format!("{f} ({})", s.as_str()))
        .collect();
    if undecided.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "findings still undecided: {}; confirm or reject each before marking inspection {id} \
             reviewed",
            undecided.join(", ")
        )))
    }
}

/// Checks a charge, given the inspection's findings.
pub(crate) fn check_charge(
    charge: &Charge,
    standing: &Standing,
    findings: &[(Uuid, FindingStatus)],
) -> Result<(), StoreError> {
    let id = charge.inspection_id;
    if standing.kind.as_deref() != Some("return") {
        return Err(StoreError::Conflict(format!(
            "inspection {id} is {}, not a return: only returns are charged",
            match standing.kind.as_deref() {
                Some(kind) => format!("a {kind}"),
                None => "of no known kind".to_owned(),
            }
        )));
    }
    if standing.charged {
        return Err(StoreError::Conflict(format!(
            "a charge is already approved for inspection {id}"
        )));
    }
    if standing.reviewed.is_none() {
        return Err(StoreError::Conflict(format!(
            "inspection {id} is not marked reviewed: review it before approving a charge"
        )));
    }
    if charge.findings.is_empty() {
        return Err(StoreError::Conflict(
            "no findings listed: a charge is for at least one confirmed finding".to_owned(),
        ));
    }
    let mut unconfirmed = Vec::new();
    for (i, finding) in charge.findings.iter().enumerate() {
        if charge.findings[..i].contains(finding) {
            return Err(StoreError::Conflict(format!(
                "finding {finding} is listed twice"
            )));
        }
        match findings.iter().find(|(f, _)| f == finding) {
            None => {
                return Err(StoreError::NotFound(format!(
                    "finding {finding} is not a finding of inspection {id}"
                )));
            }
            Some((_, FindingStatus::Confirmed)) => {}
            Some((_, status)) => unconfirmed.push(format!("{finding} ({})", status.as_str())),
        }
    }
    if unconfirmed.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "findings not confirmed: {}; only confirmed findings are charged",
            unconfirmed.join(", ")
        )))
    }
}

/// A time in audit JSON: RFC 3339 UTC to the microsecond with `Z`, the
/// same text on both backends.
pub(crate) fn audit_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The audit entry of a review action (`finding.confirm`, `finding.reject`,
/// `finding.annotate`): the finding's status and note before and after.
pub(crate) fn finding_audit(
    review: &FindingReview,
    before: (FindingStatus, Option<&str>),
    after: (FindingStatus, Option<&str>),
) -> AuditEntry {
    AuditEntry {
        at: review.at,
        actor: review.actor.clone(),
        action: format!("finding.{}", review.decision.as_str()),
        target: format!("inspection:{}", review.inspection_id),
        before: Some(json!({
            "finding": review.finding_id,
            "status": before.0.as_str(),
            "note": before.1,
        })),
        after: Some(json!({
            "finding": review.finding_id,
            "status": after.0.as_str(),
            "note": after.1,
        })),
    }
}

/// The audit entry of `mark_reviewed`: the review mark before (all null
/// when there was none) and after.
pub(crate) fn reviewed_audit(
    id: Uuid,
    before: Option<&InspectionReview>,
    after: &InspectionReview,
) -> AuditEntry {
    let mark = |r: Option<&InspectionReview>| {
        json!({
            "reviewed_by": r.map(|r| r.actor.as_str()),
            "reviewed_at": r.map(|r| audit_time(&r.at)),
            "note": r.and_then(|r| r.note.as_deref()),
        })
    };
    AuditEntry {
        at: after.at,
        actor: after.actor.clone(),
        action: "inspection.reviewed".to_owned(),
        target: format!("inspection:{id}"),
        before: Some(mark(before)),
        after: Some(mark(Some(after))),
    }
}

/// The audit entry of `approve_charge`: no charge before, the charge after.
pub(crate) fn charge_audit(charge: &Charge) -> AuditEntry {
    AuditEntry {
        at: charge.at,
        actor: charge.actor.clone(),
        action: "charge.approved".to_owned(),
        target: format!("inspection:{}", charge.inspection_id),
        before: Some(json!({ "charge": null })),
        after: Some(json!({
            "charge": charge.id,
            "findings": charge.findings,
            "note": charge.note,
        })),
    }
}

/// Findings counted by status, in `FindingStatus` order.
pub(crate) fn finding_counts(
    counts: impl IntoIterator<Item = (FindingStatus, u32)>,
) -> Vec<(FindingStatus, u32)> {
    let mut by_status = std::collections::BTreeMap::new();
    for (status, n) in counts {
        *by_status.entry(status).or_insert(0u32) += n;
    }
    by_status.into_iter().filter(|(_, n)| *n > 0).collect()
}

// --- Retention, erasure and device commands (staff.rs) ------------------------

/// Who the retention purge's audit entries name.
pub(crate) const RETENTION_ACTOR: &str = "system:retention";

/// What an erasure puts where a plate was.
pub(crate) const ERASED: &str = "[erased]";

/// `purge(Images)` is refused: images are deleted from the object store by
/// the caller, which asks `expired_images` and reports `mark_images_purged`.
pub(crate) fn images_are_not_purged_here() -> StoreError {
    StoreError::Data(
        "purge(images): images are deleted from the object store by the caller; use \
         expired_images and mark_images_purged"
            .to_owned(),
    )
}

/// The audit entry of a row purge: `retention.purge`, target
/// `retention:<class>`, after `{class, deleted, before}`. Its time is the
/// clock's (to the microsecond): the purge has no other.
pub(crate) fn purge_audit(class: DataClass, deleted: u64, before: &DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at: Utc::now().trunc_subsecs(6),
        actor: RETENTION_ACTOR.to_owned(),
        action: "retention.purge".to_owned(),
        target: format!("retention:{}", class.as_str()),
        before: None,
        after: Some(json!({
            "class": class.as_str(),
            "deleted": deleted,
            "before": audit_time(before),
        })),
    }
}

/// The audit entry of `mark_images_purged`: `retention.purge`, target
/// `retention:images`, after `{class, deleted, frames, inspections}` (images
/// by SHA-256, frames marked, inspections they belong to).
pub(crate) fn images_purged_audit(
    images: &[ImageRef],
    frames: u64,
    at: DateTime<Utc>,
) -> AuditEntry {
    let shas: std::collections::BTreeSet<&str> = images.iter().map(|i| i.sha256.as_str()).collect();
    let inspections: std::collections::BTreeSet<Uuid> =
        images.iter().map(|i| i.inspection_id).collect();
    AuditEntry {
        at,
        actor: RETENTION_ACTOR.to_owned(),
        action: "retention.purge".to_owned(),
        target: format!("retention:{}", DataClass::Images.as_str()),
        before: None,
        after: Some(json!({
            "class": DataClass::Images.as_str(),
            "deleted": shas.len(),
            "frames": frames,
            "inspections": inspections.len(),
        })),
    }
}

/// `NotFound` for an erasure that matches nothing.
pub(crate) fn nothing_to_erase_by_plate(plate: &str) -> StoreError {
    StoreError::NotFound(format!("no inspection of plate {plate}"))
}

/// Characters people and OCR put between a plate's parts.
fn is_plate_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '\u{a0}' | '\u{b7}' | '_' | '/')
}

/// `text` with every spelling of the canonical `plate` (`MAB1234`) replaced
/// by [`ERASED`]: any case, with separators between its characters (`M-AB
/// 1234`, `mab1234`, `M AB 1234`); `None` when there is none.
pub(crate) fn redact_plate(text: &str, plate: &str) -> Option<String> {
    let wanted: Vec<char> = plate
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // byte offset copied so far
    let mut found = false;
    let mut i = 0;
    while i < chars.len() {
        // Try a match starting at chars[i].
        let mut j = i;
        let mut k = 0;
        while k < wanted.len() && j < chars.len() {
            let c = chars[j].1;
            if c.eq_ignore_ascii_case(&wanted[k]) {
                k += 1;
                j += 1;
            } else if k > 0 && is_plate_separator(c) {
                j += 1;
            } else {
                break;
            }
        }
        if k == wanted.len() {
            let start = chars[i].0;
            let end = chars.get(j).map_or(text.len(), |(b, _)| *b);
            out.push_str(&text[copied..start]);
            out.push_str(ERASED);
            copied = end;
            found = true;
            i = j;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Replaces every occurrence of each of `plates` in the strings of `value`
/// (object keys too) by [`ERASED`]; whether anything changed. Numbers and
/// the rest are left alone, so the JSON stays what it was, less the plates.
pub(crate) fn redact(value: &mut serde_json::Value, plates: &[String]) -> bool {
    fn text(s: &str, plates: &[String]) -> Option<String> {
        // Ids are never a plate, even when a short plate's digits occur in
        // them: a redacted id would no longer name its row.
        if uuid::Uuid::parse_str(s).is_ok() {
            return None;
        }
        let mut out: Option<String> = None;
        for plate in plates.iter().filter(|p| !p.is_empty()) {
            let current = out.as_deref().unwrap_or(s);
            if let Some(redacted) = redact_plate(current, plate) {
                out = Some(redacted);
            }
        }
        out
    }
    match value {
        serde_json::Value::String(s) => match text(s, plates) {
            Some(redacted) => {
                *s = redacted;
                true
            }
            None => false,
        },
        serde_json::Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= redact(item, plates);
            }
            changed
        }
        serde_json::Value::Object(map) => {
            let mut changed = false;
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                changed |= redact(&mut item, plates);
                let key = match text(&key, plates) {
                    Some(redacted) => {
                        changed = true;
                        redacted
                    }
                    None => key,
                };
                map.insert(key, item);
            }
            changed
        }
        _ => false,
    }
}

/// The erasure's audit entry: `gdpr.erasure`, target `erasure:<id>`, after
/// `{erasure, selector, inspections, images_deleted, reason}`; the plates
/// are redacted from it too (a reason may name one), so it never holds one.
pub(crate) fn erasure_audit(erasure: &Erasure, plates: &[String]) -> AuditEntry {
    let mut after = json!({
        "erasure": erasure.id,
        "selector": erasure.selector,
        "inspections": erasure.inspections,
        "images_deleted": erasure.images_deleted,
        "reason": erasure.reason,
    });
    redact(&mut after, plates);
    AuditEntry {
        at: erasure.at,
        actor: erasure.actor.clone(),
        action: "gdpr.erasure".to_owned(),
        target: format!("erasure:{}", erasure.id),
        before: None,
        after: Some(after),
    }
}

/// `NotFound` for a command the store does not know.
pub(crate) fn no_command(cmd_id: Uuid) -> StoreError {
    StoreError::NotFound(format!("no command {cmd_id}"))
}

/// A command's audit entry: `device.command`, target
/// `device:<site>/<device>`, after `{cmd_id, kind, expires_at}`.
pub(crate) fn command_audit(command: &CommandRecord) -> AuditEntry {
    AuditEntry {
        at: command.requested_at,
        actor: command.requested_by.clone(),
        action: "device.command".to_owned(),
        target: format!("device:{}/{}", command.site, command.device),
        before: None,
        after: Some(json!({
            "cmd_id": command.cmd_id,
            "kind": command.kind,
            "expires_at": command.expires_at.as_ref().map(audit_time),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_end_on_a_microsecond() {
        let now = DateTime::parse_from_rfc3339("2026-11-02T09:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = lease_end(now, std::time::Duration::from_millis(1500)).unwrap();
        assert_eq!(end.to_rfc3339(), "2026-11-02T09:00:01.623456+00:00");
        assert!(lease_end(now, std::time::Duration::from_secs(u64::MAX)).is_err());
    }

    #[test]
    fn redaction_replaces_plates_in_strings_only() {
        let plates = vec!["AB12CDE".to_owned(), "1234".to_owned()];
        let mut value = json!({
            "plate": "AB12CDE",
            "note": "AB12CDE twice: AB12CDE",
            "n": 1234,
            "list": ["x1234y", null, true],
            "AB12CDE": {"deep": ["AB12CDE"]},
        });
        assert!(redact(&mut value, &plates));
        assert_eq!(
            value,
            json!({
                "plate": "[erased]",
                "note": "[erased] twice: [erased]",
                "n": 1234,
                "list": ["x[erased]y", null, true],
                "[erased]": {"deep": ["[erased]"]},
            })
        );
        assert!(!redact(&mut value, &plates), "nothing left to redact");
        assert!(!redact(&mut json!("text"), &[String::new()]));
        // Any spelling; ids stay whole.
        let id = "01a24572-4fe2-71e2-a88c-1fbb367d1234";
        let mut value = json!({
            "note": "customer of M-AB 1234 (mab1234, M AB 1234) called",
            "finding": id,
        });
        assert!(redact(
            &mut value,
            &["MAB1234".to_owned(), "1234".to_owned()]
        ));
        assert_eq!(
            value["note"],
            "customer of [erased] ([erased], [erased]) called"
        );
        assert_eq!(value["finding"], id);
        assert_eq!(redact_plate("no plate here", "MAB1234"), None);
        assert_eq!(redact_plate("MAB123", "MAB1234"), None);
    }
}
