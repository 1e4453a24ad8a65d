//! Client work per Redis limiter decision, for callgrind on a noisy machine
//! (issue 21): runs `N` decisions of `RedisSlidingWindow::check` (counter
//! mode, server `TIME`, the `redis_limit` bench's quota of `u32::MAX / 2` a
//! second and its keys: `levee`; `levee_1m`: a quota of 1,000,000 a
//! second; `levee_clock`: the bench's quota with `TimeSource::Clock`;
//! `levee_batched`: the bench's quota with `batch_concurrent`), or
//! `N` `RedisClient::eval` calls of `return 1` (`eval1`: the guarded client
//! alone), or `N` raw `EVALSHA`s of `return 1` through a plain `redis`
//! `MultiplexedConnection` (`raw`), either from one task on a
//! current-thread runtime (`1`) or from 64 tasks on a 2-worker runtime
//! (`64`, the `redis_limit/64_tasks` bench's shape; each task makes N/64).
//! Redis runs in its own process, so callgrind counts the client only;
//! instructions per decision are `(Ir(N) - Ir(0)) / N`:
//!
//! ```sh
//! cargo build --release -p levee-benches --example redis_limit_cost
//! for what in levee levee_1m levee_clock levee_batched eval1 raw; do for tasks in 1 64; do for n in 0 6400; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$what.$tasks.$n \
//!     target/release/examples/redis_limit_cost $what $tasks $n 2>&1 | grep refs
//! done; done; done
//! ```
//!
//! Run without valgrind it also prints the wall-clock rate and where the
//! CPU went: the client's (this process, all threads) and redis-server's
//! on-CPU time per decision, from `/proc/<pid>/task/*/schedstat`, over the
//! timed run only, and the server's own `usec_per_call` for `EVALSHA`
//! (`INFO commandstats`, reset before the run): `redis_limit_cost levee 64
//! 200000`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use levee_limit::{Quota, RateLimiter, RedisSlidingWindow, TimeSource};
use levee_redis::{RedisClient, Script};

const TASKS: u64 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "levee".into());
    let tasks: u64 = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(6_400);
    assert!(
        matches!(
            what.as_str(),
            "levee" | "levee_1m" | "levee_clock" | "levee_batched" | "eval1" | "raw"
        ),
        "what: levee, levee_1m, levee_clock, levee_batched, eval1 or raw"
    );
    assert!(tasks == 1 || tasks == TASKS, "tasks: 1 or 64");
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let server_pid = redis_server_pid();
    let rt = if tasks == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("a runtime");
    let client = RedisClient::standalone(server.url())
        .build()
        .expect("a client");
    let limit = if what == "levee_1m" {
        1_000_000
    } else {
        u32::MAX / 2
    };
    let quota = Quota::per_second(NonZeroU32::new(limit).expect("non-zero"));
    let time = if what == "levee_clock" {
        TimeSource::Clock
    } else {
        TimeSource::Server
    };
    let limiter = RedisSlidingWindow::builder(client.clone(), quota)
        .time_source(time)
        // valgrind slows the client 50x: no call may time out
        .timeout(Duration::from_secs(5))
        .batch_concurrent(what == "levee_batched")
        .build()
        .expect("a limiter");
    let client = client.with_command_timeout(Duration::from_secs(5));
    let one = Script::new("return 1");
    let raw_script = redis::Script::new("return 1");
    let mut raw = levee_benches::raw_connection(&rt, &server.url());
    // Setup outside the count: the connection, the script loaded, the keys.
    rt.block_on(async {
        for t in 0..TASKS {
            let d = limiter.check(format!("user-{t}").as_str()).await;
            assert!(d.expect("a decision").allowed);
        }
        client.eval(&one.call()).await.expect("eval");
        let _: i64 = raw_script
            .invoke_async(&mut raw.clone())
            .await
            .expect("evalsha");
    });
    rt.block_on(async {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut raw)
            .await
            .expect("CONFIG RESETSTAT");
    });
    let per_task = n / tasks;
    let (cpu_client, cpu_server) = (cpu_ns(std::process::id()), cpu_ns(server_pid));
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (what, limiter, client) = (what.clone(), limiter.clone(), client.clone());
                let (one, raw_script, mut raw) = (one.clone(), raw_script.clone(), raw.clone());
                tokio::spawn(async move {
                    let key = format!("user-{t}");
                    for _ in 0..per_task {
                        match what.as_str() {
                            "levee" | "levee_1m" | "levee_clock" | "levee_batched" => {
                                let d = limiter.check(key.as_str()).await.expect("a decision");
                                black_box(d.allowed);
                            }
                            "eval1" => {
                                black_box(client.eval(&one.call()).await.expect("eval"));
                            }
                            _ => {
                                let r: i64 =
                                    raw_script.invoke_async(&mut raw).await.expect("evalsha");
                                black_box(r);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("a task");
        }
    });
    let took = start.elapsed();
    let done = per_task * tasks;
    if done > 0 {
        let per = |ns: u64| ns as f64 / done as f64 / 1_000.0;
        let (cpu_client, cpu_server) = (
            cpu_ns(std::process::id()) - cpu_client,
            cpu_ns(server_pid) - cpu_server,
        );
        let stats: String = rt.block_on(async {
            redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut raw)
                .await
                .expect("INFO")
        });
        let usec_per_call = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
            .unwrap_or("?")
            .to_string();
        if std::env::var_os("STATS").is_some() {
            println!("{stats}");
        }
        println!(
            "{what} x{tasks}: {done} decisions, {:.1} K/s, {:.2} us wall each; CPU per decision: client {:.2} us, redis-server {:.2} us (EVALSHA usec_per_call {usec_per_call})",
            done as f64 / took.as_secs_f64() / 1_000.0,
            took.as_secs_f64() * 1e6 / done as f64,
            per(cpu_client),
            per(cpu_server),
        );
    }
    // A clean exit, so that a server run under callgrind writes its counts
    // (the server's instructions per decision: put a `redis-server` that
    // execs `valgrind --tool=callgrind redis-server "$@"` first on the PATH).
    rt.block_on(async {
        let _ = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query_async::<()>(&mut raw)
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while server_pid != 0 && Instant::now() < deadline {
        // Exited (a zombie until the testkit reaps it) or gone.
        match std::fs::read_to_string(format!("/proc/{server_pid}/stat")) {
            Ok(stat)
                if !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break,
        }
    }
}

/// The on-CPU time of every thread of `pid`, in ns (`schedstat`'s first
/// field).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The redis-server the testkit started: this process's only child (it may
/// run under valgrind, named for the tool); 0 if not found.
fn redis_server_pid() -> u32 {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split
            // after its closing parenthesis.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            head.contains('(') && rest.split_whitespace().nth(1) == Some(&me)
        })
        .unwrap_or(0)
}
