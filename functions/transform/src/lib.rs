//! The transform function: events in, one mapped delivery task per route out.

pub mod handler;
