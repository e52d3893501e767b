//! The SQLite backend against the store conformance suite, on real files in a
//! temporary directory.

use fleetbus_engine::store::sqlite::SqliteStore;
use fleetbus_engine::store::Store;

fleetbus_test_support::store_conformance!(|options| {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), options).unwrap();
    (Box::new(store) as Box<dyn Store>, dir)
});
