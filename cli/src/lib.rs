//! The `switchboard` command's library: the local stack (`dev`) and its parts, so tests run
//! the same pipeline a developer runs.

pub mod apigw;
pub mod check;
pub mod dev;
pub mod emulator;
pub mod esm;
pub mod ops;
pub mod resources;
pub mod rotation;
pub mod send;
pub mod sink;
