//! The ingest function: API Gateway webhooks in, verified events on the events queue out.

pub mod apigw;
pub mod config;
pub mod handler;
pub mod request;
pub mod wiring;
