//! Pieces both backends share: the audit entry of a processing result,
//! lease arithmetic, the spelling of unit enums in the database, and the
//! staff API's rules (staff.rs), checked on what each backend read inside
//! its write transaction, with their messages and audit entries.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    AuditEntry, Charge, FindingDecision, FindingReview, FindingStatus, InspectionResult,
    InspectionReview, StoreError,
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
}
