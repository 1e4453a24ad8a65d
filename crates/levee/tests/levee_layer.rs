//! LeveeLayer around hyper-util's HTTP client, against levee-testkit's
//! MockIdp on loopback (Auth0's per-user limits, `x-ratelimit-*` headers,
//! an outage switch). Time is a ManualClock shared by the IdP's buckets and
//! the pipeline; nothing sleeps to decide an outcome.
#![cfg(all(feature = "tower", feature = "http"))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use levee::RetryPolicy;
use levee::cache::{Freshness, Source, TieredCache};
use levee::client::{CacheStatus, ClientPipeline, Credential, LeveeLayer, PerCredential};
use levee::core::{KeyHasher, ManualClock};
use levee::limit::UpstreamQuota;
use levee_testkit::MockIdp;
use tower::{Service, ServiceBuilder, ServiceExt};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The pipeline every test uses: a 5-minute cache with a 2-hour
/// "secondary" stale tier, a per-token upstream quota, 3 attempts retried
/// at once (the clock is moved by hand).
fn pipeline(clock: &ManualClock) -> ClientPipeline {
    let cache = TieredCache::builder("idp")
        .ttl(Duration::from_secs(300))
        .stale_tiers([("secondary", Duration::from_secs(2 * 3600))])
        .failure_backoff(Duration::from_millis(1))
        .clock(clock.shared())
        .build()
        .unwrap();
    let quota = UpstreamQuota::<Credential>::builder()
        .clock(clock.shared())
        .build();
    LeveeLayer::pipeline("idp")
        .cache(cache)
        .upstream_quota(PerCredential::new(quota))
        .retry(
            RetryPolicy::new(3)
                .base_delay(Duration::ZERO)
                .max_retry_after(Duration::ZERO)
                .no_budget(),
        )
        .clock(clock.shared())
        .build()
        .unwrap()
}

fn layer(clock: &ManualClock) -> LeveeLayer {
    LeveeLayer::new(pipeline(clock), KeyHasher::new("a test deployment secret"))
}

fn request(method: Method, url: &str, user: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer token-{user}"))
        .body(Full::default())
        .unwrap()
}

/// A GET polled ready and called (not `oneshot`): the layer's
/// `poll_ready` is the inner client's.
async fn send<S>(client: &mut S, url: &str, user: &str) -> Result<Response<Full<Bytes>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>>,
{
    client
        .ready()
        .await?
        .call(request(Method::GET, url, user))
        .await
}

/// A clock, a MockIdp on it, and the layer on both.
async fn setup() -> (ManualClock, MockIdp, LeveeLayer) {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let layer = layer(&clock);
    (clock, idp, layer)
}

/// `GET /userinfo` with `user`'s token.
fn userinfo(idp: &MockIdp, user: &str) -> Request<Full<Bytes>> {
    request(Method::GET, &idp.userinfo_url(), user)
}

fn cache_header<B>(r: &Response<B>) -> &str {
    r.headers()
        .get("x-levee-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_requests_with_one_token_make_one_upstream_call() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let client = ServiceBuilder::new().layer(layer(&clock)).service(Counted {
        inner: http_client(),
        calls: sent.clone(),
    });
    // The IdP answers after a second on the manual clock: the 5 requests
    // are all in flight while the first one's call waits.
    idp.set_latency(Duration::from_secs(1));
    let page: Vec<_> = (0..5)
        .map(|_| {
            let req = userinfo(&idp, "alice");
            tokio::spawn(client.clone().oneshot(req))
        })
        .collect();
    // Waits (in real time, for the loopback connection) until the IdP's
    // handler sleeps on the clock with the load's request; the outcome
    // does not depend on how long this takes.
    for _ in 0..10_000 {
        if clock.sleepers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(sent.lock().unwrap().get(&Method::GET), Some(&1));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(1));
    for r in page {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"sub\":\"alice\""));
    }
    assert_eq!(idp.calls("alice"), 1, "5 requests, one upstream call");
    assert_eq!(sent.lock().unwrap().get(&Method::GET), Some(&1));
    idp.set_latency(Duration::ZERO);

    // Another token is another key: its own call, and alice's entry stays.
    let bob = client.clone().oneshot(userinfo(&idp, "bob")).await.unwrap();
    assert_eq!(cache_header(&bob), "fresh; source=upstream");
    assert!(
        String::from_utf8_lossy(&bob.into_body().collect().await.unwrap().to_bytes())
            .contains("\"sub\":\"bob\"")
    );
    assert_eq!(idp.calls("bob"), 1);
    let again = client.oneshot(userinfo(&idp, "alice")).await.unwrap();
    assert_eq!(cache_header(&again), "fresh; source=l1");
    assert_eq!(idp.calls("alice"), 1);
}

#[tokio::test]
async fn an_idp_429_holds_that_token_back_and_no_other() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    // Carol spent her burst elsewhere (another service of ours).
    for _ in 0..levee_testkit::IDP_BURST {
        idp.userinfo("token-carol").await.unwrap();
    }
    let mut client = ServiceBuilder::new()
        .layer(layer(&clock))
        .service(http_client());
    let url = |n: u32| format!("{}?page={n}", idp.userinfo_url());
    let err = send(&mut client, &url(1), "carol").await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(idp.rate_limited("carol"), 1, "the IdP answered 429 once");
    // The quota learned the 429's headers: carol is held back on any URI,
    // and the IdP is not called for her.
    let calls = idp.calls("carol");
    let held = send(&mut client, &url(2), "carol").await.unwrap_err();
    assert!(held.is_rate_limited(), "{held}");
    assert!(held.retry_after().is_some());
    assert_eq!(idp.calls("carol"), calls, "held back before the IdP");
    // Dave is not affected.
    let dave = send(&mut client, &url(2), "dave").await.unwrap();
    assert_eq!(dave.status(), StatusCode::OK);
    // Once the IdP's reset has passed, carol goes out again.
    clock.advance(Duration::from_secs(121));
    let carol = send(&mut client, &url(3), "carol").await.unwrap();
    assert_eq!(carol.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_outage_is_answered_with_the_stale_response_and_its_freshness() {
    let (clock, idp, layer) = setup().await;
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(http_client());
    let fresh = client
        .clone()
        .oneshot(userinfo(&idp, "alice"))
        .await
        .unwrap();
    let fresh_body = fresh.into_body().collect().await.unwrap().to_bytes();

    idp.set_outage(true);
    // An hour past its 5-minute freshness.
    clock.advance(Duration::from_secs(300 + 3600));
    let stale = client.oneshot(userinfo(&idp, "alice")).await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(cache_header(&stale), "stale; tier=secondary; age=3600");
    let status = stale.extensions().get::<CacheStatus>().unwrap().clone();
    assert!(status.is_stale());
    assert_eq!(
        status,
        CacheStatus::Lookup {
            source: Source::L1,
            freshness: Freshness::Stale {
                tier: "secondary".into(),
                age: Duration::from_secs(3600),
            },
        }
    );
    assert_eq!(
        stale.into_body().collect().await.unwrap().to_bytes(),
        fresh_body
    );
    assert_eq!(idp.calls("alice"), 1 + 3, "the load was tried 3 times");
    assert_eq!(layer.pipeline_ref().stats().retries, 2);
}

/// Counts the requests that reach the inner service, by method.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<Mutex<HashMap<Method, u32>>>,
}

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(req.method().clone())
            .or_default() += 1;
        self.inner.call(req)
    }
}

#[tokio::test]
async fn a_post_is_never_served_from_the_cache() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let client = ServiceBuilder::new().layer(layer(&clock)).service(Counted {
        inner: http_client(),
        calls: calls.clone(),
    });
    let get = client
        .clone()
        .oneshot(userinfo(&idp, "alice"))
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    for _ in 0..2 {
        let post = client
            .clone()
            .oneshot(request(Method::POST, &idp.userinfo_url(), "alice"))
            .await
            .unwrap();
        // The IdP's own answer to a POST, as it is.
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(cache_header(&post), "bypass");
        assert_eq!(
            post.extensions().get::<CacheStatus>(),
            Some(&CacheStatus::Bypass)
        );
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.get(&Method::POST), Some(&2), "both POSTs went out");
    assert_eq!(calls.get(&Method::GET), Some(&1));
}

/// Rewrites each response's headers with `rewrite(request headers,
/// response headers)`: what MockIdp does not send (`Vary`, `Cache-Control`).
#[derive(Clone)]
struct Rewrite<S>(S, fn(&HeaderMap, &mut HeaderMap));

impl<S, B, RB> Service<Request<B>> for Rewrite<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (rewrite, asked) = (self.1, req.headers().clone());
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut r = fut.await?;
            rewrite(&asked, r.headers_mut());
            Ok(r)
        })
    }
}

/// Adds `Vary: Accept-Language`, and echoes the request's `Accept-Language`
/// as `Content-Language`.
fn by_language(asked: &HeaderMap, answer: &mut HeaderMap) {
    answer.insert("vary", HeaderValue::from_static("Accept-Language"));
    if let Some(l) = asked.get("accept-language") {
        answer.insert("content-language", l.clone());
    }
}

fn no_store(_: &HeaderMap, answer: &mut HeaderMap) {
    answer.insert("cache-control", HeaderValue::from_static("no-store"));
}

fn private_max_age(_: &HeaderMap, answer: &mut HeaderMap) {
    answer.insert(
        "cache-control",
        HeaderValue::from_static("private, max-age=60"),
    );
}

fn private_only(_: &HeaderMap, answer: &mut HeaderMap) {
    answer.insert("cache-control", HeaderValue::from_static("private"));
}

#[tokio::test]
async fn different_varyd_header_values_are_different_cache_entries() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let client = ServiceBuilder::new()
        .layer(layer(&clock))
        .service(Rewrite(http_client(), by_language));
    let get = |language: &'static str| {
        let mut req = userinfo(&idp, "alice");
        req.headers_mut()
            .insert("accept-language", HeaderValue::from_static(language));
        client.clone().oneshot(req)
    };
    let language = |r: &Response<_>| r.headers()["content-language"].to_str().unwrap().to_owned();

    // The first response teaches the layer the URI's Vary list; it was
    // loaded under a key built without it, so it is served, not stored.
    let first = get("en").await.unwrap();
    assert_eq!(cache_header(&first), "fresh; source=upstream");
    let en = get("en").await.unwrap();
    assert_eq!(cache_header(&en), "fresh; source=upstream");
    assert_eq!(idp.calls("alice"), 2);

    let de = get("de").await.unwrap();
    assert_eq!(
        (cache_header(&de), language(&de).as_str()),
        ("fresh; source=upstream", "de")
    );
    assert_eq!(
        idp.calls("alice"),
        3,
        "another Accept-Language, another entry"
    );

    for (lang, want) in [("en", "en"), ("de", "de"), ("en", "en")] {
        let r = get(lang).await.unwrap();
        assert_eq!(cache_header(&r), "fresh; source=l1");
        assert_eq!(language(&r), want, "each entry keeps its own response");
    }
    assert_eq!(idp.calls("alice"), 3);
}

#[tokio::test]
async fn a_no_store_response_is_served_but_never_stored() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let client = ServiceBuilder::new()
        .layer(layer(&clock))
        .service(Rewrite(http_client(), no_store));
    for n in 1..=2 {
        let r = client
            .clone()
            .oneshot(userinfo(&idp, "alice"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(cache_header(&r), "fresh; source=upstream");
        assert_eq!(idp.calls("alice"), n);
    }
}

#[tokio::test]
async fn a_private_response_is_not_stored_in_a_shared_cache() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let shared = LeveeLayer::builder(pipeline(&clock), KeyHasher::new("a test deployment secret"))
        .shared_cache(true)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(shared)
        .service(Rewrite(http_client(), private_max_age));
    for _ in 0..2 {
        client
            .clone()
            .oneshot(userinfo(&idp, "alice"))
            .await
            .unwrap();
    }
    assert_eq!(
        idp.calls("alice"),
        2,
        "private: not stored in a shared cache"
    );
    // A cache of this process alone stores it, for its max-age.
    let local = ServiceBuilder::new()
        .layer(layer(&clock))
        .service(Rewrite(http_client(), private_max_age));
    for _ in 0..2 {
        local.clone().oneshot(userinfo(&idp, "bob")).await.unwrap();
    }
    assert_eq!(idp.calls("bob"), 1);
    clock.advance(Duration::from_secs(61));
    let r = local.oneshot(userinfo(&idp, "bob")).await.unwrap();
    assert_eq!(
        cache_header(&r),
        "fresh; source=upstream",
        "past its max-age"
    );
    assert_eq!(idp.calls("bob"), 2);
}

#[tokio::test]
async fn a_401_is_handed_back_as_it_is_not_retried_and_not_stored() {
    let (_clock, idp, layer) = setup().await;
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(http_client());
    for n in 1..=2 {
        let mut req = userinfo(&idp, "x");
        req.headers_mut()
            .insert("authorization", HeaderValue::from_static("Bearer unknown"));
        let r = client.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"missing or unknown bearer token");
        assert_eq!(layer.pipeline_ref().stats().attempts, n, "one attempt each");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_error_that_is_not_retried() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let layer = LeveeLayer::builder(pipeline(&clock), KeyHasher::new("a test deployment secret"))
        .max_body_bytes(8)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(http_client());
    let err = client.oneshot(userinfo(&idp, "alice")).await.unwrap_err();
    let upstream = err.upstream().expect("an upstream error");
    assert!(upstream.is_body_too_large(), "{upstream}");
    assert_eq!(idp.calls("alice"), 1);
}

/// One replica with its own L1 over a shared Redis L2.
#[cfg(feature = "redis")]
fn replica(redis: &levee_testkit::RedisServer, clock: &ManualClock) -> LeveeLayer {
    let conn = levee::redis::RedisClient::standalone(redis.url())
        .clock(clock.shared())
        .build()
        .unwrap();
    let cache = TieredCache::builder("idp")
        .ttl(Duration::from_secs(300))
        .l2(levee::cache::RedisL2::builder(conn).build().unwrap())
        .clock(clock.shared())
        .build()
        .unwrap();
    let pipeline = LeveeLayer::pipeline("idp")
        .cache(cache)
        .clock(clock.shared())
        .build()
        .unwrap();
    LeveeLayer::new(pipeline, KeyHasher::new("a test deployment secret"))
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn replicas_share_responses_through_the_redis_l2_but_not_private_ones() {
    let redis = levee_testkit::RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    let a = ServiceBuilder::new()
        .layer(replica(&redis, &clock))
        .service(http_client());
    let b = ServiceBuilder::new()
        .layer(replica(&redis, &clock))
        .service(http_client());
    let first = a.clone().oneshot(userinfo(&idp, "alice")).await.unwrap();
    let from_b = b.clone().oneshot(userinfo(&idp, "alice")).await.unwrap();
    assert_eq!(cache_header(&from_b), "fresh; source=l2");
    assert_eq!(from_b.status(), first.status());
    assert_eq!(
        from_b.headers()["content-type"],
        first.headers()["content-type"]
    );
    assert_eq!(
        from_b.into_body().collect().await.unwrap().to_bytes(),
        first.into_body().collect().await.unwrap().to_bytes()
    );
    assert_eq!(idp.calls("alice"), 1);

    // With an L2 the cache is shared: a `private` response is not stored.
    let private = |layer: LeveeLayer| {
        ServiceBuilder::new()
            .layer(layer)
            .service(Rewrite(http_client(), private_only))
    };
    let (a, b) = (
        private(replica(&redis, &clock)),
        private(replica(&redis, &clock)),
    );
    for client in [a.clone(), b, a] {
        client.oneshot(userinfo(&idp, "bob")).await.unwrap();
    }
    assert_eq!(idp.calls("bob"), 3);
}
