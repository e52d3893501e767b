//! The metrics targets' time series: counted by the store in hourly buckets, read
//! back per bucket (`GET /v1/stats/series/{name}`) and as totals (`/metrics`).

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetbus_targets::kinds::metrics::{SeriesFuture, SeriesPoint, SeriesSink};

use super::Engine;
use crate::store::{Millis, Store};
use crate::EngineError;

/// The store's bucket: an hour.
pub const SERIES_BUCKET_MS: Millis = 3_600_000;

/// The sink metrics targets are built with: counts go to the store.
pub(super) struct StoreSeries(pub(super) Arc<dyn Store>);

impl std::fmt::Debug for StoreSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSeries")
    }
}

impl SeriesSink for StoreSeries {
    fn add(&self, point: SeriesPoint) -> SeriesFuture<'_> {
        Box::pin(async move {
            let dims = serde_json::to_string(&point.dimensions).map_err(|e| e.to_string())?;
            let bucket = point.at.div_euclid(SERIES_BUCKET_MS) * SERIES_BUCKET_MS;
            self.0
                .series_add(point.series, bucket, dims, point.count, point.max_series)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A dimension set as stored (a JSON object of strings).
pub type Dimensions = BTreeMap<String, String>;

fn dims(text: &str) -> Dimensions {
    serde_json::from_str(text).unwrap_or_default()
}

impl Engine {
    /// `name`'s counts in `[from, to)`: (hourly bucket start, dimensions, count).
    pub async fn series(
        &self,
        name: String,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Dimensions, u64)>, EngineError> {
        Ok(self
            .inner
            .store
            .series_read(name, from, to)
            .await?
            .into_iter()
            .map(|(b, d, n)| (b, dims(&d), n))
            .collect())
    }

    /// `name`'s totals per dimension set since it began.
    pub async fn series_totals(&self, name: String) -> Result<Vec<(Dimensions, u64)>, EngineError> {
        Ok(self
            .inner
            .store
            .series_totals(name)
            .await?
            .into_iter()
            .map(|(d, n)| (dims(&d), n))
            .collect())
    }
}
