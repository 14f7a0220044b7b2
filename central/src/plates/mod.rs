//! Licence plates: OCR of plate crops (PP-OCR recognition, CTC decoding), the text-detection fallback, and the vote across frames.
