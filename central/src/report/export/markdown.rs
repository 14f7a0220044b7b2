//! The Markdown export: the text, and the pictures as files beside it.

use std::fmt::Write as _;

use super::labels::labels;
use super::{Prepared, PreparedImage};

/// The Markdown text and the picture files it links to
/// (`images/{name}.jpg`, relative to the text).
pub(crate) fn markdown(prepared: &Prepared) -> (String, Vec<(String, Vec<u8>)>) {
    let l = labels(prepared.language);
    let mut md = String::new();
    let mut files = Vec::new();
    let _ = writeln!(md, "# {}\n", escape(&prepared.title()));
    for (label, value) in &prepared.facts {
        let _ = writeln!(md, "- **{}:** {}", escape(label), escape(value));
    }

    let _ = writeln!(md, "\n## {}\n", escape(l.report));
    for paragraph in prepared.paragraphs() {
        let _ = writeln!(md, "{}\n", escape(paragraph));
    }

    let _ = writeln!(md, "## {}\n", escape(l.findings));
    if prepared.findings.is_empty() {
        let _ = writeln!(md, "{}\n", escape(l.no_findings));
    } else {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |\n|---|---|---|---|--:|",
            escape(l.reference),
            escape(l.class),
            escape(l.position),
            escape(l.status),
            escape(l.confidence)
        );
        for f in &prepared.findings {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                escape(&f.reference),
                escape(&f.class),
                escape(&f.position),
                escape(&f.status),
                escape(&f.confidence)
            );
        }
        md.push('\n');
    }

    let mut section = |md: &mut String, title: &str, images: &[PreparedImage]| {
        if images.is_empty() {
            return;
        }
        let _ = writeln!(md, "## {}\n", escape(title));
        for image in images {
            let _ = writeln!(md, "### {}\n", escape(&image.caption));
            match &image.picture {
                Ok(jpeg) => {
                    let path = format!("images/{}.jpg", image.name);
                    let _ = writeln!(md, "![{}]({path})\n", escape(&image.caption));
                    files.push((path, jpeg.bytes.clone()));
                }
                Err(sentence) => {
                    let _ = writeln!(md, "*{}*\n", escape(sentence));
                }
            }
        }
    };
    section(&mut md, l.images, &prepared.images);
    section(&mut md, l.comparison, &prepared.pairs);
    (md, files)
}

/// Escapes every character Markdown could read as syntax (inline HTML
/// included), so text from devices and models stays text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // `(`, `)` and `!` only matter next to `[`/`]`, escaped here.
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_in_text_is_escaped() {
        assert_eq!(escape("a|b <script>"), "a\\|b \\<script\\>");
        assert_eq!(escape("![x](y) &lt;"), "!\\[x\\](y) \\&lt;");
        assert_eq!(escape("line\nbreak"), "line break");
    }
}
