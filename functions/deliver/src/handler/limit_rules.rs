//! Rules that had no test of their own: a route's `limits.max_concurrency` never lets two
//! calls be in flight together; a task naming a route not defined here, and one whose
//! credential is malformed, are dead-lettered with their reason and never called.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_core::envelope::DeliveryMessage;
use switchboard_core::ids::EventId;
use switchboard_core::network::NetworkPolicy;
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::memory::MemorySecrets;
use switchboard_shared::metrics::Metrics;

use super::rules::{Destination, Harness, shop_task};
use super::{Deliver, Ports};

/// A destination that answers 200 after `delay`, keeping the most calls it had in flight.
struct Counting {
    url: String,
    calls: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Counting {
    async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (now, calls, most) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (n, c, m) = (now.clone(), calls.clone(), most.clone());
        let app = axum::Router::new().fallback(move || {
            let (n, c, m) = (n.clone(), c.clone(), m.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                m.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                n.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, calls, most }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_max_concurrency_one_never_has_two_calls_in_flight() {
    let dest = Counting::start(Duration::from_millis(800)).await;
    let h = Arc::new(Harness::new(
        &dest.url,
        "      timeout: 5s\n      limits: { max_concurrency: 1 }\n",
    ));
    let batches = (0..2).map(|_| {
        let h = h.clone();
        tokio::spawn(async move { h.deliver(&EventId::new(), 1).await })
    });
    for handed_back in futures::future::join_all(batches).await {
        assert!(
            !handed_back.unwrap(),
            "each delivered: the second waited in process"
        );
    }
    assert_eq!(dest.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        dest.most.load(Ordering::SeqCst),
        1,
        "never two calls at once"
    );
}

#[tokio::test]
async fn a_task_for_a_route_not_defined_here_is_dead_lettered_unknown_route() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    let mut task = shop_task(&EventId::new(), None);
    task.route = "gone".into();
    let body = serde_json::to_string(&DeliveryMessage::DeliveryV1(task)).unwrap();
    assert!(!h.deliver_body(&body, 1, "m-gone").await, "settled");
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::UnknownRoute);
    assert!(
        letters[0].message.contains("shop/gone"),
        "{}",
        letters[0].message
    );
    assert_eq!(dest.hits(), 0);
}

#[tokio::test]
async fn a_malformed_credential_is_dead_lettered_auth_misconfigured_without_a_call() {
    let dest = Destination::start(200).await;
    let h = Harness::new(
        &dest.url,
        "      auth: { type: bearer, secret: shop/token }\n",
    );
    // A bearer token must be printable ASCII: this one can never be sent.
    let secrets = MemorySecrets::with(&[("shop/token", "line\nbreak")]);
    let h = Harness {
        handler: Deliver::new(
            h.integrations.clone(),
            Ports {
                idempotency: h.table.clone(),
                secrets: SecretsCache::new(secrets, Duration::from_secs(60)),
                queue: h.queue.clone(),
                dead_letters: h.dlq.clone(),
                metrics: Metrics::Off,
                network: NetworkPolicy::LOCAL,
                archive: h.archive.clone(),
            },
            10,
        )
        .unwrap(),
        ..h
    };
    assert!(!h.deliver(&EventId::new(), 1).await, "settled, not retried");
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::AuthMisconfigured);
    assert!(
        letters[0].message.contains("shop/token"),
        "{}",
        letters[0].message
    );
    assert!(
        !letters[0].message.contains("break"),
        "the value never shows"
    );
    assert_eq!(dest.hits(), 0);
}
