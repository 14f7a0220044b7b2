//! The HTML export: one self-contained file, pictures as `data:` URIs.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::labels::labels;
use super::{Prepared, PreparedImage};

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:2em auto;\
max-width:60em;color:#111;line-height:1.4}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.5em;border-bottom:1px solid #ccc}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}\
table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}\
td.num{text-align:right}figure{margin:1em 0}img{max-width:100%;height:auto}\
figcaption{font-weight:bold;margin-bottom:.3em}.unavailable{font-style:italic;color:#a00}\
@media print{body{margin:0;max-width:none}figure,tr{break-inside:avoid}\
h2{break-after:avoid}}";

/// The whole document.
pub(crate) fn html(prepared: &Prepared) -> String {
    let l = labels(prepared.language);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<dl>\n",
        prepared.language.code(),
        escape(&prepared.title()),
        escape(&prepared.title()),
    );
    for (label, value) in &prepared.facts {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    }
    let _ = writeln!(h, "</dl>\n<h2>{}</h2>", escape(l.report));
    for paragraph in prepared.paragraphs() {
        let _ = writeln!(h, "<p>{}</p>", escape(paragraph));
    }

    let _ = writeln!(h, "<h2>{}</h2>", escape(l.findings));
    if prepared.findings.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", escape(l.no_findings));
    } else {
        let _ = writeln!(
            h,
            "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>",
            escape(l.reference),
            escape(l.class),
            escape(l.position),
            escape(l.status),
            escape(l.confidence)
        );
        for f in &prepared.findings {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(&f.reference),
                escape(&f.class),
                escape(&f.position),
                escape(&f.status),
                escape(&f.confidence)
            );
        }
        let _ = writeln!(h, "</tbody>\n</table>");
    }

    let section = |h: &mut String, title: &str, images: &[PreparedImage]| {
        if images.is_empty() {
            return;
        }
        let _ = writeln!(h, "<h2>{}</h2>", escape(title));
        for image in images {
            let _ = write!(
                h,
                "<figure>\n<figcaption>{}</figcaption>\n",
                escape(&image.caption)
            );
            match &image.picture {
                Ok(jpeg) => {
                    let _ = writeln!(
                        h,
                        "<img src=\"data:image/jpeg;base64,{}\" width=\"{}\" height=\"{}\" alt=\"{}\">",
                        STANDARD.encode(&jpeg.bytes),
                        jpeg.width,
                        jpeg.height,
                        escape(&image.caption)
                    );
                }
                Err(sentence) => {
                    let _ = writeln!(h, "<p class=\"unavailable\">{}</p>", escape(sentence));
                }
            }
            let _ = writeln!(h, "</figure>");
        }
    };
    section(&mut h, l.images, &prepared.images);
    section(&mut h, l.comparison, &prepared.pairs);
    h.push_str("</body>\n</html>\n");
    h
}

/// Escapes text for element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
