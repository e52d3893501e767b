//! The metrics targets' series (and the software-update policy's): `GET /v1/stats/series/{name}` (counts per bucket
//! and dimension set) and their totals on `/metrics` for the series that ask for it
//! (`prometheus: true`, bounded dimensions only).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::Json;
use fleetbus_config::{Config, TargetSpec};
use fleetbus_engine::store::Millis;
use fleetbus_engine::SERIES_BUCKET_MS;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::archive::{bad, known_only, window};
use crate::error::ApiError;
use crate::AppState;

/// Most buckets one answer holds.
const MAX_BUCKETS: i64 = 1_000;

/// The series the running rules count into: name -> (dimension names, exposed).
fn declared(config: &Config) -> BTreeMap<String, (Vec<String>, bool)> {
    let mut out = BTreeMap::new();
    for t in config.rules.iter().flat_map(|r| &r.targets) {
        if let TargetSpec::Metrics {
            series,
            dimensions,
            prometheus,
            ..
        } = &t.spec
        {
            let e = out
                .entry(series.clone())
                .or_insert_with(|| (dimensions.keys().cloned().collect(), false));
            e.1 |= *prometheus;
        }
    }
    // The software-update policy samples its Macs into a series of its own.
    if config.software_update.is_some() {
        out.entry(fleetbus_targets::SOFTWARE_UPDATE_SERIES.to_owned())
            .or_insert_with(|| (vec!["requirement".into(), "state".into()], false));
    }
    out
}

/// `GET /v1/stats/series/{name}?since=&until=&bucket=`: counts per bucket (1h or
/// whole hours, default 1h) and dimension set, `since` default 24 h ago.
pub async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    known_only(&params, &["since", "until", "bucket"])?;
    let config = state.config();
    let all = declared(&config);
    let Some((dimensions, _)) = all.get(&name) else {
        let names: Vec<&str> = all.keys().map(String::as_str).collect();
        return Err(ApiError::not_found(format!(
            "no metrics target counts a series {name:?} (series: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    let now = OffsetDateTime::now_utc();
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bucket_ms = match get("bucket") {
        None => SERIES_BUCKET_MS,
        Some(b) => match fleetbus_config::parse_duration(b) {
            Ok(d) if d.as_millis() as Millis % SERIES_BUCKET_MS == 0 && !d.is_zero() => {
                d.as_millis() as Millis
            }
            _ => {
                return Err(bad(
                    "bucket",
                    format!(
                    "{b:?} is not a whole number of hours (1h, 6h, 1d): series are kept per hour"
                ),
                ))
            }
        },
    };
    let (since, until) = window(get("since"), get("until"), now)?;
    let start = since.div_euclid(bucket_ms) * bucket_ms;
    let buckets = (until - start + bucket_ms - 1) / bucket_ms;
    if buckets > MAX_BUCKETS {
        return Err(bad(
            "bucket",
            format!("{buckets} buckets asked for (at most {MAX_BUCKETS}: a larger bucket or a shorter range)"),
        ));
    }
    let rows = state.engine.series(name.clone(), start, until).await?;
    let mut by_dims: BTreeMap<BTreeMap<String, String>, Vec<u64>> = BTreeMap::new();
    let mut total = 0;
    for (at, dims, n) in rows {
        let i = ((at - start) / bucket_ms) as usize;
        if let Some(slot) = by_dims
            .entry(dims)
            .or_insert_with(|| vec![0; buckets as usize])
            .get_mut(i)
        {
            *slot += n;
            total += n;
        }
    }
    let series: Vec<Value> = by_dims
        .into_iter()
        .map(|(d, counts)| json!({"dimensions": d, "counts": counts}))
        .collect();
    Ok(Json(json!({
        "series": name,
        "dimensions": dimensions,
        "start": start,
        "bucket_ms": bucket_ms,
        "buckets": buckets,
        "total": total,
        "rows": series,
    })))
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `fleetbus_series_total` lines for the series with `prometheus: true`.
pub(crate) async fn exposition(state: &AppState) -> String {
    let config = state.config();
    let mut out = String::new();
    for (name, (_, exposed)) in declared(&config) {
        if !exposed {
            continue;
        }
        let Ok(totals) = state.engine.series_totals(name.clone()).await else {
            continue;
        };
        if out.is_empty() {
            out.push_str("# HELP fleetbus_series_total Events counted by metrics targets, per series and dimension set.\n# TYPE fleetbus_series_total counter\n");
        }
        for (dims, n) in totals {
            let mut labels = format!("series=\"{}\"", label(&name));
            for (k, v) in &dims {
                let _ = write!(labels, ",{k}=\"{}\"", label(v));
            }
            let _ = writeln!(out, "fleetbus_series_total{{{labels}}} {n}");
        }
    }
    out
}
