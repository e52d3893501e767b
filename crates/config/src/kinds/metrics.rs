//! `kind: metrics`: each matched event counted into a named time series (hourly
//! buckets in the store), by dimensions taken from the event by JSONPath, e.g.
//! enrollments per model per hour. Read back with `GET /v1/stats/series/{name}`;
//! with `prometheus: true`, its totals are on `/metrics` too, which takes only
//! bounded dimensions: one that names a device is refused there.

use std::collections::BTreeMap;

use crate::kinds::Env;
use crate::load::Origin;
use crate::model::TargetSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{json_path, key, require, Ctx};

/// Most dimensions a series may have.
const MAX_DIMENSIONS: usize = 8;
/// The default and the largest number of distinct dimension sets kept per series.
const DEFAULT_MAX_SERIES: u32 = 1_000;
const MAX_MAX_SERIES: u32 = 100_000;
/// What a dimension that names one device looks like: its key or path holds one
/// of these (a Prometheus series per device grows without bound).
const PER_DEVICE: [&str; 9] = [
    "serial",
    "udid",
    "imei",
    "meid",
    "resources",
    "device_id",
    "deviceid",
    "hostname",
    "mac_address",
];

/// The fields of a `metrics` target.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// The series' name (lowercase letters, digits, `_`), e.g. `enrollments`.
    series: Option<String>,
    /// Dimension name -> JSONPath into the event, e.g. `{model: $.detail.device.model}`
    /// (at most 8; an event without the value counts under `(none)`).
    dimensions: Option<BTreeMap<String, String>>,
    /// Also expose the series' totals on `/metrics` as
    /// `fleetbus_series_total{series="<name>", <dimension>="<value>"}`; refused for a
    /// dimension that names a device (serial, UDID, resources...).
    prometheus: Option<bool>,
    /// Distinct dimension sets kept (default 1000, at most 100000); events of
    /// further sets are counted under `_overflow="true"`.
    max_series: Option<u32>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Validates a target of this kind.
pub(crate) fn validate(fields: Value, o: &Origin, env: &Env<'_>, cx: &mut Ctx<'_>) -> TargetSpec {
    let t: RawMetrics = crate::kinds::read(fields, o, cx);
    require(cx, o, env.name, "series", t.series.is_some());
    let series = t.series.clone().unwrap_or_default();
    if t.series.is_some() && !valid_name(&series) {
        cx.errors.push(o.error(
            &[key("series")],
            format!("{series:?} is not a series name (lowercase letters, digits and _, starting with a letter or _)"),
        ));
    }
    let raw = t.dimensions.clone().unwrap_or_default();
    if raw.len() > MAX_DIMENSIONS {
        cx.errors.push(o.error(
            &[key("dimensions")],
            format!("{} dimensions (at most {MAX_DIMENSIONS})", raw.len()),
        ));
    }
    let prometheus = t.prometheus.unwrap_or(false);
    let mut dimensions = BTreeMap::new();
    for (name, path) in &raw {
        let at = [key("dimensions"), key(name)];
        if !valid_name(name) || name == "series" || name == "_overflow" {
            cx.errors.push(o.error(
                &at,
                format!("{name:?} is not a dimension name (lowercase letters, digits and _; not series or _overflow)"),
            ));
        }
        if prometheus {
            let text = format!("{name} {path}").to_ascii_lowercase();
            if let Some(hit) = PER_DEVICE.iter().find(|w| text.contains(*w)) {
                cx.errors.push(o.error(
                    &at,
                    format!("{path:?} names a device ({hit}): /metrics takes only bounded dimensions, since a Prometheus series per device grows without bound; count by model, OS version or group, or set prometheus: false and read the series from /v1/stats/series"),
                ));
            }
        }
        if let Some(p) = json_path(path, o, &at, cx) {
            dimensions.insert(name.clone(), p);
        }
    }
    let max_series = t.max_series.unwrap_or(DEFAULT_MAX_SERIES);
    if !(1..=MAX_MAX_SERIES).contains(&max_series) {
        cx.errors.push(o.error(
            &[key("max_series")],
            format!("{max_series} is out of range (1 to {MAX_MAX_SERIES})"),
        ));
    }
    TargetSpec::Metrics {
        series,
        dimensions,
        prometheus,
        max_series: max_series.clamp(1, MAX_MAX_SERIES),
    }
}
