//! The rotate Lambda's handler, as a library so `switchboard secrets rotate` runs the same code.

pub mod handler;
