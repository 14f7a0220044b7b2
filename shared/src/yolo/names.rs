//! Class names and other Ultralytics ONNX metadata (`names`, `imgsz`,
//! `task`, `stride`, `batch`).

use std::str::FromStr;

use super::YoloError;

/// The classes of a model, indexed by class id `0..len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    names: Vec<String>,
}

impl ClassNames {
    /// Parses the Ultralytics `names` metadata, a Python dict repr such as
    /// `{0: 'person', 1: "driver's seat"}`: either quote style, backslash
    /// escapes, any whitespace, an optional trailing comma. Ids must be
    /// exactly `0..n` (in any order) and there must be at least one.
    pub fn parse(s: &str) -> Result<Self, YoloError> {
        let mut entries = Parser { s, pos: 0 }.dict()?;
        entries.sort_by_key(|(id, _)| *id);
        let len = entries.len();
        for (expected, &(id, _)) in entries.iter().enumerate() {
            if id != expected {
                // Sorted, and 0..expected matched: either a repeat of the
                // previous id or `expected` is absent.
                let problem = if expected > 0 && entries[expected - 1].0 == id {
                    format!("id {id} appears twice")
                } else {
                    format!("id {expected} is missing")
                };
                return Err(YoloError::ClassIds { len, problem });
            }
        }
        Self::from_names(entries.into_iter().map(|(_, name)| name).collect())
    }

    /// Class names in id order; at least one is required.
    pub fn from_names(names: Vec<String>) -> Result<Self, YoloError> {
        if names.is_empty() {
            return Err(YoloError::NoClasses);
        }
        Ok(Self { names })
    }

    /// Number of classes (the `nc` of the head).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a `ClassNames` holds at least one class.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of class `id`.
    pub fn get(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// The lowest id with exactly this name.
    pub fn id_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// `(id, name)` pairs in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (usize, &str)> + '_ {
        self.names.iter().map(String::as_str).enumerate()
    }

    /// The names in id order.
    pub fn as_slice(&self) -> &[String] {
        &self.names
    }
}

impl FromStr for ClassNames {
    type Err = YoloError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A tiny recursive-descent reader for `{int: 'str', ...}`.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error(&self, reason: impl Into<String>) -> YoloError {
        YoloError::MalformedNames {
            position: self.pos,
            reason: reason.into(),
        }
    }

    fn expect(&mut self, want: char) -> Result<(), YoloError> {
        match self.peek() {
            Some(c) if c == want => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.error(format!("expected `{want}`, found `{c}`"))),
            None => Err(self.error(format!("expected `{want}`, found the end"))),
        }
    }

    fn dict(&mut self) -> Result<Vec<(usize, String)>, YoloError> {
        self.skip_ws();
        self.expect('{')?;
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.bump();
                break;
            }
            if !entries.is_empty() {
                self.expect(',')?;
                self.skip_ws();
                // Trailing comma.
                if self.peek() == Some('}') {
                    self.bump();
                    break;
                }
            }
            let id = self.int()?;
            self.skip_ws();
            self.expect(':')?;
            self.skip_ws();
            let name = self.string()?;
            entries.push((id, name));
        }
        self.skip_ws();
        if self.pos != self.s.len() {
            return Err(self.error("unexpected text after the closing `}`"));
        }
        Ok(entries)
    }

    fn int(&mut self) -> Result<usize, YoloError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.error("expected a non-negative integer class id"));
        }
        self.s[start..self.pos]
            .parse()
            .map_err(|_| self.error("class id is too large"))
    }

    fn string(&mut self) -> Result<String, YoloError> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted class name")),
        };
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated class name")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => self.escape(&mut out)?,
                Some(c) => out.push(c),
            }
        }
    }

    /// One Python string escape, the backslash already read.
    fn escape(&mut self, out: &mut String) -> Result<(), YoloError> {
        let Some(c) = self.bump() else {
            return Err(self.error("unterminated escape"));
        };
        match c {
            '\\' | '\'' | '"' => out.push(c),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'x' => out.push(self.hex(2)?),
            'u' => out.push(self.hex(4)?),
            'U' => out.push(self.hex(8)?),
            // Python keeps unknown escapes verbatim.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn hex(&mut self, digits: usize) -> Result<char, YoloError> {
        let start = self.pos;
        let text = self
            .s
            .get(start..start + digits)
            .filter(|t| t.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.error(format!("expected {digits} hex digits")))?;
        let ch = u32::from_str_radix(text, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error(format!("\\{text} is not a character")))?;
        self.pos += digits;
        Ok(ch)
    }
}

/// The `task` an Ultralytics model was exported for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Boxes only.
    Detect,
    /// Boxes and instance masks.
    Segment,
    /// Whole-image classification.
    Classify,
    /// Boxes and keypoints.
    Pose,
    /// Oriented boxes.
    Obb,
    /// Anything newer.
    Other(String),
}

impl Task {
    /// Reads a `task` value; unknown values are kept as [`Task::Other`].
    pub fn from_metadata(s: &str) -> Self {
        match s.trim() {
            "detect" => Self::Detect,
            "segment" => Self::Segment,
            "classify" => Self::Classify,
            "pose" => Self::Pose,
            "obb" => Self::Obb,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The metadata that Ultralytics writes into its ONNX exports, as far as
/// pre/post-processing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMetadata {
    /// The `names` entry.
    pub names: ClassNames,
    /// The `task` entry, if present.
    pub task: Option<Task>,
    /// The `imgsz` entry as `(height, width)`, if present.
    pub imgsz: Option<(u32, u32)>,
    /// The `stride` entry (largest stride, 32 for YOLOv8), if present.
    pub stride: Option<u32>,
    /// The `batch` entry (export batch size), if present.
    pub batch: Option<usize>,
}

impl ModelMetadata {
    /// Reads the custom metadata map of an export (`names` is required,
    /// `task`, `imgsz`, `stride` and `batch` are optional, other keys are
    /// ignored). Works with ONNX Runtime's and tract's key/value maps.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, YoloError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut names = None;
        let mut meta = (None, None, None, None);
        for (k, v) in pairs {
            let (key, value) = (k.as_ref(), v.as_ref());
            let bad = || YoloError::MalformedMetadata {
                key: key.to_owned(),
                value: value.to_owned(),
            };
            match key {
                "names" => names = Some(ClassNames::parse(value)?),
                "task" => meta.0 = Some(Task::from_metadata(value)),
                "imgsz" => meta.1 = Some(parse_imgsz(value)?),
                "stride" => meta.2 = Some(value.trim().parse().map_err(|_| bad())?),
                "batch" => meta.3 = Some(value.trim().parse().map_err(|_| bad())?),
                _ => {}
            }
        }
        let (task, imgsz, stride, batch) = meta;
        Ok(Self {
            names: names.ok_or(YoloError::MissingNames)?,
            task,
            imgsz,
            stride,
            batch,
        })
    }

    /// The square input size to letterbox to, when `imgsz` is square.
    pub fn input_size(&self) -> Option<u32> {
        self.imgsz.and_then(|(h, w)| (h == w).then_some(h))
    }
}

/// Parses an `imgsz` value (`[640, 640]`, `(480, 640)` or `640`) into
/// `(height, width)`; sizes must be positive.
pub fn parse_imgsz(s: &str) -> Result<(u32, u32), YoloError> {
    let bad = || YoloError::MalformedMetadata {
        key: "imgsz".to_owned(),
        value: s.to_owned(),
    };
    let t = s.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .or_else(|| t.strip_prefix('(').and_then(|r| r.strip_suffix(')')))
        .unwrap_or(t);
    let dims: Vec<u32> = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok().filter(|&v| v > 0).ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [side] => Ok((side, side)),
        [h, w] => Ok((h, w)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_class_plate_model() {
        let n = ClassNames::parse("{0: 'plate'}").unwrap();
        assert_eq!(n.len(), 1);
        assert!(!n.is_empty());
        assert_eq!(n.get(0), Some("plate"));
        assert_eq!(n.get(1), None);
        assert_eq!(n.id_of("plate"), Some(0));
        assert_eq!(n.id_of("car"), None);
    }

    #[test]
    fn both_quote_styles_escapes_whitespace_and_trailing_comma() {
        let n: ClassNames = "  {0: 'person',\n 1:'bicycle' , 2: \"driver's seat\", 3: 'it\\'s', 4: 'a\\\\b', 5: '\\u00e9t\\xe9', 6: 'scratch/dent',}\n"
            .parse()
            .unwrap();
        let got: Vec<(usize, &str)> = n.iter().collect();
        assert_eq!(
            got,
            vec![
                (0, "person"),
                (1, "bicycle"),
                (2, "driver's seat"),
                (3, "it's"),
                (4, "a\\b"),
                (5, "été"),
                (6, "scratch/dent"),
            ]
        );
        assert_eq!(n.id_of("driver's seat"), Some(2));
        assert_eq!(n.as_slice().len(), 7);
    }

    #[test]
    fn ids_out_of_order_are_fine_but_gaps_and_repeats_are_not() {
        let n = ClassNames::parse("{1: 'b', 0: 'a'}").unwrap();
        assert_eq!(n.get(0), Some("a"));
        for (s, problem) in [
            ("{0: 'a', 2: 'c'}", "id 1 is missing"),
            ("{1: 'b'}", "id 0 is missing"),
            ("{1: 'b', 2: 'c'}", "id 0 is missing"),
            ("{0: 'a', 0: 'b'}", "id 0 appears twice"),
            ("{0: 'a', 1: 'b', 1: 'c'}", "id 1 appears twice"),
        ] {
            match ClassNames::parse(s) {
                Err(YoloError::ClassIds { problem: p, .. }) => assert_eq!(p, problem, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(matches!(ClassNames::parse("{}"), Err(YoloError::NoClasses)));
    }

    #[test]
    fn malformed_strings_are_errors() {
        for s in [
            "",
            "{",
            "{0: 'a'",
            "{0: 'a}",
            "{0 'a'}",
            "{0: a}",
            "{-1: 'a'}",
            "{'0': 'a'}",
            "{0: 'a',, 1: 'b'}",
            "{0: 'a' 1: 'b'}",
            "{0: 'a'} extra",
            "[0, 'a']",
            "{0: 'a\\",
            "{0: '\\x4'}",
            "{0: '\\ud800'}",
            "{99999999999999999999999: 'a'}",
            "{0: 'é\\xé'}",
        ] {
            assert!(
                matches!(ClassNames::parse(s), Err(YoloError::MalformedNames { .. })),
                "{s:?} -> {:?}",
                ClassNames::parse(s)
            );
        }
    }

    #[test]
    fn metadata_and_imgsz() {
        let pairs = [
            ("description", "Ultralytics YOLOv8n-seg"),
            ("stride", "32"),
            ("task", "segment"),
            ("batch", "1"),
            ("imgsz", "[640, 640]"),
            ("names", "{0: 'dent', 1: 'scratch'}"),
        ];
        let m = ModelMetadata::from_pairs(pairs).unwrap();
        assert_eq!(m.names.len(), 2);
        assert_eq!(m.task, Some(Task::Segment));
        assert_eq!(m.imgsz, Some((640, 640)));
        assert_eq!(m.input_size(), Some(640));
        assert_eq!((m.stride, m.batch), (Some(32), Some(1)));

        let m =
            ModelMetadata::from_pairs([("names".to_owned(), "{0: 'plate'}".to_owned())]).unwrap();
        assert_eq!((&m.task, m.imgsz, m.input_size()), (&None, None, None));
        assert!(matches!(
            ModelMetadata::from_pairs([("task", "detect")]),
            Err(YoloError::MissingNames)
        ));
        assert!(matches!(
            ModelMetadata::from_pairs([("names", "{0: 'a'}"), ("stride", "x")]),
            Err(YoloError::MalformedMetadata { .. })
        ));
        assert_eq!(Task::from_metadata("obb"), Task::Obb);
        assert_eq!(Task::from_metadata("x"), Task::Other("x".into()));

        assert_eq!(parse_imgsz("[480, 640]"), Ok((480, 640)));
        assert_eq!(parse_imgsz("(320,320)"), Ok((320, 320)));
        assert_eq!(parse_imgsz(" 640 "), Ok((640, 640)));
        for bad in ["", "[]", "[0, 640]", "[640, 640, 3]", "[a, b]", "[-1, 5]"] {
            assert!(parse_imgsz(bad).is_err(), "{bad}");
        }
    }
}
