module weft.dev/examples/hello-go

go 1.24

require weft.dev/sdk/go v0.0.0

// The SDK lives in this repository: no module download is needed.
replace weft.dev/sdk/go => ../../sdk/go
