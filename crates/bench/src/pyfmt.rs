//! Numbers and containers written the way Python writes them.
//!
//! `results.json`, `results.md` and the generated tables of BENCHMARKS.md
//! were first written by a Python harness; the committed files are compared
//! byte for byte with what this crate writes (see `report.rs`), so a float
//! is `3.0` and not `3`, a list is `[2.05, 3.69, 5.84]`, and `round` rounds
//! the binary value exactly, as Python's does.

/// `repr(x)` of a Python float: the shortest digits that read back as `x`,
/// in positional notation for exponents from -4 to 15 (always with a
/// fractional part: `3.0`) and scientific notation otherwise (`1e+16`,
/// `1e-05`).
pub fn repr_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `{:e}` gives the shortest round-tripping digits: "-1.2345e3".
    let (sign, digits, exp) = shortest_digits(&format!("{x:e}"));
    if (-4..16).contains(&exp) {
        let body = match usize::try_from(exp) {
            Ok(point) if digits.len() > point + 1 => {
                format!("{}.{}", &digits[..=point], &digits[point + 1..])
            }
            Ok(point) => format!("{digits}{}.0", "0".repeat(point + 1 - digits.len())),
            Err(_) => format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1)),
        };
        format!("{sign}{body}")
    } else {
        format!("{sign}{}{}", mantissa(&digits), exponent(exp))
    }
}

/// `format(x, f".{precision}g")`: `precision` significant digits, trailing
/// zeros removed, scientific notation when the exponent is below -4 or at
/// least `precision`.
pub fn format_g(x: f64, precision: usize) -> String {
    if !x.is_finite() {
        return repr_float(x);
    }
    let precision = precision.max(1);
    let (sign, digits, exp) = shortest_digits(&format!("{:.*e}", precision - 1, x));
    let fits = i64::try_from(precision).unwrap_or(i64::MAX);
    if (-4..fits).contains(&i64::from(exp)) {
        let decimals = usize::try_from(fits - 1 - i64::from(exp)).unwrap_or(0);
        let fixed = format!("{:.*}", decimals, x.abs());
        let trimmed = if fixed.contains('.') {
            fixed.trim_end_matches('0').trim_end_matches('.')
        } else {
            &fixed
        };
        format!("{sign}{trimmed}")
    } else {
        let digits = digits.trim_end_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        format!("{sign}{}{}", mantissa(digits), exponent(exp))
    }
}

/// `round(x, digits)`: the float nearest to the decimal that `x` (its
/// exact binary value) rounds to, ties to even.
pub fn round_to(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

/// `round(x)`: ties to even, as an integer.
// Counters and kibibytes, far below 2^53.
#[allow(clippy::cast_possible_truncation)]
pub fn round_int(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `repr` of a list of floats: `[2.05, 3.69, 5.84]`.
pub fn repr_floats(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| repr_float(*v)).collect();
    format!("[{}]", items.join(", "))
}

/// `repr` of a Python str: single quotes unless the text holds a single
/// quote and no double one.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr` of a dict with str keys: `{'a': 1, 'b': 2}`.
pub fn repr_dict<V>(entries: &[(String, V)], value: impl Fn(&V) -> String) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", repr_str(k), value(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// `repr` of a list of str: `['100', '500']`.
pub fn repr_strs(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| repr_str(v)).collect();
    format!("[{}]", items.join(", "))
}

/// Sign, digits without the point, and decimal exponent of Rust's `{:e}`
/// output (`-1.25e-3` gives `("-", "125", -3)`).
fn shortest_digits(scientific: &str) -> (&'static str, String, i32) {
    let (mantissa, exp) = scientific
        .split_once('e')
        .expect("`{:e}` writes an exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits = mantissa.chars().filter(|c| *c != '.').collect();
    (
        sign,
        digits,
        exp.parse().expect("`{:e}` writes an integer exponent"),
    )
}

/// `d.ddd` from digits.
fn mantissa(digits: &str) -> String {
    if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_owned()
    }
}

/// Python's exponent: a sign and at least two digits (`e+16`, `e-05`).
fn exponent(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("e{sign}{:02}", exp.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_prints_them() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (3.621, "3.621"),
            (123_456.789, "123456.789"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.000_012_3, "1.23e-05"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (f64::INFINITY, "inf"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, python) in cases {
            assert_eq!(repr_float(x), python, "{x:e}");
        }
    }

    #[test]
    fn g_format_matches_python() {
        // format(x, ".3g") and format(x, "g") in Python 3.11.
        let cases = [
            (0.123_456, 3, "0.123"),
            (12.345, 3, "12.3"),
            (1234.5, 3, "1.23e+03"),
            (999.6, 3, "1e+03"),
            (0.000_012_34, 3, "1.23e-05"),
            (0.0001234, 3, "0.000123"),
            (5.0, 3, "5"),
            (0.0, 3, "0"),
            (-0.5, 3, "-0.5"),
            (10.0, 6, "10"),
            (2.5, 6, "2.5"),
            (1_234_567.0, 6, "1.23457e+06"),
        ];
        for (x, precision, python) in cases {
            assert_eq!(format_g(x, precision), python, "{x} .{precision}g");
        }
    }

    #[test]
    fn rounding_is_python_round() {
        assert_eq!(round_to(2.675, 2), 2.67); // 2.675 is 2.67499999... in binary
        assert_eq!(round_to(0.125, 2), 0.12); // an exact tie: to even
        assert_eq!(round_to(1.000_499_9, 3), 1.0);
        assert_eq!(round_to(f64::INFINITY, 3), f64::INFINITY);
        assert_eq!(round_int(2.5), 2);
        assert_eq!(round_int(3.5), 4);
        assert_eq!(round_int(-0.4), 0);
    }

    #[test]
    fn containers_read_as_python_reprs() {
        assert_eq!(repr_floats(&[2.05, 3.69, 5.0]), "[2.05, 3.69, 5.0]");
        assert_eq!(
            repr_dict(&[("NotFound".to_owned(), 3), ("it's".to_owned(), 1)], |v| v
                .to_string()),
            "{'NotFound': 3, \"it's\": 1}"
        );
        assert_eq!(repr_strs(&["100".to_owned()]), "['100']");
    }
}
