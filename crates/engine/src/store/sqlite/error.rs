//! SQLite's errors in the store's neutral terms: a busy or locked database is worth
//! another try, nothing else is.

use crate::store::StoreError;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        let retryable = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::Backend {
            backend: "sqlite",
            message: e.to_string(),
            retryable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_retryable_and_nothing_else() {
        assert!(StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY)).is_retryable());
        assert!(StoreError::from(failure(rusqlite::ffi::SQLITE_LOCKED)).is_retryable());
        let full = StoreError::from(failure(rusqlite::ffi::SQLITE_FULL));
        assert!(!full.is_retryable());
        assert!(full.to_string().starts_with("sqlite: "), "{full}");
        assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_retryable());
    }
}
