//! `results.json` as Python's `json.dump(results, f, indent=1)` writes it,
//! so that files written by the Python harness and by this one read alike
//! and diff cleanly: one space of indentation, floats as `repr` (`5.0`),
//! non-ASCII characters escaped, and `Infinity` for an unbounded histogram
//! bucket (Python's JSON extension, which `json.load` reads back).
//!
//! serde_json writes `null` for a non-finite float before a formatter sees
//! it, so [`PyFloat`] hands an infinity to the serializer as an `i128`
//! sentinel that only [`PythonFormatter`] knows, and [`from_str`] turns the
//! bare tokens back into strings [`PyFloat`] reads.

use std::fmt;
use std::io::{self, Write};

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::ser::{Formatter, PrettyFormatter};

use crate::pyfmt::repr_float;

/// Sentinels standing for non-finite floats on their way to the formatter.
const POSITIVE_INFINITY: i128 = i128::MAX;
const NEGATIVE_INFINITY: i128 = i128::MIN;
const NOT_A_NUMBER: i128 = i128::MAX - 1;

/// A float that may be infinite (the `le` of a histogram's last bucket).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PyFloat(pub f64);

impl Serialize for PyFloat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            x if x.is_nan() => serializer.serialize_i128(NOT_A_NUMBER),
            x if x == f64::INFINITY => serializer.serialize_i128(POSITIVE_INFINITY),
            x if x == f64::NEG_INFINITY => serializer.serialize_i128(NEGATIVE_INFINITY),
            x => serializer.serialize_f64(x),
        }
    }
}

impl<'de> Deserialize<'de> for PyFloat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FloatVisitor;
        impl Visitor<'_> for FloatVisitor {
            type Value = PyFloat;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, Infinity, -Infinity or NaN")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PyFloat, E> {
                Ok(PyFloat(v))
            }
            // JSON integers, far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PyFloat, E> {
                Ok(PyFloat(v as f64))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PyFloat, E> {
                Ok(PyFloat(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PyFloat, E> {
                match v {
                    "Infinity" => Ok(PyFloat(f64::INFINITY)),
                    "-Infinity" => Ok(PyFloat(f64::NEG_INFINITY)),
                    "NaN" => Ok(PyFloat(f64::NAN)),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(FloatVisitor)
    }
}

/// A JSON object whose keys keep their order, as a Python dict does.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// The value of `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key`, in place if it is there, at the end otherwise.
    pub fn insert(&mut self, key: String, value: V) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V> FromIterator<(String, V)> for OrderedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = access.next_entry()? {
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// `json.dumps(value, indent=1)`.
///
/// # Errors
///
/// When `value` cannot be serialised (a map with non-string keys).
pub fn to_string<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter::new());
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(out).expect("the formatter writes ASCII only"))
}

/// `json.loads(text)`: also reads the bare `Infinity`, `-Infinity` and
/// `NaN` Python writes, into [`PyFloat`]s.
///
/// # Errors
///
/// When the text is not JSON of type `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(&quote_non_finite(text))
}

/// The text with `Infinity`, `-Infinity` and `NaN` outside strings quoted.
fn quote_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                '\\' => {
                    let escaped: String = rest.chars().take(2).collect();
                    out.push_str(&escaped);
                    rest = &rest[escaped.len()..];
                    continue;
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// serde_json's pretty printer with Python's choices for numbers and
/// strings.
struct PythonFormatter {
    pretty: PrettyFormatter<'static>,
}

impl PythonFormatter {
    fn new() -> Self {
        Self {
            pretty: PrettyFormatter::with_indent(b" "),
        }
    }
}

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(repr_float(value).as_bytes())
    }

    fn write_i128<W: ?Sized + Write>(&mut self, writer: &mut W, value: i128) -> io::Result<()> {
        let text = match value {
            POSITIVE_INFINITY => "Infinity".to_owned(),
            NEGATIVE_INFINITY => "-Infinity".to_owned(),
            NOT_A_NUMBER => "NaN".to_owned(),
            other => other.to_string(),
        };
        writer.write_all(text.as_bytes())
    }

    /// `ensure_ascii`: everything outside printable ASCII as `\uXXXX`.
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        whole: i64,
        float: f64,
        list: Vec<f64>,
        empty: Vec<i64>,
        buckets: Vec<(PyFloat, i64)>,
        codes: OrderedMap<i64>,
        nothing: Option<f64>,
        text: String,
    }

    /// What `json.dumps(..., indent=1)` of the same dict prints (Python 3.11).
    const PYTHON: &str = r#"{
 "whole": 3,
 "float": 5.0,
 "list": [
  2.05,
  0.1
 ],
 "empty": [],
 "buckets": [
  [
   0.005,
   2
  ],
  [
   Infinity,
   7
  ]
 ],
 "codes": {
  "201": 100,
  "200": 1
 },
 "nothing": null,
 "text": "2 \u00d7 \"Xeon\" \ud83d\ude80"
}"#;

    fn sample() -> Sample {
        Sample {
            whole: 3,
            float: 5.0,
            list: vec![2.05, 0.1],
            empty: vec![],
            buckets: vec![(PyFloat(0.005), 2), (PyFloat(f64::INFINITY), 7)],
            codes: OrderedMap(vec![("201".into(), 100), ("200".into(), 1)]),
            nothing: None,
            text: "2 × \"Xeon\" 🚀".into(),
        }
    }

    #[test]
    fn writes_what_python_writes() {
        assert_eq!(to_string(&sample()).unwrap(), PYTHON);
    }

    #[test]
    fn reads_what_python_writes() {
        assert_eq!(from_str::<Sample>(PYTHON).unwrap(), sample());
    }

    #[test]
    fn leaves_infinity_in_strings_alone() {
        assert_eq!(
            quote_non_finite(r#"{"a": "NaN \" Infinity", "b": -Infinity}"#),
            r#"{"a": "NaN \" Infinity", "b": "-Infinity"}"#
        );
    }
}
