//! Slack's Web API as review approvals use it: `chat.postMessage` (deliver posts each new
//! item), `chat.update` (the message once decided), `chat.postEphemeral` (a refusal only the
//! clicker sees) and `usergroups.users.list` (whether a clicker is in a group of deciders).
//! Every call goes through the network guard with the route's bot token, has its own time
//! limit, and reads Slack's `{"ok": false, "error": …}` answer as the failure it is. Slack's
//! answers are read up to 256 KB and never logged whole.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::ports::SecretStore;
use switchboard_core::review::ReviewItem;
use switchboard_core::review::slack::{self, SlackNotify, SlackPost};
use switchboard_core::secret::{SecretString, TypedSecret};
use switchboard_core::secrets::SecretsCache;

use crate::http::{GuardedHttp, read_capped, transport_error};

/// The most of an answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// Slack's Web API, through the network guard.
#[derive(Debug, Clone)]
pub struct SlackApi {
    http: GuardedHttp,
    timeout: Duration,
}

/// Why a call failed, in words (never the token, never the answer's body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}: {message}")]
pub struct SlackError {
    /// The Web API method.
    pub method: &'static str,
    /// What went wrong: Slack's error code, the status, the transport's failure.
    pub message: String,
}

impl SlackApi {
    /// Calls through `http`, each given at most `timeout`.
    pub fn new(http: GuardedHttp, timeout: Duration) -> Self {
        Self { http, timeout }
    }

    /// The bot token in `notify.token`: a bare token, or a typed secret's value.
    pub async fn token<K: SecretStore>(
        secrets: &SecretsCache<K>,
        notify: &SlackNotify,
    ) -> Result<SecretString, SlackError> {
        let raw = secrets.get(&notify.token).await.map_err(|e| SlackError {
            method: "token",
            message: format!("reading {} failed: {e}", notify.token),
        })?;
        Ok(match TypedSecret::parse(&raw) {
            Ok(TypedSecret::Plain(v) | TypedSecret::ApiKey { value: v, .. }) => v,
            _ => raw,
        })
    }

    /// One method, its arguments as JSON (a write method) or as a form (a read method, which
    /// takes no JSON: `usergroups.users.list`), answered `ok`.
    async fn call(
        &self,
        notify: &SlackNotify,
        token: &SecretString,
        method: &'static str,
        body: &Value,
    ) -> Result<Value, SlackError> {
        let form = method == "usergroups.users.list";
        let failed = |message: String| SlackError { method, message };
        let url = format!("{}/{method}", notify.api_url.as_str().trim_end_matches('/'));
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
                .map_err(|_| failed("the bot token is not printable ASCII".into()))?;
        auth.set_sensitive(true);
        let request = self
            .http
            .request_str(reqwest::Method::POST, &url)
            .map_err(|e| failed(e.to_string()))?
            .header(reqwest::header::AUTHORIZATION, auth)
            .timeout(self.timeout);
        let request = if form {
            let mut encoded = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in body.as_object().into_iter().flatten() {
                encoded.append_pair(name, value.as_str().unwrap_or_default());
            }
            request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encoded.finish())
        } else {
            request.json(body)
        };
        let response = request
            .send()
            .await
            .map_err(|e| failed(transport_error(&e)))?;
        let status = response.status();
        let answer = read_capped(response, MAX_ANSWER)
            .await
            .map_err(|e| failed(transport_error(&e)))?;
        if !status.is_success() {
            return Err(failed(format!("Slack answered {}", status.as_u16())));
        }
        let value: Value = serde_json::from_slice(&answer.bytes)
            .map_err(|_| failed("Slack's answer is not JSON".into()))?;
        if value["ok"] != true {
            let code = value["error"].as_str().unwrap_or("no error named");
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(60)
                .collect();
            return Err(failed(format!("Slack refused it: {code}")));
        }
        Ok(value)
    }

    /// Posts a waiting item to the route's channel; answers where its message is.
    pub async fn post(
        &self,
        notify: &SlackNotify,
        token: &SecretString,
        item: &ReviewItem,
    ) -> Result<SlackPost, SlackError> {
        let method = "chat.postMessage";
        let answer = self
            .call(
                notify,
                token,
                method,
                &slack::post_message(item, &notify.channel),
            )
            .await?;
        let ts = answer["ts"].as_str().filter(|t| slack::is_ts(t));
        let channel = answer["channel"]
            .as_str()
            .filter(|c| slack::is_id(c, &['C', 'G', 'D']))
            .unwrap_or(&notify.channel);
        match ts {
            Some(ts) => Ok(SlackPost {
                channel: channel.to_string(),
                ts: ts.to_string(),
            }),
            None => Err(SlackError {
                method,
                message: "Slack's answer names no message ts".into(),
            }),
        }
    }

    /// Shows the item as it now stands in its message.
    pub async fn update(
        &self,
        notify: &SlackNotify,
        token: &SecretString,
        item: &ReviewItem,
        post: &SlackPost,
    ) -> Result<(), SlackError> {
        let body = slack::update_message(item, post);
        self.call(notify, token, "chat.update", &body).await?;
        Ok(())
    }

    /// A message only `user` sees in `channel` (already escaped `mrkdwn`).
    pub async fn ephemeral(
        &self,
        notify: &SlackNotify,
        token: &SecretString,
        post: &SlackPost,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        let body = json!({"channel": post.channel, "user": user, "text": text, "parse": "none"});
        self.call(notify, token, "chat.postEphemeral", &body)
            .await?;
        Ok(())
    }

    /// The users of a user group.
    pub async fn members(
        &self,
        notify: &SlackNotify,
        token: &SecretString,
        group: &str,
    ) -> Result<Vec<String>, SlackError> {
        let body = json!({"usergroup": group});
        let answer = self
            .call(notify, token, "usergroups.users.list", &body)
            .await?;
        Ok(answer["users"]
            .as_array()
            .map(|users| {
                users
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }
}
