//! stub
pub struct BundleError;
pub struct BundleOptions;
pub struct BundleReport;
pub fn bundle_stream() {}
pub fn verify_bundle() {}
