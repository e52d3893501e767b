//! macOS unified-log reading, NSPredicate-style filtering, summaries and event
//! extraction.
