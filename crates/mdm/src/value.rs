//! Conversions between property-list values and JSON: data becomes base64, dates
//! become RFC 3339 strings, and reading auto-detects XML or binary plists.

use std::io::Cursor;
use std::time::SystemTime;

use base64::Engine as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::MdmError;

/// Deepest nesting accepted when reading a plist (MDM messages nest a handful deep).
pub const MAX_DEPTH: usize = 128;
/// Most values accepted in one plist; binary plists can share objects, so a small
/// file could otherwise expand into billions of values.
pub const MAX_VALUES: usize = 1_000_000;

/// Reads an XML or binary property list.
///
/// Built from the plist crate's event stream with an explicit stack, so hostile input
/// (deep nesting, shared-object expansion) is an error instead of a stack overflow or
/// an out-of-memory.
pub fn read_plist(bytes: &[u8]) -> Result<plist::Value, MdmError> {
    use plist::stream::Event;

    enum Open {
        Array(Vec<plist::Value>),
        Dict(plist::Dictionary, Option<String>),
    }
    let err = |m: String| MdmError::Plist(m);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<plist::Value> = None;
    let mut count = 0usize;
    for event in plist::stream::Reader::new(Cursor::new(bytes)) {
        let event = event.map_err(|e| err(e.to_string()))?;
        count += 1;
        if count > MAX_VALUES {
            return Err(err(format!("more than {MAX_VALUES} values")));
        }
        if root.is_some() {
            return Err(err("data after the end of the plist".into()));
        }
        let done = match event {
            Event::StartArray(_) | Event::StartDictionary(_) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(format!("nested deeper than {MAX_DEPTH} levels")));
                }
                stack.push(match event {
                    Event::StartArray(_) => Open::Array(Vec::new()),
                    _ => Open::Dict(plist::Dictionary::new(), None),
                });
                continue;
            }
            Event::EndCollection => match stack.pop() {
                Some(Open::Array(items)) => plist::Value::Array(items),
                Some(Open::Dict(dict, None)) => plist::Value::Dictionary(dict),
                Some(Open::Dict(_, Some(key))) => {
                    return Err(err(format!("dictionary key {key:?} has no value")))
                }
                None => return Err(err("unbalanced end of collection".into())),
            },
            Event::Boolean(b) => plist::Value::Boolean(b),
            Event::Data(d) => plist::Value::Data(d.into_owned()),
            Event::Date(d) => plist::Value::Date(d),
            Event::Integer(i) => plist::Value::Integer(i),
            Event::Real(r) => plist::Value::Real(r),
            Event::String(s) => {
                // A string in key position of a dictionary is the key.
                if let Some(Open::Dict(_, key @ None)) = stack.last_mut() {
                    *key = Some(s.into_owned());
                    continue;
                }
                plist::Value::String(s.into_owned())
            }
            Event::Uid(u) => plist::Value::Uid(u),
            _ => return Err(err("unsupported plist event".into())),
        };
        match stack.last_mut() {
            None => root = Some(done),
            Some(Open::Array(items)) => items.push(done),
            Some(Open::Dict(dict, key)) => match key.take() {
                Some(k) => {
                    dict.insert(k, done);
                }
                None => return Err(err("dictionary key is not a string".into())),
            },
        }
    }
    if !stack.is_empty() {
        return Err(err("unexpected end of plist".into()));
    }
    root.ok_or_else(|| err("empty plist".into()))
}

/// Writes an XML property list.
pub fn write_xml(value: &plist::Value) -> Result<Vec<u8>, MdmError> {
    let mut out = Vec::new();
    value
        .to_writer_xml(&mut out)
        .map_err(|e| MdmError::Plist(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Writes a binary property list.
pub fn write_binary(value: &plist::Value) -> Result<Vec<u8>, MdmError> {
    let mut out = Vec::new();
    value
        .to_writer_binary(&mut out)
        .map_err(|e| MdmError::Plist(e.to_string()))?;
    Ok(out)
}

/// Converts a plist value to JSON: data as standard base64, dates as RFC 3339 (UTC),
/// non-finite reals as strings (JSON has no NaN), UIDs as numbers.
pub fn plist_to_json(value: &plist::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        plist::Value::Array(items) => J::Array(items.iter().map(plist_to_json).collect()),
        plist::Value::Dictionary(dict) => J::Object(
            dict.iter()
                .map(|(k, v)| (k.clone(), plist_to_json(v)))
                .collect(),
        ),
        plist::Value::Boolean(b) => J::Bool(*b),
        plist::Value::Data(d) => J::String(base64::engine::general_purpose::STANDARD.encode(d)),
        plist::Value::Date(d) => J::String(date_to_rfc3339(*d)),
        plist::Value::Real(r) => serde_json::Number::from_f64(*r)
            .map(J::Number)
            .unwrap_or_else(|| J::String(r.to_string())),
        plist::Value::Integer(i) => {
            if let Some(v) = i.as_signed() {
                J::from(v)
            } else if let Some(v) = i.as_unsigned() {
                J::from(v)
            } else {
                J::Null
            }
        }
        plist::Value::String(s) => J::String(s.clone()),
        plist::Value::Uid(u) => J::from(u.get()),
        _ => J::Null,
    }
}

/// Formats a plist date as RFC 3339 in UTC.
pub fn date_to_rfc3339(date: plist::Date) -> String {
    let st: SystemTime = date.into();
    let odt = OffsetDateTime::from(st);
    odt.format(&Rfc3339)
        .unwrap_or_else(|_| format!("{}", odt.unix_timestamp()))
}

/// Parses an RFC 3339 date for a plist `<date>`.
pub fn rfc3339_to_date(s: &str) -> Option<plist::Date> {
    let odt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some(plist::Date::from(SystemTime::from(odt)))
}

/// Decodes standard base64, with or without padding.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let trimmed: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(&trimmed))
        .ok()
}

/// Encodes bytes as standard base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A short name of a JSON value's type, for error messages.
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a real number",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a dictionary",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_dates_become_json_strings() {
        let mut d = plist::Dictionary::new();
        d.insert("D".into(), plist::Value::Data(b"hi".to_vec()));
        let date = rfc3339_to_date("2024-05-06T07:08:09Z").unwrap();
        d.insert("T".into(), plist::Value::Date(date));
        d.insert("R".into(), plist::Value::Real(f64::NAN));
        let j = plist_to_json(&plist::Value::Dictionary(d));
        assert_eq!(j["D"], "aGk=");
        assert_eq!(j["T"], "2024-05-06T07:08:09Z");
        assert_eq!(j["R"], "NaN");
    }

    #[test]
    fn reads_xml_and_binary() {
        let v = plist::Value::Dictionary(plist::Dictionary::from_iter([(
            "Status".to_string(),
            plist::Value::String("Idle".into()),
        )]));
        assert_eq!(read_plist(&write_xml(&v).unwrap()).unwrap(), v);
        assert_eq!(read_plist(&write_binary(&v).unwrap()).unwrap(), v);
        assert!(read_plist(b"not a plist").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let depth = MAX_DEPTH + 1;
        let xml = format!(
            "<plist version=\"1.0\">{}{}</plist>",
            "<array>".repeat(depth),
            "</array>".repeat(depth)
        );
        let err = read_plist(xml.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 128"), "{err}");
        let ok = format!(
            "<plist version=\"1.0\">{}{}</plist>",
            "<array>".repeat(10),
            "</array>".repeat(10)
        );
        assert!(read_plist(ok.as_bytes()).is_ok());
    }

    #[test]
    fn base64_with_or_without_padding() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("***").is_none());
    }
}
