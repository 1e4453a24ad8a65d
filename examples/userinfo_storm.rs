//! The userinfo storm: the story levee exists for as a reproducible
//! benchmark. U users on R replicas sharing Redis call an Auth0-like
//! `/userinfo` (levee-testkit's MockIdp: 10 burst, 5 a minute per user,
//! 429 with `x-ratelimit-*`) for one simulated hour; from minute 20 to 30
//! the IdP is down, from minute 40 to 45 it answers in 2 s. Each strategy
//! gets the same seeded traffic; the table says what each costs the
//! upstream and the users.
//!
//! ```text
//! cargo run --release --example userinfo_storm -- --users 500 --replicas 3 \
//!     [--seed N] [--redis URL] [--json] [--chart PATH] [--only STRATEGY]
//! ```
//!
//! `--json` ends the output with one JSON line; `--chart` writes an SVG of
//! upstream calls per minute; `--only "levee full"` runs one strategy.
//!
//! All time runs on one `ManualClock` (the IdP's latency and buckets, the
//! caches, the pipeline's timeouts and retries); HTTP and Redis are real
//! loopback TCP. Without `--redis` a throwaway `redis-server` is started.

#[path = "storm_chart.rs"]
mod chart;
#[path = "storm/mod.rs"]
mod storm;

use std::time::Instant;

use storm::{BoxError, Config, Report, Strategy};

/// The command line.
struct Args {
    config: Config,
    json: bool,
    chart: Option<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        config: Config {
            users: 500,
            replicas: 3,
            seed: 42,
            redis: None,
            strategies: Strategy::ALL.to_vec(),
        },
        json: false,
        chart: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--users" => args.config.users = value()?.parse()?,
            "--replicas" => args.config.replicas = value()?.parse()?,
            "--seed" => args.config.seed = value()?.parse()?,
            "--redis" => args.config.redis = Some(value()?),
            "--chart" => args.chart = Some(value()?),
            "--json" => args.json = true,
            "--only" => {
                let v = value()?;
                args.config.strategies.retain(|s| s.name() == v)
            }
            other => return Err(format!("unknown argument {other}; see the example's doc").into()),
        }
    }
    if args.config.users == 0 || args.config.replicas == 0 {
        return Err("--users and --replicas must be at least 1".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let c = &args.config;
    let began = Instant::now();
    let report = storm::run(c).await?;
    print_table(c, &report);
    let forced: u64 = report.summaries.iter().map(|s| s.forced_advances).sum();
    if forced > 0 {
        println!(
            "warning: the driver advanced the clock {forced} times while a request worked in real time"
        );
    }
    println!(
        "simulated 1 h x {} strategies in {:.1} s of real time",
        report.summaries.len(),
        began.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.chart {
        chart::write(path, &report)?;
        println!("chart: {path}");
    }
    if args.json {
        println!("{}", json(&report));
    }
    Ok(())
}

fn print_table(c: &Config, report: &Report) {
    println!(
        "{} users, {} replicas, seed {}: {} page loads x 5 requests; IdP down min {}-{}, 2 s slow min {}-{}",
        c.users,
        c.replicas,
        c.seed,
        report.page_loads,
        storm::OUTAGE.0,
        storm::OUTAGE.1,
        storm::SLOW.0,
        storm::SLOW.1
    );
    println!(
        "physical limit (fresh TTL {} s, early refresh off): {} upstream calls\n",
        storm::FRESH_TTL.as_secs(),
        report.physical_limit
    );
    println!(
        "| strategy | upstream calls | upstream 429s | user errors | served stale (by tier) | max staleness | p50 | p99 | real time |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|---:|");
    for s in &report.summaries {
        let stale: Vec<String> = s
            .stale_by_tier
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} s | {} ms | {} ms | {:.1} s |",
            s.strategy.name(),
            s.upstream_calls,
            s.upstream_429s,
            s.user_errors,
            if stale.is_empty() {
                "0".to_string()
            } else {
                stale.join(", ")
            },
            s.max_staleness.as_secs(),
            s.p50.as_millis(),
            s.p99.as_millis(),
            s.real_time.as_secs_f64()
        );
    }
}

fn json(report: &Report) -> serde_json::Value {
    let strategies: Vec<_> = report
        .summaries
        .iter()
        .map(|s| {
            serde_json::json!({
                "strategy": s.strategy.name(),
                "requests": s.requests,
                "upstream_calls": s.upstream_calls,
                "upstream_429s": s.upstream_429s,
                "user_errors": s.user_errors,
                "served_stale": s.stale_by_tier.values().sum::<u64>(),
                "served_stale_by_tier": s.stale_by_tier,
                "max_staleness_s": s.max_staleness.as_secs(),
                "p50_ms": s.p50.as_millis() as u64,
                "p99_ms": s.p99.as_millis() as u64,
                "upstream_calls_per_minute": s.calls_per_minute,
                "real_time_ms": s.real_time.as_millis() as u64,
                "forced_clock_advances": s.forced_advances,
            })
        })
        .collect();
    serde_json::json!({
        "physical_limit": report.physical_limit,
        "page_loads": report.page_loads,
        "strategies": strategies,
    })
}
