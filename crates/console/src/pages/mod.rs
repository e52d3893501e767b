//! One module per page of the console.

pub mod assets;
pub mod dlq;
pub mod events;
pub mod overview;
pub mod rules;
pub mod tail;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// The outcome events of failed deliveries (a pattern for the archive's counts).
pub const FAILED: &str = r#"{"source":["fleetbus.delivery"],"detail-type":[{"anything-but":["Target Delivery Succeeded"]}]}"#;

/// Now, in milliseconds since the epoch (the archive's unit).
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// An epoch time in milliseconds as `HH:MM` (UTC), for chart labels.
pub fn hh_mm(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!("{:02}:{:02}", t.hour(), t.minute()),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_failed_deliveries_pattern_parses_and_picks_failures_only() {
        let p = fleetbus_pattern::Pattern::parse(super::FAILED).unwrap();
        let ev = |dt: &str| {
            serde_json::json!({"source": "fleetbus.delivery", "detail-type": dt}).to_string()
        };
        let failed = fleetbus_pattern::explain(&p, ev("Target Delivery Failed").as_bytes());
        let ok = fleetbus_pattern::explain(&p, ev("Target Delivery Succeeded").as_bytes());
        assert!(failed.unwrap().matched);
        assert!(!ok.unwrap().matched);
        assert_eq!(super::hh_mm(3_600_000 + 5 * 60_000), "01:05");
    }
}
