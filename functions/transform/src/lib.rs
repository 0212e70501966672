//! The transform function: events in; enrichment, filters, mappings and contracts per route;
//! one delivery task per route out, or the events DLQ with the reason.

pub mod config;
pub mod enrich;
pub mod handler;
pub mod pipeline;
pub mod wiring;
