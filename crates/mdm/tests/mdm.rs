//! Integration tests of the MDM library over the whole catalog and realistic fixtures.

mod mdm {
    pub mod catalog_roundtrip;
    pub mod properties;
    pub mod webhooks;
}
