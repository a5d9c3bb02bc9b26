//! JSON schemas for kubeconform, made offline: from the OpenAPI v3 document
//! the API server serves (`/openapi/v3/apis/<group>/<version>`) and from
//! the CRDs in the repository, instead of the schema repository kubeconform
//! downloads by default, which is out of reach here (and would not know our
//! CRD).
//!
//! The output follows what kubeconform's own `openapi2jsonschema.py` makes
//! ("standalone-strict" schemas): draft 4, every object that lists its
//! properties refuses others (`additionalProperties: false`) unless it
//! preserves unknown fields, `x-kubernetes-int-or-string` becomes a `oneOf`,
//! and `nullable` admits `null`. References between the OpenAPI components
//! stay references, into the schema's own `definitions`, because some are
//! recursive (a CRD's `JSONSchemaProps`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

const COMPONENTS: &str = "#/components/schemas/";
const DEFINITIONS: &str = "#/definitions/";

/// The component that holds Kubernetes' `ObjectMeta`.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The file kubeconform looks for with the schema location template
/// `<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json`: the kind, and the
/// first label of the group and the version, lower-cased
/// (`deployment-apps-v1.json`, `configmap-v1.json`,
/// `buildpolicy-buildpolicy-v1alpha1.json`).
pub fn schema_file_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or((api_version, ""));
    let first_label = group.split('.').next().unwrap_or_default();
    let mut suffix = format!("-{}", first_label.to_lowercase());
    if !version.is_empty() {
        suffix.push('-');
        suffix.push_str(&version.to_lowercase());
    }
    format!("{}{suffix}.json", kind.to_lowercase())
}

/// The OpenAPI v3 document of a group version on the server:
/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
pub fn openapi_path(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some((group, version)) => format!("apis/{group}/{version}"),
        None => format!("api/{api_version}"),
    }
}

/// The name of the component in `components.schemas` that is the kind
/// `kind` of `api_version` (its `x-kubernetes-group-version-kind`).
pub fn find_kind<'a>(
    components: &'a Map<String, Value>,
    api_version: &str,
    kind: &str,
) -> Option<&'a str> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    components.iter().find_map(|(name, schema)| {
        schema["x-kubernetes-group-version-kind"]
            .as_array()?
            .iter()
            .any(|gvk| gvk["group"] == group && gvk["version"] == version && gvk["kind"] == kind)
            .then_some(name.as_str())
    })
}

/// The converted components `roots` and every component they reference,
/// directly or not, by name.
///
/// # Panics
///
/// On a reference to a component that is not there.
pub fn definitions(components: &Map<String, Value>, roots: &[&str]) -> Map<String, Value> {
    let mut todo: Vec<String> = roots.iter().map(|&r| r.to_owned()).collect();
    let mut done = Map::new();
    while let Some(name) = todo.pop() {
        if done.contains_key(&name) {
            continue;
        }
        let schema = components
            .get(&name)
            .unwrap_or_else(|| panic!("the OpenAPI document has no component {name}"));
        let mut refs = BTreeSet::new();
        done.insert(name, convert(schema, &mut refs));
        todo.extend(refs.into_iter().filter(|r| !done.contains_key(r)));
    }
    done
}

/// A standalone schema for the component `name`: the component, with the
/// components it references under `definitions`.
pub fn from_openapi(components: &Map<String, Value>, name: &str) -> Value {
    let definitions = definitions(components, &[name]);
    let mut root = definitions[name].clone();
    root["definitions"] = Value::Object(definitions);
    root
}

/// The schema of every version of a CRD (given as JSON), as
/// `(apiVersion, kind, schema)`.
///
/// A CRD's schema leaves `metadata` an open object (the API server checks
/// it); with `object_meta`, the result of [`definitions`] for
/// [`OBJECT_META`], `metadata` is checked as the server does.
pub fn from_crd(
    crd: &Value,
    object_meta: Option<&Map<String, Value>>,
) -> Vec<(String, String, Value)> {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter_map(|version| {
            let name = version["name"].as_str()?;
            let schema = version["schema"].get("openAPIV3Schema")?;
            let mut refs = BTreeSet::new();
            let mut root = convert(schema, &mut refs);
            // The server adds these to every CRD's schema; a CRD need not
            // list them (kube-derive's do not), and the root is strict.
            let properties = root["properties"]
                .as_object_mut()
                .expect("a CRD's root schema lists properties");
            for field in ["apiVersion", "kind"] {
                properties
                    .entry(field)
                    .or_insert_with(|| json!({"type": "string"}));
            }
            properties
                .entry("metadata")
                .or_insert_with(|| json!({"type": "object"}));
            if let Some(meta) = object_meta {
                let open = root["properties"]["metadata"].get("properties").is_none();
                if open {
                    root["properties"]["metadata"] =
                        json!({ "$ref": format!("{DEFINITIONS}{OBJECT_META}") });
                    root["definitions"] = Value::Object(meta.clone());
                }
            }
            Some((format!("{group}/{name}"), kind.to_owned(), root))
        })
        .collect()
}

/// One schema node, converted; the components it references are added to
/// `refs`. Only schema positions are walked: the keys of `properties` are
/// field names (a CRD's `JSONSchemaProps` has a field named `properties`),
/// and `default` or `enum` are values.
fn convert(node: &Value, refs: &mut BTreeSet<String>) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    let flag = |key: &str| map.get(key) == Some(&Value::Bool(true));
    if flag("x-kubernetes-int-or-string")
        && !map.contains_key("oneOf")
        && !map.contains_key("anyOf")
    {
        let mut out = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        if let Some(description) = map.get("description") {
            out["description"] = description.clone();
        }
        return out;
    }
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "$ref" => {
                let target = value.as_str().unwrap_or_default();
                match target.strip_prefix(COMPONENTS) {
                    Some(name) => {
                        refs.insert(name.to_owned());
                        Value::String(format!("{DEFINITIONS}{name}"))
                    }
                    None => value.clone(),
                }
            }
            "properties" | "patternProperties" | "definitions" => match value {
                Value::Object(fields) => Value::Object(
                    fields
                        .iter()
                        .map(|(field, schema)| (field.clone(), convert(schema, refs)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" | "additionalItems" => match value {
                Value::Array(schemas) => {
                    Value::Array(schemas.iter().map(|s| convert(s, refs)).collect())
                }
                Value::Object(_) => convert(value, refs),
                other => other.clone(),
            },
            "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(schemas) => {
                    Value::Array(schemas.iter().map(|s| convert(s, refs)).collect())
                }
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if flag("nullable")
        && let Some(Value::String(type_)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([type_, "null"]));
    }
    if out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_kubeconforms_template() {
        assert_eq!(
            schema_file_name("apps/v1", "Deployment"),
            "deployment-apps-v1.json"
        );
        assert_eq!(schema_file_name("v1", "ConfigMap"), "configmap-v1.json");
        assert_eq!(
            schema_file_name("rbac.authorization.k8s.io/v1", "ClusterRole"),
            "clusterrole-rbac-v1.json"
        );
        assert_eq!(
            schema_file_name("buildpolicy.dev/v1alpha1", "BuildPolicy"),
            "buildpolicy-buildpolicy-v1alpha1.json"
        );
        assert_eq!(openapi_path("v1"), "api/v1");
        assert_eq!(openapi_path("apps/v1"), "apis/apps/v1");
    }

    fn components() -> Map<String, Value> {
        json!({
            "a.Thing": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Thing"}],
                "properties": {
                    "spec": {"allOf": [{"$ref": "#/components/schemas/a.Spec"}], "default": {}},
                    "properties": {"type": "string"}
                }
            },
            "a.Spec": {
                "type": "object",
                "properties": {
                    "port": {"type": "string", "x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "child": {"$ref": "#/components/schemas/a.Spec"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"x": {"type": "string"}}}
                }
            },
            "a.Unused": {"type": "string"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn openapi_components_become_a_strict_standalone_schema() {
        let components = components();
        assert_eq!(
            find_kind(&components, "example.com/v1", "Thing"),
            Some("a.Thing")
        );
        assert_eq!(find_kind(&components, "example.com/v2", "Thing"), None);
        let schema = from_openapi(&components, "a.Thing");
        assert_eq!(schema["additionalProperties"], false);
        // A field named "properties" is a field, not a keyword.
        assert_eq!(
            schema["properties"]["properties"],
            json!({"type": "string"})
        );
        assert_eq!(
            schema["properties"]["spec"]["allOf"][0]["$ref"],
            "#/definitions/a.Spec"
        );
        let definitions = schema["definitions"].as_object().unwrap();
        let mut names: Vec<&String> = definitions.keys().collect();
        names.sort();
        assert_eq!(names, ["a.Spec", "a.Thing"], "only what is referenced");
        let spec = &definitions["a.Spec"];
        assert_eq!(spec["additionalProperties"], false);
        assert_eq!(
            spec["properties"]["port"],
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]})
        );
        assert_eq!(
            spec["properties"]["note"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(spec["properties"]["child"]["$ref"], "#/definitions/a.Spec");
        assert_eq!(
            spec["properties"]["labels"]["additionalProperties"],
            json!({"type": "string"})
        );
        assert!(
            spec["properties"]["free"]
                .get("additionalProperties")
                .is_none()
        );
    }

    #[test]
    fn crd_versions_get_object_meta() {
        let crd = json!({
            "spec": {
                "group": "buildpolicy.dev",
                "names": {"kind": "BuildPolicy"},
                "versions": [{"name": "v1alpha1", "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {"tasks": {"type": "array", "items": {"type": "string"}}}}
                    }
                }}}]
            }
        });
        let meta = Map::from_iter([(OBJECT_META.to_owned(), json!({"type": "object"}))]);
        let schemas = from_crd(&crd, Some(&meta));
        assert_eq!(schemas.len(), 1);
        let (api_version, kind, schema) = &schemas[0];
        assert_eq!(
            (api_version.as_str(), kind.as_str()),
            ("buildpolicy.dev/v1alpha1", "BuildPolicy")
        );
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["apiVersion"],
            json!({"type": "string"})
        );
        assert_eq!(schema["properties"]["kind"], json!({"type": "string"}));
        assert_eq!(schema["properties"]["spec"]["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["metadata"]["$ref"],
            format!("#/definitions/{OBJECT_META}")
        );
        assert_eq!(
            schema["definitions"][OBJECT_META],
            json!({"type": "object"})
        );
    }
}
