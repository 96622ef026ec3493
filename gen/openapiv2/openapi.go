// Package openapiv2 embeds the OpenAPI document generated from the API protos.
package openapiv2

import _ "embed"

// JSON is the merged OpenAPI v2 document of every Rafter service.
//
//go:embed rafter.swagger.json
var JSON []byte
