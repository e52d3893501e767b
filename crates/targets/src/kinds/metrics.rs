//! The metrics target: counts each delivered event into a named series, in the
//! hour it was received, under the dimensions its JSONPaths take from the event.
//! The counting itself is the [`SeriesSink`]'s (the engine's store): a target
//! built without one (`fleetbus validate`) refuses to deliver.
//!
//! A delivery retried after a crash between the count and the delivery's record
//! may count its event twice: series are for trends, not ledgers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fleetbus_config::{JsonPath, Target, TargetSpec};
use serde_json::Value;

use super::{BuildContext, Deliver, DeliverFuture};
use crate::{BuildError, Delivered, DeliveryContext, DeliveryError, Payload};

/// The value of a dimension the event does not have.
pub const NONE: &str = "(none)";

/// One count: `count` events of series `series` at `at` (ms), under `dimensions`
/// (name -> value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesPoint {
    pub series: String,
    pub dimensions: BTreeMap<String, String>,
    pub at: i64,
    pub count: u64,
    /// Distinct dimension sets the series keeps (see the target's `max_series`).
    pub max_series: u32,
}

/// The future of one count.
pub type SeriesFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where metrics targets count (the engine gives its store).
pub trait SeriesSink: Send + Sync + std::fmt::Debug {
    fn add(&self, point: SeriesPoint) -> SeriesFuture<'_>;
}

#[derive(Debug)]
struct MetricsTarget {
    series: String,
    dimensions: BTreeMap<String, JsonPath>,
    max_series: u32,
    sink: Option<Arc<dyn SeriesSink>>,
}

pub(crate) fn build(t: &Target, cx: &BuildContext<'_>) -> Result<Box<dyn Deliver>, BuildError> {
    let TargetSpec::Metrics {
        series,
        dimensions,
        max_series,
        ..
    } = &t.spec
    else {
        return Err(super::wrong_spec(t, "metrics"));
    };
    Ok(Box::new(MetricsTarget {
        series: series.clone(),
        dimensions: dimensions.clone(),
        max_series: *max_series,
        sink: cx.series.cloned(),
    }))
}

/// A dimension's value: a string as is, another JSON value as its JSON text.
fn text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => NONE.to_owned(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

impl MetricsTarget {
    fn point(&self, ctx: &DeliveryContext<'_>) -> SeriesPoint {
        let doc = ctx.event.event.to_value();
        SeriesPoint {
            series: self.series.clone(),
            dimensions: self
                .dimensions
                .iter()
                .map(|(name, path)| (name.clone(), text(path.select(&doc))))
                .collect(),
            at: (ctx.event.meta.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
            count: 1,
            max_series: self.max_series,
        }
    }
}

impl Deliver for MetricsTarget {
    fn deliver<'a>(
        &'a self,
        _payload: &'a Payload,
        ctx: &'a DeliveryContext<'_>,
    ) -> DeliverFuture<'a> {
        Box::pin(async move {
            let Some(sink) = &self.sink else {
                return Err(DeliveryError::Permanent(
                    "metrics: no series store here (only fleetbus serve counts)".into(),
                ));
            };
            sink.add(self.point(ctx))
                .await
                .map_err(|e| DeliveryError::Retryable(format!("metrics: counting failed: {e}")))?;
            Ok(Delivered {
                status: "counted".into(),
                emitted: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_event::{Event, Meta, StoredEvent};
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Points(Mutex<Vec<SeriesPoint>>);

    impl SeriesSink for Points {
        fn add(&self, point: SeriesPoint) -> SeriesFuture<'_> {
            self.0.lock().unwrap().push(point);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn an_event_is_counted_under_the_values_its_paths_select() {
        let config = fleetbus_config::load_str(
            "c.yaml",
            "rules:
  - name: r
    event_pattern: {source: [mdm]}
    targets:
      - id: m
        kind: metrics
        series: enrollments
        dimensions: {model: $.detail.model, os: $.detail.os, missing: $.detail.nope}
",
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let points = Arc::new(Points::default());
        let sink: Arc<dyn SeriesSink> = points.clone();
        let cx = BuildContext::new(&config.connections).with_series(Some(&sink));
        let target = build(&config.rules[0].targets[0], &cx).unwrap();
        let mut detail = serde_json::Map::new();
        detail.insert("model".into(), "MacBookPro18,3".into());
        detail.insert("os".into(), serde_json::json!(15.1));
        let stored = StoredEvent {
            event: Event::new("mdm", "Enrolled", detail),
            meta: Meta::ingested("default", "test"),
        };
        let ctx = DeliveryContext {
            event: &stored,
            rule: "r",
            target: "m",
            attempt: 1,
            idempotency_key: "k",
        };
        let payload =
            crate::transform::apply(&fleetbus_config::Input::Event, &stored, "r").unwrap();
        let done = target.deliver(&payload, &ctx).await.unwrap();
        assert_eq!(done.status, "counted");
        let got = points.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].series, "enrollments");
        let dims: Vec<(&str, &str)> = got[0]
            .dimensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            dims,
            [
                ("missing", NONE),
                ("model", "MacBookPro18,3"),
                ("os", "15.1")
            ]
        );
        // Without a sink (fleetbus validate) nothing is counted, and it says why.
        let bare = build(
            &config.rules[0].targets[0],
            &BuildContext::new(&config.connections),
        )
        .unwrap();
        let err = bare.deliver(&payload, &ctx).await.unwrap_err();
        assert!(err.to_string().contains("no series store"), "{err}");
    }
}
