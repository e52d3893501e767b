//! The AWS EventBridge event-pattern language, compiled into one matcher that serves
//! many named patterns at once. Pure: no I/O, no async runtime.
