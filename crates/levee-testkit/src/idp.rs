//! [`MockIdp`]: an axum server imitating Auth0's `/userinfo` and its
//! per-user rate limit (10 burst, refilled at 5 per minute).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use levee_core::SharedClock;
use parking_lot::Mutex;

use crate::TestkitError;

/// Burst size of each user's bucket.
pub const BURST: u32 = 10;
/// Tokens added per minute.
pub const PER_MINUTE: u32 = 5;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
struct Counts {
    calls: u64,
    rate_limited: u64,
}

#[derive(Debug)]
struct IdpState {
    clock: SharedClock,
    buckets: Mutex<HashMap<String, Bucket>>,
    counts: Mutex<HashMap<String, Counts>>,
    outage: AtomicBool,
    latency: Mutex<Duration>,
    /// Deadlines of the latency waits under way, by id.
    delayed: Mutex<Vec<(u64, Instant)>>,
    next_delay: AtomicU64,
    on_delayed: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

/// A mock identity provider on 127.0.0.1.
///
/// `GET /userinfo` with `Authorization: Bearer token-<user>` answers
/// `{"sub": "<user>", "email": "<user>@example.test", "name": "User <user>"}`.
/// Each user has a token bucket of [`BURST`] refilled at [`PER_MINUTE`] per
/// minute, timed by the given clock. Every answer carries
/// `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`
/// (unix seconds, rounded up, when the bucket is full again); over the limit
/// the answer is `429` with those and `Retry-After`. An unknown token gets
/// `401`; outage mode answers `503`.
#[derive(Debug)]
pub struct MockIdp {
    addr: SocketAddr,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockIdp {
    /// Starts the server on a free loopback port.
    pub async fn start(clock: SharedClock) -> Result<MockIdp, TestkitError> {
        let state = Arc::new(IdpState {
            clock,
            buckets: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            outage: AtomicBool::new(false),
            latency: Mutex::new(Duration::ZERO),
            delayed: Mutex::new(Vec::new()),
            next_delay: AtomicU64::new(0),
            on_delayed: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/userinfo", get(userinfo))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestkitError::io("binding the mock IdP"))?;
        let addr = listener
            .local_addr()
            .map_err(TestkitError::io("binding the mock IdP"))?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockIdp { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/userinfo`.
    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.url())
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Outage mode: every request answers `503`.
    pub fn set_outage(&self, on: bool) {
        self.state.outage.store(on, Ordering::SeqCst);
    }

    /// Adds `d` of latency before each answer, on the IdP's clock (a
    /// `ManualClock` must be advanced for the answer to come).
    pub fn set_latency(&self, d: Duration) {
        *self.state.latency.lock() = d;
    }

    /// Requests now waiting out the [`set_latency`](Self::set_latency) on
    /// the IdP's clock, their deadline not reached. A simulation driving a
    /// `ManualClock` may advance it when every call in flight is one of
    /// these (the others still need real time to reach the IdP or to come
    /// back; one whose deadline has passed is about to answer).
    pub fn delayed(&self) -> usize {
        let now = self.state.clock.now();
        self.state
            .delayed
            .lock()
            .iter()
            .filter(|(_, until)| *until > now)
            .count()
    }

    /// Has `notify` told (`notify_one`) each time [`delayed`](Self::delayed)
    /// changes, so a simulation's driver can wait for it instead of polling.
    pub fn notify_delayed(&self, notify: Arc<tokio::sync::Notify>) {
        *self.state.on_delayed.lock() = Some(notify);
    }

    /// Calls `GET /userinfo` with `Authorization: Bearer {token}` over a
    /// fresh HTTP/1.1 connection; returns the status, headers and body.
    pub async fn userinfo(
        &self,
        token: &str,
    ) -> Result<(http::StatusCode, http::HeaderMap, String), TestkitError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = TestkitError::io("calling the mock IdP");
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(TestkitError::io("connecting to the mock IdP"))?;
        let req = format!(
            "GET /userinfo HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(TestkitError::io("calling the mock IdP"))?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.map_err(io)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .get(9..12)
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .unwrap_or(http::StatusCode::BAD_GATEWAY);
        let mut headers = http::HeaderMap::new();
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(": ")
                && let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), v.parse())
            {
                headers.insert(k, v);
            }
        }
        Ok((status, headers, body.to_string()))
    }

    /// Requests received for `user` (any answer but 401).
    pub fn calls(&self, user: &str) -> u64 {
        self.state.counts.lock().get(user).map_or(0, |c| c.calls)
    }

    /// `429` answers sent to `user`.
    pub fn rate_limited(&self, user: &str) -> u64 {
        self.state
            .counts
            .lock()
            .get(user)
            .map_or(0, |c| c.rate_limited)
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn user_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?;
    let user = token.strip_prefix("token-")?;
    (!user.is_empty()).then(|| user.to_string())
}

async fn userinfo(State(state): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    let latency = *state.latency.lock();
    if !latency.is_zero() {
        // On the IdP's clock: a ManualClock simulates it. Polled once before
        // it is counted, so a driver that sees it in `delayed` also finds
        // its deadline among the clock's sleepers; counted until it ends or
        // the server drops the request.
        let until = state.clock.now() + latency;
        let mut sleep = state.clock.sleep(latency);
        let first = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
        if first.is_pending() {
            let _delayed = Delayed::enter(&state, until);
            sleep.await;
        }
    }
    let Some(user) = user_of(&headers) else {
        return (StatusCode::UNAUTHORIZED, "missing or unknown bearer token").into_response();
    };
    state.counts.lock().entry(user.clone()).or_default().calls += 1;
    if state.outage.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "identity provider unavailable",
        )
            .into_response();
    }
    let (allowed, tokens) = take_token(&state, &user);
    let refill_secs = 60.0 / f64::from(PER_MINUTE);
    let wall = state
        .clock
        .system_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let reset = (wall + (f64::from(BURST) - tokens) * refill_secs).ceil() as u64;
    let mut out = HeaderMap::new();
    out.insert("x-ratelimit-limit", HeaderValue::from(BURST));
    out.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(tokens.floor() as u64),
    );
    out.insert("x-ratelimit-reset", HeaderValue::from(reset));
    if allowed {
        let body = serde_json::json!({
            "sub": user,
            "email": format!("{user}@example.test"),
            "name": format!("User {user}"),
        });
        (StatusCode::OK, out, axum::Json(body)).into_response()
    } else {
        state.counts.lock().entry(user).or_default().rate_limited += 1;
        let retry = ((1.0 - tokens) * refill_secs).ceil().max(1.0) as u64;
        out.insert("retry-after", HeaderValue::from(retry));
        (StatusCode::TOO_MANY_REQUESTS, out, "Too Many Requests").into_response()
    }
}

/// One request in [`MockIdp::delayed`], until dropped.
struct Delayed<'a>(&'a IdpState, u64);

impl<'a> Delayed<'a> {
    fn enter(state: &'a IdpState, until: Instant) -> Self {
        let id = state.next_delay.fetch_add(1, Ordering::Relaxed);
        state.delayed.lock().push((id, until));
        state.tell_delayed();
        Delayed(state, id)
    }
}

impl Drop for Delayed<'_> {
    fn drop(&mut self) {
        self.0.delayed.lock().retain(|(id, _)| *id != self.1);
        self.0.tell_delayed();
    }
}

impl IdpState {
    fn tell_delayed(&self) {
        if let Some(n) = &*self.on_delayed.lock() {
            n.notify_one();
        }
    }
}

/// Refills `user`'s bucket to now and takes a token if one is there.
/// Returns whether it was taken and the tokens left.
fn take_token(state: &IdpState, user: &str) -> (bool, f64) {
    let now = state.clock.now();
    let mut buckets = state.buckets.lock();
    let b = buckets.entry(user.to_string()).or_insert(Bucket {
        tokens: f64::from(BURST),
        last: now,
    });
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    b.tokens = (b.tokens + elapsed * f64::from(PER_MINUTE) / 60.0).min(f64::from(BURST));
    b.last = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        (true, b.tokens)
    } else {
        (false, b.tokens)
    }
}
