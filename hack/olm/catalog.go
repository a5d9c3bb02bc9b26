package main

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"sigs.k8s.io/yaml"
)

// catalog renders the file-based catalog (FBC) of the package: one
// olm.package, the stable olm.channel with this version's bundle, and the
// olm.bundle, with the properties `opm render` gives a bundle image
// (olm.package, olm.gvk, and olm.csv.metadata, what the console shows before
// installing).
func catalog(csvName, version, bundleImage string, csv, crd object) ([]byte, error) {
	crdVer, _, err := crdVersion(crd)
	if err != nil {
		return nil, err
	}
	spec := csv["spec"].(object)
	meta := csv["metadata"].(object)

	// property.CSVMetadata in operator-registry, field by field.
	csvMeta := object{
		"annotations":     deepCopyValue(meta["annotations"]),
		"crdDescriptions": deepCopyValue(spec["customresourcedefinitions"]),
		"description":     spec["description"],
		"displayName":     spec["displayName"],
		"installModes":    deepCopyValue(spec["installModes"]),
		"keywords":        deepCopyValue(spec["keywords"]),
		"links":           deepCopyValue(spec["links"]),
		"maturity":        spec["maturity"],
		"minKubeVersion":  spec["minKubeVersion"],
		"provider":        deepCopyValue(spec["provider"]),
	}
	if m, ok := spec["maintainers"]; ok {
		csvMeta["maintainers"] = deepCopyValue(m)
	}
	if l, ok := meta["labels"]; ok {
		csvMeta["labels"] = deepCopyValue(l)
	}

	// What opm render lists: the CSV's relatedImages, then the bundle image.
	var related []any
	for _, ri := range spec["relatedImages"].([]any) {
		related = append(related, deepCopyValue(ri))
	}
	related = append(related, object{"name": "", "image": bundleImage})

	docs := []object{
		{
			"schema":         "olm.package",
			"name":           packageName,
			"defaultChannel": channel,
			"description":    descriptionMD,
			"icon": object{
				"base64data": base64.StdEncoding.EncodeToString(iconSVG),
				"mediatype":  iconMediaType,
			},
		},
		{
			"schema":  "olm.channel",
			"package": packageName,
			"name":    channel,
			"entries": []any{object{"name": csvName}},
		},
		{
			"schema":  "olm.bundle",
			"package": packageName,
			"name":    csvName,
			"image":   bundleImage,
			"properties": []any{
				object{"type": "olm.package", "value": object{"packageName": packageName, "version": version}},
				object{"type": "olm.gvk", "value": object{
					"group":   str(crd, "spec", "group"),
					"kind":    str(crd, "spec", "names", "kind"),
					"version": crdVer,
				}},
				object{"type": "olm.csv.metadata", "value": csvMeta},
			},
			"relatedImages": related,
		},
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		if i > 0 {
			// Between documents only: a separator right after the header
			// would make the header an empty document of its own.
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func unmarshalStrict(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) }
