//! CloudWatch embedded metric format (EMF): one JSON object a line on stdout, which
//! Fargate's awslogs driver ships to CloudWatch Logs and CloudWatch turns into metrics
//! with no agent and no API call
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//! The edge and the worker write the same shape through [`line`].

use serde_json::{json, Map, Value};

/// The namespace of every metric this system sends.
pub const NAMESPACE: &str = "max-tps-ecs";

/// A metric's unit, as EMF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::None => "None",
        }
    }
}

/// One EMF line (without its newline): `metrics` under the dimension set `dimensions`
/// (name and value each; empty for none) in [`NAMESPACE`], at `timestamp_ms`.
pub fn line(
    timestamp_ms: u64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, Unit, f64)],
) -> String {
    let mut root = Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::from(*value));
    }
    for (name, _, value) in metrics {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root).to_string()
}

/// Why `line` is not a valid EMF object, checked against the specification's schema
/// (root `_aws` with a numeric `Timestamp` and directives of a `Namespace`, dimension
/// sets of at most 30 names each present as string members, and metric definitions
/// each present as a numeric member); `None` when it is valid.
pub fn invalid(line: &str) -> Option<String> {
    let root: Value = match serde_json::from_str(line) {
        Ok(Value::Object(root)) => Value::Object(root),
        Ok(_) => return Some("not a JSON object".into()),
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    let aws = &root["_aws"];
    if !aws["Timestamp"].is_u64() {
        return Some("_aws.Timestamp is not a whole number of milliseconds".into());
    }
    let Some(directives) = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
    else {
        return Some("_aws.CloudWatchMetrics is not a non-empty array".into());
    };
    for directive in directives {
        let namespace = directive["Namespace"].as_str().unwrap_or("");
        if namespace.is_empty() || namespace.len() > 1024 {
            return Some("a Namespace is missing or too long".into());
        }
        let Some(sets) = directive["Dimensions"].as_array() else {
            return Some("Dimensions is not an array".into());
        };
        for set in sets {
            let Some(set) = set.as_array().filter(|s| s.len() <= 30) else {
                return Some("a dimension set is not an array of at most 30".into());
            };
            for name in set {
                let Some(name) = name.as_str() else {
                    return Some("a dimension name is not a string".into());
                };
                if !root[name].is_string() {
                    return Some(format!("dimension {name} has no string member"));
                }
            }
        }
        let Some(metrics) = directive["Metrics"].as_array().filter(|m| m.len() <= 100) else {
            return Some("Metrics is not an array of at most 100".into());
        };
        for metric in metrics {
            let Some(name) = metric["Name"].as_str().filter(|n| !n.is_empty()) else {
                return Some("a metric has no Name".into());
            };
            if !root[name].is_number() {
                return Some(format!("metric {name} has no numeric member"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_valid_emf_with_its_dimensions_and_values() {
        let l = line(
            1_700_000_000_123,
            &[("Route", "hold")],
            &[
                ("Requests", Unit::Count, 12.0),
                ("LatencyP99", Unit::Milliseconds, 1.5),
            ],
        );
        assert_eq!(invalid(&l), None, "{l}");
        let v: Value = serde_json::from_str(&l).expect("JSON");
        assert_eq!(v["Route"], "hold");
        assert_eq!(v["Requests"], 12.0);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Route"]])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "LatencyP99", "Unit": "Milliseconds"})
        );
        assert_eq!(invalid(&line(1, &[], &[("Open", Unit::None, 3.0)])), None);
    }

    #[test]
    fn the_checker_refuses_what_cloudwatch_would() {
        let ok = line(1, &[("Route", "hold")], &[("Requests", Unit::Count, 1.0)]);
        let broken = [
            ok.replace("\"Timestamp\":1", "\"Timestamp\":\"1\""),
            ok.replace("\"Route\":\"hold\"", "\"Rout\":\"hold\""),
            ok.replace("\"Requests\":1.0", "\"Requests\":\"1\""),
            ok.replace("\"Namespace\":\"max-tps-ecs\"", "\"Namespace\":\"\""),
            "[]".to_owned(),
            "{".to_owned(),
        ];
        for b in broken {
            assert!(invalid(&b).is_some(), "accepted {b}");
        }
    }
}
