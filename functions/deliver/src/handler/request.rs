//! Deliver's request to a destination: the URL (the mapped path checked), method, headers,
//! signature and credential; and the call, refreshing a refused credential once.

use super::*;

impl<K, V, D, S, A> Deliver<K, V, D, S, A>
where
    K: SecretStore,
    V: Visibility,
    D: DeadLetterQueue,
    S: IdempotencyStore + CircuitStore + RateLimiter + AttemptLog + ReviewStore,
    A: Archive,
{
    /// Sends, refreshing a refused credential once ([`Credentials::sending_refreshed_once`]).
    pub(super) async fn send_refreshing(
        &self,
        task: &DeliveryV1,
        route: &OutboundRoute,
    ) -> Result<Attempt, AuthError> {
        self.credentials
            .sending_refreshed_once(
                &route.deliver.auth,
                || self.send(task, route),
                |a: &Attempt| matches!(a.outcome, Outcome::Status(401 | 403)),
            )
            .await
            .map(|(attempt, _)| attempt)
    }

    /// One request to the destination and what its answer came to.
    pub(super) async fn send(
        &self,
        task: &DeliveryV1,
        route: &OutboundRoute,
    ) -> Result<Attempt, AuthError> {
        let request = match self.request(task, route).await? {
            Ok(r) => r,
            Err(refused) => return Ok(refused),
        };
        match request.send().await {
            Ok(response) => Ok(answer(response, route.deliver.check.as_ref()).await),
            Err(e) => Ok(Attempt::failed(
                transport_outcome(&e),
                http::transport_error(&e),
            )),
        }
    }

    /// The request for `task`: the definition's URL (the mapping may choose only path and
    /// query), method, headers, signature, credential; the attempt when the guard refuses it.
    pub(super) async fn request(
        &self,
        task: &DeliveryV1,
        route: &OutboundRoute,
    ) -> Result<Result<reqwest::RequestBuilder, Attempt>, AuthError> {
        let mut url = route.deliver.url.clone();
        if let Some(path) = &task.path {
            // The mapping chose the path; scheme, host and port stay the definition's. A `..`
            // would climb out of it (transform refuses one; a task from elsewhere is refused
            // here).
            if !switchboard_core::url_template::path_is_safe(path) {
                return Ok(Err(Attempt::failed(
                    Outcome::Blocked,
                    "refused by the network guard: the path must start with one `/` and hold no `\\`, `#`, control character or `.`/`..` segment".into(),
                )));
            }
            let (path, query) = match path.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path.as_str(), None),
            };
            url.set_path(path);
            url.set_query(query);
        }
        let method = task
            .method
            .as_deref()
            .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(reqwest::Method::POST);
        let request = self.http.request(
            method,
            url,
            route.deliver.connect_timeout,
            route.deliver.access,
        );
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let outcome = match e {
                    RequestError::Blocked(_) => Outcome::Blocked,
                    RequestError::Client(_) => Outcome::Connect,
                };
                let error = match e {
                    RequestError::Blocked(b) => format!("refused by the network guard: {b}"),
                    e => e.to_string(),
                };
                return Ok(Err(Attempt::failed(outcome, error)));
            }
        };
        let body = serde_json::to_vec(&task.body).unwrap_or_default();
        let mut request = request
            .timeout(route.deliver.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in &task.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let idempotency_key = format!("{}:{}", task.event_id, task.route);
        if let Some(sign) = &route.deliver.sign {
            let keys = self.credentials.signing_keys(sign).await?;
            let headers = switchboard_core::verify::sign_standard_webhooks(
                &keys,
                &idempotency_key,
                Utc::now().timestamp(),
                &body,
            );
            for (name, value) in headers {
                request = request.header(name, value);
            }
        }
        let request = request
            .header("idempotency-key", idempotency_key)
            .body(body);
        Ok(Ok(self
            .credentials
            .authorize(request, &route.deliver.auth)
            .await?))
    }
}
