//! Switchboard's library: the pure domain every function shares, and the narrow AWS adapters
//! the handlers are generic over.
//!
//! Domain modules (`ids`, `integration`, `envelope`, `verify`, `mapping`, `contract`,
//! `url_template`, `idempotency`, `secret`) know nothing of Lambda or the AWS SDK. `ports` names what the handlers need from
//! the outside world; `aws` is the only module that knows the AWS SDK.

pub mod archive;
pub mod aws;
pub mod batch;
pub mod circuit;
pub mod config;
pub mod contract;
pub mod credentials;
pub mod dead_letter;
pub mod deadline;
pub mod delivery_policy;
pub mod envelope;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod integration;
pub mod mapping;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod ports;
pub mod reason;
pub mod secret;
pub mod secrets;
pub mod url_template;
pub mod verify;
