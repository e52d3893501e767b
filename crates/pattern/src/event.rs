//! A validating, allocation-free JSON scanner that walks an event once and reports only
//! the leaves whose paths some pattern names; everything else is skipped unparsed.

use crate::cond::Scalar;
use crate::error::EventError;

/// Deepest object/array nesting accepted in an event.
pub const MAX_EVENT_DEPTH: usize = 128;

/// The set of field paths to report, as a trie over field names.
pub(crate) trait PathTrie {
    /// Child of `node` for field name `key`.
    fn child(&self, node: u32, key: &[u8]) -> Option<u32>;
    /// Whether `node` has any children (else objects below it are skipped).
    fn has_children(&self, node: u32) -> bool;
    /// Whether scalars at `node` are reported.
    fn is_leaf(&self, node: u32) -> bool;
}

/// One array element step of a leaf's position: (array instance id, element index).
pub(crate) type Step = (u32, u32);

/// Scanner state reused across events.
#[derive(Default)]
pub(crate) struct Scanner {
    buf: String,
    keybuf: String,
    trail: Vec<Step>,
    /// Trail length where the innermost enclosing object began: later steps are arrays
    /// holding the scalar directly, which must not constrain other leaves.
    cut: usize,
    arrays: u32,
}

struct Cursor<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

fn syntax(offset: usize, reason: &'static str) -> EventError {
    EventError::Syntax { offset, reason }
}

const HI: u64 = 0x8080_8080_8080_8080;
const LO: u64 = 0x0101_0101_0101_0101;

/// Nonzero when any byte of `w` is `"`, `\` or a control character; the lowest set bit
/// is in the first such byte (bits above it may be false positives from borrows).
#[inline]
fn special(w: u64) -> u64 {
    let ctrl = w.wrapping_sub(LO * 0x20) & !w & HI;
    let q = w ^ (LO * b'"' as u64);
    let q = q.wrapping_sub(LO) & !q & HI;
    let bs = w ^ (LO * b'\\' as u64);
    let bs = bs.wrapping_sub(LO) & !bs & HI;
    ctrl | q | bs
}

impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), EventError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(self.i, reason))
        }
    }

    /// Scans a string body after the opening quote. Returns the raw body span and whether it
    /// contains escapes; leaves the cursor after the closing quote.
    #[inline]
    fn string_span(&mut self) -> Result<(usize, usize, bool), EventError> {
        let start = self.i;
        let mut escaped = false;
        let b = self.b;
        let mut i = self.i;
        loop {
            // Eight bytes at a time until a quote, backslash or control byte shows up.
            while i + 8 <= b.len() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[i..i + 8]);
                let m = special(u64::from_le_bytes(w));
                if m != 0 {
                    // Jump straight to the first special byte.
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&c) = b.get(i) else {
                return Err(syntax(i, "unterminated string"));
            };
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b
                                .get(i + 2..i + 6)
                                .ok_or_else(|| syntax(i, "bad \\u escape"))?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(syntax(i, "bad \\u escape"));
                            }
                            i += 6;
                        }
                        _ => return Err(syntax(i, "bad escape")),
                    }
                }
                c if c < 0x20 => return Err(syntax(i, "control character in string")),
                _ => i += 1,
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), EventError> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.expect(b'"', "expected a field name")?;
                    self.string_span()?;
                    self.expect(b':', "expected ':'")?;
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(syntax(self.i, "expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(syntax(self.i, "expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                self.string_span().map(|_| ())
            }
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            None => Err(syntax(self.i, "unexpected end of input")),
            Some(_) => Err(syntax(self.i, "expected a value")),
        }
    }

    fn word(&mut self, w: &[u8]) -> Result<(), EventError> {
        if self.b.get(self.i..self.i + w.len()) == Some(w) {
            self.i += w.len();
            Ok(())
        } else {
            Err(syntax(self.i, "invalid literal"))
        }
    }

    /// Validates JSON number grammar; returns the number's text.
    fn number(&mut self) -> Result<&'a str, EventError> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(syntax(i, "invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return Err(syntax(i, "invalid number"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(syntax(i, "invalid number"));
            }
        }
        self.i = i;
        Ok(&self.s[start..i])
    }
}

/// Decodes the escapes of a validated string body into `out`.
fn unescape(raw: &str, at: usize, out: &mut String) -> Result<(), EventError> {
    out.clear();
    let mut chars = raw.char_indices();
    while let Some((pos, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(syntax(at + pos, "bad escape"));
        };
        let ch = match e {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars).ok_or_else(|| syntax(at + pos, "bad \\u escape"))?;
                if (0xD800..0xDC00).contains(&hi) {
                    let lo = match (chars.next(), chars.next()) {
                        (Some((_, '\\')), Some((_, 'u'))) => hex4(&mut chars),
                        _ => None,
                    }
                    .filter(|lo| (0xDC00..0xE000).contains(lo))
                    .ok_or_else(|| syntax(at + pos, "lone surrogate in \\u escape"))?;
                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    char::from_u32(cp).ok_or_else(|| syntax(at + pos, "bad \\u escape"))?
                } else {
                    char::from_u32(hi)
                        .ok_or_else(|| syntax(at + pos, "lone surrogate in \\u escape"))?
                }
            }
            _ => return Err(syntax(at + pos, "bad escape")),
        };
        out.push(ch);
    }
    Ok(())
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        let (_, c) = chars.next()?;
        v = v * 16 + c.to_digit(16)?;
    }
    Some(v)
}

impl Scanner {
    /// Walks `bytes` (one JSON object) and calls `sink(node, value, trail)` for every scalar
    /// at a reported path. Array elements extend the trail so that callers can require
    /// several leaves to come from the same array element.
    pub(crate) fn scan<T: PathTrie + ?Sized, F: FnMut(u32, Scalar<'_>, &[Step])>(
        &mut self,
        bytes: &[u8],
        trie: &T,
        sink: &mut F,
    ) -> Result<(), EventError> {
        let s = std::str::from_utf8(bytes).map_err(|e| syntax(e.valid_up_to(), "invalid UTF-8"))?;
        let mut cur = Cursor { b: bytes, s, i: 0 };
        self.trail.clear();
        self.cut = 0;
        self.arrays = 0;
        cur.ws();
        if cur.peek() != Some(b'{') {
            // Distinguish "valid JSON but not an object" from garbage.
            cur.skip_value(0)?;
            return Err(EventError::NotObject);
        }
        self.value(&mut cur, 0, 0, trie, sink)?;
        cur.ws();
        if cur.i != bytes.len() {
            return Err(syntax(cur.i, "trailing characters after the event"));
        }
        Ok(())
    }

    fn value<T: PathTrie + ?Sized, F: FnMut(u32, Scalar<'_>, &[Step])>(
        &mut self,
        cur: &mut Cursor<'_>,
        node: u32,
        depth: usize,
        trie: &T,
        sink: &mut F,
    ) -> Result<(), EventError> {
        cur.ws();
        match cur.peek() {
            Some(b'{') => {
                if !trie.has_children(node) {
                    return cur.skip_value(depth);
                }
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                cur.i += 1;
                cur.ws();
                if cur.peek() == Some(b'}') {
                    cur.i += 1;
                    return Ok(());
                }
                // Errors abort the whole scan, so only the Ok exit restores `cut`.
                let saved = self.cut;
                self.cut = self.trail.len();
                loop {
                    cur.expect(b'"', "expected a field name")?;
                    let (a, z, esc) = cur.string_span()?;
                    let child = if esc {
                        unescape(&cur.s[a..z], a, &mut self.keybuf)?;
                        trie.child(node, self.keybuf.as_bytes())
                    } else {
                        trie.child(node, &cur.b[a..z])
                    };
                    cur.expect(b':', "expected ':'")?;
                    match child {
                        Some(c) => self.value(cur, c, depth + 1, trie, sink)?,
                        None => cur.skip_value(depth + 1)?,
                    }
                    cur.ws();
                    match cur.peek() {
                        Some(b',') => cur.i += 1,
                        Some(b'}') => {
                            cur.i += 1;
                            self.cut = saved;
                            return Ok(());
                        }
                        _ => return Err(syntax(cur.i, "expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                cur.i += 1;
                cur.ws();
                if cur.peek() == Some(b']') {
                    cur.i += 1;
                    return Ok(());
                }
                let id = self.arrays;
                self.arrays = self.arrays.wrapping_add(1);
                let mut idx = 0u32;
                loop {
                    self.trail.push((id, idx));
                    let r = self.value(cur, node, depth + 1, trie, sink);
                    self.trail.pop();
                    r?;
                    idx = idx.wrapping_add(1);
                    cur.ws();
                    match cur.peek() {
                        Some(b',') => cur.i += 1,
                        Some(b']') => {
                            cur.i += 1;
                            return Ok(());
                        }
                        _ => return Err(syntax(cur.i, "expected ',' or ']'")),
                    }
                }
            }
            _ if !trie.is_leaf(node) => cur.skip_value(depth),
            Some(b'"') => {
                cur.i += 1;
                let (a, z, esc) = cur.string_span()?;
                if esc {
                    unescape(&cur.s[a..z], a, &mut self.buf)?;
                    sink(node, Scalar::Str(&self.buf), &self.trail[..self.cut]);
                } else {
                    sink(node, Scalar::Str(&cur.s[a..z]), &self.trail[..self.cut]);
                }
                Ok(())
            }
            Some(b't') => {
                cur.word(b"true")?;
                sink(node, Scalar::Bool(true), &self.trail[..self.cut]);
                Ok(())
            }
            Some(b'f') => {
                cur.word(b"false")?;
                sink(node, Scalar::Bool(false), &self.trail[..self.cut]);
                Ok(())
            }
            Some(b'n') => {
                cur.word(b"null")?;
                sink(node, Scalar::Null, &self.trail[..self.cut]);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let at = cur.i;
                let text = cur.number()?;
                let x: f64 = text.parse().map_err(|_| syntax(at, "invalid number"))?;
                if !x.is_finite() {
                    return Err(syntax(at, "number out of range"));
                }
                sink(node, Scalar::Num(x), &self.trail[..self.cut]);
                Ok(())
            }
            None => Err(syntax(cur.i, "unexpected end of input")),
            Some(_) => Err(syntax(cur.i, "expected a value")),
        }
    }
}
