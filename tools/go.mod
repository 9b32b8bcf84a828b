// Pinned build/lint tools for linkwatch_exporter. Kept separate from the main
// module so its go.mod stays free of tool dependencies. Use from the repo root:
//
//	go tool -modfile=tools/go.mod promu ...
//	go tool -modfile=tools/go.mod staticcheck ./...
module github.com/linkwatch/linkwatch_exporter/tools

go 1.26.8

tool (
	github.com/prometheus/promu
	honnef.co/go/tools/cmd/staticcheck
)

require (
	github.com/BurntSushi/toml v1.4.1-0.20240526193622-a339e1f7089c // indirect
	github.com/Masterminds/semver/v3 v3.2.1 // indirect
	github.com/alecthomas/kingpin/v2 v2.4.0 // indirect
	github.com/alecthomas/units v0.0.0-20211218093645-b94a6e3cc137 // indirect
	github.com/google/go-github/v25 v25.1.3 // indirect
	github.com/google/go-querystring v1.0.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	github.com/prometheus/common v0.52.3 // indirect
	github.com/prometheus/promu v0.17.0 // indirect
	github.com/xhit/go-str2duration/v2 v2.1.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/exp/typeparams v0.0.0-20231108232855-2478ac86f678 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/oauth2 v0.19.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/tools v0.51.0 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
	honnef.co/go/tools v0.8.2 // indirect
)
