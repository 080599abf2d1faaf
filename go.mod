module github.com/petrel-mqtt/petrel

go 1.26.8

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	go.uber.org/goleak v1.3.0
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/pires/go-proxyproto v0.15.0 // indirect
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.47.0
)

require (
	github.com/coder/websocket v1.8.15
	github.com/eclipse/paho.golang v0.23.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
)
