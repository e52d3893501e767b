//! Streaming reader of `log show --style json` (one big JSON array, pretty-printed) and
//! `--style ndjson` (one object per line) output, in constant memory.
//!
//! The reader yields the raw bytes of one entry at a time; parse them with
//! [`LogEntry::parse`](crate::LogEntry::parse). Lines that are not part of an entry (the
//! `Filtering the log data using ...` header `log` prints, garbage, truncated entries) are
//! skipped and counted in [`ReadStats::junk_lines`]. Gzip input is detected by its magic
//! bytes.

use std::io::{self, BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;

use crate::error::ReadError;
use crate::LogEntry;

/// Largest entry kept; a bigger one is dropped and counted as junk, so memory stays bounded
/// whatever the input.
pub const DEFAULT_MAX_ENTRY: usize = 8 * 1024 * 1024;

const BUF_CAPACITY: usize = 256 * 1024;

/// Counters of one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Entries yielded (parsed successfully, when read through [`LogReader::next_entry`]).
    pub entries: u64,
    /// Lines (or entries) skipped: not JSON, invalid JSON, truncated or oversized.
    pub junk_lines: u64,
    /// Bytes read after decompression.
    pub bytes: u64,
    /// The entry count of `log show --style ndjson`'s closing `{"count":N,"finished":1}`
    /// line, when the input had one (it is a trailer, not an entry).
    pub trailer_count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not decided yet: looking at the first significant line.
    Detect,
    /// One entry per line (`--style ndjson`).
    Lines,
    /// Entries spread over lines, possibly inside a JSON array (`--style json`).
    Scan,
}

/// `N` when `record` is the line `log show --style ndjson` ends with,
/// `{"count":N,"finished":1}`; checked on the bytes (cheap, for every record) and
/// then parsed, so only an object of exactly those two keys counts.
fn trailer_count(record: &[u8]) -> Option<u64> {
    let t = trim(record);
    if t.len() > 64 || !t.starts_with(b"{\"count\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Trailer {
        count: u64,
        #[allow(dead_code)]
        finished: u64,
    }
    serde_json::from_slice::<Trailer>(t).ok().map(|t| t.count)
}

/// Streaming entry reader over any [`BufRead`].
pub struct LogReader<R> {
    inner: R,
    mode: Mode,
    record: Vec<u8>,
    /// A significant line read while detecting the mode, to hand out first.
    stash: Option<Vec<u8>>,
    stats: ReadStats,
    max_entry: usize,
}

/// Opens any reader, decompressing gzip when the input starts with its magic bytes.
pub fn open<'a, R: Read + 'a>(reader: R) -> io::Result<LogReader<Box<dyn BufRead + 'a>>> {
    let mut buffered = BufReader::with_capacity(BUF_CAPACITY, reader);
    let head = buffered.fill_buf()?;
    let inner: Box<dyn BufRead + 'a> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            BUF_CAPACITY,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(LogReader::new(inner))
}

/// What one bounded line read produced.
enum Line {
    Eof,
    /// The line (without its newline) is in the target buffer.
    Full,
    /// The line was longer than the limit and was discarded.
    TooLong,
}

impl<R: BufRead> LogReader<R> {
    /// Reads from `inner` as is (no gzip detection; see [`open`]).
    pub fn new(inner: R) -> Self {
        LogReader {
            inner,
            mode: Mode::Detect,
            record: Vec::new(),
            stash: None,
            stats: ReadStats::default(),
            max_entry: DEFAULT_MAX_ENTRY,
        }
    }

    /// Sets the largest entry kept (bytes).
    pub fn with_max_entry(mut self, max: usize) -> Self {
        self.max_entry = max.max(2);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// Counts the last record as junk instead of an entry (e.g. it is not valid JSON).
    pub fn reject_last(&mut self) {
        self.stats.entries = self.stats.entries.saturating_sub(1);
        self.stats.junk_lines += 1;
    }

    /// The raw bytes of the next entry (one JSON object), or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>, ReadError> {
        if !self.advance()? {
            return Ok(None);
        }
        self.stats.entries += 1;
        Ok(Some(&self.record))
    }

    /// Calls `f` with every entry that parses (raw bytes and parsed entry); entries that do
    /// not parse are counted as junk. Stops early when `f` returns `false`.
    pub fn for_each_entry<F>(&mut self, mut f: F) -> Result<ReadStats, ReadError>
    where
        F: FnMut(&[u8], &LogEntry<'_>) -> bool,
    {
        while self.advance()? {
            match LogEntry::parse(&self.record) {
                Ok(entry) => {
                    self.stats.entries += 1;
                    if !f(&self.record, &entry) {
                        break;
                    }
                }
                Err(_) => self.stats.junk_lines += 1,
            }
        }
        Ok(self.stats)
    }

    /// Loads the next record into `self.record`, passing over `log`'s trailer.
    fn advance(&mut self) -> Result<bool, ReadError> {
        while self.advance_raw()? {
            match trailer_count(&self.record) {
                Some(n) => self.stats.trailer_count = Some(n),
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Loads the next record, whatever it is, into `self.record`.
    fn advance_raw(&mut self) -> Result<bool, ReadError> {
        loop {
            match self.mode {
                Mode::Detect => {
                    if !self.detect()? {
                        return Ok(false);
                    }
                }
                Mode::Lines => return self.next_line_record(),
                Mode::Scan => return self.next_scanned_record(),
            }
        }
    }

    /// Reads lines until one shows the format; `false` at the end of input.
    fn detect(&mut self) -> Result<bool, ReadError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line_bounded(&mut self.inner, &mut line, self.max_entry, &mut self.stats)? {
                Line::Eof => return Ok(false),
                Line::TooLong => self.stats.junk_lines += 1,
                Line::Full => {
                    let t = trim(&line);
                    if t.is_empty() {
                        continue;
                    }
                    if t[0] == b'{' && trim_separators(t).ends_with(b"}") {
                        self.mode = Mode::Lines;
                        self.stash = Some(line);
                        return Ok(true);
                    }
                    if t[0] == b'[' || t[0] == b'{' {
                        self.mode = Mode::Scan;
                        // Re-feed this line to the scanner.
                        line.push(b'\n');
                        self.stash = Some(line);
                        return Ok(true);
                    }
                    self.stats.junk_lines += 1;
                }
            }
        }
    }

    fn next_line_record(&mut self) -> Result<bool, ReadError> {
        loop {
            let line = match self.stash.take() {
                Some(line) => {
                    self.record = line;
                    Line::Full
                }
                None => {
                    self.record.clear();
                    read_line_bounded(
                        &mut self.inner,
                        &mut self.record,
                        self.max_entry,
                        &mut self.stats,
                    )?
                }
            };
            match line {
                Line::Eof => return Ok(false),
                Line::TooLong => self.stats.junk_lines += 1,
                Line::Full => {
                    let t = trim_separators(trim(&self.record));
                    if t.is_empty() {
                        continue;
                    }
                    if t.first() == Some(&b'{') && t.last() == Some(&b'}') {
                        let start = t.as_ptr() as usize - self.record.as_ptr() as usize;
                        let len = t.len();
                        self.record.copy_within(start..start + len, 0);
                        self.record.truncate(len);
                        return Ok(true);
                    }
                    self.stats.junk_lines += 1;
                }
            }
        }
    }

    /// Scans for the next top-level object, tracking strings and nesting.
    fn next_scanned_record(&mut self) -> Result<bool, ReadError> {
        let mut scanner = Scanner::default();
        self.record.clear();
        if let Some(stash) = self.stash.take() {
            if let Some(done) =
                scanner.feed(&stash, &mut self.record, self.max_entry, &mut self.stats)
            {
                // The first line held a whole entry; the rest of it is re-stashed.
                let rest = stash[done..].to_vec();
                if !rest.is_empty() {
                    self.stash = Some(rest);
                }
                if scanner.take_complete() {
                    return Ok(true);
                }
            }
        }
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            };
            if buf.is_empty() {
                if scanner.depth > 0 || scanner.junk_line {
                    // A truncated entry or a junk last line.
                    self.stats.junk_lines += 1;
                }
                return Ok(false);
            }
            let n = buf.len();
            let used = scanner
                .feed(buf, &mut self.record, self.max_entry, &mut self.stats)
                .unwrap_or(n);
            self.stats.bytes += used as u64;
            self.inner.consume(used);
            if scanner.take_complete() {
                return Ok(true);
            }
        }
    }
}

/// Byte-level state of the object scanner.
#[derive(Debug, Default)]
struct Scanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Inside a line of junk at top level: skip to its newline.
    junk_line: bool,
    /// The current entry grew past the limit: track structure but keep no bytes.
    discarding: bool,
    complete: bool,
}

impl Scanner {
    fn take_complete(&mut self) -> bool {
        std::mem::take(&mut self.complete)
    }

    /// Feeds bytes; returns `Some(n)` when an entry completed after `n` bytes (the rest is
    /// not consumed), `None` when all bytes were used.
    fn feed(
        &mut self,
        buf: &[u8],
        record: &mut Vec<u8>,
        max: usize,
        stats: &mut ReadStats,
    ) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            if self.depth == 0 {
                if self.junk_line {
                    match memchr::memchr(b'\n', &buf[i..]) {
                        Some(p) => {
                            i += p + 1;
                            self.junk_line = false;
                            stats.junk_lines += 1;
                            continue;
                        }
                        None => return None,
                    }
                }
                let b = buf[i];
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' => i += 1,
                    b'{' => {
                        self.depth = 1;
                        self.discarding = false;
                        record.clear();
                        record.push(b'{');
                        i += 1;
                    }
                    _ => self.junk_line = true,
                }
                continue;
            }
            // Inside an entry: jump to the next byte that can change the state.
            let rest = &buf[i..];
            let step = if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    1
                } else {
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(p) => {
                            if rest[p] == b'\\' {
                                self.escaped = true;
                            } else {
                                self.in_string = false;
                            }
                            p + 1
                        }
                        None => rest.len(),
                    }
                }
            } else {
                match memchr::memchr3(b'"', b'{', b'}', rest) {
                    Some(p) => {
                        match rest[p] {
                            b'"' => self.in_string = true,
                            b'{' => self.depth += 1,
                            _ => self.depth -= 1,
                        }
                        p + 1
                    }
                    None => rest.len(),
                }
            };
            if !self.discarding {
                if record.len() + step > max {
                    self.discarding = true;
                    record.clear();
                } else {
                    record.extend_from_slice(&rest[..step]);
                }
            }
            i += step;
            if self.depth == 0 {
                if self.discarding {
                    stats.junk_lines += 1;
                    self.discarding = false;
                    continue;
                }
                self.complete = true;
                return Some(i);
            }
        }
        None
    }
}

/// Reads one line into `out` (without the newline), never holding more than `max` bytes.
fn read_line_bounded<R: BufRead>(
    inner: &mut R,
    out: &mut Vec<u8>,
    max: usize,
    stats: &mut ReadStats,
) -> Result<Line, ReadError> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match inner.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Full,
            });
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', buf) {
            Some(p) => (&buf[..p], p + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if out.len() + chunk.len() > max {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        stats.bytes += used as u64;
        inner.consume(used);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Strips the array punctuation a line of `--style json` output may carry (`[{...},`).
fn trim_separators(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"[").unwrap_or(b).trim_ascii();
    let b = b.strip_suffix(b"]").unwrap_or(b).trim_ascii();
    b.strip_suffix(b",").unwrap_or(b).trim_ascii()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(input: &[u8], max: usize) -> (Vec<String>, ReadStats) {
        let mut r = open(input).unwrap().with_max_entry(max);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(String::from_utf8_lossy(rec).into_owned());
        }
        (out, r.stats())
    }

    const PRETTY: &str = "Filtering the log data using \"subsystem IN {\"a\"}\"\nSkipping info and debug messages, pass --info and/or --debug to include.\n[{\n  \"eventMessage\" : \"a { b } \\\" c\",\n  \"processID\" : 1\n},{\n  \"eventMessage\" : \"second\",\n  \"backtrace\" : { \"frames\" : [ { \"imageOffset\" : 1 } ] }\n}]\n";

    #[test]
    fn json_array_style() {
        let (recs, stats) = read_all(PRETTY.as_bytes(), 1 << 20);
        assert_eq!(recs.len(), 2);
        assert!(recs[0].starts_with('{') && recs[0].ends_with('}'));
        assert!(recs[1].contains("\"frames\""));
        assert_eq!(stats.junk_lines, 2);
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, PRETTY.len() as u64);
    }

    #[test]
    fn ndjson_style_with_junk() {
        let input = "{\"a\":1}\n\nnot json\n{\"b\":2}\r\n{\"c\":\n{\"d\":4}";
        let (recs, stats) = read_all(input.as_bytes(), 1 << 20);
        assert_eq!(recs, ["{\"a\":1}", "{\"b\":2}", "{\"d\":4}"]);
        assert_eq!(stats.junk_lines, 2);
    }

    #[test]
    fn gzip_detected() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(PRETTY.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let (recs, _) = read_all(&bytes, 1 << 20);
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn oversized_entries_are_dropped() {
        let big = format!("{{\"m\":\"{}\"}}\n{{\"ok\":1}}\n", "x".repeat(100));
        let (recs, stats) = read_all(big.as_bytes(), 50);
        assert_eq!(recs, ["{\"ok\":1}"]);
        assert_eq!(stats.junk_lines, 1);
        let pretty = format!("[{{\n\"m\":\"{}\"\n}},{{\n\"ok\":1\n}}]", "x".repeat(100));
        let (recs, stats) = read_all(pretty.as_bytes(), 50);
        assert_eq!(recs, ["{\n\"ok\":1\n}"]);
        assert_eq!(stats.junk_lines, 1);
    }

    #[test]
    fn truncated_array_counts_junk() {
        let (recs, stats) = read_all(b"[{\"a\":1},{\"b\":", 1 << 20);
        assert_eq!(recs, ["{\"a\":1}"]);
        assert_eq!(stats.junk_lines, 1);
        let (recs, _) = read_all(b"", 1 << 20);
        assert!(recs.is_empty());
        let (recs, _) = read_all(b"[]\n", 1 << 20);
        assert!(recs.is_empty());
    }

    #[test]
    fn small_reads_across_chunk_boundaries() {
        // One byte at a time through a tiny buffer exercises every split point.
        let reader = BufReader::with_capacity(1, PRETTY.as_bytes());
        let mut r = LogReader::new(reader);
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            assert!(LogEntry::parse(rec).is_ok());
            n += 1;
        }
        assert_eq!(n, 2);
        let reader = BufReader::with_capacity(3, "{\"a\":1}\n{\"b\":2}\n".as_bytes());
        let mut r = LogReader::new(reader);
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn the_ndjson_trailer_is_not_an_entry() {
        let text =
            "{\"eventMessage\":\"a\"}\n{\"eventMessage\":\"b\"}\n{\"count\":2,\"finished\":1}\n";
        let mut r = open(text.as_bytes()).unwrap();
        let mut n = 0;
        let stats = r
            .for_each_entry(|_, _| {
                n += 1;
                true
            })
            .unwrap();
        assert_eq!((n, stats.entries, stats.junk_lines), (2, 2, 0));
        assert_eq!(stats.trailer_count, Some(2));
        // Through the raw-record path too.
        let mut r = open(text.as_bytes()).unwrap();
        let mut records = 0;
        while r.next_record().unwrap().is_some() {
            records += 1;
        }
        assert_eq!(records, 2);
        // An entry that merely has a count field is still an entry.
        let mut r =
            open("{\"count\":2,\"finished\":1,\"eventMessage\":\"x\"}\n".as_bytes()).unwrap();
        assert!(r.next_record().unwrap().is_some());
    }

    #[test]
    fn for_each_entry_counts_invalid_json() {
        let mut r = open("{\"a\":1}\n{nope}\n{\"b\":2}\n".as_bytes()).unwrap();
        let mut n = 0;
        let stats = r
            .for_each_entry(|_, _| {
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.junk_lines, 1);
    }
}
