//! Integration definitions: one YAML file per integration, loaded and fully validated at cold
//! start (keys, expressions, URLs), so a broken definition fails start-up, never a live event.
//!
//! A function loads the view of a definition it runs: transform and `switchboard check` the
//! whole [`Integration`], ingest its [`Inbound`] part (id and source), deliver its [`Outbound`]
//! part (each route's destination). Every view checks every key of the file; the parts a view
//! does not load are checked by the views that do (all run from the same layer).
//!
//! `model` is what a definition is; `file` its YAML shapes; `source` the signature scheme's
//! part; `load` turns a file into the model; `view` the parts each function loads; `dir` the
//! registry of a directory.

mod dir;
#[cfg(test)]
mod documented;
mod file;
mod load;
mod model;
mod source;
mod view;

pub use dir::*;
pub use load::load_file;
pub use model::*;
pub use view::*;

use file::*;
use load::*;
use source::*;

#[cfg(test)]
mod tests;
