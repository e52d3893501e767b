//! The asset store: devices and users, the UDID -> serial mapping, the MDM command
//! ledger and escrowed DeviceLock PINs, in one SQLite file beside the event store.
