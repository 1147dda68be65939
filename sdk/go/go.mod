module weft.dev/sdk/go

// //go:wasmexport needs Go 1.24 or later.
go 1.24
