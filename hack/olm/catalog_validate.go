package main

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/blang/semver/v4"
	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/operator-registry/alpha/declcfg"
	"github.com/operator-framework/operator-registry/alpha/property"
)

const (
	catalogLoad  = "operator-registry declcfg.LoadFS + ConvertToModel + model.Validate"
	catalogCheck = "buildpolicy catalog checks (hack/olm/catalog_validate.go)"
)

// ValidateCatalog loads a file-based catalog with operator-registry's own
// loader, validates its model, and checks it against the bundle in bundleDir.
func ValidateCatalog(dir, bundleDir string) Report {
	r := Report{Ran: []string{catalogLoad}}
	cfg, err := declcfg.LoadFS(context.Background(), os.DirFS(dir))
	if err != nil {
		r.add(catalogLoad, dir, true, "%v", err)
		return r
	}
	m, err := declcfg.ConvertToModel(*cfg)
	if err != nil {
		r.add(catalogLoad, dir, true, "%v", err)
		return r
	}
	if err := m.Validate(); err != nil {
		r.add(catalogLoad, dir, true, "%v", err)
	}

	r.Ran = append(r.Ran, catalogCheck)
	bad := func(format string, args ...any) { r.add(catalogCheck, dir, true, format, args...) }
	bundle, err := manifests.GetBundleFromDir(bundleDir)
	if err != nil || bundle == nil || bundle.CSV == nil {
		bad("cannot load the bundle %s to compare: %v", bundleDir, err)
		return r
	}
	csv := bundle.CSV
	if len(cfg.Packages) != 1 || cfg.Packages[0].Name != bundle.Package {
		bad("want exactly the package %q, found %d package(s)", bundle.Package, len(cfg.Packages))
		return r
	}
	if got := cfg.Packages[0].DefaultChannel; got != bundle.DefaultChannel {
		bad("default channel is %q, the bundle's is %q", got, bundle.DefaultChannel)
	}
	channels := map[string][]string{}
	for _, c := range cfg.Channels {
		for _, e := range c.Entries {
			channels[c.Name] = append(channels[c.Name], e.Name)
		}
	}
	for _, want := range bundle.Channels {
		if !contains(channels[want], csv.GetName()) {
			bad("channel %q does not list %s", want, csv.GetName())
		}
	}
	var found *declcfg.Bundle
	for i := range cfg.Bundles {
		if cfg.Bundles[i].Name == csv.GetName() {
			found = &cfg.Bundles[i]
		}
	}
	if found == nil {
		bad("no olm.bundle named %s", csv.GetName())
		return r
	}
	if found.Image == "" {
		bad("olm.bundle %s has no image", found.Name)
	}
	props, err := property.Parse(found.Properties)
	if err != nil {
		bad("olm.bundle %s: %v", found.Name, err)
		return r
	}
	if len(props.Packages) != 1 {
		bad("olm.bundle %s: want one olm.package property, found %d", found.Name, len(props.Packages))
	} else {
		p := props.Packages[0]
		if p.PackageName != bundle.Package {
			bad("olm.bundle %s: olm.package is %q, the bundle's package is %q", found.Name, p.PackageName, bundle.Package)
		}
		v, err := semver.Parse(p.Version)
		if err != nil {
			bad("olm.bundle %s: version %q: %v", found.Name, p.Version, err)
		} else if !v.Equals(csv.Spec.Version.Version) {
			bad("olm.bundle %s: version %s, the CSV's is %s", found.Name, v, csv.Spec.Version.Version)
		}
	}
	var gvks, owned []string
	for _, g := range props.GVKs {
		gvks = append(gvks, g.Group+"/"+g.Version+"/"+g.Kind)
	}
	for _, o := range csv.Spec.CustomResourceDefinitions.Owned {
		_, group, _ := cutDot(o.Name)
		owned = append(owned, group+"/"+o.Version+"/"+o.Kind)
	}
	sort.Strings(gvks)
	sort.Strings(owned)
	if fmt.Sprint(gvks) != fmt.Sprint(owned) {
		bad("olm.bundle %s: olm.gvk properties %v, the CSV owns %v", found.Name, gvks, owned)
	}
	if len(props.CSVMetadatas) != 1 {
		bad("olm.bundle %s: want one olm.csv.metadata property, found %d", found.Name, len(props.CSVMetadatas))
	} else if cm := props.CSVMetadatas[0]; cm.DisplayName != csv.Spec.DisplayName || cm.MinKubeVersion != csv.Spec.MinKubeVersion ||
		fmt.Sprint(cm.Annotations) != fmt.Sprint(csv.GetAnnotations()) {
		bad("olm.bundle %s: olm.csv.metadata differs from the bundle's CSV: run generate", found.Name)
	}
	images := map[string]bool{}
	for _, ri := range found.RelatedImages {
		images[ri.Image] = true
	}
	for _, ri := range csv.Spec.RelatedImages {
		if !images[ri.Image] {
			bad("olm.bundle %s: relatedImages lacks %s from the CSV", found.Name, ri.Image)
		}
	}
	if !images[found.Image] {
		bad("olm.bundle %s: relatedImages lacks the bundle image %s", found.Name, found.Image)
	}
	return r
}

func cutDot(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
