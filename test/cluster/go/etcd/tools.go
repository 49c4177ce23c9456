//go:build tools

// Package tools pins etcd's server command (package main) for the test cluster.
package tools

import _ "go.etcd.io/etcd/server/v3"
