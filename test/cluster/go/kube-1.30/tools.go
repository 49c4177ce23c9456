//go:build tools

// Package tools pins the oldest API server that Strongroom's CRDs support, for the compatibility test.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
