//! The AWS EventBridge event-pattern language, compiled into one matcher that serves
//! many named patterns at once. Pure: no I/O, no async runtime.
//!
//! ```
//! use fleetbus_pattern::{Matcher, Pattern};
//! let p = Pattern::parse(r#"{"source": ["aws.ec2"], "detail": {"state": [{"prefix": "run"}]}}"#).unwrap();
//! let mut m = Matcher::new();
//! m.add_pattern("ec2-running", &p).unwrap();
//! let hits = m.matches_for_event(br#"{"source": "aws.ec2", "detail": {"state": "running"}}"#).unwrap();
//! assert_eq!(hits, vec!["ec2-running"]);
//! ```
//!
//! Limits: see [`MAX_PATTERN_DEPTH`], [`MAX_BRANCHES`], [`MAX_FIELDS_PER_BRANCH`],
//! [`MAX_CONDITIONS_PER_FIELD`], [`MAX_EVENT_DEPTH`], [`MAX_ARRAY_SEARCH_STEPS`] and
//! [`NUMERIC_LIMIT`].

mod cond;
mod error;
mod event;
mod explain;
mod matcher;
mod parse;
#[cfg(test)]
mod semantics_tests;

pub use cond::{AnythingBut, Cidr, Cond, NumRange, Scalar, Wildcard, NUMERIC_LIMIT};
pub use error::{EventError, PatternError};
pub use event::MAX_EVENT_DEPTH;
pub use explain::{explain, BranchExplanation, Explanation, FieldFailure};
pub use matcher::{CapacityError, Matcher, MAX_ARRAY_SEARCH_STEPS, MAX_BRANCHES_TOTAL};
pub use parse::{
    Leaf, Pattern, MAX_BRANCHES, MAX_CONDITIONS_PER_FIELD, MAX_FIELDS_PER_BRANCH, MAX_PATTERN_DEPTH,
};
