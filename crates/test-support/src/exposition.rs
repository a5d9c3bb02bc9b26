//! Reading samples out of the Prometheus text exposition format, so tests
//! can assert on what `/metrics` says.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of an exposition; comments (`# HELP`, `# TYPE`) and blank
/// lines are skipped.
///
/// # Panics
///
/// On a line that is not a sample, quoting it: the operator's exposition
/// is broken then, and a test reading it must say so.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|e| panic!("bad sample line {line:?}: {e}")))
        .collect()
}

/// The sum of the samples named `name` whose labels include all of
/// `labels`, or `None` when there is no such sample. With no labels it adds
/// up every series of the metric, e.g. all `result`s of a counter.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("no value after the metric name")?;
    let name = line[..name_end].to_owned();
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    // An optional timestamp may follow; nothing else may.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unfinished escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP buildpolicy_reconciliations_total Reconciles.
# TYPE buildpolicy_reconciliations_total counter
buildpolicy_reconciliations_total{result="error"} 1
buildpolicy_reconciliations_total{result="success"} 4
buildpolicy_managed_objects{kind="Role"} 2
weird{msg="a \"quoted\", {braced} \\ value\n",x="y"} 3.5 1700000000000
buildpolicy_leader 0
histogram_bucket{le="+Inf"} +Inf
"#;

    #[test]
    fn sums_the_matching_series() {
        assert_eq!(
            metric_sum(TEXT, "buildpolicy_reconciliations_total", &[]),
            Some(5.0)
        );
        assert_eq!(
            metric_sum(
                TEXT,
                "buildpolicy_reconciliations_total",
                &[("result", "success")]
            ),
            Some(4.0)
        );
        assert_eq!(metric_sum(TEXT, "buildpolicy_leader", &[]), Some(0.0));
        assert_eq!(
            metric_sum(TEXT, "buildpolicy_managed_objects", &[("kind", "SCC")]),
            None
        );
        assert_eq!(metric_sum(TEXT, "buildpolicy_missing", &[]), None);
    }

    #[test]
    fn parses_escapes_timestamps_and_infinities() {
        let all = samples(TEXT);
        let weird = all.iter().find(|s| s.name == "weird").unwrap();
        assert_eq!(weird.labels["msg"], "a \"quoted\", {braced} \\ value\n");
        assert_eq!(weird.labels["x"], "y");
        assert_eq!(weird.value, 3.5);
        let inf = all.iter().find(|s| s.name == "histogram_bucket").unwrap();
        assert_eq!(inf.labels["le"], "+Inf");
        assert!(inf.value.is_infinite());
    }

    #[test]
    #[should_panic(expected = "bad sample line")]
    fn a_broken_line_is_reported() {
        samples("metric{a=\"b\" 1\n");
    }
}
