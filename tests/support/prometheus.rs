//! A checker of the Prometheus text exposition format 0.0.4: it parses every line, refuses what
//! a Prometheus server would refuse, and returns the samples for assertions.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses exposition text; panics with the offending line on anything malformed: bad names,
/// labels or values, HELP/TYPE lines out of place, a family split up or announced twice, samples
/// whose name does not belong to the family announced before them, histograms without `le`.
pub fn parse(text: &str) -> Vec<Sample> {
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut samples = Vec::new();
    let mut families: Vec<(String, String)> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "bad metric name in {line:?}");
            assert!(!helped.iter().any(|h| h == name), "HELP twice: {line:?}");
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE needs a type");
            assert!(valid_name(name), "bad metric name in {line:?}");
            assert!(
                matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ),
                "bad type in {line:?}"
            );
            assert!(
                !families.iter().any(|(n, _)| n == name),
                "TYPE twice: {line:?}"
            );
            families.push((name.to_owned(), kind.to_owned()));
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = parse_sample(line);
            let (family, kind) = families.last().expect("a sample before any TYPE");
            let belongs = match kind.as_str() {
                "histogram" => {
                    let suffix = sample.name.strip_prefix(family.as_str());
                    let bucket = suffix == Some("_bucket");
                    if bucket {
                        assert!(
                            sample.labels.contains_key("le"),
                            "bucket without le: {line:?}"
                        );
                    }
                    bucket || matches!(suffix, Some("_sum" | "_count"))
                }
                "counter" if !family.ends_with("_total") => {
                    sample.name == *family || sample.name == format!("{family}_total")
                }
                _ => sample.name == *family,
            };
            assert!(belongs, "{line:?} is outside its family {family}");
            samples.push(sample);
        }
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(name: &str) -> bool {
    valid_name(name) && !name.contains(':')
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(body) => parse_labels(body, line),
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let mut fields = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"))
        .split(' ');
    let value = match fields.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some("NaN") => f64::NAN,
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
        None => panic!("no value in {line:?}"),
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    }
    assert!(fields.next().is_none(), "trailing text in {line:?}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The labels after `{`, and the text after the closing `}`.
fn parse_labels<'a>(body: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let mut chars = body.char_indices();
    loop {
        let mut label = String::new();
        loop {
            match chars.next() {
                Some((i, '}')) if label.is_empty() => return (labels, &body[i + 1..]),
                Some((_, '=')) => break,
                Some((_, c)) => label.push(c),
                None => panic!("unclosed labels in {line:?}"),
            }
        }
        assert!(valid_label(&label), "bad label name {label:?} in {line:?}");
        assert_eq!(
            chars.next().map(|(_, c)| c),
            Some('"'),
            "unquoted label value in {line:?}"
        );
        let mut value = String::new();
        loop {
            match chars.next().map(|(_, c)| c) {
                Some('\\') => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some('"') => break,
                None => panic!("unterminated label value in {line:?}"),
                Some(c) => value.push(c),
            }
        }
        assert!(
            labels.insert(label.clone(), value).is_none(),
            "label {label} twice in {line:?}"
        );
        match chars.next() {
            Some((_, ',')) => {}
            Some((i, '}')) => return (labels, &body[i + 1..]),
            _ => panic!("expected , or }} after a label in {line:?}"),
        }
    }
}

/// The value of the sample named `name` whose labels include `labels`; panics if there is not
/// exactly one.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

#[test]
fn the_checker_accepts_good_text_and_refuses_bad_text() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\"} 3\n\
                # HELP h Durations.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n";
    let samples = parse(good);
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[0].labels["y"], "q\"\\");
    assert_eq!(value(&samples, "h_sum", &[]), 1.5);
    for bad in [
        "a 1",                                        // no TYPE
        "# TYPE a gauge\nb 1\n",                      // outside its family
        "# TYPE a gauge\na{x=1} 1\n",                 // unquoted
        "# TYPE a gauge\na{x=\"1\"} one\n",           // bad value
        "# TYPE 1a gauge\n",                          // bad name
        "# TYPE h histogram\nh_bucket 1\n",           // bucket without le
        "# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n", // announced twice
    ] {
        let text = if bad.ends_with('\n') {
            bad.to_owned()
        } else {
            format!("{bad}\n")
        };
        assert!(
            std::panic::catch_unwind(|| parse(&text)).is_err(),
            "accepted {bad:?}"
        );
    }
}
