//! European licence plate normalisation and validation for OCR output.
//!
//! An OCR engine reads a plate crop and returns raw text such as `"ab 12 cde"`,
//! `"AB-123-CD"`, `"B·MW 1234"` or `"A8I2CDE"`. This module turns that text into
//! a canonical `A-Z0-9` key and says which countries' current plate formats it
//! matches, fixing letter/digit OCR confusions according to each country's
//! pattern.
//!
//! # API
//!
//! - [`normalize`]`(raw) -> String`: lenient, infallible canonicalisation.
//! - [`candidates`]`(raw) -> Vec<PlateCandidate>`: every country whose format
//!   matches, at most one candidate per country, best first (see
//!   [Ranking](#ranking)); empty when the input is rejected.
//! - [`try_candidates`]`(raw) -> Result<Vec<PlateCandidate>, PlateError>`: the
//!   same, but says why the input was rejected.
//! - [`validate`]`(raw, country) -> Result<PlateCandidate, PlateError>`: the
//!   best reading of `raw` for one country.
//! - [`Country`] (ISO 3166-1 alpha-2, with `Display`/`FromStr`/[`Country::ALL`]),
//!   [`PlateCandidate`], [`PlateError`], [`MAX_RAW_CHARS`].
//!
//! # Normalisation
//!
//! Characters are mapped one by one (no quadratic work; input over
//! [`MAX_RAW_CHARS`] characters, outer whitespace trimmed, is rejected by the
//! strict functions):
//!
//! - ASCII letters are uppercased; fullwidth `Ａ-Ｚ`, `ａ-ｚ`, `０-９` map to ASCII.
//! - Cyrillic and Greek capitals (and the common lowercase forms) that look
//!   like Latin letters map to them: `А В Е К М Н О Р С Т Х У Ѕ І Ј` and
//!   `Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ`; Cyrillic `З` maps to `3`.
//! - Latin letters with diacritics fold to their base letter (`Ä Ö Ü` →
//!   `A O U`, `Č Ř Š Ž Ł` → `C R S Z L`, ...), so German district codes such
//!   as `LÖ` or `TÜ` become `LO`/`TU`: the canonical key is ASCII only.
//!   `Ø` is read as a slashed zero, `0`. Combining marks and zero-width
//!   characters are ignored.
//! - Separators are dropped: any whitespace, the hyphen and dash family,
//!   `.`, `·`, `•`, `∙`, `⋅`, `・`, `_`, `/`, `\`, `|`, `:`, `,`, `;`, quotes,
//!   `°`, `*` and brackets. Where a separator stood is remembered as a hint
//!   (see below).
//! - Anything else is an invalid character: [`normalize`] drops it, while
//!   [`validate`] and [`try_candidates`] return
//!   [`PlateError::InvalidCharacter`].
//!
//! [`normalize`] never strips an EU-band country code, since it cannot know the
//! country. The matching functions do, per country; see
//! [EU band codes](#eu-band-codes).
//!
//! # Confusable characters
//!
//! Only letter/digit confusions are resolved, and only where the pattern
//! position rejects the character as read:
//!
//! | read as letter | becomes digit | | read as digit | becomes letter (first allowed) |
//! |---|---|---|---|---|
//! | `O` `Q` `D` | `0` | | `0` | `O`, else `D`, else `Q` |
//! | `I` `L` | `1` | | `1` | `I`, else `L` |
//! | `Z` | `2` | | `2` | `Z` |
//! | `A` | `4` | | `4` | `A` |
//! | `S` | `5` | | `5` | `S` |
//! | `G` | `6` | | `6` | `G` |
//! | `T` | `7` | | `7` | `T` |
//! | `B` | `8` | | `8` | `B` |
//!
//! The replacement must itself be allowed at that position (e.g. `0` in a
//! French letter position becomes `D`, since SIV plates never use `O`). Letter
//! to letter confusions (an `O` in an Italian letter position) are not
//! guessed: the position fails. Each change counts one substitution, and a
//! reading that needs substitutions for half or more of the characters is
//! rejected (`"1234 AB"` is not the German `I Z 3448`).
//!
//! # EU band codes
//!
//! The canonical plate is the key that finds a car's earlier inspection, so
//! the same plate must give the same key whether or not OCR read the country
//! code in the blue band (`D` for DE, `F` for FR, `GB`/`UK` for GB, ...; see
//! [`Country::band_codes`]). For each country whose code the text starts with:
//!
//! - The code's own characters are never changed by a substitution: in
//!   `"B ABC-123"` the `B` is the Belgian band, not the `8` of `8-ABC-123`.
//! - Code followed by a separator (a token of its own): the text without the
//!   code is read, and so is the whole text, but only readings that keep the
//!   code as a group of its own; a reading that joins it to the next
//!   characters is dropped. The better one wins by [Ranking](#ranking), the
//!   stripped one on a tie. `"D M AB 123"` → `M AB 123`, `"A W 1234 AB"` →
//!   `W 1234 AB`, `"D BMW 1234"` → `B MW 1234`.
//! - Code without a separator after it: the whole text is read, and only text
//!   that cannot be read whole is read without the code. `"FAB123CD"` →
//!   `AB-123-CD` and `"BABC123"` → `ABC-123`, but `"AW1234AB"` stays
//!   `AW 1234 AB` and `"DMAB123"` stays `DM AB 123`: without a separator a
//!   district starting with the band letter cannot be told apart. This also
//!   keeps every candidate's plate reading back as itself.
//!
//! The German band code `D` is also the Düsseldorf district. The tie-break is
//! the fit to the printed separators (see [Ranking](#ranking)): `"D AB 123"`
//! is Düsseldorf `D AB 123`, since the stripped `A B 123` would need a group
//! boundary inside `AB`; `"D D AB 123"` is the same plate with its band. OCR
//! that drops the space in Augsburg `A B 123` read with its band
//! (`"D AB 123"`) therefore gives Düsseldorf; nothing in the text says
//! otherwise.
//!
//! Other countries read the text whole, and when it starts with a
//! standalone band code (of any country) a reading that joins it to the next
//! characters costs one, as a substitution would: for `"S ABC 123"` the
//! Swedish `ABC 123` ranks above the German `SA BC 123`, while Stuttgart's
//! `"S AB 1234"` stays German first.
//!
//! # Ranking
//!
//! Readings are compared field by field, first to choose each country's
//! reading among its templates (and band code stripped or not), then to sort
//! [`candidates`] (with the country as the last tie-break):
//!
//! 1. Cost: substitutions, plus one for joining a standalone band token (see
//!    above), plus one for a historic format (marked in the table below) when
//!    the reading needed any substitution. Rental fleets are nearly all
//!    current-format vehicles, so once OCR must have misread something a
//!    current plate is the likelier fix; an exact read of a historic plate is
//!    kept (`"A123 BCD"` is the GB prefix plate `A123 BCD`, not `AL23 BCD`).
//!    `"A8I2CDE"` is `AB12 CDE` (two changes, cost 2) rather than the prefix
//!    `A812 CDE` (one change plus the penalty, also cost 2; the tie goes to
//!    the current format at step 4).
//! 2. Fit to the separators of the raw text: separators inside a group plus
//!    group boundaries where the text has none (`"B MW 1234"` → `B MW 1234`,
//!    `"BM W 1234"` → `BM W 1234`). Text without any separator fits every
//!    template equally.
//! 3. A reading with the band code stripped before one of the whole text.
//! 4. A current format before a historic one.
//! 5. Fewer substitutions.
//! 6. Within a country, the first template in the order of the table below:
//!    without separators the shortest German district (`"BMW1234"` →
//!    `B MW 1234`) and the shortest Austrian district.
//!
//! # Formats
//!
//! `L` is a letter, `D` a digit, `X` either; the separators are those of
//! [`PlateCandidate::display`]. Letter sets are restricted as noted.
//!
//! | Country | Patterns | Restrictions |
//! |---|---|---|
//! | AT | `L{1,2} D{1,5} L{1,3}` (serial 3-6 chars), personalised `L{1,2} L{1,5} D{1,3}` (serial 3-6) | serial digits have no leading 0 |
//! | BE | `D-LLL-DDD` (2010-), historic `DDD-LLL` (2008-2010) and `LLL-DDD` (1973-2008) | first digit of `D-LLL-DDD` is 1-9 |
//! | CZ | `DLX DDDD` | first digit 1-9; second is a region letter `ABCEHJKLMPSTUZ`; letters never `G O Q W` |
//! | DE | `L{1,3} L{1,2} D{1,4}` + optional `E`/`H` suffix | letters+digits at most 8 without the suffix; number has no leading 0 |
//! | ES | `DDDD LLL` (2000-) | consonants `BCDFGHJKLMNPRSTVWXYZ` |
//! | FR | `LL-DDD-LL` (SIV, 2009-) | no `I O U`; number is 001-999 |
//! | GB | `LLDD LLL` (2001-), historic `LD{1,3} LLL` (prefix, 1983-2001) and `LLL D{1,3}L` (suffix, 1963-1983), NI `LLL D{1,4}` | see below |
//! | IT | `LL DDD LL` (1994-) | no `I O Q U` |
//! | NL | sidecodes 1-14, dashes as printed; 1-6 (until 2008) historic | consonants `BDFGHJKLNPRSTVXZ` |
//! | PL | `LL DDDDD`/`DDDDL`/`DDDLL`/`DLDDD`/`DLLDD`; `LLL LDDD`/`DDLL`/`DLDD`/`DDLD`/`DLLD`/`LLDD` and the five 5-char serials | first letter a voivodeship `BCDEFGKLNOPRSTWZ`; serial letters never `B D I O Z` |
//! | SE | `LLL DDD`, `LLL DDL` (2019-) | no `I Q V` (and no `Å Ä Ö`); the final letter is also never `O` |
//!
//! GB: current memory tags never use `I Q Z`, the random letters never `I Q`;
//! prefix/suffix year letters are `A-Y` without `I O Q U Z` and their area
//! letters never use `I Q Z`; the number has no leading 0. Northern Ireland
//! codes contain `I` or `Z`: templates `L I L` and `L L I/Z`, then 1-4 digits.
//! The GB age identifier (`02`-`49`, `51`-`99`) is not checked.
//!
//! NL sidecodes: 1 `LL-DD-DD`, 2 `DD-DD-LL`, 3 `DD-LL-DD`, 4 `LL-DD-LL`,
//! 5 `LL-LL-DD`, 6 `DD-LL-LL`, 7 `DD-LLL-D`, 8 `D-LLL-DD`, 9 `LL-DDD-L`,
//! 10 `L-DDD-LL`, 11 `LLL-DD-L`, 12 `L-DD-LLL`, 13 `D-LL-DDD`, 14 `DDD-LL-D`.
//! The consonant set is that of current issues; old sidecodes that used vowels
//! are not covered.
//!
//! Not covered: the French FNI format (`1234 AB 75`), diplomatic, military,
//! trade and other special series, and district-code lists (any letters of
//! the right count are accepted as a district).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest raw text accepted by the strict functions, in characters, after
/// trimming outer whitespace. Real plates with separators and a band code stay
/// well below it; the cap keeps every call cheap.
pub const MAX_RAW_CHARS: usize = 32;

/// A country whose plate formats are known, by ISO 3166-1 alpha-2 code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Country {
    /// Austria.
    AT,
    /// Belgium.
    BE,
    /// Czechia.
    CZ,
    /// Germany.
    DE,
    /// Spain.
    ES,
    /// France.
    FR,
    /// United Kingdom (Great Britain and Northern Ireland).
    GB,
    /// Italy.
    IT,
    /// Netherlands.
    NL,
    /// Poland.
    PL,
    /// Sweden.
    SE,
}

impl Country {
    /// Every supported country, in code order.
    pub const ALL: [Country; 11] = [
        Country::AT,
        Country::BE,
        Country::CZ,
        Country::DE,
        Country::ES,
        Country::FR,
        Country::GB,
        Country::IT,
        Country::NL,
        Country::PL,
        Country::SE,
    ];

    /// The ISO 3166-1 alpha-2 code, e.g. `"DE"`.
    pub fn code(self) -> &'static str {
        match self {
            Country::AT => "AT",
            Country::BE => "BE",
            Country::CZ => "CZ",
            Country::DE => "DE",
            Country::ES => "ES",
            Country::FR => "FR",
            Country::GB => "GB",
            Country::IT => "IT",
            Country::NL => "NL",
            Country::PL => "PL",
            Country::SE => "SE",
        }
    }

    /// The distinguishing signs printed in the blue EU band (or oval sticker),
    /// which OCR may read as part of the plate.
    pub fn band_codes(self) -> &'static [&'static str] {
        match self {
            Country::AT => &["A"],
            Country::BE => &["B"],
            Country::CZ => &["CZ"],
            Country::DE => &["D"],
            Country::ES => &["E"],
            Country::FR => &["F"],
            Country::GB => &["UK", "GB"],
            Country::IT => &["I"],
            Country::NL => &["NL"],
            Country::PL => &["PL"],
            Country::SE => &["S"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A country code that is not one of [`Country::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or unsupported country code {0:?}")]
pub struct UnknownCountry(pub String);

impl FromStr for Country {
    type Err = UnknownCountry;

    /// Parses an ISO code, case-insensitively and ignoring outer whitespace;
    /// `UK` is accepted for [`Country::GB`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("UK") {
            return Ok(Country::GB);
        }
        Country::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(t))
            // The input may be anything: keep the error small.
            .ok_or_else(|| UnknownCountry(t.chars().take(8).collect()))
    }
}

/// One reading of a plate for one country.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct PlateCandidate {
    /// The country whose format matched.
    pub country: Country,
    /// Canonical plate, `A-Z0-9` only, confusables resolved, band code removed.
    pub plate: String,
    /// The plate with the country's usual separators, e.g. `AB-123-CD`.
    pub display: String,
    /// The matched pattern (`L` letter, `D` digit, `X` either), e.g. `LL-DDD-LL`.
    pub format: String,
    /// How many characters were changed to resolve letter/digit confusions.
    pub substitutions: u8,
}

/// Why raw plate text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlateError {
    /// No letter or digit in the text.
    #[error("plate text has no letters or digits")]
    Empty,
    /// The text is longer than [`MAX_RAW_CHARS`] characters.
    #[error("plate text is longer than {max} characters")]
    TooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A character that is neither a letter, a digit, a lookalike of one nor a
    /// separator.
    #[error("invalid character {ch:?} at character index {index}")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Its index in the raw text, counted in `char`s.
        index: usize,
    },
    /// The text is well formed but matches none of the country's formats.
    #[error("{normalized:?} matches no {country} plate format")]
    NoMatch {
        /// The country that was asked for.
        country: Country,
        /// The normalised text that was tried.
        normalized: String,
    },
}

/// Canonicalises raw OCR text: uppercase `A-Z0-9` only, lookalikes mapped,
/// separators and unknown characters dropped. Never fails; see the module
/// documentation for the mapping.
pub fn normalize(raw: &str) -> String {
    raw.chars()
        .filter_map(|c| match classify(c) {
            Class::Alnum(b) => Some(char::from(b)),
            _ => None,
        })
        .collect()
}

/// Every country whose format matches `raw`, at most one candidate per
/// country, best first as described in the module documentation ("Ranking").
/// Empty when the text is rejected (see [`try_candidates`] for the reason) or
/// matches nothing.
pub fn candidates(raw: &str) -> Vec<PlateCandidate> {
    try_candidates(raw).unwrap_or_default()
}

/// Like [`candidates`], but says why text was rejected before matching.
pub fn try_candidates(raw: &str) -> Result<Vec<PlateCandidate>, PlateError> {
    let text = prepare(raw)?;
    Ok(ranked(&text).into_iter().map(|(_, c)| c).collect())
}

/// The best reading of `raw` as a plate of `country`.
pub fn validate(raw: &str, country: Country) -> Result<PlateCandidate, PlateError> {
    let text = prepare(raw)?;
    match_country(&text, country).ok_or_else(|| PlateError::NoMatch {
        country,
        normalized: text.chars.iter().copied().map(char::from).collect(),
    })
}

// ---------------------------------------------------------------------------
// Normalisation

enum Class {
    Alnum(u8),
    Separator,
    Ignore,
    Invalid,
}

fn classify(c: char) -> Class {
    if c.is_ascii_alphanumeric() {
        return Class::Alnum(c.to_ascii_uppercase() as u8);
    }
    if c.is_whitespace() {
        return Class::Separator;
    }
    let mapped = match c {
        // Fullwidth forms: fixed offsets from the ASCII ranges.
        '\u{FF10}'..='\u{FF19}' => b'0' + (c as u32 - 0xFF10) as u8,
        '\u{FF21}'..='\u{FF3A}' => b'A' + (c as u32 - 0xFF21) as u8,
        '\u{FF41}'..='\u{FF5A}' => b'A' + (c as u32 - 0xFF41) as u8,
        // Cyrillic and Greek lookalikes.
        'А' | 'а' | 'Α' => b'A',
        'В' | 'в' | 'Β' => b'B',
        'Е' | 'е' | 'Ε' => b'E',
        'Ζ' => b'Z',
        'Н' | 'н' | 'Η' => b'H',
        'І' | 'і' | 'Ι' => b'I',
        'Ј' | 'ј' => b'J',
        'К' | 'к' | 'Κ' => b'K',
        'М' | 'м' | 'Μ' => b'M',
        'Ν' => b'N',
        'О' | 'о' | 'Ο' | 'ο' => b'O',
        'Р' | 'р' | 'Ρ' => b'P',
        'С' | 'с' => b'C',
        'Ѕ' | 'ѕ' => b'S',
        'Т' | 'т' | 'Τ' => b'T',
        'Х' | 'х' | 'Χ' => b'X',
        'У' | 'у' | 'Υ' => b'Y',
        'З' => b'3',
        // Slashed zero as some OCR engines print it.
        'Ø' | 'ø' => b'0',
        // Latin letters with diacritics.
        'À'..='Å' | 'à'..='å' | 'Ą' | 'ą' => b'A',
        'Ç' | 'ç' | 'Ć' | 'ć' | 'Č' | 'č' => b'C',
        'Ď' | 'ď' => b'D',
        'È'..='Ë' | 'è'..='ë' | 'Ę' | 'ę' | 'Ě' | 'ě' => b'E',
        'Ì'..='Ï' | 'ì'..='ï' => b'I',
        'Ł' | 'ł' => b'L',
        'Ñ' | 'ñ' | 'Ń' | 'ń' | 'Ň' | 'ň' => b'N',
        'Ò'..='Ö' | 'ò'..='ö' | 'Ő' | 'ő' => b'O',
        'Ř' | 'ř' => b'R',
        'Ś' | 'ś' | 'Š' | 'š' => b'S',
        'Ť' | 'ť' => b'T',
        'Ù'..='Ü' | 'ù'..='ü' | 'Ů' | 'ů' | 'Ű' | 'ű' => b'U',
        'Ý' | 'ý' | 'ÿ' => b'Y',
        'Ź' | 'ź' | 'Ż' | 'ż' | 'Ž' | 'ž' => b'Z',
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' => return Class::Separator,
        '.' | '\u{FF0E}' | '·' | '•' | '∙' | '⋅' | '・' | '･' => return Class::Separator,
        '_' | '\u{FF3F}' | '/' | '\u{FF0F}' | '\\' | '|' | ':' | ',' | ';' => {
            return Class::Separator;
        }
        '\'' | '"' | '`' | '´' | '‘' | '’' | '“' | '”' | '°' | '*' => {
            return Class::Separator;
        }
        '(' | ')' | '[' | ']' | '{' | '}' => return Class::Separator,
        // Zero-width and soft characters, and combining marks (a decomposed
        // `Ü` is `U` + U+0308): invisible, so neither content nor a boundary.
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => return Class::Ignore,
        '\u{0300}'..='\u{036F}' => return Class::Ignore,
        _ => return Class::Invalid,
    };
    Class::Alnum(mapped)
}

/// Raw text after strict normalisation.
struct Text {
    /// `A-Z0-9` bytes.
    chars: Vec<u8>,
    /// Indices into `chars` where a separator stood before that character.
    boundaries: Vec<usize>,
}

fn prepare(raw: &str) -> Result<Text, PlateError> {
    // `nth` stops early, so a huge input costs no more than the cap.
    if raw.trim().chars().nth(MAX_RAW_CHARS).is_some() {
        return Err(PlateError::TooLong { max: MAX_RAW_CHARS });
    }
    let mut chars = Vec::new();
    let mut boundaries = Vec::new();
    let mut pending = false;
    for (index, ch) in raw.chars().enumerate() {
        match classify(ch) {
            Class::Alnum(b) => {
                if pending && !chars.is_empty() {
                    boundaries.push(chars.len());
                }
                pending = false;
                chars.push(b);
            }
            Class::Separator => pending = true,
            Class::Ignore => {}
            Class::Invalid => return Err(PlateError::InvalidCharacter { ch, index }),
        }
    }
    if chars.is_empty() {
        return Err(PlateError::Empty);
    }
    Ok(Text { chars, boundaries })
}

// ---------------------------------------------------------------------------
// Confusables

/// The digit a letter is mistaken for, if any.
fn letter_as_digit(b: u8) -> Option<u8> {
    Some(match b {
        b'O' | b'Q' | b'D' => 0,
        b'I' | b'L' => 1,
        b'Z' => 2,
        b'A' => 4,
        b'S' => 5,
        b'G' => 6,
        b'T' => 7,
        b'B' => 8,
        _ => return None,
    })
}

/// The letters a digit is mistaken for, most likely first.
fn digit_as_letters(b: u8) -> &'static [u8] {
    match b {
        b'0' => b"ODQ",
        b'1' => b"IL",
        b'2' => b"Z",
        b'4' => b"A",
        b'5' => b"S",
        b'6' => b"G",
        b'7' => b"T",
        b'8' => b"B",
        _ => b"",
    }
}

// ---------------------------------------------------------------------------
// Templates

/// What one position accepts: bit `n` of `letters` is `'A' + n`, bit `n` of
/// `digits` is `'0' + n`.
#[derive(Clone, Copy)]
struct Slot {
    letters: u32,
    digits: u16,
}

const ALL_LETTERS: u32 = (1 << 26) - 1;
const ALL_DIGITS: u16 = (1 << 10) - 1;

const fn letter_mask(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut mask = 0;
    let mut i = 0;
    while i < b.len() {
        mask |= 1 << (b[i] - b'A');
        i += 1;
    }
    mask
}

/// Letters only, from an explicit set.
const fn only(s: &str) -> Slot {
    Slot {
        letters: letter_mask(s),
        digits: 0,
    }
}

/// Letters only, all but the given ones.
const fn except(s: &str) -> Slot {
    Slot {
        letters: ALL_LETTERS & !letter_mask(s),
        digits: 0,
    }
}

const L: Slot = except("");
const D: Slot = Slot {
    letters: 0,
    digits: ALL_DIGITS,
};
/// A digit 1-9.
const NZ: Slot = Slot {
    letters: 0,
    digits: ALL_DIGITS & !1,
};

impl Slot {
    fn either(self, other: Slot) -> Slot {
        Slot {
            letters: self.letters | other.letters,
            digits: self.digits | other.digits,
        }
    }

    fn has_letter(self, b: u8) -> bool {
        b.is_ascii_uppercase() && self.letters & (1 << (b - b'A')) != 0
    }

    fn has_digit(self, b: u8) -> bool {
        b.is_ascii_digit() && self.digits & (1 << (b - b'0')) != 0
    }

    fn code(self) -> char {
        match (self.letters != 0, self.digits != 0) {
            (true, false) => 'L',
            (false, true) => 'D',
            _ => 'X',
        }
    }

    /// The character to put here for `b` and whether it is a substitution.
    fn accept(self, b: u8) -> Option<(u8, bool)> {
        if self.has_letter(b) || self.has_digit(b) {
            return Some((b, false));
        }
        if b.is_ascii_uppercase() {
            let d = letter_as_digit(b)?;
            return (self.digits & (1 << d) != 0).then_some((b'0' + d, true));
        }
        digit_as_letters(b)
            .iter()
            .copied()
            .find(|&l| self.has_letter(l))
            .map(|l| (l, true))
    }
}

struct Group {
    slots: Vec<Slot>,
    /// Rejects a group of only zeros (e.g. the French `000`).
    not_all_zero: bool,
}

struct Template {
    groups: Vec<Group>,
    /// Printed after each group but the last.
    seps: Vec<&'static str>,
    len: usize,
    /// Indices into the plate where a printed separator starts a group. The
    /// DE `E`/`H` suffix follows the number without one, so it is not here.
    boundaries: Vec<usize>,
    format: String,
    /// A format no longer issued, ranked below current ones (see the module
    /// documentation, "Ranking").
    historic: bool,
}

impl Template {
    /// A template from `(slots, separator after)` parts; the last separator is
    /// ignored.
    fn new(parts: Vec<(Vec<Slot>, &'static str)>) -> Template {
        let mut t = Template {
            groups: Vec::new(),
            seps: Vec::new(),
            len: 0,
            boundaries: Vec::new(),
            format: String::new(),
            historic: false,
        };
        let n = parts.len();
        let mut printed = false;
        for (i, (slots, sep)) in parts.into_iter().enumerate() {
            if printed {
                t.boundaries.push(t.len);
            }
            printed = !sep.is_empty();
            t.len += slots.len();
            t.format.extend(slots.iter().map(|s| s.code()));
            if i + 1 < n {
                t.format.push_str(sep);
                t.seps.push(sep);
            }
            t.groups.push(Group {
                slots,
                not_all_zero: false,
            });
        }
        t
    }

    fn historic(mut self) -> Template {
        self.historic = true;
        self
    }

    fn not_all_zero(mut self, group: usize) -> Template {
        if let Some(g) = self.groups.get_mut(group) {
            g.not_all_zero = true;
        }
        self
    }

    /// The corrected plate and its substitution count, if `chars` fits.
    fn matches(&self, chars: &[u8]) -> Option<(Vec<u8>, u8)> {
        if chars.len() != self.len {
            return None;
        }
        let mut out = Vec::with_capacity(self.len);
        let mut subs = 0u8;
        let mut input = chars.iter().copied();
        for group in &self.groups {
            let start = out.len();
            for slot in &group.slots {
                let (b, sub) = slot.accept(input.next()?)?;
                out.push(b);
                subs = subs.saturating_add(u8::from(sub));
            }
            if group.not_all_zero && out[start..].iter().all(|&b| b == b'0') {
                return None;
            }
        }
        Some((out, subs))
    }

    fn display(&self, plate: &[u8]) -> String {
        let mut s = String::with_capacity(plate.len() + 2 * self.seps.len());
        let mut rest = plate;
        for (i, g) in self.groups.iter().enumerate() {
            let (head, tail) = rest.split_at(g.slots.len().min(rest.len()));
            s.extend(head.iter().copied().map(char::from));
            rest = tail;
            if let Some(sep) = self.seps.get(i) {
                s.push_str(sep);
            }
        }
        s
    }

    /// How badly the groups disagree with the separators of the raw text:
    /// raw separators inside a group plus group boundaries with no separator.
    /// Text without any separator says nothing about grouping, so it fits
    /// every template equally.
    fn misfit(&self, raw: &[usize], measured: bool) -> usize {
        if !measured {
            return 0;
        }
        let inside = raw.iter().filter(|b| !self.boundaries.contains(b)).count();
        let unseen = self.boundaries.iter().filter(|b| !raw.contains(b)).count();
        inside + unseen
    }
}

fn rep(slot: Slot, n: usize) -> Vec<Slot> {
    vec![slot; n]
}

fn cat(parts: &[&[Slot]]) -> Vec<Slot> {
    parts.concat()
}

fn templates(country: Country) -> &'static [Template] {
    static ALL: OnceLock<Vec<Vec<Template>>> = OnceLock::new();
    let all = ALL.get_or_init(|| Country::ALL.into_iter().map(build).collect());
    all.get(country.index()).map_or(&[], Vec::as_slice)
}

fn build(country: Country) -> Vec<Template> {
    match country {
        Country::AT => build_at(),
        Country::BE => build_be(),
        Country::CZ => build_cz(),
        Country::DE => build_de(),
        Country::ES => build_es(),
        Country::FR => build_fr(),
        Country::GB => build_gb(),
        Country::IT => build_it(),
        Country::NL => build_nl(),
        Country::PL => build_pl(),
        Country::SE => build_se(),
    }
}

fn build_at() -> Vec<Template> {
    let mut out = Vec::new();
    // Standard: digits (no leading zero) then letters.
    for district in 1..=2 {
        for digits in 1..=5 {
            for letters in 1..=3 {
                if (3..=6).contains(&(digits + letters)) {
                    out.push(Template::new(vec![
                        (rep(L, district), " "),
                        (cat(&[&[NZ], &rep(D, digits - 1)]), " "),
                        (rep(L, letters), ""),
                    ]));
                }
            }
        }
    }
    // Personalised (Wunschkennzeichen): letters then digits.
    for district in 1..=2 {
        for letters in 1..=5 {
            for digits in 1..=3 {
                if (3..=6).contains(&(digits + letters)) {
                    out.push(Template::new(vec![
                        (rep(L, district), " "),
                        (rep(L, letters), " "),
                        (cat(&[&[NZ], &rep(D, digits - 1)]), ""),
                    ]));
                }
            }
        }
    }
    out
}

fn build_be() -> Vec<Template> {
    vec![
        Template::new(vec![(vec![NZ], "-"), (rep(L, 3), "-"), (rep(D, 3), "")]),
        Template::new(vec![(rep(D, 3), "-"), (rep(L, 3), "")]).historic(),
        Template::new(vec![(rep(L, 3), "-"), (rep(D, 3), "")]).historic(),
    ]
}

fn build_cz() -> Vec<Template> {
    let letter = except("GOQW");
    vec![Template::new(vec![
        (vec![NZ, only("ABCEHJKLMPSTUZ"), D.either(letter)], " "),
        (rep(D, 4), ""),
    ])]
}

fn build_de() -> Vec<Template> {
    let suffix = only("EH");
    let mut out = Vec::new();
    for with_suffix in [false, true] {
        for district in 1..=3 {
            for letters in 1..=2 {
                for digits in 1..=4 {
                    if district + letters + digits > 8 {
                        continue;
                    }
                    let mut parts = vec![
                        (rep(L, district), " "),
                        (rep(L, letters), " "),
                        (cat(&[&[NZ], &rep(D, digits - 1)]), ""),
                    ];
                    if with_suffix {
                        parts.push((vec![suffix], ""));
                    }
                    out.push(Template::new(parts));
                }
            }
        }
    }
    out
}

fn build_es() -> Vec<Template> {
    let c = only("BCDFGHJKLMNPRSTVWXYZ");
    vec![Template::new(vec![(rep(D, 4), " "), (rep(c, 3), "")])]
}

fn build_fr() -> Vec<Template> {
    let l = except("IOU");
    vec![Template::new(vec![(rep(l, 2), "-"), (rep(D, 3), "-"), (rep(l, 2), "")]).not_all_zero(1)]
}

fn build_gb() -> Vec<Template> {
    let year = except("IOQUZ");
    let area = except("IQZ");
    let random = except("IQ");
    let mut out = vec![Template::new(vec![
        (cat(&[&rep(area, 2), &rep(D, 2)]), " "),
        (rep(random, 3), ""),
    ])];
    for digits in 1..=3 {
        out.push(
            Template::new(vec![
                (cat(&[&[year, NZ], &rep(D, digits - 1)]), " "),
                (rep(area, 3), ""),
            ])
            .historic(),
        );
    }
    for digits in 1..=3 {
        out.push(
            Template::new(vec![
                (rep(area, 3), " "),
                (cat(&[&[NZ], &rep(D, digits - 1), &[year]]), ""),
            ])
            .historic(),
        );
    }
    let first = except("IQ");
    for code in [[only("I"), first], [first, only("IZ")]] {
        for digits in 1..=4 {
            out.push(Template::new(vec![
                (cat(&[&[first], &code]), " "),
                (cat(&[&[NZ], &rep(D, digits - 1)]), ""),
            ]));
        }
    }
    out
}

fn build_it() -> Vec<Template> {
    let l = except("IOQU");
    vec![Template::new(vec![
        (rep(l, 2), " "),
        (rep(D, 3), " "),
        (rep(l, 2), ""),
    ])]
}

fn build_nl() -> Vec<Template> {
    let c = only("BDFGHJKLNPRSTVXZ");
    // Sidecodes 1 to 14 as (kind, length) groups, `true` for letters.
    let sidecodes: [[(bool, usize); 3]; 14] = [
        [(true, 2), (false, 2), (false, 2)],
        [(false, 2), (false, 2), (true, 2)],
        [(false, 2), (true, 2), (false, 2)],
        [(true, 2), (false, 2), (true, 2)],
        [(true, 2), (true, 2), (false, 2)],
        [(false, 2), (true, 2), (true, 2)],
        [(false, 2), (true, 3), (false, 1)],
        [(false, 1), (true, 3), (false, 2)],
        [(true, 2), (false, 3), (true, 1)],
        [(true, 1), (false, 3), (true, 2)],
        [(true, 3), (false, 2), (true, 1)],
        [(true, 1), (false, 2), (true, 3)],
        [(false, 1), (true, 2), (false, 3)],
        [(false, 3), (true, 2), (false, 1)],
    ];
    sidecodes
        .iter()
        .enumerate()
        .map(|(i, groups)| {
            let t = Template::new(
                groups
                    .iter()
                    .map(|&(letters, n)| (rep(if letters { c } else { D }, n), "-"))
                    .collect(),
            );
            // Sidecodes 1-6 were issued until 2008.
            if i < 6 { t.historic() } else { t }
        })
        .collect()
}

fn build_pl() -> Vec<Template> {
    let voivodeship = only("BCDEFGKLNOPRSTWZ");
    let s = except("BDIOZ");
    let serial =
        |p: &str| -> Vec<Slot> { p.bytes().map(|b| if b == b'L' { s } else { D }).collect() };
    let five = ["DDDDD", "DDDDL", "DDDLL", "DLDDD", "DLLDD"];
    let four = ["LDDD", "DDLL", "DLDD", "DDLD", "DLLD", "LLDD"];
    let mut out = Vec::new();
    for p in five {
        out.push(Template::new(vec![
            (vec![voivodeship, L], " "),
            (serial(p), ""),
        ]));
    }
    for p in four.iter().chain(five.iter()) {
        out.push(Template::new(vec![
            (vec![voivodeship, L, L], " "),
            (serial(p), ""),
        ]));
    }
    out
}

fn build_se() -> Vec<Template> {
    let l = except("IQV");
    vec![
        Template::new(vec![(rep(l, 3), " "), (rep(D, 3), "")]),
        Template::new(vec![
            (rep(l, 3), " "),
            (cat(&[&rep(D, 2), &[except("IOQV")]]), ""),
        ]),
    ]
}

// ---------------------------------------------------------------------------
// Matching

/// What orders readings, best first, field by field: within a country to pick
/// its reading, then across countries (with the country last) to sort
/// [`candidates`]. The module documentation, "Ranking", says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// Substitutions, plus one for a historic format that needed any, plus
    /// one for joining a standalone band token to the plate.
    cost: u16,
    /// Disagreement with the raw separators, see [`Template::misfit`].
    misfit: usize,
    /// `false` for a reading with the band code stripped, so it wins ties.
    unstripped: bool,
    /// A historic format loses ties to a current one.
    historic: bool,
    /// The substitutions alone.
    subs: u8,
}

/// One template's reading of the text.
struct Reading {
    rank: Rank,
    template: &'static Template,
    plate: Vec<u8>,
}

impl Reading {
    fn new(
        template: &'static Template,
        (plate, subs): (Vec<u8>, u8),
        glued: bool,
        misfit: usize,
        unstripped: bool,
    ) -> Reading {
        // The current-format prior only arbitrates between corrections: an
        // exact read of a historic plate is never second-guessed.
        let prior = u16::from(template.historic && subs > 0);
        Reading {
            rank: Rank {
                cost: u16::from(subs) + prior + u16::from(glued),
                misfit,
                unstripped,
                historic: template.historic,
                subs,
            },
            template,
            plate,
        }
    }

    fn candidate(self, country: Country) -> PlateCandidate {
        PlateCandidate {
            country,
            display: self.template.display(&self.plate),
            plate: self.plate.into_iter().map(char::from).collect(),
            format: self.template.format.clone(),
            substitutions: self.rank.subs,
        }
    }
}

/// Keeps `new` if it ranks strictly better, so earlier templates win ties.
fn offer(best: &mut Option<Reading>, new: Reading) {
    if best.as_ref().is_none_or(|b| new.rank < b.rank) {
        *best = Some(new);
    }
}

/// The corrected plate and substitutions if `chars` fits `template`.
fn fit(template: &Template, chars: &[u8]) -> Option<(Vec<u8>, u8)> {
    let (plate, subs) = template.matches(chars)?;
    // A reading that rewrites half the characters is a guess, not a fix.
    (2 * usize::from(subs) < chars.len()).then_some((plate, subs))
}

/// The length of `country`'s band code that the text starts with, and whether
/// a separator follows it (a token of its own). `None` when the text is
/// nothing but the code.
fn band_prefix(text: &Text, country: Country) -> Option<(usize, bool)> {
    country.band_codes().iter().find_map(|code| {
        let k = code.len();
        (text.chars.len() > k && text.chars.starts_with(code.as_bytes()))
            .then(|| (k, text.boundaries.contains(&k)))
    })
}

/// The length of the first token when it is some country's band code.
fn band_token(text: &Text) -> Option<usize> {
    let &k = text.boundaries.first()?;
    let token = text.chars.get(..k)?;
    Country::ALL
        .into_iter()
        .flat_map(Country::band_codes)
        .any(|code| code.as_bytes() == token)
        .then_some(k)
}

/// The best reading of the text for `country`, band code stripped or not.
fn best_reading(text: &Text, country: Country) -> Option<Reading> {
    let measured = !text.boundaries.is_empty();
    let own = band_prefix(text, country);
    let token = band_token(text);
    let mut best = None;
    for template in templates(country) {
        let Some(read) = fit(template, &text.chars) else {
            continue;
        };
        if let Some((k, _)) = own {
            // These characters spell the band code: reading them as a
            // confusable (`B` as `8`) invents a plate.
            if read.0.get(..k) != text.chars.get(..k) {
                continue;
            }
        }
        let glued = token.is_some_and(|k| !template.boundaries.contains(&k));
        // Our own band token may be a group of the plate (the Düsseldorf
        // district `D`) but not part of one: then it is the band.
        if glued && own.is_some_and(|(_, alone)| alone) {
            continue;
        }
        let misfit = template.misfit(&text.boundaries, measured);
        offer(&mut best, Reading::new(template, read, glued, misfit, true));
    }
    let Some((k, alone)) = own else {
        return best;
    };
    // Without a separator after the code nothing marks it as a band: any
    // reading of the whole text stands (`"A8I2CDE"` is not the Austrian
    // `B1 2 CDE`), and only text that cannot be read whole is stripped.
    if !alone && best.is_some() {
        return best;
    }
    let rest = text.chars.get(k..).unwrap_or_default();
    let boundaries: Vec<usize> = text
        .boundaries
        .iter()
        .filter(|&&b| b > k)
        .map(|&b| b - k)
        .collect();
    for template in templates(country) {
        if let Some(read) = fit(template, rest) {
            let misfit = template.misfit(&boundaries, measured);
            offer(
                &mut best,
                Reading::new(template, read, false, misfit, false),
            );
        }
    }
    best
}

/// Every country's best reading with its rank, best first.
fn ranked(text: &Text) -> Vec<(Rank, PlateCandidate)> {
    let mut out: Vec<(Rank, PlateCandidate)> = Country::ALL
        .into_iter()
        .filter_map(|c| best_reading(text, c).map(|r| (r.rank, r.candidate(c))))
        .collect();
    out.sort_by_key(|(rank, c)| (*rank, c.country));
    out
}

fn match_country(text: &Text, country: Country) -> Option<PlateCandidate> {
    best_reading(text, country).map(|r| r.candidate(country))
}

#[cfg(test)]
mod tests;
