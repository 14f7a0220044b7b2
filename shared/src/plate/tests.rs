//! Tests for plate normalisation and validation: one table, one `check`.

use super::*;
use Country::*;

/// What `validate(raw, country)` should give.
enum Want {
    /// Canonical plate, display form, substitutions.
    Ok(&'static str, &'static str, u8),
    /// A well formed text that is not a plate of the country.
    NoMatch,
    /// Any other error.
    Err(PlateError),
}
use Want::{NoMatch, Ok as Is};

fn check(country: Country, raw: &str, want: &Want) {
    let got = validate(raw, country);
    match (want, &got) {
        (Is(plate, display, subs), Ok(c)) => {
            assert_eq!(
                (c.plate.as_str(), c.display.as_str(), c.substitutions),
                (*plate, *display, *subs),
                "{country} {raw:?}: {c:?}"
            );
            assert_eq!(c.country, country);
            // What validate accepts, candidates lists with the same reading.
            assert!(
                candidates(raw).contains(c),
                "{country} {raw:?} missing from candidates"
            );
        }
        (NoMatch, Err(PlateError::NoMatch { country: c, .. })) => {
            assert_eq!(*c, country);
            assert!(
                candidates(raw).iter().all(|c| c.country != country),
                "{country} {raw:?} listed by candidates"
            );
        }
        (Want::Err(e), Err(g)) => assert_eq!(e, g, "{country} {raw:?}"),
        _ => panic!("{country} {raw:?}: got {got:?}"),
    }
}

fn cases() -> Vec<(Country, &'static str, Want)> {
    vec![
        // AT: standard digits-then-letters serials and personalised plates.
        (AT, "W 12345 A", Is("W12345A", "W 12345 A", 0)),
        (AT, "l-123ab", Is("L123AB", "L 123 AB", 0)),
        (AT, "GU MAX 1", Is("GUMAX1", "GU MAX 1", 0)),
        (AT, "KO 1 ABC", Is("KO1ABC", "KO 1 ABC", 0)),
        (AT, "W 1234567 A", NoMatch),
        (AT, "W 1 A", NoMatch),
        (AT, "XBC 123 E", NoMatch),
        (AT, "99999 W", NoMatch),
        // BE: 2010 format and the two older ones.
        (BE, "1-ABC-123", Is("1ABC123", "1-ABC-123", 0)),
        (BE, "2 xyz 987", Is("2XYZ987", "2-XYZ-987", 0)),
        (BE, "ABC-123", Is("ABC123", "ABC-123", 0)),
        (BE, "123-ABC", Is("123ABC", "123-ABC", 0)),
        (BE, "0-ABC-123", NoMatch),
        (BE, "1-ABCD-123", NoMatch),
        (BE, "1-ABC-12C", NoMatch),
        (BE, "AB-12", NoMatch),
        // CZ.
        (CZ, "1A2 3456", Is("1A23456", "1A2 3456", 0)),
        (CZ, "5T8-1234", Is("5T81234", "5T8 1234", 0)),
        (CZ, "2ab 0001", Is("2AB0001", "2AB 0001", 0)),
        (CZ, "1AG 3456", Is("1A63456", "1A6 3456", 1)),
        (CZ, "1X2 3456", NoMatch),
        (CZ, "0A2 3456", NoMatch),
        (CZ, "1A2 345", NoMatch),
        (CZ, "1A2 34567", NoMatch),
        // DE: the separator decides the district split.
        (DE, "B MW 1234", Is("BMW1234", "B MW 1234", 0)),
        (DE, "BM-W 1234", Is("BMW1234", "BM W 1234", 0)),
        (DE, "BMW1234", Is("BMW1234", "B MW 1234", 0)),
        (DE, "B·MW 1234", Is("BMW1234", "B MW 1234", 0)),
        (DE, "m·ab 12e", Is("MAB12E", "M AB 12E", 0)),
        (DE, "HH AB 123H", Is("HHAB123H", "HH AB 123H", 0)),
        (DE, "ABC DE 123", Is("ABCDE123", "ABC DE 123", 0)),
        (DE, "TÜ AB 123", Is("TUAB123", "TU AB 123", 0)),
        (DE, "B MW 0000", NoMatch),
        (DE, "B MW 1234X", NoMatch),
        (DE, "ABCDE 1234", NoMatch),
        (DE, "1234 AB", NoMatch),
        (DE, "BMW", NoMatch),
        // ES.
        (ES, "1234 BCD", Is("1234BCD", "1234 BCD", 0)),
        (ES, "0000-bbb", Is("0000BBB", "0000 BBB", 0)),
        (ES, "9876XYZ", Is("9876XYZ", "9876 XYZ", 0)),
        (ES, "1234 ABC", NoMatch),
        (ES, "123 BCD", NoMatch),
        (ES, "BCD 1234", NoMatch),
        // FR.
        (FR, "AB-123-CD", Is("AB123CD", "AB-123-CD", 0)),
        (FR, "ab 123 cd", Is("AB123CD", "AB-123-CD", 0)),
        (FR, "GH.456.JK", Is("GH456JK", "GH-456-JK", 0)),
        (FR, "AB-000-CD", NoMatch),
        (FR, "AI-123-CD", NoMatch),
        (FR, "AB-1234-CD", NoMatch),
        (FR, "AB-123-UV", NoMatch),
        // GB: current, prefix, suffix and Northern Ireland.
        (GB, "AB12 CDE", Is("AB12CDE", "AB12 CDE", 0)),
        (GB, "ab12cde", Is("AB12CDE", "AB12 CDE", 0)),
        (GB, "A123 BCD", Is("A123BCD", "A123 BCD", 0)),
        (GB, "ABC 123D", Is("ABC123D", "ABC 123D", 0)),
        (GB, "ABZ 1234", Is("ABZ1234", "ABZ 1234", 0)),
        (GB, "AB I2 CDE", Is("AB12CDE", "AB12 CDE", 1)),
        // Two changes to a current plate tie with one to a 1983-2001 prefix
        // plate plus the historic-format penalty: the current format wins.
        (GB, "A8I2CDE", Is("AB12CDE", "AB12 CDE", 2)),
        (GB, "A8 I2 CDE", Is("AB12CDE", "AB12 CDE", 2)),
        // An exact historic plate is not rewritten into a current one.
        (GB, "A123BCD", Is("A123BCD", "A123 BCD", 0)),
        (GB, "ABC123D", Is("ABC123D", "ABC 123D", 0)),
        (GB, "QA12 CDE", NoMatch),
        (GB, "1234 ABCD", NoMatch),
        (GB, "AB123CDE", NoMatch),
        // IT.
        (IT, "AB 123 CD", Is("AB123CD", "AB 123 CD", 0)),
        (IT, "ab123cd", Is("AB123CD", "AB 123 CD", 0)),
        (IT, "ZZ-999-ZZ", Is("ZZ999ZZ", "ZZ 999 ZZ", 0)),
        (IT, "AO 123 CD", NoMatch),
        (IT, "AB 12 CD", NoMatch),
        (IT, "AB 1234 CD", NoMatch),
        // NL: sidecodes 7, 9, 10, 11.
        (NL, "12-BBB-3", Is("12BBB3", "12-BBB-3", 0)),
        (NL, "kl-123-b", Is("KL123B", "KL-123-B", 0)),
        (NL, "X-999-XX", Is("X999XX", "X-999-XX", 0)),
        (NL, "GBB 01 B", Is("GBB01B", "GBB-01-B", 0)),
        (NL, "AA-123-B", NoMatch),
        (NL, "12-BBB-34", NoMatch),
        (NL, "393-999", NoMatch),
        // PL.
        (PL, "WA 12345", Is("WA12345", "WA 12345", 0)),
        (PL, "kr 1234a", Is("KR1234A", "KR 1234A", 0)),
        (PL, "WPI AC12", Is("WPIAC12", "WPI AC12", 0)),
        (PL, "AB 12345", NoMatch),
        (PL, "WA 1234", NoMatch),
        (PL, "WA 1234567", NoMatch),
        // SE.
        (SE, "ABC 123", Is("ABC123", "ABC 123", 0)),
        (SE, "abc12d", Is("ABC12D", "ABC 12D", 0)),
        (SE, "XYZ 999", Is("XYZ999", "XYZ 999", 0)),
        (SE, "ABI 123", NoMatch),
        (SE, "AB 123", NoMatch),
        (SE, "ABC 1234", NoMatch),
        // Confusables resolved per country: the same text, different plates.
        (CZ, "1S23456", Is("1S23456", "1S2 3456", 0)),
        (PL, "1S23456", Is("LS23456", "LS 23456", 1)),
        (FR, "A8-I23-C0", Is("AB123CD", "AB-123-CD", 3)),
        (IT, "A8-I23-C0", Is("AB123CD", "AB 123 CD", 3)),
        (ES, "I234 8CD", Is("1234BCD", "1234 BCD", 2)),
        (SE, "ABC 12O", Is("ABC120", "ABC 120", 1)),
        // A standalone band token is the band, never part of a group.
        (DE, "D BMW 1234", Is("BMW1234", "B MW 1234", 0)),
        (DE, "D M AB 123", Is("MAB123", "M AB 123", 0)),
        (AT, "A W 1234 AB", Is("W1234AB", "W 1234 AB", 0)),
        // Never kept as a band letter read as a digit (`8-ABC-123`).
        (BE, "B ABC-123", Is("ABC123", "ABC-123", 0)),
        (BE, "BABC123", Is("ABC123", "ABC-123", 0)),
        // Düsseldorf: the district `D` stays when it is a group of its own
        // and the separators fit; a second `D` in front is the band.
        (DE, "D AB 123", Is("DAB123", "D AB 123", 0)),
        (DE, "D D AB 123", Is("DAB123", "D AB 123", 0)),
        (DE, "D B 1234", Is("DB1234", "D B 1234", 0)),
        // Without a separator after the code an exact reading of the whole
        // text stands: `DM` and `AW` may be districts.
        (DE, "DAB123", Is("DAB123", "D AB 123", 0)),
        (DE, "DMAB123", Is("DMAB123", "DM AB 123", 0)),
        (AT, "AW1234AB", Is("AW1234AB", "AW 1234 AB", 0)),
        (DE, "DM AB 123", Is("DMAB123", "DM AB 123", 0)),
        // Unicode lookalikes.
        (FR, "ＡＢ－１２３－ＣＤ", Is("AB123CD", "AB-123-CD", 0)),
        (FR, "АВ 123 СD", Is("AB123CD", "AB-123-CD", 0)),
        (DE, "TU\u{308} AB 123", Is("TUAB123", "TU AB 123", 0)),
        // Rejected before matching.
        (FR, "", Want::Err(PlateError::Empty)),
        (FR, " -·- ", Want::Err(PlateError::Empty)),
        (
            FR,
            "AB€123CD",
            Want::Err(PlateError::InvalidCharacter {
                ch: '€', index: 2
            }),
        ),
        (
            DE,
            "B MW 🚗",
            Want::Err(PlateError::InvalidCharacter {
                ch: '🚗', index: 5
            }),
        ),
        (
            GB,
            &*"A".repeat(33).leak(),
            Want::Err(PlateError::TooLong { max: MAX_RAW_CHARS }),
        ),
    ]
}

#[test]
fn table() {
    let cases = cases();
    for country in Country::ALL {
        let ok = cases
            .iter()
            .filter(|(c, _, w)| *c == country && matches!(w, Is(..)))
            .count();
        let bad = cases
            .iter()
            .filter(|(c, _, w)| *c == country && matches!(w, NoMatch))
            .count();
        assert!(ok >= 3 && bad >= 3, "{country}: {ok} valid, {bad} invalid");
    }
    for (country, raw, want) in &cases {
        check(*country, raw, want);
    }
}

#[test]
fn normalize_maps_and_drops() {
    assert_eq!(normalize("ab 12 cde"), "AB12CDE");
    assert_eq!(normalize("B·MW_1234/"), "BMW1234");
    assert_eq!(normalize("ＡＢ－１２３"), "AB123");
    assert_eq!(normalize("ТХ-МК"), "TXMK");
    assert_eq!(normalize("€ab\u{200B}c🚗"), "ABC");
    assert_eq!(normalize(""), "");
}

#[test]
fn candidates_are_sorted_and_unique() {
    let got = candidates("AB-123-CD");
    let countries: Vec<_> = got.iter().map(|c| c.country).collect();
    assert_eq!(countries, [AT, FR, IT]);

    let got = candidates("1S23456");
    let summary: Vec<_> = got
        .iter()
        .map(|c| (c.country, c.plate.as_str(), c.substitutions))
        .collect();
    assert_eq!(summary[..2], [(CZ, "1S23456", 0), (PL, "LS23456", 1)]);

    // Exact readings tie; the current Swedish format beats the 1973-2008
    // Belgian one, and both beat readings that split `ABC` against the space.
    let got = candidates("ABC 123");
    let countries: Vec<_> = got.iter().map(|c| c.country).collect();
    assert_eq!(countries, [SE, BE, AT, DE]);

    for raw in [
        "AB-123-CD",
        "1S23456",
        "ABC 123",
        "ABZ 123",
        "A8I2CDE",
        "W 123 AB",
        "D M AB 123",
        "B MW 1234",
    ] {
        assert_sorted(raw);
    }
}

/// `candidates(raw)` is non-empty, one per country, in strict rank order.
fn assert_sorted(raw: &str) {
    let got = candidates(raw);
    assert!(!got.is_empty(), "{raw:?}");
    let ranks = prepare(raw).map(|t| ranked(&t)).unwrap_or_default();
    assert_eq!(
        ranks.iter().map(|(_, c)| c).collect::<Vec<_>>(),
        got.iter().collect::<Vec<_>>(),
        "{raw:?}"
    );
    assert!(
        ranks
            .windows(2)
            .all(|w| (w[0].0, w[0].1.country) < (w[1].0, w[1].1.country)),
        "{raw:?}: {ranks:?}"
    );
}

/// Plates read with the EU band code in front: (country, plate as read
/// without the code, the same plate with it). Each must give the same key,
/// ranked first among all countries.
const BANDED: &[(Country, &str, &[&str])] = &[
    (
        AT,
        "W 1234 AB",
        &["A W 1234 AB", "A-W-1234-AB", "A·W 1234 AB"],
    ),
    (AT, "GU MAX 1", &["A GU MAX 1"]),
    (BE, "ABC-123", &["B ABC-123", "B ABC 123", "BABC123"]),
    (BE, "1-ABC-123", &["B 1-ABC-123", "B1ABC123"]),
    (CZ, "1A2 3456", &["CZ 1A2 3456", "CZ1A23456"]),
    (DE, "M AB 123", &["D M AB 123", "D-M-AB-123", "D M-AB 123"]),
    (DE, "B MW 1234", &["D B MW 1234", "D BMW 1234"]),
    (DE, "D AB 123", &["D D AB 123", "D D-AB 123"]),
    (ES, "1234 BCD", &["E 1234 BCD", "E 1234BCD", "E1234BCD"]),
    (FR, "AB-123-CD", &["F AB-123-CD", "F AB 123 CD", "FAB123CD"]),
    (
        GB,
        "AB12 CDE",
        &["GB AB12 CDE", "UK AB12 CDE", "GBAB12CDE", "UKAB12CDE"],
    ),
    (GB, "A123 BCD", &["GB A123 BCD", "UK A123 BCD"]),
    (IT, "AB 123 CD", &["I AB 123 CD", "I AB123CD", "IAB123CD"]),
    (NL, "12-BBB-3", &["NL 12-BBB-3", "NL12BBB3"]),
    (NL, "GBB-01-B", &["NL GBB-01-B", "NLGBB01B"]),
    (PL, "WX 12345", &["PL WX 12345", "PLWX12345"]),
    (PL, "WPI AC12", &["PL WPI AC12"]),
    (SE, "ABC 123", &["S ABC 123", "S ABC123", "SABC123"]),
];

#[test]
fn band_codes_give_the_same_key() {
    for (country, bare, banded) in BANDED {
        let want = validate(bare, *country).expect(bare);
        assert_eq!(want.substitutions, 0, "{bare:?}");
        for raw in *banded {
            let got = candidates(raw);
            assert_eq!(got.first(), Some(&want), "{raw:?}: {got:?}");
            assert_eq!(validate(raw, *country).as_ref(), Ok(&want), "{raw:?}");
            assert_sorted(raw);
        }
    }
    // Every band code is exercised with a separator, and without one where
    // that is stripped: AT and DE districts may start with the band letter,
    // so there text without separators is read whole (see `cases`).
    for country in Country::ALL {
        let raws: Vec<&str> = BANDED
            .iter()
            .filter(|(c, ..)| *c == country)
            .flat_map(|(_, _, r)| r.iter().copied())
            .collect();
        for code in country.band_codes() {
            assert!(
                raws.iter().any(|r| r.starts_with(&format!("{code} "))),
                "{code} with a separator"
            );
            assert!(
                [AT, DE].contains(&country)
                    || raws
                        .iter()
                        .any(|r| r.starts_with(code) && !r.contains([' ', '-'])),
                "{code} without separators"
            );
        }
    }
}

#[test]
fn band_letters_that_are_plate_letters() {
    // (raw, first candidate's country and display): a one-letter band code
    // that is also a German district keeps the German plate when it reads
    // exactly with the separators as printed.
    for (raw, country, display) in [
        ("B MW 1234", DE, "B MW 1234"),
        ("S AB 1234", DE, "S AB 1234"),
        ("D D AB 123", DE, "D AB 123"),
        ("D M AB 123", DE, "M AB 123"),
        // Joining the standalone `S` to `SA BC 123` costs one, as a change
        // would: the Swedish plate ranks first.
        ("S ABC 123", SE, "ABC 123"),
        ("B ABC-123", BE, "ABC-123"),
        // An exact reading in another country's format ties with the band
        // reading; the band decides.
        ("E 1234 BCD", ES, "1234 BCD"),
    ] {
        let got = candidates(raw);
        let first = got.first().map(|c| (c.country, c.display.as_str()));
        assert_eq!(first, Some((country, display)), "{raw:?}: {got:?}");
    }
    // The Düsseldorf reading of text with one `D` is the German candidate,
    // without or with separators.
    for raw in ["D AB 123", "DAB123", "D-AB-123"] {
        assert_eq!(
            validate(raw, DE).map(|c| c.display),
            Ok("D AB 123".into()),
            "{raw:?}"
        );
    }
}

#[test]
fn current_formats_rank_above_historic_ones() {
    // (raw, country, format): the prior only decides between corrections.
    for (raw, country, format) in [
        ("A8I2CDE", GB, "LLDD LLL"),
        ("A8 I2 CDE", GB, "LLDD LLL"),
        ("AB I2 CDE", GB, "LLDD LLL"),
        ("A123 BCD", GB, "LDDD LLL"),
        ("A123BCD", GB, "LDDD LLL"),
        ("ABC 123D", GB, "LLL DDDL"),
        ("ABC-123", BE, "LLL-DDD"),
        ("123-ABC", BE, "DDD-LLL"),
        ("KL-12-34", NL, "LL-DD-DD"),
    ] {
        let got = validate(raw, country).map(|c| c.format);
        assert_eq!(got.as_deref(), Ok(format), "{raw:?}");
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    assert_eq!(try_candidates(""), Err(PlateError::Empty));
    assert_eq!(
        try_candidates(&"1".repeat(1_000_000)),
        Err(PlateError::TooLong { max: MAX_RAW_CHARS })
    );
    assert!(candidates(&" ".repeat(1_000_000)).is_empty());
    // Outer whitespace does not count towards the cap.
    let padded = format!("{}AB-123-CD{}", " ".repeat(40), "\n".repeat(40));
    assert_eq!(validate(&padded, FR).map(|c| c.plate), Ok("AB123CD".into()));
    assert!(matches!(
        validate("ß", DE),
        Err(PlateError::InvalidCharacter { ch: 'ß', index: 0 })
    ));
}

#[test]
fn country_codes_round_trip() {
    for c in Country::ALL {
        assert_eq!(c.to_string().parse::<Country>(), Ok(c));
        assert_eq!(c.code().to_lowercase().parse::<Country>(), Ok(c));
        assert_eq!(
            serde_json::to_string(&c).ok(),
            Some(format!("\"{}\"", c.code()))
        );
    }
    assert_eq!("uk".parse::<Country>(), Ok(GB));
    assert!("XX".parse::<Country>().is_err());
}

#[test]
fn candidate_serde_round_trip() {
    let c = validate("AB-123-CD", FR).expect("valid");
    let json = serde_json::to_string(&c).expect("serialises");
    let back: PlateCandidate = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, c);
    let schema = serde_json::to_value(schemars::schema_for!(PlateCandidate)).expect("schema");
    assert!(schema["properties"]["country"].is_object());
}

proptest::proptest! {
    #[test]
    fn candidates_never_panic_and_revalidate(raw in proptest::prelude::any::<String>()) {
        for c in candidates(&raw) {
            let again = validate(&c.plate, c.country);
            proptest::prop_assert_eq!(
                again.map(|a| (a.plate, a.substitutions)),
                Ok((c.plate.clone(), 0))
            );
        }
    }

    #[test]
    fn plate_like_candidates_revalidate(raw in "[A-Za-z0-9 .·-]{0,12}") {
        let got = candidates(&raw);
        let ranks = prepare(&raw).map(|t| ranked(&t)).unwrap_or_default();
        proptest::prop_assert_eq!(ranks.len(), got.len());
        for w in ranks.windows(2) {
            proptest::prop_assert!((w[0].0, w[0].1.country) < (w[1].0, w[1].1.country));
        }
        for c in got {
            proptest::prop_assert!(c.plate.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            let again = validate(&c.plate, c.country);
            proptest::prop_assert_eq!(
                again.map(|a| (a.plate, a.substitutions)),
                Ok((c.plate.clone(), 0))
            );
        }
    }

    #[test]
    fn band_code_in_front_keeps_the_key(raw in "[A-Za-z0-9 .·-]{0,12}") {
        // Whatever a candidate is, printing it behind its own band code
        // reads back as the same plate.
        for c in candidates(&raw) {
            for code in c.country.band_codes() {
                let banded = format!("{code} {}", c.display);
                proptest::prop_assert_eq!(
                    validate(&banded, c.country).map(|a| a.plate),
                    Ok(c.plate.clone()),
                    "{}", banded
                );
            }
        }
    }
}
