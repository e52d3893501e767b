//! Apple MDM: the command catalog generated from Apple's schema, plist commands and
//! responses, check-in parsing.
