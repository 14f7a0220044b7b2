//! Pieces both backends share: the audit entry of a processing result,
//! lease arithmetic, the spelling of unit enums in the database.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use super::{AuditEntry, InspectionResult, StoreError};

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
