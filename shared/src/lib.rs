//! Switchboard's adapters and runtime plumbing, over the domain in `switchboard-core`:
//!
//! - `aws`: the only module that knows the AWS SDK (SQS, DynamoDB, Secrets Manager, S3), each
//!   an implementation of a `switchboard_core::ports` trait;
//! - `memory`: in-memory implementations of the same ports, for unit tests of handler rules;
//! - `http`: the one way third-party requests are built (the network guard's resolver, TLS,
//!   no proxy); `credentials`: outbound auth (bearer, API keys, OAuth client credentials);
//! - `slack`: Slack's Web API as review approvals use it (post, update, ephemeral, groups);
//! - `config`, `metrics`, `batch`: what the functions share about their environment, their
//!   EMF counts and their SQS batches.

pub mod aws;
pub mod batch;
pub mod config;
pub mod credentials;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod slack;
pub mod telemetry;
