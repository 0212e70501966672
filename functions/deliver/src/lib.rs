//! The deliver function: mapped requests in, destinations called with the route's auth.

pub mod config;
pub mod handler;
pub mod wiring;
