//! Switchboard's core: the domain every function shares, and nothing else. It has no AWS SDK,
//! Lambda or HTTP-client dependency (Cargo enforces it: `tests/it/package.rs` reads the
//! dependency tree), so every rule here is tested without the outside world.
//!
//! - Definitions: `integration` (the model, the YAML, the registry), `verify` (each signature
//!   scheme), `mapping` (JSONata), `model` (a model API step's request and answer), `contract` (JSON Schema), `url_template`, `network` (which
//!   addresses may be called).
//! - Messages: `ids`, `envelope`, `archive`, `dead_letter`, `reason`, `batching` (what one
//!   SQS request may carry).
//! - Policies: `delivery_policy` (what an outcome settles), `circuit`, `idempotency`,
//!   `deadline`, `review` (the human review queue's items and timer), `share` (a
//!   destination's share of deliver's concurrency).
//! - Secrets: `secret` (values that never print), `secrets` (the cache over the store).
//! - `ports`: what the handlers need from the outside world, as traits; the adapters live in
//!   `switchboard-shared`.

pub mod archive;
pub mod batching;
pub mod circuit;
pub mod contract;
pub mod dead_letter;
pub mod deadline;
pub mod delivery_policy;
pub mod envelope;
pub mod idempotency;
pub mod ids;
pub mod integration;
pub mod mapping;
pub mod model;
pub mod network;
pub mod ordering;
pub mod ports;
pub mod principal;
pub mod reason;
pub mod review;
pub mod secret;
pub mod secrets;
pub mod share;
pub mod url_template;
pub mod verify;
