//! The `segment` storage class: a partition is a directory of segment files.

mod file;
mod index;
mod offload;
mod open;
mod partition;
pub mod remote;
pub mod scan;
mod tier;

pub use file::{index_path, log_path, time_index_path};
pub use index::{OffsetEntry, SegmentIndex, TimeEntry};
pub use open::{LOG_START_FILE, list_segments};
pub(crate) use partition::SegmentLog;
pub use tier::MANIFEST_FILE;
pub(crate) use tier::Remote;
