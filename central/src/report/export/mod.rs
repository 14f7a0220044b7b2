//! Report exports: Markdown, HTML and PDF with annotated images.
