//! Turns `RESULT` lines into the Markdown tables of docs/benchmarks.md,
//! every figure of ours next to the ceiling, Redis and NATS with ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

type Row = Map<String, Value>;

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

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

/// Replaces what lies between the bench markers of `doc` with `tables`.
pub(crate) fn splice(doc: &str, tables: &str) -> Result<String, String> {
    let start = doc
        .find(BEGIN)
        .ok_or_else(|| format!("no {BEGIN} marker"))?
        + BEGIN.len();
    let end = doc[start..]
        .find(END)
        .ok_or_else(|| format!("no {END} marker"))?
        + start;
    Ok(format!("{}\n\n{}{}", &doc[..start], tables, &doc[end..]))
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
        let doc = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let out = splice(&doc, "new\n").unwrap();
        assert_eq!(out, format!("a\n{BEGIN}\n\nnew\n{END}\nb\n"));
    }
}
