//! The byte-level BPE tokenizer of GPT-2-style models, built from a GGUF
//! file's metadata (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`): no
//! `tokenizer.json` ships with the embedded model.
//!
//! Pre-tokenization follows the SmolLM2 tokenizer: every digit is a piece
//! of its own, then GPT-2's split
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (written out by hand below: no regex engine with look-ahead needed).
//! Each piece's bytes are mapped to GPT-2's printable characters and merged
//! pair by pair in the order of the merge list.

use std::collections::HashMap;

/// A tokenizer over one vocabulary.
#[derive(Debug, Clone)]
pub struct Bpe {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    ranks: HashMap<(String, String), u32>,
    /// Tokens that decode to nothing (control tokens such as `<|im_end|>`).
    special: Vec<bool>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

impl Bpe {
    /// A tokenizer from the vocabulary (index = id), the merges (`"a b"`,
    /// first = highest priority) and which ids are control tokens.
    pub fn new(tokens: Vec<String>, merges: &[String], special: Vec<bool>) -> Result<Bpe, String> {
        if tokens.is_empty() {
            return Err("empty vocabulary".into());
        }
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (a, b) = merge
                .split_once(' ')
                .ok_or_else(|| format!("merge {rank} ({merge:?}) is not two symbols"))?;
            ranks
                .entry((a.to_owned(), b.to_owned()))
                .or_insert(rank as u32);
        }
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let byte_to_char = bytes_to_unicode();
        // Byte-level vocabularies hold a token per byte; some leave out
        // control bytes no training text had. Printable ASCII must be there.
        for byte in 0x21..=0x7eu8 {
            if !vocab.contains_key(&byte_to_char[byte as usize].to_string()) {
                return Err(format!(
                    "the vocabulary has no token for byte {byte:#04x}: not a byte-level BPE"
                ));
            }
        }
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut special = special;
        special.resize(tokens.len(), false);
        Ok(Bpe {
            vocab,
            tokens,
            ranks,
            special,
            byte_to_char,
            char_to_byte,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token written out, e.g. `<|im_start|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The token ids of plain text (control-token names in it are text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in pre_tokenize(text) {
            let mapped: String = piece
                .bytes()
                .map(|b| self.byte_to_char[b as usize])
                .collect();
            if let Some(&id) = self.vocab.get(&mapped) {
                ids.push(id);
                continue;
            }
            for symbol in self.merge(&mapped) {
                // Every merge result is a token; a single byte the
                // vocabulary lacks (a control character) is left out.
                match self.vocab.get(&symbol) {
                    Some(&id) => ids.push(id),
                    None => ids.extend(
                        symbol
                            .chars()
                            .filter_map(|c| self.vocab.get(&c.to_string()).copied()),
                    ),
                }
            }
        }
        ids
    }

    /// The text of `ids`, control tokens left out; invalid UTF-8 (a
    /// character cut between tokens) is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = self.tokens.get(id as usize) else {
                continue;
            };
            if self.special[id as usize] {
                continue;
            }
            for c in token.chars() {
                match self.char_to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend(c.to_string().as_bytes()),
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The symbols of one mapped piece after applying the merges.
    fn merge(&self, piece: &str) -> Vec<String> {
        let mut symbols: Vec<String> = piece.chars().map(|c| c.to_string()).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|&rank| (rank, i))
                })
                .min();
            let Some((rank, _)) = best else {
                return symbols;
            };
            // Merge every occurrence of that pair, left to right.
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self
                        .ranks
                        .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                        == Some(&rank)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
    }
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes
/// map to themselves, the rest to U+0100 onwards, in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    out
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_number(c: char) -> bool {
    c.is_numeric()
}

/// Splits `text` into the pieces BPE runs on (see the module comment).
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    // Digits first: each one a piece of its own.
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_number(c) {
            if start < i {
                split_gpt2(&text[start..i], &mut pieces);
            }
            pieces.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        split_gpt2(&text[start..], &mut pieces);
    }
    pieces
}

/// GPT-2's split of a piece without digits.
fn split_gpt2<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |k: usize| chars.get(k).map_or(text.len(), |&(i, _)| i);
    let mut k = 0;
    while k < chars.len() {
        let (start, c) = chars[k];
        // Contractions.
        if c == '\'' {
            let rest = &text[start + 1..];
            if let Some(len) = ["s", "t", "re", "ve", "m", "ll", "d"]
                .iter()
                .find(|s| rest.starts_with(**s))
                .map(|s| s.len())
            {
                out.push(&text[start..start + 1 + len]);
                k += 1 + len;
                continue;
            }
        }
        let next = chars.get(k + 1).map(|&(_, c)| c);
        let (body_start, first) = if c == ' ' && next.is_some_and(|n| !n.is_whitespace()) {
            (k + 1, next)
        } else {
            (k, Some(c))
        };
        match first {
            // ` ?\p{L}+`
            Some(f) if is_letter(f) => {
                let mut j = body_start;
                while j < chars.len() && is_letter(chars[j].1) {
                    j += 1;
                }
                out.push(&text[start..end_of(j)]);
                k = j;
            }
            // ` ?\p{N}+` (digits are split off earlier; other numerals)
            Some(f) if is_number(f) => {
                let mut j = body_start;
                while j < chars.len() && is_number(chars[j].1) {
                    j += 1;
                }
                out.push(&text[start..end_of(j)]);
                k = j;
            }
            // ` ?[^\s\p{L}\p{N}]+`
            Some(f) if !f.is_whitespace() => {
                let mut j = body_start;
                while j < chars.len() {
                    let c = chars[j].1;
                    if c.is_whitespace() || is_letter(c) || is_number(c) {
                        break;
                    }
                    j += 1;
                }
                out.push(&text[start..end_of(j)]);
                k = j;
            }
            // Whitespace: `\s+(?!\S)` then `\s+`.
            _ => {
                let mut j = k;
                while j < chars.len() && chars[j].1.is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && j - k > 1 {
                    // Followed by text: leave the last whitespace to it.
                    j -= 1;
                }
                out.push(&text[start..end_of(j)]);
                k = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenization_follows_gpt2_with_single_digits() {
        assert_eq!(
            pre_tokenize("Hello world, it's AB 12!\n\nNew  line"),
            [
                "Hello", " world", ",", " it", "'s", " AB", " ", "1", "2", "!", "\n", "\n", "New",
                " ", " line"
            ]
        );
        assert_eq!(pre_tokenize("  x"), [" ", " x"]);
        assert_eq!(pre_tokenize("a\nb"), ["a", "\n", "b"]);
        assert_eq!(pre_tokenize("end  "), ["end", "  "]);
        assert_eq!(pre_tokenize("Schäden über"), ["Schäden", " über"]);
    }

    fn tiny() -> Bpe {
        let map = bytes_to_unicode();
        let mut tokens: Vec<String> = map.iter().map(|c| c.to_string()).collect();
        for t in ["he", "ll", "hell", "hello", "Ġw", "<|end|>"] {
            tokens.push(t.into());
        }
        let merges: Vec<String> = ["h e", "l l", "he ll", "hell o", "Ġ w"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut special = vec![false; tokens.len()];
        special[tokens.len() - 1] = true;
        Bpe::new(tokens, &merges, special).unwrap()
    }

    #[test]
    fn merges_apply_in_rank_order_and_text_round_trips() {
        let bpe = tiny();
        let hello = bpe.token_id("hello").unwrap();
        let gw = bpe.token_id("Ġw").unwrap();
        let ids = bpe.encode("hello wo");
        assert_eq!(ids[0], hello);
        assert_eq!(ids[1], gw);
        assert_eq!(ids.len(), 3);
        for text in ["hello wo", "Zürich, 12 €\n\tend", "", "  "] {
            assert_eq!(bpe.decode(&bpe.encode(text)), text);
        }
        let end = bpe.token_id("<|end|>").unwrap();
        assert_eq!(bpe.decode(&[hello, end]), "hello");
    }

    #[test]
    fn a_vocabulary_without_bytes_is_refused() {
        let err = Bpe::new(vec!["a".into()], &[], vec![]).unwrap_err();
        assert!(err.contains("not a byte-level BPE"), "{err}");
    }
}
