//! `Integrations`: every definition in a directory, by id, in the view a function runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::network::{self, NetworkPolicy};

use super::*;

/// Every integration in a directory, by id, in the view `D` a function runs.
#[derive(Debug)]
pub struct Integrations<D = Integration> {
    by_id: BTreeMap<String, Arc<D>>,
}

impl<D> Default for Integrations<D> {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
        }
    }
}

impl<D: Definition> Integrations<D> {
    /// Loads every `*.yaml` / `*.yml` file directly in `dir`; the first error stops it.
    pub fn load_dir(dir: &Path) -> Result<Self, DefinitionError> {
        let (all, errors) = Self::load_dir_all(dir);
        match errors.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(all),
        }
    }

    /// Loads every definition in `dir` that is valid, and lists what is wrong with the others
    /// (for `switchboard check`, which reports everything at once).
    pub fn load_dir_all(dir: &Path) -> (Self, Vec<DefinitionError>) {
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(DefinitionError {
                    file: dir.to_path_buf(),
                    field: String::new(),
                    message: format!(
                        "cannot read the integrations directory ({e}); pass --integrations DIR or set INTEGRATIONS_DIR"
                    ),
                });
                return (Self::default(), errors);
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        let mut by_id: BTreeMap<String, Arc<D>> = BTreeMap::new();
        for file in files {
            let integration = match D::from_file(&file) {
                Ok(integration) => integration,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Some(previous) = by_id.get(integration.id()) {
                errors.push(DefinitionError {
                    file: file.clone(),
                    field: "id".into(),
                    message: format!(
                        "integration id `{}` is already defined in {}",
                        integration.id(),
                        previous.file().display()
                    ),
                });
                continue;
            }
            by_id.insert(integration.id().to_string(), Arc::new(integration));
        }
        (Self { by_id }, errors)
    }

    /// What the network guard refuses in these definitions under `policy` (plain http, a
    /// literal loopback address where loopback is not allowed), each naming the file and field.
    pub fn network_errors(&self, policy: NetworkPolicy) -> Vec<DefinitionError> {
        self.iter()
            .flat_map(|d| {
                d.destinations().into_iter().filter_map(|dest| {
                    network::check_url(dest.url, policy, dest.access)
                        .err()
                        .map(|b| error(d.file(), &dest.field, b.to_string()))
                })
            })
            .collect()
    }

    /// Start-up's network check: the first refusal fails it; every opt-in is logged.
    pub fn check_network(&self, policy: NetworkPolicy) -> Result<(), DefinitionError> {
        if let Some(first) = self.network_errors(policy).into_iter().next() {
            return Err(first);
        }
        for d in self.iter() {
            for dest in d.destinations() {
                if dest.access.allow_private_network || dest.access.allow_http {
                    tracing::warn!(
                        integration = d.id(),
                        field = %dest.field,
                        allow_private_network = dest.access.allow_private_network,
                        allow_http = dest.access.allow_http,
                        "network guard relaxed by the definition"
                    );
                }
            }
        }
        Ok(())
    }
}

impl<D> Integrations<D> {
    /// The integration with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<D>> {
        self.by_id.get(id)
    }

    /// Every integration, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<D>> {
        self.by_id.values()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
