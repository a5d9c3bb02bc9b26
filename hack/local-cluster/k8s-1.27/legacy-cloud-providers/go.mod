// An empty stand-in for k8s.io/legacy-cloud-providers v0.27.16, which the
// module proxy does not serve. Builds use the providerless tag, under which
// no package of it is imported.
module k8s.io/legacy-cloud-providers

go 1.20
