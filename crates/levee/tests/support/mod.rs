//! Shared by the rate-limit layer tests: an axum app behind the layer on a
//! loopback port, a keep-alive HTTP/1 client, and readers for the
//! `RateLimit` / `RateLimit-Policy` fields (parsed back with `sfv`).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sfv::{BareItem, ListEntry, Parser};
use tokio::net::{TcpListener, TcpStream};

/// The user an "auth middleware" found, from `authorization: Bearer <user>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(pub String);

/// Sets [`User`] from the bearer token, as an auth middleware would.
pub fn authenticate(mut req: Request<Body>) -> Request<Body> {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|u| User(u.to_owned()));
    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    req
}

/// A hello-world router whose handler counts its calls.
pub fn counted_app() -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "hello"
            }
        }),
    );
    (app, calls)
}

/// Serves `app` on a free loopback port with the peer address available
/// (`ConnectInfo`), until the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// One keep-alive HTTP/1 connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    /// `GET /` with `headers`.
    pub async fn get(&mut self, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut req = Request::get("/").header("host", "localhost");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.sender.ready().await.unwrap();
        self.sender
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .unwrap()
    }
}

/// One member of a `RateLimit` or `RateLimit-Policy` list, parsed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub policy: String,
    pub params: Vec<(String, i64)>,
}

impl Field {
    pub fn get(&self, name: &str) -> i64 {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no parameter {name} in {self:?}"))
    }
}

/// Parses the single member of the structured field `name` in `resp`.
pub fn field<B>(resp: &Response<B>, name: &str) -> Field {
    let text = resp
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} field"))
        .to_str()
        .unwrap();
    let list: sfv::List = Parser::new(text).parse().unwrap();
    assert_eq!(list.len(), 1, "{name}: {text}");
    let ListEntry::Item(item) = &list[0] else {
        panic!("{name}: not an item: {text}");
    };
    let BareItem::String(policy) = &item.bare_item else {
        panic!("{name}: the policy name is not a String: {text}");
    };
    let params = item
        .params
        .iter()
        .map(|(k, v)| match v {
            BareItem::Integer(i) => (k.as_str().to_owned(), i64::from(*i)),
            other => panic!("{name}: {k:?} is not an integer: {other:?}"),
        })
        .collect();
    Field {
        policy: policy.as_str().to_owned(),
        params,
    }
}

/// `Retry-After` in seconds.
pub fn retry_after<B>(resp: &Response<B>) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
