//! The template writer and the grounding check.
//!
//! - Golden tests: the template's report of the same inspection in each of
//!   the six languages, compared with `tests/golden/report/<lang>.txt`
//!   (`UPDATE_GOLDEN=1` rewrites them; review the diff).
//! - The template's own reports pass the grounding check in every language,
//!   for pickups and returns, with and without a plate or findings.
//! - Hand-written reports: good ones are accepted; invented damage, an
//!   omitted finding, a wrong plate, a wrong position and a wrong language
//!   are each rejected for that reason, in the summary and in the narrative.

mod support;

use std::path::PathBuf;

use central::report::grounding::{self, Reason};
use central::report::{Draft, Language, PlateFact, ReportInput, ReportSummary, SummaryDamage};
use central::report::{lexicon, template};
use central::store::{Comparison, FindingStatus};
use inspection_core::wire::InspectionKind;
use support::report::{finding, return_input};

fn golden_path(lang: Language) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/report")
        .join(format!("{}.txt", lang.code()))
}

#[test]
fn template_matches_the_golden_report_in_every_language() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for lang in Language::ALL {
        let draft = template::render(&return_input(lang));
        let text = format!("{}\n", draft.narrative.replace(". ", ".\n"));
        let path = golden_path(lang);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        if golden != text {
            mismatched.push(format!(
                "{}:\n--- golden\n{golden}--- now\n{text}",
                lang.code()
            ));
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

/// Variations of the inspection the template must describe correctly.
fn variations(lang: Language) -> Vec<(&'static str, ReportInput)> {
    let base = return_input(lang);
    let mut pickup = base.clone();
    pickup.kind = InspectionKind::Pickup;
    pickup.comparison = Comparison::NotApplicable;
    pickup.findings = vec![finding(1, "scratch", "rear", FindingStatus::Baseline, 0.71)];
    let mut clean_pickup = pickup.clone();
    clean_pickup.findings.clear();
    let mut unreadable = base.clone();
    unreadable.plate = PlateFact::Unreadable;
    unreadable.comparison = Comparison::NoPickup;
    let mut no_plate = base.clone();
    no_plate.plate = PlateFact::NotFound;
    no_plate.comparison = Comparison::NoPickup;
    no_plate.findings.clear();
    let mut every_class = base.clone();
    every_class.findings = lexicon::CLASSES
        .iter()
        .filter(|class| **class != "change")
        .zip(["front", "rear", "left", "right", "front_left", "rear_right"])
        .enumerate()
        .map(|(i, (class, position))| finding(i + 1, class, position, FindingStatus::New, 0.8))
        .collect();
    let mut no_model = base.clone();
    no_model.damage_model = None;
    no_model.findings = vec![finding(
        1,
        "change",
        "front",
        FindingStatus::PossibleNewDamage,
        0.5,
    )];
    vec![
        ("return", base),
        ("pickup", pickup),
        ("clean pickup", clean_pickup),
        ("unreadable plate", unreadable),
        ("no plate, no findings", no_plate),
        ("every class", every_class),
        ("no damage model", no_model),
    ]
}

#[test]
fn template_reports_pass_the_grounding_check_in_every_language() {
    let mut failures = Vec::new();
    for lang in Language::ALL {
        for (name, input) in variations(lang) {
            let draft = template::render(&input);
            let rejections = grounding::check(&input, &draft);
            if !rejections.is_empty() {
                failures.push(format!(
                    "{} {name}: {:?}\n  {}",
                    lang.code(),
                    rejections,
                    draft.narrative
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn reasons(input: &ReportInput, draft: &Draft) -> Vec<Reason> {
    let mut r: Vec<Reason> = grounding::check(input, draft)
        .into_iter()
        .map(|r| r.reason)
        .collect();
    r.dedup();
    r
}

fn damage(finding: &str, class: &str, position: &str, status: &str) -> SummaryDamage {
    SummaryDamage {
        finding: finding.into(),
        class: class.into(),
        position: position.into(),
        status: status.into(),
    }
}

/// A correct summary of `return_input`.
fn good_summary() -> ReportSummary {
    ReportSummary {
        plate: Some("AB 12 CDE".into()),
        damages: vec![
            damage("F1", "dent", "front", "new"),
            damage("F2", "change", "left", "possible_new_damage"),
            damage("F3", "scratch", "rear", "pre_existing"),
        ],
    }
}

const GOOD_EN: &str = "The vehicle AB 12 CDE was returned with a new dent at the front (F1). \
     A possible new damage was seen on the left side and should be checked by staff. \
     The scratch at the rear was already there at pickup.";

#[test]
fn hand_written_good_reports_are_accepted() {
    let input = return_input(Language::En);
    let draft = Draft {
        summary: good_summary(),
        narrative: GOOD_EN.into(),
    };
    assert_eq!(grounding::check(&input, &draft), vec![]);

    let input = return_input(Language::De);
    let draft = Draft {
        summary: good_summary(),
        narrative: "Das Fahrzeug AB 12 CDE wurde mit einer neuen Delle an der Front \
                    zurückgegeben. An der linken Seite gibt es einen möglichen neuen Schaden, \
                    den das Personal prüfen muss. Der Kratzer am Heck war schon bei der \
                    Übergabe vorhanden."
            .into(),
    };
    assert_eq!(grounding::check(&input, &draft), vec![]);
}

#[test]
fn invented_damage_is_rejected() {
    let input = return_input(Language::En);
    // In the narrative only.
    let draft = Draft {
        summary: good_summary(),
        narrative: format!("{GOOD_EN} There is also a crack in the windscreen."),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::InventedDamage]);
    // In the summary only.
    let mut summary = good_summary();
    summary
        .damages
        .push(damage("", "glass_shatter", "front", "new"));
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::InventedDamage]);
    // A reference that does not exist, and a finding given another class.
    let mut summary = good_summary();
    summary.damages.push(damage("F9", "dent", "rear", "new"));
    summary.damages[0].class = "scratch".into();
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    // F1, a new dent called a scratch, is also left out as a dent.
    assert_eq!(
        reasons(&input, &draft),
        vec![Reason::InventedDamage, Reason::OmittedFinding]
    );
    // A pickup without findings whose report names a damage class.
    let mut pickup = input.clone();
    pickup.kind = InspectionKind::Pickup;
    pickup.findings.clear();
    let draft = Draft {
        summary: ReportSummary {
            plate: Some("AB12CDE".into()),
            damages: vec![],
        },
        narrative: "Pickup of AB 12 CDE. No dents or scratches were found.".into(),
    };
    assert_eq!(reasons(&pickup, &draft), vec![Reason::InventedDamage]);
}

#[test]
fn an_omitted_new_finding_is_rejected() {
    let input = return_input(Language::En);
    let mut summary = good_summary();
    summary.damages.remove(0);
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::OmittedFinding]);
    // The narrative leaves out the possible new damage at the left.
    let draft = Draft {
        summary: good_summary(),
        narrative: "The vehicle AB 12 CDE was returned with a new dent at the front. \
                    The scratch at the rear was already there at pickup."
            .into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::OmittedFinding]);
}

#[test]
fn a_wrong_plate_is_rejected() {
    let input = return_input(Language::En);
    let mut summary = good_summary();
    summary.plate = Some("AB 12 CDF".into());
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongPlate]);
    let draft = Draft {
        summary: good_summary(),
        narrative: GOOD_EN.replace("AB 12 CDE", "XY 34 ZZZ"),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongPlate]);
    // A plate where none was read.
    let mut unread = input.clone();
    unread.plate = PlateFact::Unreadable;
    let draft = Draft {
        summary: good_summary(),
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&unread, &draft), vec![Reason::WrongPlate]);
}

#[test]
fn a_wrong_position_is_rejected() {
    let input = return_input(Language::En);
    let mut summary = good_summary();
    summary.damages[0].position = "rear".into();
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongLocation]);
    let draft = Draft {
        summary: good_summary(),
        narrative: GOOD_EN.replace("new dent at the front", "new dent at the rear"),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongLocation]);
}

#[test]
fn a_wrong_status_is_rejected() {
    let input = return_input(Language::En);
    // The summary calls the new dent pre-existing: the customer would not
    // be charged for damage done during the rental.
    let mut summary = good_summary();
    summary.damages[0].status = "pre_existing".into();
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongStatus]);
    // ... or the pre-existing scratch new: the customer would be charged
    // for damage that was there at pickup.
    let mut summary = good_summary();
    summary.damages[2].status = "new".into();
    let draft = Draft {
        summary,
        narrative: GOOD_EN.into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongStatus]);
    // The narrative says the new dent was already there.
    for (lang, narrative) in [
        (
            Language::En,
            GOOD_EN.replace(
                "returned with a new dent at the front (F1).",
                "returned. The dent at the front (F1) was already there at pickup.",
            ),
        ),
        (
            Language::De,
            "Das Fahrzeug AB 12 CDE wurde zurückgegeben. Die Delle an der Front war bereits \
             bei der Übergabe vorhanden. An der linken Seite gibt es einen möglichen neuen \
             Schaden, den das Personal prüfen muss. Der Kratzer am Heck war schon bei der \
             Übergabe vorhanden."
                .to_owned(),
        ),
    ] {
        let input = return_input(lang);
        let draft = Draft {
            summary: good_summary(),
            narrative,
        };
        assert_eq!(
            reasons(&input, &draft),
            vec![Reason::WrongStatus],
            "{lang}: {:?}",
            grounding::check(&input, &draft)
        );
    }
    // What the embedded model once wrote for this inspection: F2 "status
    // pre_existing".
    let draft = Draft {
        summary: good_summary(),
        narrative: "The vehicle was brought back to site for inspection and found damage with \
                    a dent on front of the pickup inspection plate AB 12 CDE. The results were \
                    reported as possible new damage (change) at left side (left), status \
                    pre_existing, confidence 0.87. No further damage was detected in this case."
            .into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::WrongStatus]);
}

#[test]
fn a_wrong_language_is_rejected() {
    // German asked for, English written.
    let input = return_input(Language::De);
    let draft = Draft {
        summary: good_summary(),
        narrative: GOOD_EN.into(),
    };
    assert!(
        reasons(&input, &draft).contains(&Reason::WrongLanguage),
        "{:?}",
        grounding::check(&input, &draft)
    );
    // Every template language is told apart from every other.
    for asked in Language::ALL {
        for written in Language::ALL {
            let draft = template::render(&return_input(written));
            let got = reasons(&return_input(asked), &draft).contains(&Reason::WrongLanguage);
            assert_eq!(got, asked != written, "asked {asked}, written {written}");
        }
    }
}

#[test]
fn an_empty_narrative_is_rejected() {
    let input = return_input(Language::En);
    let draft = Draft {
        summary: good_summary(),
        narrative: "  ".into(),
    };
    assert_eq!(reasons(&input, &draft), vec![Reason::Empty]);
}

#[test]
fn the_narrative_is_read_back_into_a_summary() {
    let input = return_input(Language::En);
    let summary = grounding::extract_summary(GOOD_EN, &input);
    assert_eq!(summary.plate.as_deref(), Some("AB12CDE"));
    let refs: Vec<&str> = summary.damages.iter().map(|d| d.finding.as_str()).collect();
    assert_eq!(refs, vec!["F1", "F2", "F3"]);
}
