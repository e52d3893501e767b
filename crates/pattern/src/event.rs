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
    /// The same bytes, checked to be UTF-8.
    s: &'a str,
    i: usize,
}

/// `bytes` as text: checked 16 bytes at a time for the all-ASCII case, by the standard
/// library otherwise.
#[allow(unsafe_code)] // the ASCII fast path, see SAFETY below
fn text(bytes: &[u8]) -> Result<&str, EventError> {
    if find::ascii(bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).map_err(|e| syntax(e.valid_up_to(), "invalid UTF-8"))
    }
}

fn syntax(offset: usize, reason: &'static str) -> EventError {
    EventError::Syntax { offset, reason }
}

/// Byte-class searches over the event, 16 bytes at a time.
// SSE2 scanning: intrinsics are unsafe functions; each call says why it is sound.
#[allow(unsafe_code)]
mod find {
    /// Index of the first byte at or after `i` that is `"`, `\\` or a control character,
    /// or `b.len()`.
    #[inline]
    pub(super) fn special(b: &[u8], mut i: usize) -> usize {
        while i + 16 <= b.len() {
            let m = wide::special(b, i);
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 16;
        }
        i + b[i.min(b.len())..]
            .iter()
            .position(|&c| is_special(c))
            .unwrap_or(b.len().saturating_sub(i))
    }

    /// Whether every byte is below 0x80.
    pub(super) fn ascii(b: &[u8]) -> bool {
        let mut i = 0;
        let mut any = 0u32;
        while let Some(chunk) = b.get(i..i + 64) {
            any |= wide::high64(chunk.try_into().expect("64-byte block"));
            i += 64;
        }
        while i + 16 <= b.len() {
            any |= wide::high(b, i);
            i += 16;
        }
        any == 0 && b[i..].is_ascii()
    }

    #[inline]
    pub(super) fn is_special(c: u8) -> bool {
        c == b'"' || c == b'\\' || c < 0x20
    }

    /// Bit n of the result is set when byte `i + n` is in the class; needs `i + 16 <= b.len()`.
    #[cfg(target_arch = "x86_64")]
    pub(super) mod wide {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };

        #[inline(always)]
        fn load(b: &[u8], i: usize) -> __m128i {
            let chunk: &[u8; 16] = b[i..i + 16].try_into().expect("16-byte chunk");
            // SAFETY: `chunk` is 16 readable bytes and the load has no alignment requirement.
            unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) }
        }

        #[inline(always)]
        pub(in super::super) fn special(b: &[u8], i: usize) -> u32 {
            let v = load(b, i);
            // SAFETY: SSE2 is part of the x86_64 baseline; no memory is touched.
            unsafe {
                let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let bs = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Unsigned v <= 0x1f exactly when max(v, 0x1f) == 0x1f.
                let lim = _mm_set1_epi8(0x1f);
                let ctl = _mm_cmpeq_epi8(_mm_max_epu8(v, lim), lim);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, bs), ctl)) as u32
            }
        }

        #[inline(always)]
        pub(in super::super) fn high(b: &[u8], i: usize) -> u32 {
            // SAFETY: SSE2 is part of the x86_64 baseline; no memory is touched.
            unsafe { _mm_movemask_epi8(load(b, i)) as u32 }
        }

        /// Nonzero when some byte of the block is 0x80 or above.
        #[inline(always)]
        pub(in super::super) fn high64(chunk: &[u8; 64]) -> u32 {
            let (a, b, c, d) = (
                load(chunk, 0),
                load(chunk, 16),
                load(chunk, 32),
                load(chunk, 48),
            );
            // SAFETY: SSE2 is part of the x86_64 baseline; no memory is touched.
            unsafe {
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) as u32
            }
        }

        /// Class masks of a 64-byte block: (quotes, backslashes, control bytes, brackets).
        #[inline(always)]
        pub(in super::super) fn block(chunk: &[u8; 64]) -> (u64, u64, u64, u64) {
            let (mut q, mut bs, mut ctl, mut br) = (0u64, 0u64, 0u64, 0u64);
            for k in 0..4 {
                let v = load(chunk, k * 16);
                // SAFETY: SSE2 is part of the x86_64 baseline; no memory is touched.
                let (mq, mb, mc, mr) = unsafe {
                    let lim = _mm_set1_epi8(0x1f);
                    let up = _mm_or_si128(v, _mm_set1_epi8(0x20));
                    let brackets = _mm_or_si128(
                        _mm_cmpeq_epi8(up, _mm_set1_epi8(b'{' as i8)),
                        _mm_cmpeq_epi8(up, _mm_set1_epi8(b'}' as i8)),
                    );
                    (
                        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))),
                        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))),
                        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, lim), lim)),
                        _mm_movemask_epi8(brackets),
                    )
                };
                let sh = 16 * k as u32;
                q |= u64::from(mq as u16) << sh;
                bs |= u64::from(mb as u16) << sh;
                ctl |= u64::from(mc as u16) << sh;
                br |= u64::from(mr as u16) << sh;
            }
            (q, bs, ctl, br)
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) use portable as wide;

    /// Portable fallback with the same contract (tested against the SIMD version).
    #[cfg(any(test, not(target_arch = "x86_64")))]
    pub(super) mod portable {
        pub(in super::super) fn special(b: &[u8], i: usize) -> u32 {
            mask(&b[i..i + 16], super::is_special)
        }
        pub(in super::super) fn high(b: &[u8], i: usize) -> u32 {
            mask(&b[i..i + 16], |c| c >= 0x80)
        }
        pub(in super::super) fn high64(chunk: &[u8; 64]) -> u32 {
            u32::from(!chunk.is_ascii())
        }
        pub(in super::super) fn block(chunk: &[u8; 64]) -> (u64, u64, u64, u64) {
            let mut m = (0u64, 0u64, 0u64, 0u64);
            for (n, &c) in chunk.iter().enumerate() {
                m.0 |= u64::from(c == b'"') << n;
                m.1 |= u64::from(c == b'\\') << n;
                m.2 |= u64::from(c < 0x20) << n;
                m.3 |= u64::from(matches!(c, b'{' | b'}' | b'[' | b']')) << n;
            }
            m
        }
        fn mask(chunk: &[u8], f: fn(u8) -> bool) -> u32 {
            chunk
                .iter()
                .enumerate()
                .fold(0, |m, (n, &c)| m | (u32::from(f(c)) << n))
        }
    }
}

/// Finds the closing quote of a string whose body starts at `i`: its index and whether
/// the body has escapes. On a bad escape, a control character or the end of input, the
/// offending offset (see [`string_error`]).
#[inline(always)]
fn string_end(b: &[u8], mut i: usize) -> Result<(usize, bool), usize> {
    let mut escaped = false;
    loop {
        i = find::special(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = escape_end(b, i).ok_or(i)?;
            }
            _ => return Err(i),
        }
    }
}

/// Bit i of the result is the XOR of bits 0..=i of `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The index after the escape sequence at `i`, if it is a valid one.
fn escape_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' => b
            .get(i + 2..i + 6)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(i + 6),
        _ => None,
    }
}

/// The error for a string that [`string_end`] stopped at offset `at`.
#[cold]
fn string_error(b: &[u8], at: usize) -> EventError {
    match b.get(at) {
        None => syntax(at, "unterminated string"),
        Some(b'\\') if b.get(at + 1) == Some(&b'u') => syntax(at, "bad \\u escape"),
        Some(b'\\') => syntax(at, "bad escape"),
        Some(_) => syntax(at, "control character in string"),
    }
}

impl<'a> Cursor<'a> {
    /// Skips whitespace; compact JSON has none, so the common case is one compare.
    #[inline(always)]
    fn ws(&mut self) {
        if self.b.get(self.i).is_some_and(|&c| c <= b' ') {
            self.ws_slow();
        }
    }

    fn ws_slow(&mut self) {
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

    #[inline]
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
    #[inline(always)]
    fn string_span(&mut self) -> Result<(usize, usize, bool), EventError> {
        let start = self.i;
        match string_end(self.b, start) {
            Ok((end, escaped)) => {
                self.i = end + 1;
                Ok((start, end, escaped))
            }
            Err(at) => Err(string_error(self.b, at)),
        }
    }

    /// Skips the object or array at the cursor by bracket depth alone: strings are
    /// delimited (escapes and control characters checked) and brackets must pair up, but
    /// the tokens between them are not parsed. Works on 64-byte blocks: a prefix XOR of the
    /// quote bits marks the bytes inside strings, so only brackets outside strings are
    /// visited one by one.
    fn skip_container(&mut self, depth: usize) -> Result<(), EventError> {
        let b = self.b;
        let mut p = self.i;
        // All ones while inside a string at the start of the next block.
        let mut carry = 0u64;
        // One bit per open level, set for objects; MAX_EVENT_DEPTH levels fit.
        let mut kinds: u128 = 0;
        let mut level = 0usize;
        let mut pad = [b' '; 64];
        loop {
            let (q, bs, ctl, br, avail) = match b.get(p..p + 64) {
                Some(c) => {
                    let (q, bs, ctl, br) = find::wide::block(c.try_into().expect("64-byte block"));
                    (q, bs, ctl, br, 64)
                }
                None if b.len() >= 64 => {
                    // Near the end: classify the last 64 bytes and shift `p` down to bit 0.
                    let avail = b.len().saturating_sub(p);
                    let tail = &b[b.len() - 64..];
                    let (q, bs, ctl, br) =
                        find::wide::block(tail.try_into().expect("64-byte block"));
                    let sh = |m: u64| m.checked_shr((64 - avail) as u32).unwrap_or(0);
                    (sh(q), sh(bs), sh(ctl), sh(br), avail)
                }
                None => {
                    let rest = b.get(p..).unwrap_or_default();
                    pad[..rest.len()].copy_from_slice(rest);
                    pad[rest.len()..].fill(b' ');
                    let (q, bs, ctl, br) = find::wide::block(&pad);
                    (q, bs, ctl, br, rest.len())
                }
            };
            // Only the bytes before the first backslash are decided by this block.
            let n = if bs == 0 {
                avail
            } else {
                (bs.trailing_zeros() as usize).min(avail)
            };
            let keep = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            let inside = prefix_xor(q & keep) ^ carry;
            if ctl & inside & keep != 0 {
                let at = p + (ctl & inside & keep).trailing_zeros() as usize;
                return Err(syntax(at, "control character in string"));
            }
            let mut brackets = br & !inside & keep;
            while brackets != 0 {
                let j = brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                let c = b[p + j];
                if c == b'{' || c == b'[' {
                    if depth + level >= MAX_EVENT_DEPTH {
                        return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                    }
                    kinds = (kinds << 1) | u128::from(c == b'{');
                    level += 1;
                } else {
                    if level == 0 || (kinds & 1 == 1) != (c == b'}') {
                        return Err(syntax(p + j, "mismatched bracket"));
                    }
                    kinds >>= 1;
                    level -= 1;
                    if level == 0 {
                        self.i = p + j + 1;
                        return Ok(());
                    }
                }
            }
            // Inside a string after the last decided byte?
            let in_string = if n == 0 {
                carry != 0
            } else {
                (inside >> (n - 1)) & 1 == 1
            };
            if n < avail {
                // A backslash at p + n: valid only as an escape inside a string.
                let at = p + n;
                if !in_string {
                    return Err(syntax(at, "backslash outside a string"));
                }
                p = escape_end(b, at).ok_or_else(|| string_error(b, at))?;
                carry = u64::MAX;
            } else if avail < 64 {
                return Err(syntax(b.len(), "unterminated object or array"));
            } else {
                p += 64;
                carry = if in_string { u64::MAX } else { 0 };
            }
        }
    }

    #[inline(always)]
    fn skip_value(&mut self, depth: usize) -> Result<(), EventError> {
        self.ws();
        match self.peek() {
            Some(b'{' | b'[') => self.skip_container(depth),
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

/// Decodes the escapes of a scanned string body into `out`.
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
        let s = text(bytes)?;
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

    /// The value at the cursor (whitespace skipped), at trie node `node`.
    #[inline(always)]
    fn value<T: PathTrie + ?Sized, F: FnMut(u32, Scalar<'_>, &[Step])>(
        &mut self,
        cur: &mut Cursor<'_>,
        node: u32,
        depth: usize,
        trie: &T,
        sink: &mut F,
    ) -> Result<(), EventError> {
        match cur.peek() {
            Some(b'{') if trie.has_children(node) => {
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                cur.i += 1;
                self.object(cur, node, depth, trie, sink)
            }
            Some(b'[') => {
                if depth >= MAX_EVENT_DEPTH {
                    return Err(EventError::TooDeep(MAX_EVENT_DEPTH));
                }
                cur.i += 1;
                self.array(cur, node, depth, trie, sink)
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
            // An object with nothing named below it.
            Some(b'{') => cur.skip_container(depth),
            None => Err(syntax(cur.i, "unexpected end of input")),
            Some(_) => Err(syntax(cur.i, "expected a value")),
        }
    }

    /// The members of an object at `node` (which has children); the cursor is after `{`.
    fn object<T: PathTrie + ?Sized, F: FnMut(u32, Scalar<'_>, &[Step])>(
        &mut self,
        cur: &mut Cursor<'_>,
        node: u32,
        depth: usize,
        trie: &T,
        sink: &mut F,
    ) -> Result<(), EventError> {
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
            cur.ws();
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

    /// The elements of an array at `node`; the cursor is after `[`.
    fn array<T: PathTrie + ?Sized, F: FnMut(u32, Scalar<'_>, &[Step])>(
        &mut self,
        cur: &mut Cursor<'_>,
        node: u32,
        depth: usize,
        trie: &T,
        sink: &mut F,
    ) -> Result<(), EventError> {
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
            cur.ws();
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
}

#[cfg(test)]
mod tests {
    use super::find::{portable, wide};

    #[test]
    fn simd_classes_agree_with_portable() {
        // Every byte value at every lane, mixed with a pseudo-random background.
        let mut x = 0x9e37_79b9_u32;
        let mut buf = [0u8; 64];
        for round in 0..2048 {
            for (k, c) in buf.iter_mut().enumerate() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *c = if k == round % 64 {
                    (round / 8) as u8
                } else {
                    x as u8
                };
            }
            assert_eq!(wide::block(&buf), portable::block(&buf));
            assert_eq!(wide::high64(&buf) != 0, portable::high64(&buf) != 0);
            for i in 0..=48 {
                assert_eq!(wide::special(&buf, i), portable::special(&buf, i));
                assert_eq!(wide::high(&buf, i), portable::high(&buf, i));
            }
        }
    }
}
