module github.com/txoutbox/txoutbox/cmd/outbox-demo

go 1.26.0

replace github.com/txoutbox/txoutbox/brokers/kafka => ../../brokers/kafka

replace github.com/txoutbox/txoutbox/brokers/nats => ../../brokers/nats

replace github.com/txoutbox/txoutbox/cmd/outbox => ../outbox

require github.com/txoutbox/txoutbox/cmd/outbox v0.1.0

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/go-sql-driver/mysql v1.10.1 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/jackc/pgio v1.0.0 // indirect
	github.com/jackc/pglogrepl v0.0.0-20251213150135-2e8d0df862c1 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.3 // indirect
	github.com/nats-io/nats.go v1.55.0 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.20.0 // indirect
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
	github.com/txoutbox/txoutbox/brokers/kafka v0.1.0 // indirect
	github.com/txoutbox/txoutbox/brokers/nats v0.1.0 // indirect
	github.com/txoutbox/txoutbox/conformance v0.1.0 // indirect
	github.com/txoutbox/txoutbox/core v0.1.0 // indirect
	github.com/txoutbox/txoutbox/stores/mongo v0.1.0 // indirect
	github.com/txoutbox/txoutbox/stores/mysql v0.1.0 // indirect
	github.com/txoutbox/txoutbox/stores/postgres v0.1.0 // indirect
	github.com/txoutbox/txoutbox/stores/sqlite v0.1.0 // indirect
	github.com/xdg-go/scram v1.4.0 // indirect
	github.com/xdg-go/stringprep v1.0.4 // indirect
	github.com/youmark/pkcs8 v0.0.0-20240726163527-a2c0da244d78 // indirect
	go.mongodb.org/mongo-driver/v2 v2.10.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/term v0.48.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
	modernc.org/sqlite v1.62.0 // indirect
)

replace github.com/txoutbox/txoutbox/conformance => ../../conformance

replace github.com/txoutbox/txoutbox/core => ../../core

replace github.com/txoutbox/txoutbox/stores/mongo => ../../stores/mongo

replace github.com/txoutbox/txoutbox/stores/mysql => ../../stores/mysql

replace github.com/txoutbox/txoutbox/stores/postgres => ../../stores/postgres

replace github.com/txoutbox/txoutbox/stores/sqlite => ../../stores/sqlite
