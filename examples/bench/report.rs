//! Turns `RESULT` lines into the Markdown tables of docs/benchmarks.md,
//! every figure of ours next to the ceiling, Redis and NATS with ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One `RESULT` line's JSON object.
pub(crate) type Row = Map<String, Value>;

/// The markers around the tables of the main comparison.
pub(crate) const MAIN: Markers = Markers {
    begin: "<!-- bench:begin -->",
    end: "<!-- bench:end -->",
};
/// The markers around the cluster table (rows of `--suite cluster`).
pub(crate) const CLUSTER: Markers = Markers {
    begin: "<!-- bench:cluster:begin -->",
    end: "<!-- bench:cluster:end -->",
};

/// A pair of HTML comments in a Markdown file that the report writes
/// between, leaving the rest of the file alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Markers {
    begin: &'static str,
    end: &'static str,
}

/// The suite of the cluster runs, whose rows have a table of their own.
const CLUSTER_SUITE: &str = "cluster";

/// Reads every `RESULT {json}` line of `text`.
pub(crate) fn parse(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter_map(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Splits rows into those of the main comparison and the cluster runs.
pub(crate) fn split(rows: Vec<Row>) -> (Vec<Row>, Vec<Row>) {
    rows.into_iter()
        .partition(|r| r.get("suite").and_then(Value::as_str) != Some(CLUSTER_SUITE))
}

fn num(row: &Row, key: &str) -> f64 {
    row.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn system(row: &Row) -> String {
    row.get("label")
        .or_else(|| row.get("target"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".to_owned()
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

fn int(x: f64) -> String {
    if x.is_nan() {
        return "–".to_owned();
    }
    let s = format!("{x:.0}");
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".to_owned()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Sorts systems: ours first, the ceiling, then the peers.
fn rank(name: &str) -> (u8, String) {
    let r = match name {
        "chatroom" => 0,
        n if n.starts_with("chatroom") => 1,
        "ceiling" => 2,
        "redis" => 3,
        "nats" => 4,
        _ => 5,
    };
    (r, name.to_owned())
}

/// Groups rows of one scenario by a parameter key; the last row of a
/// system within a group wins.
fn groups(
    rows: &[Row],
    scenario: &str,
    key: &[&str],
) -> BTreeMap<Vec<i64>, BTreeMap<(u8, String), Row>> {
    let mut out: BTreeMap<Vec<i64>, BTreeMap<(u8, String), Row>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.get("scenario").and_then(Value::as_str) == Some(scenario))
    {
        let k = key.iter().map(|f| num(row, f) as i64).collect();
        out.entry(k)
            .or_default()
            .insert(rank(&system(row)), row.clone());
    }
    out
}

fn ours(group: &BTreeMap<(u8, String), Row>) -> Option<&Row> {
    group.get(&(0, "chatroom".to_owned()))
}

fn ceiling(group: &BTreeMap<(u8, String), Row>) -> Option<&Row> {
    group.get(&(2, "ceiling".to_owned()))
}

/// The Markdown tables for every scenario present in `rows`.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut md = String::new();

    let fanout = groups(rows, "fanout", &["members", "publishers"]);
    if !fanout.is_empty() {
        md.push_str("### Fanout: publishers flat out into one room\n\n");
        md.push_str("| members | publishers | system | deliveries/s | ÷ ceiling | chatroom ÷ this | publishes/s | lost | dup | reordered | latency p99 ms |\n");
        md.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (key, group) in &fanout {
            let top = ceiling(group).map_or(f64::NAN, |r| num(r, "deliveries_per_sec"));
            let us = ours(group).map_or(f64::NAN, |r| num(r, "deliveries_per_sec"));
            for ((_, name), r) in group {
                let d = num(r, "deliveries_per_sec");
                let _ = writeln!(
                    md,
                    "| {} | {} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    key[0],
                    key[1],
                    int(d),
                    ratio(d, top),
                    ratio(us, d),
                    int(num(r, "publishes_per_sec")),
                    int(num(r, "lost")),
                    int(num(r, "duplicated")),
                    int(num(r, "reordered")),
                    ms(num(r, "lat_p99_us")),
                );
            }
        }
        md.push('\n');
    }

    let latency = groups(rows, "latency", &["rate", "members"]);
    if !latency.is_empty() {
        md.push_str("### Latency: a fixed publish rate into a room, publish to receive\n\n");
        md.push_str("| msg/s | members | system | p50 ms | p99 ms | p99.9 ms | max ms | chatroom p99 ÷ this | deliveries/s | lost | dup | reordered |\n");
        md.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (key, group) in &latency {
            let us = ours(group).map_or(f64::NAN, |r| num(r, "lat_p99_us"));
            for ((_, name), r) in group {
                let _ = writeln!(
                    md,
                    "| {} | {} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    int(key[0] as f64),
                    key[1],
                    ms(num(r, "lat_p50_us")),
                    ms(num(r, "lat_p99_us")),
                    ms(num(r, "lat_p999_us")),
                    ms(num(r, "lat_max_us")),
                    ratio(us, num(r, "lat_p99_us")),
                    int(num(r, "deliveries_per_sec")),
                    int(num(r, "lost")),
                    int(num(r, "duplicated")),
                    int(num(r, "reordered")),
                );
            }
        }
        md.push('\n');
    }

    let idle = groups(rows, "idle", &["conns"]);
    if !idle.is_empty() {
        md.push_str("### Idle: connections that joined a room, server memory\n\n");
        md.push_str("| connections | system | RSS per connection (bytes) | chatroom ÷ this | server RSS MiB | RSS after close MiB | setup p99 ms | connections/s |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for (key, group) in &idle {
            let us = ours(group).map_or(f64::NAN, |r| num(r, "rss_per_conn_bytes"));
            for ((_, name), r) in group {
                let per = num(r, "rss_per_conn_bytes");
                let _ = writeln!(
                    md,
                    "| {} | {name} | {} | {} | {:.1} | {:.1} | {} | {} |",
                    int(key[0] as f64),
                    int(per),
                    ratio(us, per),
                    num(r, "rss_kib") / 1024.0,
                    num(r, "rss_after_close_kib") / 1024.0,
                    ms(num(r, "setup_p99_us")),
                    int(num(r, "conns_per_sec")),
                );
            }
        }
        md.push('\n');
    }

    let churn = groups(rows, "churn", &["rate"]);
    if !churn.is_empty() {
        md.push_str("### Churn: connect, publish one line, close, at a fixed rate\n\n");
        md.push_str("| connections/s asked | system | completed/s | failed | skipped | setup p50 ms | setup p99 ms | cycle p99 ms |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for (key, group) in &churn {
            for ((_, name), r) in group {
                let _ = writeln!(
                    md,
                    "| {} | {name} | {} | {} | {} | {} | {} | {} |",
                    int(key[0] as f64),
                    int(num(r, "conns_per_sec")),
                    int(num(r, "failed")),
                    int(num(r, "skipped")),
                    ms(num(r, "setup_p50_us")),
                    ms(num(r, "setup_p99_us")),
                    ms(num(r, "cycle_p99_us")),
                );
            }
        }
        md.push('\n');
    }

    let instr = groups(rows, "instructions", &["members"]);
    let instr: Vec<&Row> = instr.values().flat_map(|g| g.values()).collect();
    if !instr.is_empty() {
        md.push_str("### CPU instructions per delivered message (callgrind, server process)\n\n");
        md.push_str("| system | members | messages | deliveries | instructions per delivery |\n");
        md.push_str("|---|---:|---:|---:|---:|\n");
        for r in instr {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                system(r),
                int(num(r, "members")),
                int(num(r, "messages")),
                int(num(r, "deliveries")),
                int(num(r, "instructions_per_delivery")),
            );
        }
        md.push('\n');
    }
    md
}

/// The rows of one cluster setting by (node count, has a broker, system).
type Setting<'a> = BTreeMap<(i64, bool, String), &'a Row>;

/// The cluster runs: one table, fanout then latency, each setting's
/// systems by node count, every figure next to the first system of its
/// setting (one node with no broker, when it ran).
pub(crate) fn render_cluster(rows: &[Row]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    md.push_str(
        "### Cluster: one node in-process, one node on NATS, three nodes on one NATS

",
    );
    md.push_str("| scenario | members | publishers | msg/s asked | system | nodes | deliveries/s | ÷ first | publishes/s | p50 ms | p99 ms | node CPU µs/msg | NATS CPU µs/msg | lost | dup | reordered |\n");
    md.push_str(
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for scenario in ["fanout", "latency"] {
        let mut settings: BTreeMap<Vec<i64>, Setting<'_>> = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.get("scenario").and_then(Value::as_str) == Some(scenario))
        {
            let key = ["members", "publishers", "rate"]
                .iter()
                .map(|f| num(r, f) as i64)
                .collect();
            // No broker first, then by node count; the last run of a system wins.
            let order = (
                num(r, "nodes") as i64,
                r.contains_key("broker_cpu_ms"),
                system(r),
            );
            settings.entry(key).or_default().insert(order, r);
        }
        for (key, group) in &settings {
            let first = group
                .values()
                .next()
                .map_or(f64::NAN, |r| num(r, "deliveries_per_sec"));
            for ((nodes, _, name), r) in group {
                let d = num(r, "deliveries_per_sec");
                let rate = if scenario == "latency" {
                    int(key[2] as f64)
                } else {
                    "flat out".to_owned()
                };
                let _ = writeln!(
                    md,
                    "| {scenario} | {} | {} | {rate} | {name} | {nodes} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    int(key[0] as f64),
                    int(key[1] as f64),
                    int(d),
                    ratio(d, first),
                    int(num(r, "publishes_per_sec")),
                    ms(num(r, "lat_p50_us")),
                    ms(num(r, "lat_p99_us")),
                    cpu(num(r, "node_cpu_us_per_msg")),
                    cpu(num(r, "broker_cpu_us_per_msg")),
                    int(num(r, "lost")),
                    int(num(r, "duplicated")),
                    int(num(r, "reordered")),
                );
            }
        }
    }
    md.push('\n');
    md
}

fn cpu(us: f64) -> String {
    if us.is_nan() {
        "–".to_owned()
    } else {
        format!("{us:.1}")
    }
}

/// Replaces what lies between `markers` in `doc` with `tables`.
pub(crate) fn splice(doc: &str, tables: &str, markers: Markers) -> Result<String, String> {
    let Markers { begin, end } = markers;
    let start = doc
        .find(begin)
        .ok_or_else(|| format!("no {begin} marker"))?
        + begin.len();
    let stop = doc[start..]
        .find(end)
        .ok_or_else(|| format!("no {end} marker"))?
        + start;
    Ok(format!("{}\n\n{}{}", &doc[..start], tables, &doc[stop..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_ratios_to_the_ceiling() {
        let text = r#"
RESULT {"scenario":"fanout","target":"chatroom","members":100,"publishers":4,"deliveries_per_sec":600}
RESULT {"scenario":"fanout","target":"ceiling","members":100,"publishers":4,"deliveries_per_sec":1000}
"#;
        let md = render(&parse(text));
        assert!(
            md.contains("| 100 | 4 | chatroom | 600 | 0.60× | 1.00× |"),
            "{md}"
        );
    }

    #[test]
    fn splice_keeps_what_is_around_the_markers() {
        let Markers { begin, end } = MAIN;
        let doc = format!("a\n{begin}\nold\n{end}\nb\n");
        let out = splice(&doc, "new\n", MAIN).unwrap();
        assert_eq!(out, format!("a\n{begin}\n\nnew\n{end}\nb\n"));
        assert!(splice(&doc, "new\n", CLUSTER).is_err());
    }

    #[test]
    fn cluster_rows_get_their_own_table_in_node_order() {
        let text = r#"
RESULT {"scenario":"fanout","suite":"cluster","label":"nats-3","nodes":3,"members":200,"publishers":4,"deliveries_per_sec":300,"broker_cpu_ms":5}
RESULT {"scenario":"fanout","suite":"cluster","label":"local","nodes":1,"members":200,"publishers":4,"deliveries_per_sec":1000}
RESULT {"scenario":"fanout","suite":"cluster","label":"nats-1","nodes":1,"members":200,"publishers":4,"deliveries_per_sec":500,"broker_cpu_ms":5}
RESULT {"scenario":"fanout","target":"chatroom","members":100,"publishers":4,"deliveries_per_sec":600}
"#;
        let (main, cluster) = split(parse(text));
        assert_eq!((main.len(), cluster.len()), (1, 3));
        assert!(!render(&main).contains("nats-3"));
        let md = render_cluster(&cluster);
        let at = |name: &str| md.find(&format!("| {name} |")).unwrap();
        assert!(
            at("local") < at("nats-1") && at("nats-1") < at("nats-3"),
            "{md}"
        );
        assert!(md.contains("| nats-3 | 3 | 300 | 0.30× |"), "{md}");
    }
}
