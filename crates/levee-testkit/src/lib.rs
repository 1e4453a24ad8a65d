//! Test kit for levee: real `redis-server` processes on free loopback ports,
//! a three-master Redis Cluster, a TCP [`FaultProxy`] and a [`MockIdp`]
//! imitating Auth0's `/userinfo` with its per-user rate limit.
//!
//! Everything listens on 127.0.0.1 only and is torn down on drop.
//!
//! ```no_run
//! let mut server = levee_testkit::RedisServer::start()?;
//! let url = server.url();
//! server.pause();   // SIGSTOP: commands now time out
//! server.resume();
//! server.restart()?; // same port, empty data
//! # Ok::<(), levee_testkit::TestkitError>(())
//! ```

mod cluster;
mod error;
mod idp;
mod proxy;
mod server;

pub use cluster::RedisCluster;
pub use error::TestkitError;
pub use idp::{BURST as IDP_BURST, MockIdp, PER_MINUTE as IDP_PER_MINUTE};
pub use proxy::{FaultMode, FaultProxy};
pub use server::{RedisServer, RedisServerOptions};
