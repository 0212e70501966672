//! The views of a definition a function loads (`Definition`): the whole `Integration`, its `Inbound` part, its `Outbound` part, and the URLs each calls.

use std::path::Path;

use url::Url;

use crate::network::Access;

use super::*;

/// A view of a definition file that a function loads ([`Integration`], [`Inbound`],
/// [`Outbound`]).
pub trait Definition: Sized {
    /// Loads and validates this view of one definition file.
    fn from_file(file: &Path) -> Result<Self, DefinitionError>;
    /// The integration's id.
    fn id(&self) -> &str;
    /// The file it was loaded from.
    fn file(&self) -> &Path;
    /// Every URL this view calls (field, URL or its fixed part, opt-ins), for the network guard.
    fn destinations(&self) -> Vec<Destination<'_>> {
        Vec::new()
    }
}

/// A URL a definition calls, as the network guard checks it.
#[derive(Debug)]
pub struct Destination<'a> {
    /// Where it is in the file (`routes[0].deliver.url`).
    pub field: String,
    /// The URL (an enrichment template's fixed part).
    pub url: &'a Url,
    /// What the route or step opted into.
    pub access: Access,
}

pub(super) fn route_destinations<'a>(
    routes: impl Iterator<Item = (&'a str, &'a Deliver)>,
) -> impl Iterator<Item = Destination<'a>> {
    routes.enumerate().map(|(i, (id, d))| Destination {
        field: format!("routes[{i}].deliver.url (route `{id}`)"),
        url: &d.url,
        access: d.access,
    })
}

impl Definition for Integration {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        load_file(file)
    }
    fn destinations(&self) -> Vec<Destination<'_>> {
        let steps = self.enrich.iter().enumerate().map(|(i, s)| Destination {
            field: format!("enrich[{i}].url (step `{}`)", s.name),
            url: s.url.fixed(),
            access: s.access,
        });
        let routes = route_destinations(self.routes.iter().map(|r| (r.id.as_str(), &r.deliver)));
        steps.chain(routes).collect()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
}

impl Definition for Inbound {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        let def: InboundFile = read(file)?;
        let _ = (def.settings, def.enrich);
        let mut slack_reviews = Vec::new();
        for (i, r) in def.routes.iter().enumerate() {
            let Some((review, notify)) = r
                .review
                .as_ref()
                .and_then(|v| Some((v, v.notify.as_ref()?)))
            else {
                continue;
            };
            let route_err = |f: &str, m| route_error(file, i, &r.id, f, m);
            slack_reviews.push(SlackReview {
                route: r.id.clone(),
                slack: slack_notify(&notify.slack, &review.deciders, &route_err)?,
            });
        }
        Ok(Inbound {
            id: definition_id(file, def.id)?,
            file: file.to_path_buf(),
            source: source(def.source).map_err(|(field, m)| error(file, &field, m))?,
            slack_reviews,
        })
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
}

impl Definition for Outbound {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        let def: OutboundFile = read(file)?;
        let _ = (def.settings, def.source, def.enrich);
        let id = definition_id(file, def.id)?;
        let mut routes: Vec<OutboundRoute> = Vec::with_capacity(def.routes.len());
        for (i, r) in def.routes.into_iter().enumerate() {
            let _ = (r.when, r.map, r.map_request, r.contract);
            route_id(file, i, &r.id, routes.iter().map(|o| o.id.as_str()))?;
            let route_err = |f: &str, m| route_error(file, i, &r.id, f, m);
            let deliver = deliver(&r.deliver, &route_err)?;
            // Whether `review_when` is set is all deliver needs of it: it runs in transform.
            let has_review_when = r.review_when.is_some();
            let review = review_policy(
                has_review_when,
                r.on_rejected,
                r.review.as_ref(),
                &route_err,
            )?;
            let on_stale = r.ordering.as_ref().map(|o| o.on_stale);
            routes.push(OutboundRoute {
                id: r.id,
                deliver,
                review,
                on_stale,
            });
        }
        if routes.is_empty() {
            return Err(error(file, "routes", "at least one route is needed".into()));
        }
        Ok(Outbound {
            id,
            file: file.to_path_buf(),
            routes,
        })
    }
    fn destinations(&self) -> Vec<Destination<'_>> {
        route_destinations(self.routes.iter().map(|r| (r.id.as_str(), &r.deliver))).collect()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
}
