//! Test support: the shared emulator, a local stack per test, scripted receivers.

pub mod chaos;
pub mod receiver;
pub mod sdk_count;
pub mod stack;
