//! Pub/sub: a subscription that comes back by itself. While the channel
//! cannot be subscribed (Redis down, connection lost) messages may be
//! missed, so the subscriber is told when it is subscribed again after a
//! gap (the cache then drops its whole L1).

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;

use crate::endpoint::Endpoints;
use crate::{RedisClient, RedisError};

/// Retry delays while the subscription cannot be opened.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a quiet subscription is checked with `PING`; the answer may
/// take the connect timeout before the connection is taken for dead.
const PING_EVERY: Duration = Duration::from_secs(5);

/// What receives a channel's messages (held weakly: the subscription ends
/// when it is dropped).
pub trait Subscriber: Send + Sync + 'static {
    /// A message arrived.
    fn on_message(&self, payload: &[u8]);
    /// The channel is subscribed; `after_gap`: it was not for a while (or
    /// never could be at first), so messages may have been missed.
    fn on_subscribed(&self, after_gap: bool);
    /// The subscription was lost; it is being reopened.
    fn on_lost(&self);
}

impl RedisClient {
    /// A future that keeps `channel` subscribed for `subscriber` until the
    /// subscriber is dropped, resubscribing after every loss (with backoff,
    /// 50 ms to 2 s). Spawn it and keep its handle: the caller owns the
    /// task. Pub/sub needs a URL: a client built from a user's connection
    /// needs [`pubsub_url`](crate::RedisClientBuilder::pubsub_url).
    pub fn subscription(
        &self,
        channel: impl Into<String>,
        subscriber: Weak<dyn Subscriber>,
    ) -> Result<impl Future<Output = ()> + Send + 'static, RedisError> {
        let Some(endpoints) = self.inner.pubsub.clone() else {
            return Err(RedisError::setting(
                "pubsub_url",
                "this client was built from a user's connection and has no URL to subscribe with: set `pubsub_url`",
            ));
        };
        let (channel, limit, name) = (
            channel.into(),
            self.inner.connect_timeout,
            self.inner.name.clone(),
        );
        Ok(async move { listen(endpoints, limit, channel, subscriber, &name).await })
    }
}

async fn listen(
    endpoints: Endpoints,
    limit: Duration,
    channel: String,
    subscriber: Weak<dyn Subscriber>,
    name: &str,
) {
    let mut first = true;
    let mut delay = RETRY_MIN;
    let mut failing = false;
    while subscriber.strong_count() > 0 {
        match subscribe(&endpoints, limit, &channel).await {
            Ok(pubsub) => {
                let Some(s) = subscriber.upgrade() else {
                    return;
                };
                s.on_subscribed(!first);
                drop(s);
                if failing {
                    tracing::info!(client = name, %channel, "levee-redis: subscribed again");
                    failing = false;
                }
                first = false;
                delay = RETRY_MIN;
                pump(pubsub, &subscriber, limit).await;
                if let Some(s) = subscriber.upgrade() {
                    s.on_lost();
                }
            }
            Err(e) => {
                first = false;
                if !failing {
                    tracing::warn!(client = name, %channel, error = %e, "levee-redis: cannot subscribe; retrying in the background");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn subscribe(
    endpoints: &Endpoints,
    limit: Duration,
    channel: &str,
) -> Result<redis::aio::PubSub, RedisError> {
    let mut pubsub = endpoints.open_pubsub(limit).await?;
    match tokio::time::timeout(limit, pubsub.subscribe(channel)).await {
        Ok(Ok(())) => Ok(pubsub),
        Ok(Err(e)) => Err(RedisError::from_driver(e, "connection")),
        Err(_) => Err(RedisError::Timeout { after: limit }),
    }
}

/// Hands messages to the subscriber until the connection ends or stops
/// answering pings.
async fn pump(pubsub: redis::aio::PubSub, subscriber: &Weak<dyn Subscriber>, limit: Duration) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Some(s) = subscriber.upgrade() else { return };
                s.on_message(msg.get_payload_bytes());
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(limit, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
