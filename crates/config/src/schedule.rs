//! EventBridge schedule expressions: `rate(5 minutes)` and
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, evaluated in UTC.

use std::fmt;

use time::{Date, Duration, Month, OffsetDateTime, Time, Weekday};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `seconds`, counted from the engine's start.
    Rate {
        seconds: u64,
        text: String,
    },
    Cron(Box<Cron>),
}

/// One cron field's allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set(Vec<bool>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    Any,
    Set(Set),
    Last,
    /// Nearest weekday to the day; `LW` is the last weekday of the month.
    Weekday(u8),
    LastWeekday,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    Any,
    /// Indexed 1 = Sunday .. 7 = Saturday.
    Set(Set),
    /// The last given weekday of the month (`6L`).
    Last(u8),
    /// The n-th given weekday of the month (`3#2`).
    Nth(u8, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Set,
    hours: Set,
    dom: DayOfMonth,
    months: Set,
    dow: DayOfWeek,
    /// Years from 1970 (index 0) to 2199.
    years: Set,
    text: String,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate { text, .. } => f.write_str(text),
            Schedule::Cron(c) => f.write_str(&c.text),
        }
    }
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(msg.into()))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(inner, t);
        }
        if let Some(inner) = t.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Ok(Schedule::Cron(Box::new(parse_cron(inner, t)?)));
        }
        err(format!(
            "{text:?} is not a schedule (expected rate(5 minutes) or cron(0 12 * * ? *))"
        ))
    }

    /// The first firing strictly after `after`; `start` anchors rate schedules.
    /// None when a cron expression never fires again (its years are past).
    pub fn next_after(
        &self,
        start: OffsetDateTime,
        after: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        match self {
            Schedule::Rate { seconds, .. } => {
                let period = *seconds as i64;
                let elapsed = (after - start).whole_seconds();
                let n = if elapsed < 0 { 0 } else { elapsed / period + 1 };
                Some(start + Duration::seconds(n * period))
            }
            Schedule::Cron(c) => c.next_after(after),
        }
    }
}

fn parse_rate(inner: &str, text: &str) -> Result<Schedule, ScheduleError> {
    let mut parts = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return err(format!(
            "{text:?}: expected rate(value unit), e.g. rate(5 minutes)"
        ));
    };
    let value: u64 = match value.parse() {
        Ok(v) if v > 0 => v,
        _ => {
            return err(format!(
                "{text:?}: {value:?} is not a positive whole number"
            ))
        }
    };
    let (unit_secs, singular) = match unit {
        "minute" => (60, true),
        "minutes" => (60, false),
        "hour" => (3600, true),
        "hours" => (3600, false),
        "day" => (86400, true),
        "days" => (86400, false),
        _ => {
            return err(format!(
                "{text:?}: unknown unit {unit:?} (expected minute(s), hour(s) or day(s))"
            ))
        }
    };
    if singular != (value == 1) {
        return err(format!(
            "{text:?}: use the singular unit for 1 and the plural otherwise (e.g. rate(1 hour), rate(2 hours))"
        ));
    }
    Ok(Schedule::Rate {
        seconds: value.saturating_mul(unit_secs),
        text: text.to_owned(),
    })
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn parse_cron(inner: &str, text: &str) -> Result<Cron, ScheduleError> {
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return err(format!(
            "{text:?}: expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
            fields.len()
        ));
    }
    let named = |s: &str, names: &[&str], base: u32| -> Option<u32> {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + base)
    };
    let minutes = parse_set(fields[0], 0, 59, "minutes", &|_| None)?;
    let hours = parse_set(fields[1], 0, 23, "hours", &|_| None)?;
    let months = parse_set(fields[3], 1, 12, "month", &|s| named(s, &MONTHS, 1))?;
    let years = parse_set(fields[5], 1970, 2199, "year", &|_| None)?;
    let dom = match fields[2] {
        "?" => DayOfMonth::Any,
        "L" => DayOfMonth::Last,
        "LW" => DayOfMonth::LastWeekday,
        f if f.ends_with('W') => match f[..f.len() - 1].parse::<u8>() {
            Ok(d) if (1..=31).contains(&d) => DayOfMonth::Weekday(d),
            _ => {
                return err(format!(
                    "{text:?}: day-of-month {f:?} is not valid (expected 1W to 31W)"
                ))
            }
        },
        f => DayOfMonth::Set(parse_set(f, 1, 31, "day-of-month", &|_| None)?),
    };
    let dow_field = fields[4];
    let dow = if dow_field == "?" {
        DayOfWeek::Any
    } else if let Some((d, n)) = dow_field.split_once('#') {
        let day = d
            .parse::<u8>()
            .ok()
            .or_else(|| named(d, &DAYS, 1).map(|v| v as u8));
        match (day, n.parse::<u8>()) {
            (Some(day @ 1..=7), Ok(n @ 1..=5)) => DayOfWeek::Nth(day, n),
            _ => return err(format!("{text:?}: day-of-week {dow_field:?} is not valid (expected e.g. 3#2, the second Tuesday)")),
        }
    } else if let Some(d) = dow_field.strip_suffix('L').filter(|d| !d.is_empty()) {
        let day = d
            .parse::<u8>()
            .ok()
            .or_else(|| named(d, &DAYS, 1).map(|v| v as u8));
        match day {
            Some(day @ 1..=7) => DayOfWeek::Last(day),
            _ => return err(format!("{text:?}: day-of-week {dow_field:?} is not valid (expected e.g. 6L, the last Friday)")),
        }
    } else if dow_field == "L" {
        DayOfWeek::Set(parse_set("7", 1, 7, "day-of-week", &|_| None)?)
    } else {
        DayOfWeek::Set(parse_set(dow_field, 1, 7, "day-of-week", &|s| {
            named(s, &DAYS, 1)
        })?)
    };
    // EventBridge: exactly one of day-of-month and day-of-week is `?`.
    match (&dom, &dow) {
        (DayOfMonth::Any, DayOfWeek::Any) => {
            return err(format!("{text:?}: day-of-month and day-of-week cannot both be ?"))
        }
        (DayOfMonth::Any, _) | (_, DayOfWeek::Any) => {}
        _ => {
            return err(format!(
                "{text:?}: one of day-of-month and day-of-week must be ? (EventBridge does not allow both)"
            ))
        }
    }
    Ok(Cron {
        minutes,
        hours,
        dom,
        months,
        dow,
        years,
        text: text.to_owned(),
    })
}

fn parse_set(
    field: &str,
    min: u32,
    max: u32,
    name: &str,
    named: &dyn Fn(&str) -> Option<u32>,
) -> Result<Set, ScheduleError> {
    let mut set = vec![false; (max - min + 1) as usize];
    let value = |s: &str| -> Result<u32, ScheduleError> {
        let v = s.parse::<u32>().ok().or_else(|| named(s));
        match v {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => err(format!(
                "{name} value {s:?} is out of range (expected {min} to {max})"
            )),
        }
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s > 0 => (r, s),
                _ => return err(format!("{name} step {s:?} is not a positive number")),
            },
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return err(format!("{name} range {range:?} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            set[(v - min) as usize] = true;
            v += step;
        }
    }
    Ok(Set(set))
}

impl Set {
    fn has(&self, v: u32, min: u32) -> bool {
        v.checked_sub(min)
            .and_then(|i| self.0.get(i as usize))
            .copied()
            .unwrap_or(false)
    }
}

fn last_day(year: i32, month: Month) -> u8 {
    time::util::days_in_month(month, year)
}

fn dow_index(w: Weekday) -> u8 {
    w.number_from_sunday()
}

impl Cron {
    fn day_matches(&self, date: Date) -> bool {
        let day = date.day();
        let last = last_day(date.year(), date.month());
        let dom_ok = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Set(s) => s.has(day.into(), 1),
            DayOfMonth::Last => day == last,
            DayOfMonth::Weekday(target) => {
                let target = (*target).min(last);
                nearest_weekday(date, target) == day
            }
            DayOfMonth::LastWeekday => nearest_weekday(date, last) == day,
        };
        let wd = dow_index(date.weekday());
        let dow_ok = match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Set(s) => s.has(wd.into(), 1),
            DayOfWeek::Last(d) => wd == *d && day + 7 > last,
            DayOfWeek::Nth(d, n) => wd == *d && (day - 1) / 7 + 1 == *n,
        };
        dom_ok && dow_ok
    }

    fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut date = after.date();
        // A minute strictly after `after`.
        let (mut min_hour, mut min_minute) = (after.hour() as u32, after.minute() as u32 + 1);
        for _ in 0..(366 * 230) {
            if date.year() > 2199 {
                return None;
            }
            if self.years.has(date.year() as u32, 1970)
                && self.months.has(date.month() as u32, 1)
                && self.day_matches(date)
            {
                for h in min_hour..24 {
                    if !self.hours.has(h, 0) {
                        continue;
                    }
                    let start_min = if h == min_hour { min_minute } else { 0 };
                    for m in start_min..60 {
                        if self.minutes.has(m, 0) {
                            let t = Time::from_hms(h as u8, m as u8, 0).ok()?;
                            return Some(date.with_time(t).assume_utc());
                        }
                    }
                }
            }
            date = date.next_day()?;
            min_hour = 0;
            min_minute = 0;
        }
        None
    }
}

/// The day of `date`'s month nearest to `target` that is Monday to Friday, not
/// leaving the month.
fn nearest_weekday(date: Date, target: u8) -> u8 {
    let Ok(d) = Date::from_calendar_date(date.year(), date.month(), target) else {
        return 0;
    };
    let last = last_day(date.year(), date.month());
    match d.weekday() {
        Weekday::Saturday if target == 1 => 3,
        Weekday::Saturday => target - 1,
        Weekday::Sunday if target == last => target - 2,
        Weekday::Sunday => target + 1,
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(expr)
            .unwrap()
            .next_after(after, after)
            .unwrap()
    }

    #[test]
    fn rates() {
        let start = datetime!(2026-11-23 10:00:00 UTC);
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(
            s.next_after(start, start),
            datetime!(2026-11-23 10:05:00 UTC).into()
        );
        assert_eq!(
            s.next_after(start, datetime!(2026-11-23 10:07:00 UTC)),
            datetime!(2026-11-23 10:10:00 UTC).into()
        );
        assert!(Schedule::parse("rate(1 hour)").is_ok());
        assert!(Schedule::parse("rate(1 hours)")
            .unwrap_err()
            .to_string()
            .contains("singular"));
        assert!(Schedule::parse("rate(0 minutes)")
            .unwrap_err()
            .to_string()
            .contains("positive"));
        assert!(Schedule::parse("rate(5 weeks)")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn aws_documented_cron_examples() {
        let t = datetime!(2026-11-23 10:00:00 UTC); // a Monday
        assert_eq!(
            next("cron(0 10 * * ? *)", t),
            datetime!(2026-11-24 10:00:00 UTC)
        );
        assert_eq!(
            next("cron(15 12 * * ? *)", t),
            datetime!(2026-11-23 12:15:00 UTC)
        );
        assert_eq!(
            next("cron(0 18 ? * MON-FRI *)", t),
            datetime!(2026-11-23 18:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 8 1 * ? *)", t),
            datetime!(2026-12-01 08:00:00 UTC)
        );
        assert_eq!(
            next("cron(0/15 * * * ? *)", t),
            datetime!(2026-11-23 10:15:00 UTC)
        );
        assert_eq!(
            next("cron(0/10 * ? * MON-FRI *)", t),
            datetime!(2026-11-23 10:10:00 UTC)
        );
        assert_eq!(
            next(
                "cron(0/5 8-17 ? * MON-FRI *)",
                datetime!(2026-11-27 17:56:00 UTC)
            ),
            datetime!(2026-11-30 08:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", t),
            datetime!(2026-12-07 09:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", t),
            datetime!(2026-11-30 00:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 0 ? * 6L *)", t),
            datetime!(2026-11-27 00:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 0 LW * ? *)", datetime!(2027-01-01 00:00:00 UTC)),
            datetime!(2027-01-29 00:00:00 UTC)
        );
        assert_eq!(
            next("cron(0 0 29 2 ? *)", t),
            datetime!(2028-02-29 00:00:00 UTC)
        );
        let past = Schedule::parse("cron(0 0 1 1 ? 2020)").unwrap();
        assert_eq!(past.next_after(t, t), None);
    }

    #[test]
    fn cron_errors_name_the_problem() {
        for (expr, want) in [
            ("cron(0 10 * * *)", "expected 6 fields"),
            ("cron(0 10 * * * *)", "must be ?"),
            ("cron(0 10 ? * ? *)", "cannot both be ?"),
            (
                "cron(61 10 * * ? *)",
                "minutes value \"61\" is out of range",
            ),
            ("cron(0 10 * FOO ? *)", "month value \"FOO\""),
            ("cron(0 10-5 * * ? *)", "runs backwards"),
            ("cron(0 0/0 * * ? *)", "step"),
            ("every day", "is not a schedule"),
        ] {
            let e = Schedule::parse(expr).unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
        }
    }
}
