//! Counting entries by a field, the way admins summarise logs (`sort | uniq -c`).

use std::collections::HashMap;

use crate::entry::StrField;
use crate::LogEntry;

/// What to count entries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Subsystem,
    Category,
    Process,
    MessageType,
    EventType,
    Sender,
}

impl GroupBy {
    /// The group an entry falls in (`""` when the field is absent).
    pub fn key<'e>(self, entry: &'e LogEntry<'_>) -> &'e str {
        match self {
            GroupBy::Subsystem => entry.get_str(StrField::Subsystem),
            GroupBy::Category => entry.get_str(StrField::Category),
            GroupBy::Process => entry.process(),
            GroupBy::MessageType => entry.get_str(StrField::MessageType),
            GroupBy::EventType => entry.get_str(StrField::EventType),
            GroupBy::Sender => entry.sender(),
        }
        .unwrap_or("")
    }
}

/// Counts per group; memory grows with the number of distinct groups, not entries.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    counts: HashMap<String, u64>,
    total: u64,
}

impl Counter {
    /// Counts one occurrence of `key`.
    pub fn add(&mut self, key: &str) {
        self.total += 1;
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
        } else {
            self.counts.insert(key.to_owned(), 1);
        }
    }

    /// Entries counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Groups by descending count, then name.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Group names in alphabetical order.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.counts.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_orders() {
        let mut c = Counter::default();
        for k in ["b", "a", "b", "c", "a", "b"] {
            c.add(k);
        }
        assert_eq!(c.total(), 6);
        assert_eq!(c.sorted(), vec![("b", 3), ("a", 2), ("c", 1)]);
        assert_eq!(c.names(), vec!["a", "b", "c"]);
    }

    #[test]
    fn group_keys() {
        let e = LogEntry::parse(
            br#"{"subsystem":"com.apple.ManagedClient","category":"MDMDaemon","processImagePath":"\/usr\/libexec\/mdmclient","messageType":"Error"}"#,
        )
        .unwrap();
        assert_eq!(GroupBy::Process.key(&e), "mdmclient");
        assert_eq!(GroupBy::Category.key(&e), "MDMDaemon");
        assert_eq!(GroupBy::MessageType.key(&e), "Error");
        assert_eq!(GroupBy::Sender.key(&e), "");
    }
}
