//! Conversions between property-list values and JSON: data becomes base64, dates
//! become RFC 3339 strings, and reading auto-detects XML or binary plists.

use std::io::Cursor;
use std::time::SystemTime;

use base64::Engine as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::MdmError;

/// Reads an XML or binary property list.
pub fn read_plist(bytes: &[u8]) -> Result<plist::Value, MdmError> {
    plist::Value::from_reader(Cursor::new(bytes)).map_err(|e| MdmError::Plist(e.to_string()))
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
    fn base64_with_or_without_padding() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("***").is_none());
    }
}
