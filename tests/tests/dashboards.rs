//! Every metric the Grafana dashboard (`infra/grafana/max-tps-ecs.json`) queries exists
//! in a real scrape of a running edge and `worker run`: a renamed metric breaks this
//! test, not an operator's dashboard in the middle of a sale.

use std::collections::BTreeSet;

use e2e::{env, scrape, Proc};

/// The `maxtps_*` names in every query of the dashboard.
fn queried() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/grafana/max-tps-ecs.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("maxtps_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_scraped() {
    let edge_env = vec![
        ("EDGE_ADDR", "127.0.0.1:0".to_owned()),
        ("EDGE_THREADS", "1".to_owned()),
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
    ];
    let (_edge, edge_line) = Proc::start("edge", &[], &edge_env, "serving metrics");
    let worker_env = vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        // An event of its own: this worker consumes nobody's commits.
        ("WORKER_EVENTS", e2e::unique_event("dash")),
    ];
    let (_worker, worker_line) = Proc::start("worker", &["run"], &worker_env, "serving metrics");
    let scraped = format!("{}{}", scrape(&edge_line), scrape(&worker_line));

    let names = queried();
    assert!(names.len() >= 20, "the dashboard queries {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            let histogram = format!("# TYPE {family} histogram\n");
            let other = format!("# TYPE {name} ");
            !scraped.contains(&histogram) && !scraped.contains(&other)
        })
        .collect();
    assert!(missing.is_empty(), "not in a scrape: {missing:?}");
}
