//! In-process cost of levee's `RateLimitLayer` per request, without HTTP:
//! a `service_fn` called directly, bare, behind the layer (a local
//! `SlidingWindow`, one peer-IP key, a quota nothing reaches) and behind
//! tower_governor (same key, a quota nothing reaches, its headers on), on
//! one thread. The differences are what each layer adds to a request before
//! any socket or parser is involved, free of the noise of an HTTP run;
//! `scripts/load-test` measures them under HTTP load.
//!
//! Run: `cargo run --release --example layer_overhead`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response};
use levee::limit::{Quota, SlidingWindow};
use levee::rate_limit::{PeerIp, RateLimitLayer};
use tower::{Layer, Service, ServiceExt};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

const REQUESTS: u32 = 2_000_000;

/// Mean time per request through `svc`, in nanoseconds.
async fn per_request<S>(svc: &mut S) -> f64
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let peer = SocketAddr::from(([127, 0, 0, 1], 5000));
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let req = Request::get("/")
            .extension(ConnectInfo(peer))
            .body(Body::empty());
        let Ok(req) = req else { continue };
        let Ok(svc) = svc.ready().await;
        let Ok(resp) = svc.call(req).await;
        std::hint::black_box(resp);
    }
    start.elapsed().as_nanos() as f64 / f64::from(REQUESTS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quota = Quota::new(10_000_000, Duration::from_secs(60))?;
    let hello = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hello")))
    });
    let layer = RateLimitLayer::builder(PeerIp::new())
        .local_class("load", quota, SlidingWindow::builder(quota).build()?)
        .build()?;
    let mut limited = layer.layer(hello);
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(10_000_000)
        .use_headers()
        .finish()
        .ok_or("tower_governor rejected the configuration")?;
    let mut governed = GovernorLayer::new(governor).layer(hello);
    let mut bare = hello;
    for round in 1..=3 {
        let b = per_request(&mut bare).await;
        let l = per_request(&mut limited).await;
        let g = per_request(&mut governed).await;
        println!(
            "round {round}: bare {b:.0} ns/request; RateLimitLayer +{:.0} ns; tower_governor +{:.0} ns",
            l - b,
            g - b
        );
    }
    Ok(())
}
