//! RateLimitLayer with local limiters: axum servers on loopback, tower
//! stacks (clones, Buffer), hostile forwarding headers. Time that matters
//! is a ManualClock's.
#![cfg(feature = "axum")]

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, Request, Response, StatusCode};
use levee::core::ManualClock;
use levee::limit::{Decision, Gcra, LimitError, Quota, RateLimiter, SlidingWindow, WindowMode};
use levee::rate_limit::{
    ExtensionKey, HeaderKey, KeyExtractor, LocalLimiter, MissingKey, OnLimiterError, PeerIp,
    RateLimitLayer,
};
use support::{Client, User, authenticate, counted_app, field, retry_after, serve};
use tower::buffer::Buffer;
use tower::util::MapRequestLayer;
use tower::{BoxError, Layer, Service, ServiceExt};

fn per_minute(limit: u32) -> Quota {
    Quota::new(limit, Duration::from_secs(60)).unwrap()
}

/// An exact (log-mode) window on `clock`, so retry times are known.
fn local<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static>(
    limit: u32,
    clock: &ManualClock,
) -> SlidingWindow<K> {
    SlidingWindow::builder(per_minute(limit))
        .mode(WindowMode::Log)
        .clock(clock.shared())
        .build()
        .unwrap()
}

/// The seed service's policy: anonymous callers 100 a minute by IP,
/// authenticated users 5x by user id.
fn seed_app(clock: &ManualClock) -> (axum::Router, Arc<AtomicUsize>) {
    let peer = PeerIp::new();
    let key = move |req: &Request<Body>| match req.extensions().get::<User>() {
        Some(user) => Some(format!("user:{}", user.0)),
        None => peer.extract(req).map(|ip| format!("ip:{ip}")),
    };
    let layer = RateLimitLayer::builder(key)
        .local_class("anonymous", per_minute(100), local(100, clock))
        .local_class("authenticated", per_minute(500), local(500, clock))
        .classify(|req: &Request<Body>| match req.extensions().get::<User>() {
            Some(_) => "authenticated",
            None => "anonymous",
        })
        .legacy_headers(true)
        .build()
        .unwrap();
    let (app, calls) = counted_app();
    // Layers added later run first: authentication, then the limit.
    (
        app.layer(layer).layer(MapRequestLayer::new(authenticate)),
        calls,
    )
}

#[tokio::test]
async fn hundred_and_first_anonymous_request_gets_429_with_fields_that_agree() {
    let clock = ManualClock::new();
    let (app, calls) = seed_app(&clock);
    let mut client = Client::connect(serve(app).await).await;
    for i in 1..=100 {
        let resp = client.get(&[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        let policy = field(&resp, "ratelimit-policy");
        assert_eq!(
            (policy.policy.as_str(), policy.get("q"), policy.get("w")),
            ("anonymous", 100, 60)
        );
        let rl = field(&resp, "ratelimit");
        assert_eq!((rl.policy.as_str(), rl.get("r")), ("anonymous", 100 - i));
        assert_eq!(rl.get("t"), 60, "all 100 were admitted at t=0");
    }
    clock.advance(Duration::from_millis(17_300));
    let denied = client.get(&[]).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // The first admission leaves the window at 60 s: 42.7 s from now.
    assert_eq!(retry_after(&denied), 43);
    let rl = field(&denied, "ratelimit");
    assert_eq!((rl.get("r"), rl.get("t")), (0, 43));
    let policy = field(&denied, "ratelimit-policy");
    assert_eq!((policy.get("q"), policy.get("w")), (100, 60));
    let legacy = |name: &str| denied.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(
        (
            legacy("x-ratelimit-limit"),
            legacy("x-ratelimit-remaining"),
            legacy("x-ratelimit-reset")
        ),
        ("100".into(), "0".into(), "43".into())
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        100,
        "the denied request was not served"
    );

    // Retry-After is right: a second early, still denied; on time, admitted.
    clock.advance(Duration::from_secs(42));
    assert_eq!(
        client.get(&[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(client.get(&[]).await.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 101);
}

#[tokio::test]
async fn authenticated_user_gets_five_times_the_anonymous_quota() {
    let clock = ManualClock::new();
    let (app, calls) = seed_app(&clock);
    let mut client = Client::connect(serve(app).await).await;
    let alice = [("authorization", "Bearer alice")];
    for i in 1..=500 {
        let resp = client.get(&alice).await;
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(field(&resp, "ratelimit").get("r"), 500 - i);
    }
    let denied = client.get(&alice).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    let policy = field(&denied, "ratelimit-policy");
    assert_eq!(
        (policy.policy.as_str(), policy.get("q"), policy.get("w")),
        ("authenticated", 500, 60)
    );
    // Another user, and anonymous callers from the same address, have
    // their own quotas.
    let bob = client.get(&[("authorization", "Bearer bob")]).await;
    assert_eq!(field(&bob, "ratelimit").get("r"), 499);
    let anonymous = client.get(&[]).await;
    assert_eq!(field(&anonymous, "ratelimit").policy, "anonymous");
    assert_eq!(field(&anonymous, "ratelimit").get("r"), 99);
    assert_eq!(calls.load(Ordering::SeqCst), 502);
}

/// A tower service that counts its calls, for stacks without axum.
fn counting_service(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(Response::new("hello".to_owned())) }
    })
}

/// How a class's limiter is asked: both paths of the service.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// `local_class`: decided inside `call`.
    Local,
    /// `class`: awaited in the response future.
    Awaited,
}

const PATHS: [Path; 2] = [Path::Local, Path::Awaited];

fn api_key_layer(limit: u32, clock: &ManualClock, path: Path) -> RateLimitLayer<String, HeaderKey> {
    let builder = RateLimitLayer::builder(HeaderKey::new(HeaderName::from_static("x-api-key")));
    let limiter = local(limit, clock);
    match path {
        Path::Local => builder.local_class("api", per_minute(limit), limiter),
        Path::Awaited => builder.class("api", per_minute(limit), limiter),
    }
    .build()
    .unwrap()
}

fn keyed_request() -> Request<()> {
    Request::get("/").header("x-api-key", "k").body(()).unwrap()
}

/// Waits for `svc` to be ready and sends it a keyed request.
async fn send<S>(svc: &mut S) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    svc.ready()
        .await
        .unwrap()
        .call(keyed_request())
        .await
        .unwrap()
}

/// Sends `per_task` requests from each of `tasks` clones of `svc` at once;
/// returns how many were admitted.
async fn admitted_by_clones<S>(svc: S, tasks: usize, per_task: usize) -> usize
where
    S: Service<Request<()>, Response = Response<String>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let mut svc = svc.clone();
        handles.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..per_task {
                let resp = send(&mut svc).await;
                ok += usize::from(resp.status() == StatusCode::OK);
            }
            ok
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clones_share_one_limit() {
    for path in PATHS {
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = api_key_layer(20, &clock, path).layer(counting_service(calls.clone()));
        assert_eq!(admitted_by_clones(svc, 50, 4).await, 20, "{path:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            20,
            "{path:?}: denied requests never reach the inner service"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_to_one_server_share_one_limit() {
    let clock = ManualClock::new();
    let (app, calls) = seed_app(&clock);
    let addr = serve(app).await;
    let mut handles = Vec::new();
    for _ in 0..50 {
        handles.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut ok = 0;
            for _ in 0..4 {
                ok += usize::from(client.get(&[]).await.status() == StatusCode::OK);
            }
            ok
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, 100);
    assert_eq!(calls.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn denied_request_never_reaches_the_inner_service() {
    // A GCRA limiter: any RateLimiter works as a class's limiter.
    let clock = ManualClock::new();
    let gcra = Gcra::<String>::with_clock(
        NonZeroU32::new(3).unwrap(),
        Duration::from_secs(20),
        clock.shared(),
    )
    .unwrap();
    let layer = RateLimitLayer::builder(HeaderKey::new(HeaderName::from_static("x-api-key")))
        .local_class("burst", per_minute(3), gcra)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(counting_service(calls.clone()));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let resp = send(&mut svc).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(resp.body(), "", "the layer's own 429 has an empty body");
            assert_eq!(retry_after(&resp), 20);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_stacks_work_outside_and_inside_the_layer() {
    for path in PATHS {
        // Buffer in front of the layer.
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let limited = api_key_layer(10, &clock, path).layer(counting_service(calls.clone()));
        let outside = Buffer::new(limited, 4);
        assert_eq!(admitted_by_clones(outside, 10, 3).await, 10, "{path:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 10);

        // Buffer behind the layer: its poll_ready reserves a slot that only
        // the service polled ready holds, so calling a fresh clone would
        // panic; the layer must call the one it polled.
        let clock = ManualClock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let buffered = Buffer::new(counting_service(calls.clone()), 1);
        let inside = api_key_layer(10, &clock, path).layer(buffered);
        assert_eq!(admitted_by_clones(inside, 10, 3).await, 10, "{path:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }
}

/// One class of `limit` keyed by `peer`.
fn by_peer(peer: PeerIp, limit: u32, clock: &ManualClock) -> axum::Router {
    let layer = RateLimitLayer::builder(peer)
        .local_class("anonymous", per_minute(limit), local(limit, clock))
        .build()
        .unwrap();
    counted_app().0.layer(layer)
}

/// Trusts 127.0.0.1, where the test client connects from, as a proxy.
fn behind_loopback_proxy() -> PeerIp {
    PeerIp::builder()
        .trusted_proxies(["127.0.0.1/32".parse().unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let clock = ManualClock::new();
    let mut behind_proxy =
        Client::connect(serve(by_peer(behind_loopback_proxy(), 3, &clock)).await).await;
    let from = |ip| [("x-forwarded-for", ip)];
    for r in [2, 1, 0] {
        let resp = behind_proxy.get(&from("203.0.113.5")).await;
        assert_eq!(field(&resp, "ratelimit").get("r"), r);
    }
    let over = behind_proxy.get(&from("203.0.113.5")).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the proxy has its own quota...
    let other = behind_proxy.get(&from("203.0.113.6")).await;
    assert_eq!(field(&other, "ratelimit").get("r"), 2);
    // ...and prepending addresses does not escape one's own.
    let spoof = behind_proxy.get(&from("198.51.100.1, 203.0.113.5")).await;
    assert_eq!(spoof.status(), StatusCode::TOO_MANY_REQUESTS);

    // A server that trusts no proxy ignores the header entirely.
    let mut direct = Client::connect(serve(by_peer(PeerIp::new(), 3, &clock)).await).await;
    for ip in ["203.0.113.7", "203.0.113.8", "203.0.113.9"] {
        assert_eq!(direct.get(&from(ip)).await.status(), StatusCode::OK);
    }
    let resp = direct.get(&from("203.0.113.10")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn hostile_forwarded_for_headers_never_panic_and_fall_back_to_the_proxy() {
    let clock = ManualClock::new();
    let mut client =
        Client::connect(serve(by_peer(behind_loopback_proxy(), 5, &clock)).await).await;
    let huge = "9".repeat(60_000);
    let garbage = "%%%,,;;\"[]:::, é, \t".to_owned();
    let hops = format!("1.2.3.4,{}", ["127.0.0.1"; 5_000].join(","));
    let many_fields = ["x-forwarded-for", "127.0.0.1"];
    // Each is garbage where the trusted proxy (127.0.0.1) wrote, or more
    // hops than are read: every one counts against 127.0.0.1 itself.
    let mut remaining = Vec::new();
    for value in [huge.as_str(), garbage.as_str(), hops.as_str(), ""] {
        let resp = client.get(&[("x-forwarded-for", value)]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        remaining.push(field(&resp, "ratelimit").get("r"));
    }
    let resp = client.get(&[(many_fields[0], many_fields[1]); 50]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    remaining.push(field(&resp, "ratelimit").get("r"));
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    // The server is still serving, and a well-formed header still works.
    let fine = client.get(&[("x-forwarded-for", "192.0.2.1")]).await;
    assert_eq!(field(&fine, "ratelimit").get("r"), 4);
}

#[tokio::test]
async fn missing_key_is_rejected_with_401_or_counted_in_its_own_class() {
    for path in PATHS {
        let clock = ManualClock::new();
        let build = |missing: MissingKey<User>| {
            let builder = RateLimitLayer::builder(ExtensionKey::<User>::new()).local_class(
                "users",
                per_minute(10),
                local(10, &clock),
            );
            let unidentified = local(2, &clock);
            match path {
                Path::Local => builder.local_class("unidentified", per_minute(2), unidentified),
                Path::Awaited => builder.class("unidentified", per_minute(2), unidentified),
            }
            .on_missing_key(missing)
            .build()
            .unwrap()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let mut reject = build(MissingKey::Reject).layer(counting_service(calls.clone()));
        let resp = send(&mut reject).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let shared = MissingKey::Shared {
            class: "unidentified",
            key: User("-".into()),
        };
        let mut counted = build(shared).layer(counting_service(calls.clone()));
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let resp = send(&mut counted).await;
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 429], "{path:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

/// A limiter whose backend is always down.
struct Broken;

#[async_trait::async_trait]
impl RateLimiter<String> for Broken {
    async fn check_n(&self, _key: &String, _n: NonZeroU32) -> Result<Decision, LimitError> {
        self.check_now(&String::new())
    }
}

impl LocalLimiter<String> for Broken {
    fn check_now(&self, _key: &String) -> Result<Decision, LimitError> {
        Err(LimitError::Backend {
            message: "down".into(),
            source: None,
        })
    }
}

#[tokio::test]
async fn limiter_errors_follow_the_fail_open_or_closed_setting() {
    let cases = [
        (OnLimiterError::FailOpen, StatusCode::OK),
        (OnLimiterError::FailClosed, StatusCode::SERVICE_UNAVAILABLE),
    ];
    for ((setting, status), path) in cases.into_iter().flat_map(|c| PATHS.map(|p| (c, p))) {
        let calls = Arc::new(AtomicUsize::new(0));
        let builder = RateLimitLayer::builder(HeaderKey::new(HeaderName::from_static("x-api-key")));
        let builder = match path {
            Path::Local => builder.local_class("api", per_minute(5), Broken),
            Path::Awaited => builder.class("api", per_minute(5), Broken),
        };
        let layer = builder.on_limiter_error(setting).build().unwrap();
        let mut svc = layer.layer(counting_service(calls.clone()));
        let resp = send(&mut svc).await;
        assert_eq!(resp.status(), status, "{setting:?} {path:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            usize::from(status == StatusCode::OK)
        );
        assert_eq!(field(&resp, "ratelimit-policy").get("q"), 5);
        assert!(
            !resp.headers().contains_key("ratelimit"),
            "nothing is known of the remaining quota"
        );
    }
}

#[test]
fn bad_settings_are_named_by_build() {
    let clock = ManualClock::new();
    let key = HeaderKey::new(HeaderName::from_static("x-api-key"));
    let err = |r: Result<RateLimitLayer<String, HeaderKey>, LimitError>| r.unwrap_err().to_string();
    assert!(err(RateLimitLayer::builder(key.clone()).build()).contains("`class`"));
    let twice = RateLimitLayer::builder(key.clone())
        .local_class("a", per_minute(1), local(1, &clock))
        .local_class("a", per_minute(2), local(2, &clock))
        .build();
    assert!(err(twice).contains("configured twice"));
    let unprintable = RateLimitLayer::builder(key.clone())
        .local_class("caf\u{e9}", per_minute(1), local(1, &clock))
        .build();
    assert!(err(unprintable).contains("`class`"));
    let unknown = RateLimitLayer::builder(key)
        .local_class("a", per_minute(1), local(1, &clock))
        .on_missing_key(MissingKey::Shared {
            class: "b",
            key: String::new(),
        })
        .build();
    assert!(err(unknown).contains("`on_missing_key`"));
}
