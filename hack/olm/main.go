// Command olm writes and checks the operator's OLM packaging: the registry+v1
// bundle in bundle/ and the file-based catalog in catalog/.
//
//	go run . generate [-root DIR] [-out DIR]
//	    bundle/ and catalog/ from manifests/install.yaml, the CRD in
//	    manifests/crds/, config/samples/*.yaml and Cargo.toml's version;
//	    byte-identical on every run
//	go run . validate [-catalog DIR] BUNDLE_DIR
//	    operator-framework/api's validators (the default bundle suite,
//	    OperatorHub v2 with the standard categories and capabilities, good
//	    practices) and this repository's own checks; with -catalog also the
//	    file-based catalog. Prints every result; exits 1 on any error
//
// hack/generate.sh runs generate after it writes manifests/install.yaml;
// hack/test.sh runs `go test ./...` here and validate on the committed bundle.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  olm generate [-root DIR] [-out DIR]      write bundle/ and catalog/ (under -out, default the repository root)
  olm validate [-catalog DIR] BUNDLE_DIR   validate a bundle (and a file-based catalog); exit 1 on any error
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "generate":
		fs := flag.NewFlagSet("generate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		root := fs.String("root", "", "repository root (default: the nearest parent directory with manifests/install.yaml)")
		out := fs.String("out", "", "where to write bundle/ and catalog/ (default: the repository root)")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			usage(stderr)
			return 2
		}
		r := *root
		if r == "" {
			var err error
			if r, err = findRoot(); err != nil {
				fmt.Fprintf(stderr, "generate: %v\n", err)
				return 1
			}
		}
		o := *out
		if o == "" {
			o = r
		}
		files, err := Generate(r)
		if err != nil {
			fmt.Fprintf(stderr, "generate: %v\n", err)
			return 1
		}
		if err := files.Write(o); err != nil {
			fmt.Fprintf(stderr, "generate: %v\n", err)
			return 1
		}
		for _, f := range files.Paths() {
			fmt.Fprintf(stdout, "wrote %s\n", f)
		}
		return 0
	case "validate":
		fs := flag.NewFlagSet("validate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		catalog := fs.String("catalog", "", "also validate this file-based catalog directory")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
			usage(stderr)
			return 2
		}
		report := ValidateBundle(fs.Arg(0))
		if *catalog != "" {
			report.Merge(ValidateCatalog(*catalog, fs.Arg(0)))
		}
		report.Print(stdout)
		if report.Errors() > 0 {
			return 1
		}
		return 0
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	default:
		usage(stderr)
		return 2
	}
}

// findRoot walks up from the working directory to the repository root.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "manifests", "install.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no manifests/install.yaml in the working directory or a parent: pass -root")
		}
		dir = parent
	}
}
