//! [`Endpoints`]: where Redis is (URLs, Cluster or not, TLS roots) and how
//! a connection to it is opened.

use std::time::Duration;

use redis::AsyncConnectionConfig;

use crate::RedisError;
use crate::connection::Conn;

/// The URLs of a standalone server or of Cluster seed nodes.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    /// A CA (PEM) to trust for `rediss://` instead of the system's roots.
    pub(crate) root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("tls_root_cert", &self.root_cert.is_some())
            .finish()
    }
}

impl Endpoints {
    /// Checks every URL parses, and that TLS and Cluster are compiled in
    /// when asked for.
    pub(crate) fn validate(&self) -> Result<(), RedisError> {
        if self.urls.is_empty() || self.urls.iter().all(String::is_empty) {
            return Err(RedisError::setting(
                "url",
                "no Redis URL given: pass `redis://host:port` (or Cluster node URLs)",
            ));
        }
        for url in &self.urls {
            if url.starts_with("rediss://") && !cfg!(feature = "tls") {
                return Err(RedisError::setting(
                    "url",
                    format!(
                        "`{}` asks for TLS, which this build leaves out: enable levee's `tls` feature",
                        redact(url)
                    ),
                ));
            }
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                RedisError::setting(
                    "url",
                    format!(
                        "invalid Redis URL `{}`: {e}; expected `redis://[user:password@]host:port[/db]`",
                        redact(url)
                    ),
                )
            })?;
        }
        Ok(())
    }

    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "tls")]
        if self.root_cert.is_some() {
            return redis::Client::build_with_tls(url, self.tls_certs());
        }
        redis::Client::open(url)
    }

    #[cfg(feature = "tls")]
    fn tls_certs(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.root_cert.clone(),
        }
    }

    /// Opens a connection (the caller bounds the whole by `limit` too).
    pub(crate) async fn open(&self, limit: Duration) -> redis::RedisResult<Conn> {
        #[cfg(feature = "cluster")]
        if self.cluster {
            return self.open_cluster(limit).await;
        }
        let client = self.client(&self.urls[0])?;
        // No response timeout here: every command runs under the client's
        // own, and a second timer per command costs a driver wake-up.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map(Conn::Single)
    }

    #[cfg(feature = "cluster")]
    async fn open_cluster(&self, limit: Duration) -> redis::RedisResult<Conn> {
        let builder =
            redis::cluster::ClusterClientBuilder::new(self.urls.iter().map(String::as_str))
                .connection_timeout(limit)
                // The client's command timeout is the real bound; this one
                // only ends requests the Cluster client retries internally.
                .response_timeout(limit)
                .retries(1);
        #[cfg(feature = "tls")]
        let builder = match self.root_cert {
            Some(_) => builder.certs(self.tls_certs()),
            None => builder,
        };
        builder
            .build()?
            .get_async_connection()
            .await
            .map(Conn::Cluster)
    }

    /// Opens a pub/sub connection to the first node that answers (in a
    /// Cluster any node will do: `PUBLISH` reaches every node).
    pub(crate) async fn open_pubsub(
        &self,
        limit: Duration,
    ) -> Result<redis::aio::PubSub, RedisError> {
        let mut last = None;
        for url in &self.urls {
            let client = self
                .client(url)
                .map_err(|e| RedisError::from_driver(e, "connect"))?;
            match tokio::time::timeout(limit, client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(e)) => last = Some(RedisError::from_driver(e, "connect")),
                Err(_) => last = Some(RedisError::Timeout { after: limit }),
            }
        }
        Err(last.unwrap_or(RedisError::Timeout { after: limit }))
    }
}

/// A URL with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone(url: &str) -> Endpoints {
        Endpoints {
            urls: vec![url.to_string()],
            cluster: false,
            root_cert: None,
        }
    }

    #[test]
    fn a_bad_url_is_rejected_with_its_password_redacted() {
        let err = standalone("redis://:hunter2@host:notaport")
            .validate()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("invalid Redis URL"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn no_url_is_rejected() {
        let err = Endpoints {
            urls: Vec::new(),
            cluster: true,
            root_cert: None,
        }
        .validate()
        .unwrap_err();
        assert!(matches!(
            err,
            RedisError::InvalidSetting { setting: "url", .. }
        ));
    }

    #[test]
    fn debug_redacts_the_password() {
        let shown = format!("{:?}", standalone("redis://user:s3cret@localhost:6379"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user:***@localhost"), "{shown}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_without_the_tls_feature_names_the_feature() {
        let err = standalone("rediss://localhost:6380")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
