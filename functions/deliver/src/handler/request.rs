//! Deliver's request to a destination: the URL (the mapped path checked), method, headers,
//! signature and credential; and the call, refreshing a refused credential once.

use super::*;

impl<P: DeliverPorts> Deliver<P> {
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

/// What an answer came to. It is read so the connection can be reused (a drop here is a
/// failed attempt), but never more of it than is kept: a success's body is used only by the
/// route's `success` check, an error's first 1 KB travels with the history. A longer answer
/// costs the connection, not memory.
pub(super) async fn answer(response: reqwest::Response, check: Option<&ResponseCheck>) -> Attempt {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delivery_policy::retry_after(v, SystemTime::now()));
    let success = (200..300).contains(&status);
    let cap = if success {
        SUCCESS_READ_BYTES
    } else {
        SNIPPET_BYTES
    };
    // Only a checked route pays for its answer's headers.
    let check = check
        .filter(|_| success)
        .map(|c| (c, http::response_headers(&response)));
    let (outcome, snippet) = match http::read_capped(response, cap).await {
        Ok(read) if success => match check {
            None => (Outcome::Status(status), None),
            Some((check, headers)) => match checked(check, status, headers, &read.bytes) {
                None => (Outcome::Status(status), None),
                Some(retryable) => (
                    Outcome::Rejected { status, retryable },
                    snippet(&read.bytes),
                ),
            },
        },
        Ok(read) => (Outcome::Status(status), snippet(&read.bytes)),
        Err(_) if success => (Outcome::Status(status), None),
        Err(_) => (Outcome::Dropped, None),
    };
    let error = match outcome {
        Outcome::Dropped => Some(format!("connection dropped after {status}")),
        Outcome::Rejected { .. } => Some(format!(
            "the destination answered {status}, but its answer fails the route's success check"
        )),
        _ => None,
    };
    Attempt {
        outcome,
        error,
        retry_after,
        snippet,
    }
}

/// Runs the route's check over a 2xx answer: None when it means delivered, else whether
/// another try may help. An answer too long to read whole, not JSON, or a check that fails
/// to evaluate is judged as it reads (a body that is not JSON is the text).
pub(super) fn checked(
    check: &ResponseCheck,
    status: u16,
    headers: serde_json::Value,
    body: &[u8],
) -> Option<bool> {
    let body = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
    check.judge(status, headers, body)
}

/// The first 1 KB of an answer, as text (cut on a character boundary).
pub(super) fn snippet(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let mut end = bytes.len().min(SNIPPET_BYTES);
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// A transport failure as the policy names it.
pub(super) fn transport_outcome(e: &reqwest::Error) -> Outcome {
    if http::blocked(e).is_some() {
        Outcome::Blocked
    } else if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_body() || e.is_decode() {
        Outcome::Dropped
    } else {
        // Refused, unreachable, TLS and DNS failures all surface as connect errors.
        Outcome::Connect
    }
}
