//! Secrets Manager rotation against the emulator: the four steps and their staging labels,
//! retried steps, a failing test, and rotations under live traffic that fail no delivery.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use axum::http::StatusCode;
use rotate::handler::{Rotate, RotationEvent};
use serde_json::json;
use switchboard_shared::aws::SecretsManagerStore;
use switchboard_shared::metrics::Metrics;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const OUTBOUND_KEY: &str = "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXktY3VycmVudA==";

/// Each version's stages, and the value behind each stage.
async fn labels(client: &Client, id: &str) -> BTreeMap<String, Vec<String>> {
    let out = client.describe_secret().secret_id(id).send().await.unwrap();
    out.version_ids_to_stages()
        .unwrap()
        .iter()
        .map(|(v, s)| {
            let mut s = s.clone();
            s.sort();
            (v.clone(), s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

async fn value(client: &Client, id: &str, stage: &str) -> Option<String> {
    client
        .get_secret_value()
        .secret_id(id)
        .version_stage(stage)
        .send()
        .await
        .ok()
        .and_then(|o| o.secret_string().map(str::to_string))
}

/// Rotation enabled and a new version staged AWSPENDING, as Secrets Manager does before it
/// calls the function.
async fn begin(client: &Client, id: &str) -> String {
    switchboard_cli::rotation::begin(client, id).await.unwrap()
}

fn step(id: &str, token: &str, step: &str) -> RotationEvent {
    RotationEvent {
        secret_id: id.to_string(),
        client_request_token: token.to_string(),
        step: step.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_steps_stage_the_new_key_and_a_retried_step_changes_nothing() {
    let receiver = Receiver::start().await;
    let stack = TestStack::with(
        &[("orders", crate::utils::stack::orders(&receiver.url))],
        &[("signing", SIGNING_SECRET), ("outbound", OUTBOUND_KEY)],
        FAST,
    )
    .await;
    let client = Client::new(&stack.dev.sdk);
    let id = format!("{}/outbound", stack.prefix);
    let rotate = Rotate::new(
        SecretsManagerStore::new(client.clone()),
        Metrics::Off,
        switchboard_core::network::NetworkPolicy::LOCAL,
    );
    let token = begin(&client, &id).await;
    let old = value(&client, &id, "AWSCURRENT").await.unwrap();

    rotate
        .handle(&step(&id, &token, "createSecret"))
        .await
        .unwrap();
    let pending = value(&client, &id, "AWSPENDING").await.unwrap();
    assert_ne!(pending, old);
    assert!(pending.starts_with("whsec_"), "the same shape as before");
    assert_eq!(value(&client, &id, "AWSCURRENT").await.unwrap(), old);
    // Retried: the pending key stays the one made first.
    rotate
        .handle(&step(&id, &token, "createSecret"))
        .await
        .unwrap();
    assert_eq!(value(&client, &id, "AWSPENDING").await.unwrap(), pending);
    for s in ["setSecret", "testSecret", "setSecret", "testSecret"] {
        rotate.handle(&step(&id, &token, s)).await.unwrap();
    }
    assert_eq!(value(&client, &id, "AWSCURRENT").await.unwrap(), old);

    rotate
        .handle(&step(&id, &token, "finishSecret"))
        .await
        .unwrap();
    let after = labels(&client, &id).await;
    assert_eq!(after[&token], ["AWSCURRENT"], "{after:?}");
    assert_eq!(value(&client, &id, "AWSCURRENT").await.unwrap(), pending);
    assert_eq!(value(&client, &id, "AWSPREVIOUS").await.unwrap(), old);
    // Every step again, after the finish: each returns early and changes nothing.
    for s in rotate::handler::STEP_NAMES {
        rotate.handle(&step(&id, &token, s)).await.unwrap();
    }
    assert_eq!(labels(&client, &id).await, after);
    assert_eq!(value(&client, &id, "AWSCURRENT").await.unwrap(), pending);

    // A token that is not a version of the secret is refused.
    let e = rotate
        .handle(&step(&id, "not-a-version", "createSecret"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no version"), "{e}");
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_step_leaves_awscurrent_untouched() {
    let provider = Receiver::start().await;
    provider.on(
        "/mint",
        vec![(StatusCode::OK, Some(json!({"value": "key-2"})))],
    );
    provider.on("/check", vec![(StatusCode::UNAUTHORIZED, None)]);
    let key = json!({
        "type": "api-key",
        "value": "key-1",
        "mint_url": format!("{}/mint", provider.base),
        "test_url": format!("{}/check", provider.base),
    })
    .to_string();
    let stack = TestStack::with(
        &[("orders", crate::utils::stack::orders(&provider.url))],
        &[("signing", SIGNING_SECRET), ("key", &key)],
        FAST,
    )
    .await;
    let client = Client::new(&stack.dev.sdk);
    let id = format!("{}/key", stack.prefix);
    let metrics = Metrics::Memory(Default::default());
    let e = switchboard_cli::rotation::rotate(&client, &id, metrics.clone())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("testSecret"), "{e}");
    let current: serde_json::Value =
        serde_json::from_str(&value(&client, &id, "AWSCURRENT").await.unwrap()).unwrap();
    assert_eq!(current["value"], "key-1", "AWSCURRENT untouched");
    let pending: serde_json::Value =
        serde_json::from_str(&value(&client, &id, "AWSPENDING").await.unwrap()).unwrap();
    assert_eq!(pending["value"], "key-2", "minted and staged, not promoted");
    let check = provider
        .received()
        .into_iter()
        .find(|r| r.path == "/check")
        .unwrap();
    assert_eq!(check.headers["authorization"], "Bearer key-2");
    let mint = provider
        .received()
        .into_iter()
        .find(|r| r.path == "/mint")
        .unwrap();
    assert_eq!(mint.headers["authorization"], "Bearer key-1");
    assert_eq!(
        metrics
            .lines()
            .iter()
            .filter(|l| l["Step"] == "testSecret" && l["Outcome"] == "failed")
            .count(),
        1,
        "the failure is counted"
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_oauth_token_and_the_signing_secret_under_traffic_fails_no_delivery() {
    let api = Receiver::start().await;
    // Each token the endpoint mints is new; the API takes only the first (deliver's) until
    // the rotation, then only the one the rotation minted and stored in the secret.
    let minted = (1..=5)
        .map(|n| {
            let token = json!({"access_token": format!("token-{n}"), "expires_in": 3600});
            (StatusCode::OK, Some(token))
        })
        .collect();
    api.on("/token", minted);
    api.require_bearer("/hook", &["token-1"]);
    let client_record = json!({
        "type": "oauth2-client-credentials",
        "token_url": format!("{}/token", api.base),
        "client_id": "switchboard",
        "client_secret": "client-secret-value",
        "scope": "crm.write",
        "test_url": format!("{}/me", api.base),
    })
    .to_string();
    let outbound = json!({"type": "signing-secret", "value": OUTBOUND_KEY}).to_string();
    let routes = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: crm\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {}/hook\n      auth: {{ type: oauth2-client-credentials, secret: SECRET/oauth }}\n      sign: {{ secret: SECRET/outbound }}\n",
        api.base
    );
    let stack = TestStack::with(
        &[("orders", routes)],
        &[
            ("signing", SIGNING_SECRET),
            ("oauth", &client_record),
            ("outbound", &outbound),
        ],
        FAST,
    )
    .await;
    let client = Client::new(&stack.dev.sdk);
    let total = 40;
    let mut rotated = None;
    for n in 0..total {
        let (status, body) = stack
            .post_signed("orders", json!({"n": n}).to_string().as_bytes())
            .await;
        assert_eq!(status, 202, "{body}");
        if n == total / 2 {
            for name in ["oauth", "outbound"] {
                let id = format!("{}/{name}", stack.prefix);
                switchboard_cli::rotation::rotate(&client, &id, Metrics::Off)
                    .await
                    .unwrap();
            }
            let oauth = format!("{}/oauth", stack.prefix);
            let record = value(&client, &oauth, "AWSCURRENT").await.unwrap();
            let record: serde_json::Value = serde_json::from_str(&record).unwrap();
            let token = record["access_token"].as_str().unwrap().to_string();
            assert_ne!(token, "token-1", "the rotation minted a token of its own");
            // The API revokes the old token.
            api.require_bearer("/hook", &[&token]);
            rotated = Some(token);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = rotated.unwrap();
    let started = Instant::now();
    let hooks = loop {
        let hooks: Vec<_> = api
            .received()
            .into_iter()
            .filter(|r| r.path == "/hook" && r.status == 200)
            .collect();
        if hooks.len() >= total {
            break hooks;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {total} delivered",
            hooks.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_key: serde_json::Value = serde_json::from_str(
        &value(&client, &format!("{}/outbound", stack.prefix), "AWSCURRENT")
            .await
            .unwrap(),
    )
    .unwrap();
    let new_key = new_key["value"].as_str().unwrap().to_string();
    assert_ne!(new_key, OUTBOUND_KEY);
    let keys = [OUTBOUND_KEY.to_string(), new_key];
    for hook in &hooks {
        assert_eq!(hook.status, 200);
        assert!(
            keys.iter().any(|k| hook.verifies_with(k)),
            "a signature no key verifies"
        );
    }
    assert_eq!(hooks.len(), total, "each delivered once");
    // After the old token was revoked, deliver read the rotated secret and sent its token: the
    // new credential is the one in use.
    let bearer = |r: &&crate::utils::receiver::Received| {
        r.headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let refused = api
        .received()
        .into_iter()
        .filter(|r| r.path == "/hook" && r.status == 401)
        .count();
    assert!(refused > 0, "the old token was refused after the rotation");
    assert!(
        hooks
            .iter()
            .any(|r| bearer(&r) == Some(format!("Bearer {rotated}"))),
        "no delivery carried the rotated token"
    );
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        0
    );
    let metrics = &stack.dev.metrics;
    assert_eq!(
        metrics
            .samples("Deliveries", |l| l["Outcome"] != "delivered")
            .len(),
        0,
        "no retry, no failure"
    );
    stack.dev.shutdown().await;
}

/// A scheduled rotation as receivers see it, through the local stack with a one-second secrets
/// cache: receivers holding only the old key, only the new key, or both refuse nothing while
/// the previous key is within its grace; after the grace only the new key signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_with_the_old_key_the_new_key_or_both_refuse_nothing_during_the_grace() {
    let receiver = Receiver::start().await;
    let grace = Duration::from_secs(6);
    let ttl = Duration::from_secs(1);
    let routes: String = ["old", "new", "both"]
        .iter()
        .map(|name| {
            format!(
                "  - id: {name}\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {}/{name}\n      sign: {{ secret: SECRET/outbound, previous_grace: {}s }}\n      retry: [1s]\n",
                receiver.base,
                grace.as_secs()
            )
        })
        .collect();
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n{routes}"
    );
    let stack = TestStack::with_options(
        &[("orders.yaml".to_string(), definition)],
        &[("signing", SIGNING_SECRET), ("outbound", OUTBOUND_KEY)],
        FAST,
        |o| o.secrets_ttl = ttl,
    )
    .await;
    let client = Client::new(&stack.dev.sdk);
    let id = format!("{}/outbound", stack.prefix);
    // Before the rotation: the old key's holders accept.
    receiver.require_signature("/old", &[OUTBOUND_KEY]);
    let (status, _) = stack.post_signed("orders", br#"{"n": 0}"#).await;
    assert_eq!(status, 202);
    receiver.wait_for(3, Duration::from_secs(20)).await;

    switchboard_cli::rotation::rotate(&client, &id, Metrics::Off)
        .await
        .unwrap();
    let rotated = Instant::now();
    let new_key = value(&client, &id, "AWSCURRENT").await.unwrap();
    assert_ne!(new_key, OUTBOUND_KEY);
    receiver.require_signature("/new", &[&new_key]);
    receiver.require_signature("/both", &[OUTBOUND_KEY, &new_key]);

    // Within the grace, once every cache has read the rotation: all three accept, and each
    // message carries both signatures.
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    let (status, _) = stack.post_signed("orders", br#"{"n": 1}"#).await;
    assert_eq!(status, 202);
    let during: Vec<_> = receiver
        .wait_for(6, Duration::from_secs(20))
        .await
        .into_iter()
        .filter(|r| r.body["n"] == 1)
        .collect();
    assert!(
        rotated.elapsed() < grace,
        "the grace ran out before the check"
    );
    assert_eq!(during.len(), 3, "{during:?}");
    for r in &during {
        assert_eq!(r.status, 200, "{} refused during the grace", r.path);
        assert!(r.verifies_with(OUTBOUND_KEY) && r.verifies_with(&new_key));
    }

    // After the grace (and one more cache TTL): only the new key signs.
    tokio::time::sleep((grace + ttl + Duration::from_secs(1)).saturating_sub(rotated.elapsed()))
        .await;
    let (status, _) = stack.post_signed("orders", br#"{"n": 2}"#).await;
    assert_eq!(status, 202);
    let started = Instant::now();
    let after = loop {
        let after: Vec<_> = receiver
            .received()
            .into_iter()
            .filter(|r| r.body["n"] == 2)
            .collect();
        let dead = stack.depth(&stack.dev.resources.deliveries_dlq_url).await;
        if after.iter().any(|r| r.path == "/new")
            && after.iter().any(|r| r.path == "/both")
            && dead == 1
        {
            break after;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{after:?}, {dead} dead"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for r in &after {
        assert!(r.verifies_with(&new_key), "{}", r.path);
        assert!(
            !r.verifies_with(OUTBOUND_KEY),
            "{} still signed with the old key",
            r.path
        );
        let expected = if r.path == "/old" { 401 } else { 200 };
        assert_eq!(r.status, expected, "{}", r.path);
    }
    stack.dev.shutdown().await;
}

/// Rotation's own calls go through the deployed network guard: a mint URL on a loopback
/// address is refused before any connection (nothing is staged), and a test URL whose name
/// resolves only to loopback is refused too (nothing is promoted). Nothing reaches the
/// provider either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mint_and_test_urls_are_held_to_the_network_guard() {
    let provider = Receiver::start().await;
    provider.on(
        "/mint",
        vec![(StatusCode::OK, Some(json!({"value": "key-2"})))],
    );
    let port = provider.base.rsplit(':').next().unwrap().to_string();
    let minted_at_loopback = json!({
        "type": "api-key",
        "value": "key-1",
        "mint_url": format!("https://127.0.0.1:{port}/mint"),
    })
    .to_string();
    let tested_at_loopback = json!({
        "type": "api-key",
        "value": "key-1",
        "mint_url": format!("{}/mint", provider.base),
        "test_url": format!("https://localhost:{port}/check"),
    })
    .to_string();
    let stack = TestStack::with(
        &[("orders", crate::utils::stack::orders(&provider.url))],
        &[
            ("signing", SIGNING_SECRET),
            ("minted", &minted_at_loopback),
            ("tested", &tested_at_loopback),
        ],
        FAST,
    )
    .await;
    let client = Client::new(&stack.dev.sdk);
    let rotate = |network| {
        Rotate::new(
            SecretsManagerStore::new(client.clone()),
            Metrics::Off,
            network,
        )
    };
    let deployed = rotate(switchboard_core::network::NetworkPolicy::DEPLOYED);

    let id = format!("{}/minted", stack.prefix);
    let token = begin(&client, &id).await;
    let e = deployed
        .handle(&step(&id, &token, "createSecret"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
    let pending = value(&client, &id, "AWSPENDING").await;
    assert_eq!(
        pending,
        value(&client, &id, "AWSCURRENT").await,
        "nothing new staged"
    );

    // Minted where the local rules allow; the test call is still held to the deployed ones.
    let id = format!("{}/tested", stack.prefix);
    let token = begin(&client, &id).await;
    rotate(switchboard_core::network::NetworkPolicy::LOCAL)
        .handle(&step(&id, &token, "createSecret"))
        .await
        .unwrap();
    let e = deployed
        .handle(&step(&id, &token, "testSecret"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused addresses"), "{e}");
    let current: serde_json::Value =
        serde_json::from_str(&value(&client, &id, "AWSCURRENT").await.unwrap()).unwrap();
    assert_eq!(current["value"], "key-1", "AWSCURRENT untouched");
    let paths: Vec<String> = provider.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/mint"],
        "only the locally allowed mint reached the provider"
    );
    stack.dev.shutdown().await;
}
