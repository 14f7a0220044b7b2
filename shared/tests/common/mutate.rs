//! Random edits of a text file, as a proptest strategy: what the
//! configuration tests feed the binaries' parsers (a configuration file is
//! written by hand, by templating and by merge tools; any byte may be wrong).
//! Included by path, like `mod.rs`.

#![allow(dead_code)]

use proptest::prelude::*;

/// Fragments that matter to TOML and to the values the validators check.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\n",
    "#",
    "{",
    "}",
    ",",
    ".",
    "\\",
    "-1",
    "0",
    "1e309",
    "-0.0",
    "nan",
    "inf",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "\"\"",
    "\"\\u0000\"",
    "true",
    "1979-05-27T07:32:00Z",
    "\"/\"",
    "\"../../etc/passwd\"",
    "\"0.0.0.0:0\"",
    "\"[::1]:99999\"",
    "\"*\"",
    "\"+/#\"",
    "\"ä\"",
    "\u{feff}",
    "\u{200b}",
    "[]",
    "{}",
    "[mqtt]",
    "[store]",
    "x = 1",
    "\r\n",
    "\t",
    "''' '''",
];

/// One edit: where (a fraction of the length, in 1/65536), how much, what.
#[derive(Debug, Clone)]
pub enum Edit {
    Delete { at: u16, len: u8 },
    Insert { at: u16, token: usize },
    InsertText { at: u16, text: String },
    DuplicateLine { at: u16 },
    ReplaceValue { at: u16, token: usize },
}

/// One to four edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(at, len)| Edit::Delete { at, len: len % 24 }),
        (any::<u16>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<u16>(), ".{0,12}").prop_map(|(at, text)| Edit::InsertText { at, text }),
        any::<u16>().prop_map(|at| Edit::DuplicateLine { at }),
        (any::<u16>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::ReplaceValue { at, token }),
    ];
    prop::collection::vec(edit, 1..=4)
}

/// The char boundary nearest below `at`/65536 of the text.
fn position(text: &str, at: u16) -> usize {
    let mut i = text.len() * usize::from(at) / 65_536;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `base` with `edits` applied in order.
pub fn apply(base: &str, edits: &[Edit]) -> String {
    let mut text = base.to_owned();
    for edit in edits {
        match edit {
            Edit::Delete { at, len } => {
                let start = position(&text, *at);
                let mut end = (start + usize::from(*len)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, "");
            }
            Edit::Insert { at, token } => {
                let i = position(&text, *at);
                text.insert_str(i, TOKENS[*token]);
            }
            Edit::InsertText { at, text: t } => {
                let i = position(&text, *at);
                text.insert_str(i, t);
            }
            Edit::DuplicateLine { at } => {
                let i = position(&text, *at);
                let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let line = format!("{}\n", &text[start..end]);
                text.insert_str(start, &line);
            }
            Edit::ReplaceValue { at, token } => {
                // The value of the key=value line at or after `at`.
                let i = position(&text, *at);
                if let Some(eq) = text[i..].find('=').map(|n| i + n) {
                    let end = text[eq..].find('\n').map_or(text.len(), |n| eq + n);
                    text.replace_range(eq + 1..end, &format!(" {}", TOKENS[*token]));
                }
            }
        }
    }
    text
}
