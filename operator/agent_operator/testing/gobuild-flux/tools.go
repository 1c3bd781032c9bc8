//go:build tools

// Package tools pins the main packages this module builds, so `go mod tidy`
// keeps their dependencies in go.sum.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
