//! End-to-end tests: the whole pipeline (`switchboard dev`'s stack) against the local AWS
//! emulator, with destinations played by scripted HTTP receivers on 127.0.0.1.

mod utils;

mod walking_skeleton;
