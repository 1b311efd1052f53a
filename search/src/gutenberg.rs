//! Project Gutenberg plain-text files: metadata and the book's own text.
//!
//! [`parse`] splits a `.txt` file as published by Project Gutenberg into its
//! metadata ([`BookMeta`]) and its body: the book text with the licence header
//! and footer removed. [`decode`] is the byte-to-text step it starts with.
//! Both are pure and total: any byte string gives a result, none panics.
//!
//! # What is handled
//!
//! **Encodings.** A UTF-8 byte-order mark is dropped; valid UTF-8 is taken as
//! is; anything else is read as Windows-1252 (every byte maps to a character).
//! CRLF and lone CR line endings become LF.
//!
//! **Modern headers** (2000s onwards): labelled fields before the START marker,
//!
//! ```text
//! Title: Peter Pan
//!        Peter Pan and Wendy
//! Author: James M. Barrie
//! Posting Date: June 25, 2008 [EBook #16]
//! Release Date: July, 1991
//! Language: English
//! *** START OF THIS PROJECT GUTENBERG EBOOK PETER PAN ***
//! ```
//!
//! Labels are case-insensitive. A field's value runs on over the following
//! lines up to a blank line: indented lines and unlabelled lines are joined
//! with a space (multi-line titles). The author falls back to `Authors:`, then
//! `Editor:`. The release date is the `Release Date:` value before any `[`
//! (`March, 1994 [EBook #11]` gives `March, 1994`), falling back to
//! `Posting Date:`, then to an unlabelled `May, 1998  [Etext #1321]` line.
//! The ebook number is the first `[EBook #N]`, `[eBook #N]`, `[Etext #N]`,
//! `EBook-No. N` in the header, else the first bare `#N]`.
//!
//! **Old-style headers**, with no `Title:` field: the title (and the author,
//! after `, by `, or a bare ` by `) come from the first line like
//! `The Project Gutenberg EBook of Alice's Adventures in Wonderland, by Lewis
//! Carroll`, `**The Project Gutenberg Etext of Kennedy's Inaugural Address**`,
//! `Project Gutenberg's X, by Y` or `The Project Gutenberg eBook, X, by Y`,
//! including its hard-wrapped continuation and a `(#26 in our series by Y)`
//! note. When the header gives no title or author either, the footer's
//! `End of the Project Gutenberg EBook of X, by Y` line is used.
//!
//! **Markers.** The body starts after the first START marker:
//! `*** START OF THIS PROJECT GUTENBERG EBOOK X ***`,
//! `***START OF THE PROJECT GUTENBERG EBOOK X***` (any case, any spacing,
//! possibly wrapped over two lines), or, in the oldest files, after the
//! `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...*END*` line that closes
//! the legal small print. It ends before the first END marker after that:
//! `*** END OF THIS/THE PROJECT GUTENBERG EBOOK`, `End of the Project Gutenberg
//! EBook of ...`, `End of Project Gutenberg's ...`, `End of Project Gutenberg
//! Etext of ...` (or the German `Ende dieses Projekt Gutenberg ...`). Marker
//! lines are not part of the body.
//!
//! **Missing markers.** Without a START marker, a recognised header block at
//! the top (paragraphs with labelled fields, a Project Gutenberg title line or
//! licence lines) is metadata and the body starts after it; with no such block
//! (a bare text) the body starts at the top and the metadata is empty unless a
//! footer names the book. Without an END marker the body runs to the end.
//!
//! Leading and trailing blank lines are trimmed from the body; the lines in
//! between are kept exactly (LF endings, no BOM).
//!
//! Headers are sometimes wrong (a `Language:` that is not the book's); the
//! parser reports what the file says and does not guess.

use std::borrow::Cow;

/// Metadata of one book, as its header (or, failing that, footer) states it.
///
/// Every value is trimmed with its whitespace runs collapsed to one space; a
/// field that is absent or empty is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookMeta {
    /// The title, continuation lines joined with a space.
    pub title: Option<String>,
    /// The author (or authors, or editor), as written.
    pub author: Option<String>,
    /// The language as named in the header, e.g. `English`.
    pub language: Option<String>,
    /// The release date as written, e.g. `March, 1994` (not parsed).
    pub release_date: Option<String>,
    /// The Project Gutenberg ebook number, e.g. `11` for `[EBook #11]`.
    pub ebook_number: Option<u64>,
}

/// A Project Gutenberg file split into metadata and book text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedBook {
    /// What the header (or footer) says about the book.
    pub meta: BookMeta,
    /// The book text only: between the START and END markers (or the whole
    /// file less a recognised header block), LF line endings, leading and
    /// trailing blank lines removed.
    pub body: String,
    /// Whether a START marker or, without one, a recognised header block was
    /// found at the top.
    pub had_header: bool,
    /// Whether an END marker was found after the body.
    pub had_footer: bool,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How far into the header the old-style title line is looked for, in lines.
const TITLE_LINE_SCAN: usize = 100;
/// How far after the END marker the footer title line is looked for, in lines.
const FOOTER_SCAN: usize = 12;
/// How far a header block without a START marker may reach, in lines.
const HEADER_BLOCK_SCAN: usize = 120;

/// Decodes a book file to text.
///
/// Drops a leading UTF-8 byte-order mark; takes valid UTF-8 as is and decodes
/// anything else as Windows-1252 (every byte maps to a character, so this
/// never fails); turns CRLF and lone CR line endings into LF.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let text: Cow<'_, str> = match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| windows_1252(b)).collect()),
    };
    normalize_newlines(&text)
}

/// Parses a Project Gutenberg file (any bytes) into metadata and body.
///
/// See the [module documentation](self) for the formats recognised. Never
/// panics; a file with no recognisable structure gives empty metadata and the
/// whole (decoded, trimmed) text as body.
pub fn parse(bytes: &[u8]) -> ParsedBook {
    parse_text(&decode(bytes))
}

fn parse_text(text: &str) -> ParsedBook {
    let lines: Vec<&str> = text.split('\n').collect();

    let (header_end, body_start, had_header) = match find_start(&lines) {
        Some((marker, body_start)) => (marker, body_start, true),
        None => match leading_header_block(&lines) {
            Some(end) => (end, end, true),
            None => (0, 0, false),
        },
    };
    let end = (body_start..lines.len()).find(|&i| is_end_marker(lines[i]));
    let body_end = end.unwrap_or(lines.len());

    let header = lines.get(..header_end).unwrap_or_default();
    let footer = match end {
        Some(e) => lines
            .get(e..lines.len().min(e + FOOTER_SCAN))
            .unwrap_or_default(),
        None => &[],
    };
    let body = lines.get(body_start..body_end).unwrap_or_default();

    ParsedBook {
        meta: read_meta(header, footer),
        body: join_trimmed(body),
        had_header,
        had_footer: end.is_some(),
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// The Windows-1252 character for `b`. The five bytes the code page leaves
/// undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to the C1 controls of the same
/// value, as browsers do.
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}',
        '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
        '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}',
        '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn normalize_newlines(s: &str) -> String {
    if !s.contains('\r') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            out.push('\n');
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Markers

/// `s` without the ASCII-case-insensitive prefix `p`, if it has it.
fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| &s[p.len()..])
}

/// The line without surrounding whitespace and asterisks, its inner
/// whitespace runs collapsed, upper-cased; `None` for lines that cannot be a
/// START or END marker (cheap filter: markers are short and begin with S or E
/// after the asterisks).
fn marker_key(line: &str) -> Option<String> {
    if line.len() > 400 {
        return None;
    }
    let core = line.trim_matches(|c: char| c == '*' || c.is_whitespace());
    if !core.starts_with(['S', 's', 'E', 'e']) {
        return None;
    }
    Some(
        core.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase(),
    )
}

/// `*** START OF THIS PROJECT GUTENBERG EBOOK X ***` and its variants.
fn is_start_marker(line: &str) -> bool {
    marker_key(line).is_some_and(|k| {
        [
            "START OF THIS PROJECT GUTENBERG",
            "START OF THE PROJECT GUTENBERG",
            "START OF PROJECT GUTENBERG",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    })
}

/// `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*`: the end
/// of the legal small print, after which the oldest files start the text.
fn is_small_print_end(line: &str) -> bool {
    if line.len() > 400 || !line.trim_start().starts_with('*') {
        return false;
    }
    let compact: String = line
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '*')
        .flat_map(char::to_uppercase)
        .collect();
    compact.starts_with("ENDTHESMALLPRINT")
}

/// `*** END OF THIS PROJECT GUTENBERG EBOOK`, `End of the Project Gutenberg
/// EBook of ...`, `End of Project Gutenberg's ...` and their variants.
fn is_end_marker(line: &str) -> bool {
    marker_key(line).is_some_and(|k| {
        [
            "END OF THIS PROJECT GUTENBERG",
            "END OF THE PROJECT GUTENBERG",
            "END OF PROJECT GUTENBERG",
            "ENDE DIESES PROJEKT GUTENBERG",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    })
}

/// The START marker's line and the first line after it (after a marker
/// wrapped over more lines). A modern START marker wins over the end of the
/// small print, which counts only when no END marker comes before it.
fn find_start(lines: &[&str]) -> Option<(usize, usize)> {
    if let Some(m) = lines.iter().position(|l| is_start_marker(l)) {
        return Some((m, after_marker(lines, m)));
    }
    let m = lines.iter().position(|l| is_small_print_end(l))?;
    if lines[..m].iter().any(|l| is_end_marker(l)) {
        return None;
    }
    Some((m, after_marker(lines, m)))
}

/// The index after a marker line, skipping the rest of a marker wrapped onto
/// the next line or two (`...SONGS OF INNOCENCE AND SONGS OF` / `EXPERIENCE***`).
fn after_marker(lines: &[&str], m: usize) -> usize {
    let next = m + 1;
    if lines[m].trim_end().ends_with('*') {
        return next;
    }
    for (j, line) in lines.iter().enumerate().skip(next).take(2) {
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        if l.ends_with("***") {
            return j + 1;
        }
    }
    next
}

// ---------------------------------------------------------------------------
// Header block without a START marker

/// Without a START marker: the end (exclusive) of the header block at the top,
/// if the file has one. The block starts with the first paragraph, which must
/// hold header material (a labelled field, a Project Gutenberg title or
/// licence line, an ebook number, a bracketed posting note), and ends with the
/// last such paragraph that follows with at most one other paragraph between.
fn leading_header_block(lines: &[&str]) -> Option<usize> {
    let limit = lines.len().min(HEADER_BLOCK_SCAN);
    let mut i = 0;
    let mut end = None;
    let mut gap = 0;
    loop {
        while i < limit && lines[i].trim().is_empty() {
            i += 1;
        }
        if i >= limit {
            break;
        }
        let para_start = i;
        while i < limit && !lines[i].trim().is_empty() {
            i += 1;
        }
        if lines[para_start..i].iter().any(|l| is_header_line(l)) {
            end = Some(i);
            gap = 0;
        } else if end.is_none() || gap == 1 {
            break;
        } else {
            gap += 1;
        }
    }
    end
}

fn is_header_line(line: &str) -> bool {
    let t = line.trim();
    let lower = t.to_lowercase();
    field_line(t).is_some_and(|(label, _)| is_known_label(&label) && label != "note")
        || lower.contains("project gutenberg")
        || lower.contains("gutenberg.org")
        || lower.contains("gutenberg.net")
        || lower.contains("this ebook is for the use of anyone")
        || labelled_ebook_number(t).is_some()
        || (t.starts_with('[')
            && t.ends_with(']')
            && ["posted", "updated", "release"]
                .iter()
                .any(|w| lower.contains(w)))
}

// ---------------------------------------------------------------------------
// Fields

/// Labels of header fields. An indented line with one of these stops the
/// previous field's continuation; other indented `X: y` lines continue it.
const KNOWN_LABELS: &[&str] = &[
    "title",
    "subtitle",
    "author",
    "authors",
    "editor",
    "editors",
    "translator",
    "translators",
    "illustrator",
    "illustrators",
    "compiler",
    "contributor",
    "commentator",
    "release date",
    "posting date",
    "first posted",
    "last updated",
    "original publication",
    "language",
    "character set encoding",
    "produced by",
    "credits",
    "edition",
    "series",
    "note",
    "ebook-no.",
];

fn is_known_label(label: &str) -> bool {
    KNOWN_LABELS.contains(&label)
}

/// `Label: value` with a short label (letters, spaces, `-`, `.`, up to four
/// words) and a value that is empty or starts with whitespace (so URLs such as
/// `http://...` are not fields). The label is returned lower-cased.
fn field_line(line: &str) -> Option<(String, &str)> {
    let t = line.trim_start();
    let colon = t.find(':')?;
    let (label, rest) = (t[..colon].trim_end(), &t[colon + 1..]);
    let ok_label = !label.is_empty()
        && label.len() <= 40
        && label.chars().next().is_some_and(char::is_alphabetic)
        && label
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '.')
        && label.split_whitespace().count() <= 4;
    let ok_value = rest.is_empty() || rest.starts_with(char::is_whitespace);
    (ok_label && ok_value).then(|| (label.to_lowercase(), rest))
}

/// The labelled fields of a header, in order, each with its continuation
/// lines joined by a space.
fn parse_fields(lines: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((label, value)) = field_line(lines[i]) else {
            i += 1;
            continue;
        };
        let mut value = value.trim().to_owned();
        let mut j = i + 1;
        while let Some(&next) = lines.get(j) {
            if next.trim().is_empty() || is_start_marker(next) || is_small_print_end(next) {
                break;
            }
            let indented = next.starts_with([' ', '\t']);
            if let Some((l, _)) = field_line(next)
                && (!indented || is_known_label(&l))
            {
                break;
            }
            value.push(' ');
            value.push_str(next.trim());
            j += 1;
        }
        out.push((label, value));
        i = j;
    }
    out
}

/// Trimmed with whitespace runs collapsed; `None` if nothing is left.
fn clean(s: &str) -> Option<String> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

/// The part of a date field before any `[`, cleaned.
fn date_value(s: &str) -> Option<String> {
    clean(s.split('[').next().unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Metadata

fn read_meta(header: &[&str], footer: &[&str]) -> BookMeta {
    let fields = parse_fields(header);
    let field = |name: &str| {
        fields
            .iter()
            .filter(|(label, _)| label == name)
            .find_map(|(_, v)| clean(v))
    };
    let dated = |name: &str| {
        fields
            .iter()
            .filter(|(label, _)| label == name)
            .find_map(|(_, v)| date_value(v))
    };

    let (old_title, old_author) = header
        .iter()
        .take(TITLE_LINE_SCAN)
        .position(|l| pg_title_remainder(l).is_some())
        .map(|i| title_and_author(header, i, pg_title_remainder))
        .unwrap_or_default();
    let (foot_title, foot_author) = footer
        .iter()
        .position(|l| footer_remainder(l).is_some())
        .map(|i| title_and_author(footer, i, footer_remainder))
        .unwrap_or_default();

    BookMeta {
        title: field("title").or(old_title).or(foot_title),
        author: field("author")
            .or_else(|| field("authors"))
            .or_else(|| field("editor"))
            .or_else(|| field("editors"))
            .or(old_author)
            .or(foot_author),
        language: field("language"),
        release_date: dated("release date")
            .or_else(|| dated("posting date"))
            .or_else(|| unlabelled_date(header)),
        ebook_number: ebook_number(header),
    }
}

/// The text after the Project Gutenberg prefix of an old-style title line:
/// `The Project Gutenberg EBook of X`, `Project Gutenberg's X`,
/// `The Project Gutenberg eBook, X`, `**The Project Gutenberg Etext of X**`.
/// Lines about Project Gutenberg itself (`Project Gutenberg-tm`,
/// `Project Gutenberg Etexts are ...`) do not match.
fn pg_title_remainder(line: &str) -> Option<&str> {
    let s = line.trim().trim_matches('*').trim();
    let s = strip_prefix_ci(s, "the ").unwrap_or(s);
    let s = strip_prefix_ci(s, "project gutenberg")?;
    let (mut s, mut qualified) = match strip_prefix_ci(s, "'s").or_else(|| strip_prefix_ci(s, "’s"))
    {
        Some(r) => (r, true),
        None => (s, false),
    };
    if !(s.is_empty() || s.starts_with([' ', '\t', ','])) {
        return None;
    }
    s = s.trim_start_matches([' ', '\t', ',']);
    for word in ["ebook", "e-book", "etext", "e-text"] {
        if let Some(r) = strip_prefix_ci(s, word)
            && (r.is_empty() || r.starts_with([' ', '\t', ',', ':']))
        {
            s = r;
            qualified = true;
            break;
        }
    }
    if !qualified {
        return None;
    }
    s = s.trim_start_matches([' ', '\t', ',', ':']);
    s = strip_prefix_ci(s, "of ").unwrap_or(s);
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// The text after `End of` in a footer line such as `End of the Project
/// Gutenberg EBook of X, by Y` (not the upper-case `*** END OF ... ***`
/// marker, which often holds a shortened title).
fn footer_remainder(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.starts_with('*') {
        return None;
    }
    pg_title_remainder(strip_prefix_ci(t, "end of ")?)
}

/// Title and author from the title line at `lines[i]` (text after the prefix
/// given by `remainder`), with its hard-wrapped continuation.
fn title_and_author(
    lines: &[&str],
    i: usize,
    remainder: fn(&str) -> Option<&str>,
) -> (Option<String>, Option<String>) {
    let mut text = remainder(lines[i]).unwrap_or_default().trim().to_owned();
    for next in lines.iter().skip(i + 1).take(3) {
        let next = next.trim();
        if next.is_empty() || next.starts_with('*') || !continues_title_line(&text, next) {
            break;
        }
        text.push(' ');
        text.push_str(next);
    }
    split_title_author(&text)
}

/// Whether `next` continues a wrapped old-style title line `text`.
fn continues_title_line(text: &str, next: &str) -> bool {
    let lower = text.to_lowercase();
    let next_lower = next.to_lowercase();
    let has_by = lower.contains(" by ");
    lower.ends_with(" by")
        || lower.ends_with(',')
        || lower.ends_with(" of")
        || next_lower.starts_with("by ")
        || next.starts_with('#')
        || next.starts_with("(#")
        || text.matches('(').count() > text.matches(')').count()
        || (!has_by && next_lower.contains(", by "))
        || (has_by && next.split_whitespace().count() <= 2 && !next.ends_with(['.', ':', ';']))
}

/// Splits `X, by Y` (or `X by Y`, or `X (#8 in our series by Y)`) into title
/// and author.
fn split_title_author(text: &str) -> (Option<String>, Option<String>) {
    // ASCII lower-casing keeps byte offsets, so positions found in `lower`
    // are valid in `text` (the patterns are ASCII).
    let lower = text.to_ascii_lowercase();
    let mut head = text;
    let mut series_author = None;
    if let Some(p) = lower.find("in our series by ") {
        series_author =
            clean(text[p + "in our series by ".len()..].trim_end_matches([')', ' ', '.', ',']));
        head = &text[..p];
        if let Some(h) = head.rfind('#') {
            head = head[..h].trim_end_matches(['(', ' ', '\t']);
        }
    }
    let head_lower = head.to_ascii_lowercase();
    let split = match head_lower.find(", by ") {
        Some(p) => Some((p, p + ", by ".len())),
        None => head_lower.rfind(" by ").map(|p| (p, p + " by ".len())),
    };
    let (title, author) = match split {
        Some((t_end, a_start)) => (&head[..t_end], Some(&head[a_start..])),
        None => (head, None),
    };
    let tidy = |s: &str| clean(s.trim_end_matches([',', ';', ':', '*', ' ', '\t']));
    (tidy(title), author.and_then(tidy).or(series_author))
}

/// An ebook number in a labelled form: `EBook #11`, `eBook #11`, `Etext #3`,
/// `E-text #3`, `EBook-No. 11`, `EBook No. 11`; the earliest in `text`.
fn labelled_ebook_number(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<(usize, u64)> = None;
    for word in ["ebook", "e-book", "etext", "e-text"] {
        for (pos, _) in lower.match_indices(word) {
            if best.is_some_and(|(b, _)| b <= pos) {
                break;
            }
            let rest = lower[pos + word.len()..].trim_start_matches([' ', '\t']);
            let rest = ["#", "-no.", "no.", "number"]
                .iter()
                .find_map(|tag| rest.strip_prefix(tag));
            if let Some(n) = rest.and_then(|r| leading_number(r.trim_start_matches([' ', '\t']))) {
                best = Some((pos, n));
            }
        }
    }
    best.map(|(_, n)| n)
}

/// The number in the first bare `#N]`.
fn bare_ebook_number(text: &str) -> Option<u64> {
    text.match_indices('#').find_map(|(pos, _)| {
        let rest = &text[pos + 1..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && rest[digits..].starts_with(']') {
            leading_number(rest)
        } else {
            None
        }
    })
}

fn leading_number(s: &str) -> Option<u64> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    s[..digits].parse().ok()
}

fn ebook_number(header: &[&str]) -> Option<u64> {
    let text = header.join("\n");
    labelled_ebook_number(&text).or_else(|| bare_ebook_number(&text))
}

/// A date on an unlabelled line with an ebook number, as in old headers:
/// `December, 1974  [Etext #4]`, `Officially released December 31, 1977
/// [Etext #7]`. Only if the text before the bracket holds a four-digit year.
fn unlabelled_date(header: &[&str]) -> Option<String> {
    header.iter().find_map(|line| {
        let bracket = line.find('[')?;
        labelled_ebook_number(&line[bracket..])?;
        let before = line[..bracket].trim();
        let before = strip_prefix_ci(before, "officially released")
            .or_else(|| strip_prefix_ci(before, "released"))
            .unwrap_or(before);
        let has_year = before
            .as_bytes()
            .windows(4)
            .any(|w| w.iter().all(u8::is_ascii_digit));
        if has_year { clean(before) } else { None }
    })
}

// ---------------------------------------------------------------------------
// Body

/// The lines joined with LF, without leading and trailing blank lines.
fn join_trimmed(lines: &[&str]) -> String {
    let is_blank = |l: &&str| l.trim().is_empty();
    let Some(first) = lines.iter().position(|l| !is_blank(l)) else {
        return String::new();
    };
    let last = lines.iter().rposition(|l| !is_blank(l)).unwrap_or(first);
    lines[first..=last].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- hand-written examples ------------------------------------------------

    const MODERN: &str = "\
The Project Gutenberg EBook of Alice's Adventures in Wonderland, by Lewis Carroll

This eBook is for the use of anyone anywhere at no cost and with
almost no restrictions whatsoever.  You may copy it, give it away or
re-use it under the terms of the Project Gutenberg License included
with this eBook or online at www.gutenberg.org


Title: Alice's Adventures in Wonderland

Author: Lewis Carroll

Posting Date: June 25, 2008 [EBook #11]
Release Date: March, 1994
Last Updated: October 6, 2016

Language: English

Character set encoding: UTF-8

*** START OF THIS PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***




ALICE'S ADVENTURES IN WONDERLAND

CHAPTER I. Down the Rabbit-Hole

Alice was beginning to get very tired.


End of Project Gutenberg's Alice's Adventures in Wonderland, by Lewis Carroll

*** END OF THIS PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

***** This file should be named 11.txt or 11.zip *****

Section 1.  General Terms of Use and Redistributing Project Gutenberg-tm
THE FULL PROJECT GUTENBERG LICENSE
";

    #[test]
    fn modern_header() {
        let b = parse(MODERN.as_bytes());
        assert_eq!(
            b.meta,
            BookMeta {
                title: Some("Alice's Adventures in Wonderland".into()),
                author: Some("Lewis Carroll".into()),
                language: Some("English".into()),
                release_date: Some("March, 1994".into()),
                ebook_number: Some(11),
            }
        );
        assert!(b.had_header && b.had_footer);
        assert_eq!(
            b.body,
            "ALICE'S ADVENTURES IN WONDERLAND\n\nCHAPTER I. Down the Rabbit-Hole\n\n\
             Alice was beginning to get very tired."
        );
    }

    #[test]
    fn release_date_before_bracket_and_posting_date_fallback() {
        let m = parse(b"Title: X\nRelease Date: June 25, 2008 [EBook #11]\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody").meta;
        assert_eq!(m.release_date.as_deref(), Some("June 25, 2008"));
        assert_eq!(m.ebook_number, Some(11));
        let m = parse(b"Title: X\nPosting Date: May 1, 2010 [eBook #42]\n***START OF THE PROJECT GUTENBERG EBOOK X***\nbody").meta;
        assert_eq!(m.release_date.as_deref(), Some("May 1, 2010"));
        assert_eq!(m.ebook_number, Some(42));
        let m = parse(b"Title: X\nRelease date: [Etext #3]\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\nbody").meta;
        assert_eq!(m.release_date, None);
        assert_eq!(m.ebook_number, Some(3));
        let m =
            parse(b"Title: X\nEBook-No. 77\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\nbody")
                .meta;
        assert_eq!(m.ebook_number, Some(77));
        let m = parse(
            b"Title: X\nfirst posted [#123]\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\nbody",
        )
        .meta;
        assert_eq!(m.ebook_number, Some(123));
    }

    const OLD_STYLE: &str = "\
**Welcome To The World of Free Plain Vanilla Electronic Texts**

**Etexts Readable By Both Humans and By Computers, Since 1971**


**The Project Gutenberg Etext of Kennedy's Inaugural Address**
*******This file should be named jfk11.txt or jfk11.zip*******

December, 1973  [Etext #3]

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this \"Small Print!\" statement here?  You know: lawyers.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

Vice President Johnson, Mr. Speaker, Mr. Chief Justice,

We observe today not a victory of party.
";

    #[test]
    fn old_style_header() {
        let b = parse(OLD_STYLE.as_bytes());
        assert_eq!(
            b.meta,
            BookMeta {
                title: Some("Kennedy's Inaugural Address".into()),
                author: None,
                language: None,
                release_date: Some("December, 1973".into()),
                ebook_number: Some(3),
            }
        );
        assert!(b.had_header && !b.had_footer);
        assert_eq!(
            b.body,
            "Vice President Johnson, Mr. Speaker, Mr. Chief Justice,\n\nWe observe today not a victory of party."
        );
    }

    #[test]
    fn old_style_title_lines() {
        let meta = |s: &str| {
            let m = parse(s.as_bytes()).meta;
            (m.title, m.author)
        };
        let some = |t: &str, a: &str| (Some(t.to_owned()), Some(a.to_owned()));
        assert_eq!(
            meta(
                "The Project Gutenberg EBook of Alice's Adventures in Wonderland, by Lewis Carroll\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            some("Alice's Adventures in Wonderland", "Lewis Carroll")
        );
        assert_eq!(
            meta(
                "Project Gutenberg’s Romeo and Juliet, by William Shakespeare\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            some("Romeo and Juliet", "William Shakespeare")
        );
        assert_eq!(
            meta(
                "The Project Gutenberg eBook, Songs of Innocence and Songs of Experience,\nby William Blake\n\n***START OF THE PROJECT GUTENBERG EBOOK X***\ntext"
            ),
            some(
                "Songs of Innocence and Songs of Experience",
                "William Blake"
            )
        );
        assert_eq!(
            meta(
                "The Project Gutenberg EBook of Moby Dick; or The Whale, by Herman\nMelville\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            some("Moby Dick; or The Whale", "Herman Melville")
        );
        assert_eq!(
            meta(
                "Project Gutenberg Etext of Macbeth by Shakespeare\nPG has multiple editions of William Shakespeare's Complete Works\n\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\ntext"
            ),
            some("Macbeth", "Shakespeare")
        );
        assert_eq!(
            meta(
                "The Project Gutenberg Etext of Die Leiden des jungen Werther--Buch 1\n#26 in our series by Johann Wolfgang von Goethe\n\n*END*THE SMALL PRINT!  FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\ntext"
            ),
            some(
                "Die Leiden des jungen Werther--Buch 1",
                "Johann Wolfgang von Goethe"
            )
        );
        assert_eq!(
            meta(
                "The Project Gutenberg EBook of Metamorphosis, by Franz Kafka\nTranslated by David Wyllie.\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            some("Metamorphosis", "Franz Kafka")
        );
        // Lines about Project Gutenberg itself are not title lines.
        assert_eq!(
            meta(
                "Project Gutenberg-tm etexts are free.\nProject Gutenberg Etexts are usually created from multiple editions.\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            (None, None)
        );
        // A Title: field wins over the title line.
        assert_eq!(
            meta(
                "The Project Gutenberg EBook of Peter Pan, by J. M. Barrie\n\nTitle: Peter Pan\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ntext"
            ),
            some("Peter Pan", "J. M. Barrie")
        );
    }

    #[test]
    fn no_header_at_all() {
        let text =
            "\n\n第一回     靈根育孕源流出\n\n　　詩曰：\n混沌未分天地亂，茫茫渺渺無人見。\n\n";
        let b = parse(text.as_bytes());
        assert_eq!(b.meta, BookMeta::default());
        assert!(!b.had_header && !b.had_footer);
        assert_eq!(
            b.body,
            "第一回     靈根育孕源流出\n\n　　詩曰：\n混沌未分天地亂，茫茫渺渺無人見。"
        );
    }

    #[test]
    fn footer_only_names_the_book() {
        let text = "Chapter 1\n\nSome text.\n\n\nEnd of the Project Gutenberg EBook of Journey to the West, by Cheng'en Wu\n";
        let b = parse(text.as_bytes());
        assert!(!b.had_header && b.had_footer);
        assert_eq!(b.body, "Chapter 1\n\nSome text.");
        assert_eq!(b.meta.title.as_deref(), Some("Journey to the West"));
        assert_eq!(b.meta.author.as_deref(), Some("Cheng'en Wu"));
        assert_eq!(b.meta.ebook_number, None);
    }

    #[test]
    fn header_block_without_start_marker() {
        let text = "The Project Gutenberg EBook of Dracula, by Bram Stoker\n\n\
                    This eBook is for the use of anyone anywhere at no cost.\n\n\
                    Title: Dracula\n\nAuthor: Bram Stoker\n\n\
                    Release Date: August 16, 2013 [EBook #345]\n\nLanguage: English\n\n\n\
                    DRACULA\n\nCHAPTER I\n\nJonathan Harker's Journal\n";
        let b = parse(text.as_bytes());
        assert!(b.had_header && !b.had_footer);
        assert_eq!(b.meta.title.as_deref(), Some("Dracula"));
        assert_eq!(b.meta.ebook_number, Some(345));
        assert_eq!(b.meta.language.as_deref(), Some("English"));
        assert_eq!(b.body, "DRACULA\n\nCHAPTER I\n\nJonathan Harker's Journal");
    }

    #[test]
    fn bom_and_crlf() {
        let bytes = b"\xEF\xBB\xBFTitle: Caf\xC3\xA9\r\nLanguage: French\r\n\r\n*** START OF THIS PROJECT GUTENBERG EBOOK CAFE ***\r\n\r\nLine one\r\nLine two\rLine three\r\n*** END OF THIS PROJECT GUTENBERG EBOOK CAFE ***\r\nlicence\r\n";
        let d = decode(bytes);
        assert!(!d.contains('\r') && !d.starts_with('\u{FEFF}'));
        let b = parse(bytes);
        assert_eq!(b.meta.title.as_deref(), Some("Café"));
        assert_eq!(b.meta.language.as_deref(), Some("French"));
        assert_eq!(b.body, "Line one\nLine two\nLine three");
        assert!(b.had_header && b.had_footer);
    }

    #[test]
    fn windows_1252_fallback() {
        assert_eq!(decode(b"caf\xe9"), "café");
        assert_eq!(
            decode(b"\x93quoted\x94 \x80 \x81"),
            "\u{201C}quoted\u{201D} € \u{81}"
        );
        assert_eq!(decode(b"\xEF\xBB\xBFna\xefve"), "naïve");
        assert_eq!(decode(b"a\r\r\nb\rc"), "a\n\nb\nc");
        let b = parse(b"Title: Les Mis\xe9rables\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\n\xc0 bient\xf4t");
        assert_eq!(b.meta.title.as_deref(), Some("Les Misérables"));
        assert_eq!(b.body, "À bientôt");
    }

    #[test]
    fn multi_line_title() {
        let text = "Title: Plays by Chekhov, Second Series\n       On the High Road, The Proposal, The Wedding, The Bear, A\n       Tragedian In Spite of Himself\n\nAuthor: Anton Chekhov\n\n*** START OF THIS PROJECT GUTENBERG EBOOK PLAYS ***\nx";
        assert_eq!(
            parse(text.as_bytes()).meta.title.as_deref(),
            Some(
                "Plays by Chekhov, Second Series On the High Road, The Proposal, The Wedding, The Bear, A Tragedian In Spite of Himself"
            )
        );
        // Unindented continuation, stopped by the next field without a blank line.
        let text = "Title: Max und Moritz\nEine Bubengeschichte\nAuthor: Wilhelm Busch\nRelease date: February 26, 2006 [eBook #120]\n                Most recently updated: June 20, 2022\n*** START OF THE PROJECT GUTENBERG EBOOK ***\nx";
        let m = parse(text.as_bytes()).meta;
        assert_eq!(
            m.title.as_deref(),
            Some("Max und Moritz Eine Bubengeschichte")
        );
        assert_eq!(m.author.as_deref(), Some("Wilhelm Busch"));
        assert_eq!(m.release_date.as_deref(), Some("February 26, 2006"));
        assert_eq!(m.ebook_number, Some(120));
        // Empty values are None; Authors:/Editor: are fallbacks for Author:.
        let m = parse(b"Title:   \nAuthor:  \nEditor: Jane Doe\n\n*** START OF THE PROJECT GUTENBERG EBOOK ***\nx").meta;
        assert_eq!(m.title, None);
        assert_eq!(m.author.as_deref(), Some("Jane Doe"));
    }

    #[test]
    fn wrapped_markers_and_marker_variants() {
        let text = "Title: Songs\n\n***START OF THE PROJECT GUTENBERG EBOOK SONGS OF INNOCENCE AND SONGS OF\nEXPERIENCE***\n\nThe text.\n\n***END OF THE PROJECT GUTENBERG EBOOK SONGS OF INNOCENCE AND SONGS OF\nEXPERIENCE***\n";
        assert_eq!(parse(text.as_bytes()).body, "The text.");
        let text = "Title: X\n  *   start   of  the project gutenberg ebook x ***\nThe text.\n            *** END OF THE PROJECT GUTENBERG EBOOK X ***\n";
        let b = parse(text.as_bytes());
        assert_eq!(b.body, "The text.");
        assert!(b.had_footer);
        // A modern START marker wins over a small-print end in the footer.
        let text = "Title: Germinal\n*** START OF THE PROJECT GUTENBERG EBOOK, GERMINAL ***\nText.\n*** END OF THE PROJECT GUTENBERG EBOOK, GERMINAL ***\n*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*\n";
        assert_eq!(parse(text.as_bytes()).body, "Text.");
    }

    #[test]
    fn degenerate_inputs() {
        for input in [
            &b""[..],
            b"\xEF\xBB\xBF",
            b"\r\r\n\n",
            b"*** START OF THIS PROJECT GUTENBERG EBOOK",
            b"*** END OF THIS PROJECT GUTENBERG EBOOK",
            b"*** START OF THE PROJECT GUTENBERG EBOOK\n*** END OF THE PROJECT GUTENBERG EBOOK",
            b"Title:",
            b"Title:\n",
            b"#",
            b"#]",
            b"[EBook #99999999999999999999999]",
            b"The Project Gutenberg EBook of",
            b"End of the Project Gutenberg EBook of , by ",
            b"\xff\xfe\x00T\x00i",
            "The Project Gutenberg EBook of İẞ, by İẞ #2 in our series by ẞ".as_bytes(),
        ] {
            let b = parse(input);
            assert!(!b.body.starts_with('\n') && !b.body.ends_with('\n'));
        }
        assert_eq!(
            parse(b"[EBook #99999999999999999999999]").meta.ebook_number,
            None
        );
    }

    // -- random input ---------------------------------------------------------

    mod random {
        use super::super::*;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just("*** START OF THIS PROJECT GUTENBERG EBOOK X ***".to_owned()),
                Just("***START OF THE PROJECT GUTENBERG EBOOK".to_owned()),
                Just("*** END OF THE PROJECT GUTENBERG EBOOK X ***".to_owned()),
                Just("End of Project Gutenberg's X, by".to_owned()),
                Just("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*END*".to_owned()),
                Just("The Project Gutenberg EBook of é, by ’".to_owned()),
                Just("Project Gutenberg’s".to_owned()),
                Just("#26 in our series by ".to_owned()),
                Just("Title: ".to_owned()),
                Just("       continued ü".to_owned()),
                Just("Author: ÄÖÜ".to_owned()),
                Just("Release Date: [EBook #".to_owned()),
                Just("[Etext #12] ".to_owned()),
                Just("EXPERIENCE***".to_owned()),
                "\\PC{0,40}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let d = decode(&bytes);
                prop_assert!(!d.contains('\r'));
                let b = parse(&bytes);
                prop_assert!(b.body.len() <= d.len());
            }

            #[test]
            fn random_headers_never_panic(
                lines in proptest::collection::vec(line(), 0..40),
                crlf in any::<bool>(),
            ) {
                let text = lines.join(if crlf { "\r\n" } else { "\n" });
                let b = parse(text.as_bytes());
                prop_assert!(!b.body.contains('\r'));
                prop_assert_eq!(b.body.trim_matches('\n'), b.body.as_str());
            }
        }
    }

    // -- the shared corpus ----------------------------------------------------

    mod corpus {
        use super::super::*;
        use std::path::PathBuf;

        fn dir() -> PathBuf {
            match std::env::var_os("REDCLOUD_CORPUS") {
                Some(d) => PathBuf::from(d),
                None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus")),
            }
        }

        /// Lower-cased, curly quotes made straight, whitespace runs collapsed.
        fn norm(s: &str) -> String {
            s.chars()
                .map(|c| match c {
                    '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' => '\'',
                    '\u{201C}' | '\u{201D}' | '\u{201E}' => '"',
                    c => c,
                })
                .collect::<String>()
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        }

        #[derive(Default)]
        struct Tally {
            agree: usize,
            total: usize,
        }

        impl Tally {
            fn ratio(&self) -> f64 {
                if self.total == 0 {
                    1.0
                } else {
                    self.agree as f64 / self.total as f64
                }
            }
        }

        #[test]
        fn corpus_headers_agree_with_catalog() {
            let dir = dir();
            let catalog_path = dir.join("catalog.tsv");
            let catalog = std::fs::read_to_string(&catalog_path).unwrap_or_else(|e| {
                panic!(
                    "cannot read the corpus catalog {}: {e} (expected at ../shared/corpus beside the checkout, or set REDCLOUD_CORPUS)",
                    catalog_path.display()
                )
            });

            let mut fields: [(&str, Tally); 4] = [
                ("title", Tally::default()),
                ("author", Tally::default()),
                ("language", Tally::default()),
                ("ebook_number", Tally::default()),
            ];
            let mut disagreements = Vec::new();
            let mut body_problems = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let (mut with_start, mut with_end) = (0, 0);

            for line in catalog.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                let cols: Vec<&str> = line.split('\t').collect();
                assert!(cols.len() >= 7, "malformed catalog line: {line}");
                let (file, id, title, author, language) =
                    (cols[0], cols[1], cols[2], cols[3], cols[4]);
                seen.insert(file.to_owned());
                let bytes = std::fs::read(dir.join("books").join(file))
                    .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
                let book = parse(&bytes);
                let m = &book.meta;

                let parsed_number = m.ebook_number.map(|n| n.to_string()).unwrap_or_default();
                let checks = [
                    (title, m.title.as_deref().unwrap_or_default()),
                    (author, m.author.as_deref().unwrap_or_default()),
                    (language, m.language.as_deref().unwrap_or_default()),
                    (id, parsed_number.as_str()),
                ];
                for ((name, tally), (expected, got)) in fields.iter_mut().zip(checks) {
                    if expected.trim().is_empty() {
                        continue;
                    }
                    tally.total += 1;
                    if norm(expected) == norm(got) {
                        tally.agree += 1;
                    } else {
                        disagreements.push(format!(
                            "{file}\t{name}\tcatalog={expected:?}\tparsed={got:?}"
                        ));
                    }
                }

                let text = decode(&bytes);
                let has_start = find_start(&text.split('\n').collect::<Vec<_>>()).is_some();
                with_start += usize::from(has_start);
                with_end += usize::from(book.had_footer);
                if book.body.trim().is_empty() {
                    body_problems.push(format!("{file}: empty body"));
                }
                if has_start {
                    for marker in [
                        "PROJECT GUTENBERG LICENSE",
                        "START OF TH",
                        "END OF THE PROJECT GUTENBERG",
                        "END OF THIS PROJECT GUTENBERG",
                    ] {
                        if book.body.contains(marker) {
                            body_problems.push(format!("{file}: body contains {marker:?}"));
                        }
                    }
                }
                if bytes.len() > 50_000 && book.body.len() * 2 < bytes.len() {
                    body_problems.push(format!(
                        "{file}: body is {} bytes of {}",
                        book.body.len(),
                        bytes.len()
                    ));
                }
            }

            // Every book file is parsed, catalogued or not.
            for entry in std::fs::read_dir(dir.join("books")).expect("books directory") {
                let path = entry.expect("directory entry").path();
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if !seen.contains(&name) {
                    let book = parse(&std::fs::read(&path).expect("book file"));
                    println!("not in catalog: {name} (title {:?})", book.meta.title);
                }
            }

            println!(
                "books: {}, with START marker: {with_start}, with END marker: {with_end}",
                seen.len()
            );
            for (name, t) in &fields {
                println!(
                    "{name}: {}/{} agree ({:.1}%)",
                    t.agree,
                    t.total,
                    100.0 * t.ratio()
                );
            }
            println!("disagreements (file, field, catalog, parsed):");
            for d in &disagreements {
                println!("  {d}");
            }
            assert!(
                body_problems.is_empty(),
                "body problems:\n{}",
                body_problems.join("\n")
            );

            let [title, author, language, number] = &fields;
            assert!(
                title.1.ratio() >= 0.90,
                "title agreement {:.3}",
                title.1.ratio()
            );
            assert!(
                author.1.ratio() >= 0.90,
                "author agreement {:.3}",
                author.1.ratio()
            );
            assert!(
                language.1.ratio() >= 0.95,
                "language agreement {:.3}",
                language.1.ratio()
            );
            assert!(
                number.1.ratio() >= 0.90,
                "ebook number agreement {:.3}",
                number.1.ratio()
            );
        }
    }
}
